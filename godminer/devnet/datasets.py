"""Small, learnable datasets in the validator's exact formats (protocol.md §5.1), made on the spot.

Each task has a rule a tiny model can pick up in seconds, so a few training steps measurably
lower the held-out loss: instruct and chat repeat the words they are given twice; DPO prefers the
words in their order over the words reversed; GRPO rewards completions rich in the letter "e"
(a dense reward: even a random model's samples differ, so group-relative advantages exist).
"""

from __future__ import annotations

import random
from typing import Any

from godminer.training.tiny import WORDS

INSTRUCT_TYPE = {
    "system_prompt": "", "system_format": "{system}", "field_system": "system", "field_instruction": "instruct",
    "field_input": "input", "field_output": "output", "format": None, "no_input_format": None, "field": None,
}
CHAT_TYPE = {
    "chat_template": "chatml", "chat_column": "conversations", "chat_role_field": "from",
    "chat_content_field": "value", "chat_user_reference": "human", "chat_assistant_reference": "gpt",
}
DPO_TYPE = {
    "field_prompt": "prompt", "field_system": None, "field_chosen": "chosen", "field_rejected": "rejected",
    "prompt_format": None, "chosen_format": None, "rejected_format": None,
}
E_REWARD = (
    "def reward_letter_e(completions, **kwargs):\n"
    "    return [c.count('e') / max(1, len(c)) for c in completions]"
)
SHORT_REWARD = (
    "def reward_short(completions, prompts=None, **kwargs):\n"
    "    return [1.0 / (1.0 + len(c.split())) for c in completions]"
)
GRPO_TYPE = {
    "field_prompt": "prompt", "extra_column": None,
    "reward_functions": [
        {"reward_func": E_REWARD, "reward_weight": 0.8, "func_hash": None, "is_generic": True},
        {"reward_func": SHORT_REWARD, "reward_weight": 0.2, "func_hash": None, "is_generic": True},
    ],
}
DATASET_TYPES = {"instruct": INSTRUCT_TYPE, "chat": CHAT_TYPE, "dpo": DPO_TYPE, "grpo": GRPO_TYPE}


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def instruct_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Validator-standardised instruct rows (every value a string; some with input, some with system)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = _words(rng, rng.randint(2, 4))
        row = {"instruct": "repeat twice:", "input": words if i % 3 else "", "output": f"{words} {words}"}
        if not row["input"]:
            row["instruct"] = f"repeat twice: {words}"
        if i % 4 == 0:
            row["system"] = "you copy words."
        rows.append(row)
    return rows


def chat_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = _words(rng, rng.randint(2, 4))
        rows.append({"conversations": [
            {"from": "human", "value": f"repeat twice: {words}"},
            {"from": "gpt", "value": f"{words} {words}"},
        ]})
    return rows


def dpo_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = _words(rng, rng.randint(2, 4)).split()
        rows.append({"prompt": f"keep the order: {' '.join(words)}", "chosen": " ".join(words),
                     "rejected": " ".join(reversed(words)) + " no"})
    return rows


def grpo_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"prompt": f"say a colour like {_words(rng, 2)}:"} for _ in range(n)]


ROWS = {"instruct": instruct_rows, "chat": chat_rows, "dpo": dpo_rows, "grpo": grpo_rows}


def split(rows: list[dict[str, Any]], test_share: float = 0.1, seed: int = 42) -> tuple[list[Any], list[Any]]:
    """The validator's train/test split: a shuffled test share (the miner only ever sees train)."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_test = max(1, int(len(rows) * test_share))
    test = {i for i in order[:n_test]}
    return [r for i, r in enumerate(rows) if i not in test], [rows[i] for i in order[:n_test]]
