"""The validator's metrics, computed locally (for tests, the demo's local validator and benchmarks).

Models are loaded as the evaluator loads them: a folder with ``adapter_config.json`` through
``AutoPeftModelForCausalLM`` (the base named in the adapter config), anything else through
``AutoModelForCausalLM``; the tokenizer always comes from the base model.

* Instruct / Chat: mean over samples of each sample's mean token loss (batch size 1), lower wins.
* DPO: TRL's DPO loss with β = 0.1 and the base model as reference, lower wins.
* GRPO: the weighted mean reward of sampled completions (two per prompt), higher wins.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from godminer.protocol.payloads import DpoDatasetType, GrpoDatasetType
from godminer.training import data
from godminer.training.recipes.sft import examples


def load_submission(model_dir: str | Path) -> Any:
    """The evaluator's loader: a LoRA adapter if the folder has adapter_config.json, else full weights."""
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    model_dir = Path(model_dir)
    if (model_dir / "adapter_config.json").is_file():
        return AutoPeftModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    return AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)


@torch.no_grad()
def sft_loss(model: Any, tokenizer: Any, rows: list[dict[str, Any]], kind: str, dataset_type: dict[str, Any],
             sequence_len: int) -> float:
    """Instruct/Chat metric: mean over samples of each sample's mean loss on its labelled tokens."""
    model.eval()
    losses = []
    for ex in examples(rows, kind, dataset_type, tokenizer, sequence_len):
        ids = torch.tensor([ex.input_ids])
        labels = torch.tensor([ex.labels])
        logits = model(input_ids=ids).logits[:, :-1, :].float()
        target = labels[:, 1:]
        mask = target != data.IGNORE
        if not bool(mask.any()):
            continue
        token_loss = F.cross_entropy(logits.transpose(1, 2), target.clamp(min=0), reduction="none")
        losses.append(float((token_loss * mask).sum() / mask.sum()))
    return sum(losses) / len(losses) if losses else math.nan


def dpo_loss(model: Any, reference: Any, tokenizer: Any, rows: list[dict[str, Any]],
             dataset_type: dict[str, Any], beta: float = 0.1) -> float:
    """DPO metric: TRL's evaluation loss with the base model as reference (what the evaluator runs)."""
    import tempfile

    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    pairs = data.dpo_rows(rows, DpoDatasetType.model_validate(dataset_type))
    with tempfile.TemporaryDirectory() as tmp:
        args = DPOConfig(output_dir=tmp, beta=beta, per_device_eval_batch_size=1, report_to=[], use_cpu=True,
                         disable_tqdm=True)
        dataset = Dataset.from_list(pairs)  # TRL insists on a train set even to evaluate
        trainer = DPOTrainer(model=model, ref_model=reference, args=args, train_dataset=dataset,
                             eval_dataset=dataset, processing_class=tokenizer)
        trainer.remove_callback(PrinterCallback)
        return float(trainer.evaluate()["eval_loss"])


def grpo_reward(model: Any, tokenizer: Any, rows: list[dict[str, Any]], dataset_type: dict[str, Any],
                max_new_tokens: int = 32, seed: int = 0) -> float:
    """GRPO metric: weighted mean reward of two sampled completions per prompt (sandboxed rewards)."""
    from godminer.training.rewards import SandboxedRewards, load_specs

    dt = GrpoDatasetType.model_validate(dataset_type)
    prompts = data.grpo_rows(rows, dt)
    specs = load_specs([f.model_dump() for f in dt.reward_functions or []])
    torch.manual_seed(seed)
    model.eval()
    texts, columns = [], []
    for row in prompts:
        encoded = tokenizer(row["prompt"], return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**encoded, do_sample=True, max_new_tokens=max_new_tokens, num_return_sequences=2,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        for sequence in out:
            texts.append(tokenizer.decode(sequence[encoded["input_ids"].shape[1]:], skip_special_tokens=True))
            columns.append(row)
    with SandboxedRewards(specs) as rewards:
        scores = rewards.evaluate([c["prompt"] for c in columns], texts,
                                  {k: [c.get(k) for c in columns] for k in columns[0] if k != "prompt"})
        weights = rewards.weights()
    total = 0.0
    for weight, per_fn in zip(weights, scores, strict=True):
        values = [v for v in per_fn if v is not None and math.isfinite(v)]
        total += weight * (sum(values) / len(values) if values else 0.0)
    return total
