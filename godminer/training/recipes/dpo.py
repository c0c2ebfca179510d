"""Direct preference optimisation for DpoTask, read top to bottom.

The evaluator runs TRL's ``DPOTrainer.evaluate()`` with β = 0.1 and the base model as reference;
training uses the same objective and the same β, so the dev split's DPO loss is the validator's
metric. With LoRA the reference is the base itself (adapter disabled): no second copy in memory.
"""

from __future__ import annotations

from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from godminer.protocol.payloads import DpoDatasetType
from godminer.training import data
from godminer.training.common import (
    RunContext,
    RunResult,
    attach_callbacks,
    load_model,
    load_tokenizer,
    train_and_finish,
    trainer_arguments,
    with_lora,
)


def run(ctx: RunContext) -> RunResult:
    plan, spec = ctx.plan, ctx.spec

    # 1. Data: prompt / chosen / rejected after the task's format templates; a held-out dev split.
    tokenizer = load_tokenizer(spec.model_path)
    rows = data.dpo_rows(data.load_rows(spec.dataset_path), DpoDatasetType.model_validate(spec.dataset_type))
    train, dev = data.split_dev(rows, plan.dev_size, seed=plan.seed)
    dev = dev or train[: plan.eval_batch_size]

    # 2. Model: the policy (LoRA or full); the reference is the base.
    model = with_lora(load_model(spec.model_path, plan), plan)

    # 3. Trainer: the evaluator's β, sequences as long as the evaluator's.
    args = DPOConfig(**trainer_arguments(plan, ctx.run_dir / "checkpoints"), beta=plan.dpo_beta,
                     max_length=plan.sequence_len)
    trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=Dataset.from_list(train),
                         eval_dataset=Dataset.from_list(dev), processing_class=tokenizer)
    controls = attach_callbacks(trainer, ctx, metric=lambda m: m.get("eval_loss", float("inf")))

    # 4. Train to the deadline; the lowest dev DPO loss is published.
    return train_and_finish(trainer, ctx, controls)
