"""Small functions the recipes share: loading, LoRA, trainer arguments, callbacks, the run context.

Recipes stay readable top to bottom; what they have in common lives here as plain functions.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from godminer.training.artifacts import ModelSlot
from godminer.training.callbacks import (
    BestModelKeeper,
    DeadlineGuard,
    Ema,
    EmaCallback,
    EvaluateEvery,
    ProgressWriter,
    TimeAwareSchedule,
)
from godminer.training.data import IGNORE
from godminer.training.plan import TrainingPlan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec:
    """Everything one training process needs; stored as ``<run_dir>/job.json``.

    The plan itself is built inside the training process, on the GPUs it was given;
    ``overrides`` carry the engine's corrections after a failed attempt (e.g. a smaller micro-batch).
    """

    run_dir: str
    kind: str
    base_model: str  # the Hub id, written into adapter configs
    model_path: str  # where to load the base from (a local directory or the Hub id)
    dataset_path: str
    dataset_type: dict[str, Any]
    train_until: float  # training (with its final evaluation) ends before this
    budget_s: float  # the whole budget, for the evaluation cadence
    params_b: float | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    resume: bool = True

    def save(self) -> Path:
        path = Path(self.run_dir) / "job.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def load(cls, run_dir: Path) -> RunSpec:
        return cls(**json.loads((Path(run_dir) / "job.json").read_text()))


@dataclass
class RunContext:
    spec: RunSpec
    plan: TrainingPlan
    now: Callable[[], float] = time.time
    stop: threading.Event = field(default_factory=threading.Event)  # set by SIGTERM
    slot: ModelSlot = field(init=False)
    progress_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.slot = ModelSlot(self.run_dir)
        self.progress_path = self.run_dir / "progress.jsonl"

    @property
    def run_dir(self) -> Path:
        return Path(self.spec.run_dir)


@dataclass(frozen=True)
class RunResult:
    status: str  # "ok" | "no_improvement"
    stopped_because: str
    best_dev_metric: float | None
    baseline_dev_metric: float | None
    steps: int
    model_dir: str | None


@dataclass
class Controls:
    guard: DeadlineGuard
    keeper: BestModelKeeper
    progress: ProgressWriter


def load_tokenizer(path: str) -> Any:
    """The base tokenizer; a missing pad token becomes EOS (never add tokens: the evaluator uses the base's)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(path: str, plan: TrainingPlan) -> Any:
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if plan.precision == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=plan.attn_implementation)
    model.config.use_cache = False
    return model


def lora_config(plan: TrainingPlan) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        task_type="CAUSAL_LM", r=plan.lora_r, lora_alpha=plan.lora_alpha, lora_dropout=plan.lora_dropout,
        target_modules="all-linear", use_rslora=plan.use_rslora, use_dora=plan.use_dora,
    )


def with_lora(model: Any, plan: TrainingPlan) -> Any:
    """Wrap the model with a LoRA adapter when the plan says so."""
    if plan.method != "lora":
        return model
    from peft import get_peft_model

    if plan.gradient_checkpointing:
        model.enable_input_require_grads()
    return get_peft_model(model, lora_config(plan))


def trainer_arguments(plan: TrainingPlan, output_dir: Path) -> dict[str, Any]:
    """Arguments shared by TrainingArguments, DPOConfig and GRPOConfig."""
    args: dict[str, Any] = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": plan.micro_batch_size,
        "per_device_eval_batch_size": plan.eval_batch_size,
        "gradient_accumulation_steps": plan.gradient_accumulation,
        "learning_rate": plan.learning_rate,
        "lr_scheduler_type": "constant",  # TimeAwareSchedule sets each step's rate
        "num_train_epochs": plan.epochs,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "bf16": plan.precision == "bf16",
        "use_cpu": plan.n_gpus == 0,
        "gradient_checkpointing": plan.gradient_checkpointing,
        "optim": plan.optimizer,
        "eval_strategy": "no",  # EvaluateEvery asks for evaluations on a clock
        "save_strategy": "no",  # ... and for trainer checkpoints
        "save_total_limit": 1,
        "logging_steps": 1,
        "report_to": [],
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "seed": plan.seed,
        "include_num_input_tokens_seen": plan.kind != "grpo",  # GRPO batches are prompts, not input ids
        "average_tokens_across_devices": False,
        "remove_unused_columns": False,
    }
    if plan.distributed == "fsdp":
        args["fsdp"] = "full_shard auto_wrap"
        args["fsdp_config"] = {"use_orig_params": True}
    elif plan.distributed == "deepspeed_zero3":
        args["deepspeed"] = {
            "zero_optimization": {"stage": 3, "overlap_comm": True, "stage3_gather_16bit_weights_on_model_save": True},
            "bf16": {"enabled": "auto"}, "train_micro_batch_size_per_gpu": "auto",
            "gradient_accumulation_steps": "auto", "gradient_clipping": "auto",
        }
    return args


def per_sample_loss(accumulation: int) -> Callable[..., torch.Tensor]:
    """The evaluator's metric as a loss: mean over samples of each sample's mean token loss.

    The trainer does not divide a custom loss by the accumulation steps, so it is done here while
    gradients are on (training); under ``no_grad`` (evaluation) the plain mean is returned.
    """

    def loss_fn(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = outputs["logits"][:, :-1, :].float()
        targets = labels[:, 1:].to(logits.device)
        mask = targets != IGNORE
        token_loss = F.cross_entropy(logits.transpose(1, 2), targets.clamp(min=0), reduction="none")
        counted = mask.sum(1)
        per_sample = (token_loss * mask).sum(1) / counted.clamp(min=1)
        keep = counted > 0
        loss = per_sample[keep].mean() if bool(keep.any()) else logits.sum() * 0.0
        return loss / accumulation if torch.is_grad_enabled() else loss

    return loss_fn


class PadCollator:
    """Right-pads input ids with the pad token and labels with -100."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            attention[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": attention}


def attach_callbacks(trainer: Any, ctx: RunContext, metric: Callable[[dict[str, float]], float]) -> Controls:
    """Deadline guard, schedule, clocked evaluation, EMA, best-model keeper and progress lines."""
    plan = ctx.plan
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    is_main = trainer.is_world_process_zero()
    steps = _planned_steps(trainer, plan)
    base_lrs = [plan.learning_rate] * len(trainer.optimizer.param_groups) if trainer.optimizer else []
    schedule = _Schedule(plan, ctx, steps, base_lrs)
    progress = ProgressWriter(ctx.progress_path, ctx.now, plan.train_until, is_main, lr=lambda: schedule.current_lr)
    # The reserve covers what follows the last step: writing the result and the process exit.
    reserve_s = 5.0 + 0.01 * ctx.spec.budget_s
    guard = DeadlineGuard(plan.train_until, ctx.now, reserve_s=reserve_s, stop=ctx.stop)
    ema = Ema(trainer.model, plan.ema_decay) if plan.ema_decay else None
    keeper = BestModelKeeper(trainer, ctx.slot, metric, ctx.spec.base_model, progress, guard, ema,
                             plan.early_stopping_patience, ctx.now)
    checkpoint_every = max(plan.eval_every_s * 3, 300.0) if plan.n_gpus else None
    callbacks: list[Any] = [guard, schedule, progress]
    if ema is not None:
        callbacks.append(EmaCallback(ema))
    callbacks.append(EvaluateEvery(plan.eval_every_s, ctx.now, guard, keeper, checkpoint_every))
    for callback in callbacks:
        trainer.add_callback(callback)
    return Controls(guard, keeper, progress)


class _Schedule(TimeAwareSchedule):
    """TimeAwareSchedule whose base rates are read from the optimizer once the trainer creates it."""

    def __init__(self, plan: TrainingPlan, ctx: RunContext, steps: int, base_lrs: list[float]) -> None:
        super().__init__(base_lrs, max(1, int(plan.warmup_ratio * steps)), plan.min_lr_rate, ctx.now,
                         plan.train_until)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        optimizer = kwargs.get("optimizer")
        if optimizer is not None and len(self.base_lrs) != len(optimizer.param_groups):
            self.base_lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
        super().on_step_begin(args, state, control, **kwargs)


def _planned_steps(trainer: Any, plan: TrainingPlan) -> int:
    rows = len(trainer.train_dataset) if trainer.train_dataset is not None else 0
    return max(1, math.ceil(rows / max(1, plan.global_batch)) * math.ceil(plan.epochs))


def latest_checkpoint(output_dir: Path) -> str | None:
    """The newest complete trainer checkpoint (optimizer state included), to resume from."""
    checkpoints = sorted(
        (p for p in Path(output_dir).glob("checkpoint-*") if (p / "trainer_state.json").is_file()),
        key=lambda p: int(p.name.split("-")[1]),
    )
    return str(checkpoints[-1]) if checkpoints else None


def train_and_finish(trainer: Any, ctx: RunContext, controls: Controls, baseline: bool = True) -> RunResult:
    """Baseline evaluation, training (resumed when a checkpoint exists), the final evaluation.

    Only models that beat the baseline replace the slot's starting model (the fallback adapter);
    ``baseline=False`` skips that measurement (costly sampled evaluations: the first one sets the bar).
    """
    resume = latest_checkpoint(ctx.run_dir / "checkpoints") if ctx.spec.resume else None
    if baseline and resume is None and controls.guard.time_left() > 0:
        controls.keeper.measure_baseline()
    if controls.guard.must_stop() is None:
        trainer.train(resume_from_checkpoint=resume)
    step = trainer.state.global_step
    if step and controls.guard.time_left() > 1.2 * controls.guard.eval_s:
        controls.keeper.evaluate(step=step)
    if ctx.slot.current() is None:  # no starting model could be made and nothing improved: keep the last
        controls.keeper.save(step, controls.keeper.best or math.nan, "last")
    stopped = controls.guard.stopped_because or "planned epochs done"
    current = ctx.slot.current()
    result = RunResult(
        status="ok" if controls.keeper.best is not None else "no_model", stopped_because=stopped,
        best_dev_metric=controls.keeper.best, baseline_dev_metric=controls.keeper.baseline, steps=step,
        model_dir=str(current) if current else None,
    )
    controls.progress.write("done", **asdict(result))
    return result
