"""Group relative policy optimisation for GrpoTask, read top to bottom.

The task's reward functions arrive as source code; they run only in the sandbox
(``training.rewards``), weighted as the request says. The dev score is what the evaluator
rewards: the weighted mean reward of sampled completions, less 0.5 × the KL to the base model.
"""

from __future__ import annotations

import logging

from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from godminer.protocol.payloads import GrpoDatasetType
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
from godminer.training.rewards import SandboxedRewards, column_args, load_specs

log = logging.getLogger(__name__)
KL_PENALTY = 0.5  # the evaluator's BETA_GRPO from late 2025 (training.md §1)
EVAL_GENERATIONS = 2  # the evaluator samples two completions per prompt
DEV_PROMPTS = 8


def dev_score(metrics: dict[str, float]) -> float:
    """Lower is better for the model keeper: minus (reward − KL penalty)."""
    reward = metrics.get("eval_reward", float("-inf"))
    return -(reward - KL_PENALTY * metrics.get("eval_kl", 0.0))


def run(ctx: RunContext) -> RunResult:
    plan, spec = ctx.plan, ctx.spec

    # 1. Data: prompts plus every other column (reward functions may take them as arguments).
    dataset_type = GrpoDatasetType.model_validate(spec.dataset_type)
    tokenizer = load_tokenizer(spec.model_path)
    rows = data.grpo_rows(data.load_rows(spec.dataset_path), dataset_type)
    # Sampled evaluation is costly: a small dev split, two samples per prompt as the evaluator takes.
    train, dev = data.split_dev(rows, min(plan.dev_size, DEV_PROMPTS), seed=plan.seed)
    dev = dev or train[:DEV_PROMPTS]

    # 2. Reward functions, sandboxed: no network, no files, bounded time and memory.
    specs = load_specs([f.model_dump() for f in dataset_type.reward_functions or []])
    if not specs:
        raise data.DataError("a GRPO task needs at least one reward function")
    for reward in specs:  # a missing column makes every call of that function fail: say so at the start
        missing = [c for c in column_args(reward) if c not in rows[0]]
        if missing:
            log.warning("reward function %s takes %s, which the dataset does not have", reward.name, missing)
    with SandboxedRewards(specs) as rewards:
        # 3. Model and trainer: generations per prompt a multiple of the batch, the request's weights.
        model = with_lora(load_model(spec.model_path, plan), plan)
        arguments = trainer_arguments(plan, ctx.run_dir / "checkpoints")
        generations = plan.grpo_num_generations
        arguments["per_device_train_batch_size"] = generations * max(1, plan.micro_batch_size // generations)
        arguments["per_device_eval_batch_size"] = EVAL_GENERATIONS * 2
        args = GRPOConfig(**arguments, beta=plan.grpo_beta, num_generations=generations,
                          num_generations_eval=EVAL_GENERATIONS,
                          max_completion_length=plan.grpo_max_completion_length, reward_weights=rewards.weights())
        trainer = GRPOTrainer(model=model, reward_funcs=rewards.functions(), args=args,
                              train_dataset=Dataset.from_list(train), eval_dataset=Dataset.from_list(dev),
                              processing_class=tokenizer)
        controls = attach_callbacks(trainer, ctx, metric=dev_score)

        # 4. Train to the deadline; keep the best dev score; report what the sandbox contained.
        result = train_and_finish(trainer, ctx, controls, baseline=False)
        controls.progress.write("rewards", report=rewards.report())
    return result
