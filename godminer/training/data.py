"""Dataset adapters: the validator's rows → training rows formatted exactly as the evaluator sees them.

* Instruct: axolotl's ``user_defined`` format as the evaluator runs it (training.md §1.1): the
  prompt is ``system_format.format(system=...)`` (only when the system value is non-empty) glued to
  ``"{instruction} {input}"`` (input truthy) or ``"{instruction}"``; prompt and output are
  tokenised separately, the output's leading BOS is stripped and EOS appended; only the output
  (with its EOS) is labelled; samples under 2 or over ``sequence_len`` tokens are dropped.
* Chat: the task's chat template over the role/content fields of the request; only assistant
  turns (with their end-of-turn marker) are labelled.
* DPO: prompt/chosen/rejected after the task's ``*_format`` templates.
* GRPO: the prompt column plus every other column (the reward functions' extra arguments).
"""

from __future__ import annotations

import json
import math
import random
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from godminer.protocol.payloads import (
    ChatTemplateDatasetType,
    DpoDatasetType,
    GrpoDatasetType,
    InstructTextDatasetType,
)

IGNORE = -100
CHATML = (  # axolotl's built-in "chatml" template
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class DataError(ValueError):
    """The dataset cannot be used as given (clear message, raised before training starts)."""


def load_rows(path: Path) -> list[dict[str, Any]]:
    """A JSON array of objects (the validator's format) or JSON lines."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} is neither a JSON array nor JSON lines: {exc}") from exc
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{path} must hold a list of JSON objects")
    if not data:
        raise DataError(f"{path} holds no rows")
    return data


def eval_sequence_len(max_position_embeddings: int | None) -> int:
    """The evaluator's sequence length: 4096, halved model context when that is shorter."""
    if max_position_embeddings and max_position_embeddings < 2 * 4096:
        return math.ceil(max_position_embeddings / 2)
    return 4096


def split_dev(rows: Sequence[Any], dev_size: int, seed: int = 42) -> tuple[list[Any], list[Any]]:
    """Hold out ``dev_size`` rows (shuffled, seeded) for model selection."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    dev_idx = set(order[:dev_size])
    return [r for i, r in enumerate(rows) if i not in dev_idx], [rows[i] for i in order[:dev_size]]


def dev_size_for(n_rows: int, multiple: int) -> int:
    """About 5 % of the rows, 16 to 256, a multiple of the evaluation batch (full batches keep the mean exact)."""
    target = min(256, max(16, n_rows // 20))
    target = min(target, n_rows // 4)
    return max(0, target // multiple * multiple)


# ----- instruct ---------------------------------------------------------------------------------

def _text(value: Any) -> str:
    return "" if value is None else str(value)


def instruct_texts(row: dict[str, Any], dt: InstructTextDatasetType) -> tuple[str, str]:
    """(prompt, output) as the evaluator's axolotl ``user_defined`` strategy builds them."""
    instruction = _text(row.get(dt.field_instruction or "instruction"))
    value_input = _text(row.get(dt.field_input)) if dt.field_input else ""
    output = _text(row.get(dt.field_output or "output"))
    system = _text(row.get(dt.field_system)) if dt.field_system and dt.field_system in row else dt.system_prompt or ""
    prefix = (dt.system_format or "{system}").format(system=system) if system else ""
    if value_input:
        body = (dt.format or "{instruction} {input}").format(instruction=instruction, input=value_input)
    else:
        body = (dt.no_input_format or "{instruction}").format(instruction=instruction)
    return prefix + body, output


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]


def tokenize_instruct(prompt: str, output: str, tokenizer: Any, sequence_len: int) -> Example | None:
    """Token ids and labels exactly as the evaluator builds them; None when the sample is dropped."""
    prompt_ids = tokenizer(prompt, add_special_tokens=True, truncation=True, max_length=sequence_len)["input_ids"]
    if not output:
        return None
    output_ids = tokenizer(output, add_special_tokens=True, truncation=True, max_length=sequence_len)["input_ids"]
    if output_ids and tokenizer.bos_token_id is not None and output_ids[0] == tokenizer.bos_token_id:
        output_ids = output_ids[1:]
    eos = tokenizer.eos_token_id
    if output_ids and output_ids[-1] != eos and len(output_ids) < sequence_len:
        output_ids = [*output_ids, eos]
    input_ids = list(prompt_ids) + list(output_ids)
    if len(input_ids) < 2 or len(input_ids) > sequence_len or not output_ids:
        return None
    return Example(input_ids, [IGNORE] * len(prompt_ids) + list(output_ids))


# ----- chat -------------------------------------------------------------------------------------

def chat_messages(row: dict[str, Any], dt: ChatTemplateDatasetType) -> list[dict[str, str]]:
    """The row's conversation with roles mapped to system/user/assistant."""
    raw = row.get(dt.chat_column or "conversations")
    if isinstance(raw, str):
        raw = json.loads(raw)
    if not isinstance(raw, list):
        raise DataError(f"chat column {dt.chat_column!r} is not a list of messages")
    roles = {dt.chat_user_reference or "user": "user", dt.chat_assistant_reference or "assistant": "assistant",
             "system": "system", "human": "user", "gpt": "assistant", "user": "user", "assistant": "assistant"}
    role_key, content_key = dt.chat_role_field or "from", dt.chat_content_field or "value"
    messages = []
    for message in raw:
        role = _text(message.get(role_key))
        messages.append({"role": roles.get(role, role), "content": _text(message.get(content_key))})
    return messages


def chat_template_for(name: str | None, tokenizer: Any) -> str:
    """The task's template: ChatML by name, or the tokenizer's own for 'tokenizer_default'."""
    if name in (None, "", "chatml"):
        return CHATML
    if tokenizer.chat_template and name in ("tokenizer_default", "tokenizer_default_fallback_chatml"):
        return str(tokenizer.chat_template)
    if tokenizer.chat_template:
        return str(tokenizer.chat_template)
    return CHATML


def tokenize_chat(messages: list[dict[str, str]], tokenizer: Any, template: str, sequence_len: int) -> Example | None:
    """Render with the template; label assistant turns (content plus end-of-turn marker) only."""
    text = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(
            messages[:i], chat_template=template, tokenize=False, add_generation_prompt=True
        )
        upto = tokenizer.apply_chat_template(messages[: i + 1], chat_template=template, tokenize=False)
        if text.startswith(upto) and upto.startswith(before):
            spans.append((len(before), len(upto.rstrip())))
    if not spans:
        return None
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    labels = [
        tok if any(s <= start < e for s, e in spans) else IGNORE for tok, (start, _) in zip(ids, offsets, strict=True)
    ]
    if len(ids) < 2 or all(label == IGNORE for label in labels):
        return None
    return Example(ids[:sequence_len], labels[:sequence_len])


# ----- DPO and GRPO -----------------------------------------------------------------------------

class _Keep(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _fill(template: str | None, default: str, **values: str) -> str:
    return string.Formatter().vformat(template or default, (), _Keep(values))


def dpo_rows(rows: list[dict[str, Any]], dt: DpoDatasetType) -> list[dict[str, str]]:
    """prompt/chosen/rejected after the task's format templates; rows missing a part are dropped."""
    out = []
    for row in rows:
        prompt = _text(row.get(dt.field_prompt or "prompt"))
        chosen = _text(row.get(dt.field_chosen or "chosen"))
        rejected = _text(row.get(dt.field_rejected or "rejected"))
        system = _text(row.get(dt.field_system)) if dt.field_system else ""
        if not (prompt and chosen and rejected):
            continue
        out.append({
            "prompt": _fill(dt.prompt_format, "{prompt}", prompt=prompt, system=system),
            "chosen": _fill(dt.chosen_format, "{chosen}", chosen=chosen, prompt=prompt, system=system),
            "rejected": _fill(dt.rejected_format, "{rejected}", rejected=rejected, prompt=prompt, system=system),
        })
    if not out:
        raise DataError("no usable DPO rows (each needs a prompt, a chosen and a rejected answer)")
    return out


def grpo_rows(rows: list[dict[str, Any]], dt: GrpoDatasetType) -> list[dict[str, Any]]:
    """A 'prompt' column plus every other column, as the reward functions may ask for any of them."""
    field = dt.field_prompt or "prompt"
    out = []
    for row in rows:
        prompt = _text(row.get(field))
        if not prompt:
            continue
        extra = {k: v for k, v in row.items() if k != field}
        out.append({**extra, "prompt": prompt})
    if not out:
        raise DataError(f"no rows with a non-empty {field!r} column")
    return out


def token_lengths(texts: Sequence[str], tokenizer: Any, sample: int = 512) -> list[int]:
    """Token counts of up to ``sample`` texts (for choosing the sequence length)."""
    step = max(1, len(texts) // sample)
    return [len(tokenizer(t, add_special_tokens=True)["input_ids"]) for t in texts[::step][:sample]]
