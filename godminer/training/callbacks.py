"""Trainer callbacks the plan names: deadline guard, time-aware schedule, periodic dev evaluation,
EMA, best-model selection with early stopping, and progress lines.

All of them take the time from an injected ``now`` function, so tests drive them with a manual
clock. Under several processes the stop decision is agreed by all ranks (any rank → all stop).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from godminer.training.artifacts import ModelSlot, point_adapter_at_hub

Now = Callable[[], float]


def _world_any(flag: bool) -> bool:
    """True on every rank if it is true on any rank (no-op without torch.distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        device = "cuda" if torch.cuda.is_available() else "cpu"
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return bool(value.item() > 0)
    return flag


class ProgressWriter(TrainerCallback):
    """JSON lines: step, loss, learning rate, tokens/s, dev metric, ETA; main process only."""

    def __init__(self, path: Path, now: Now, train_until: float, is_main: bool = True,
                 lr: Callable[[], float | None] = lambda: None) -> None:
        self.path = Path(path)
        self.now = now
        self.train_until = train_until
        self.is_main = is_main
        self.lr = lr
        self.started = now()
        self._last = (self.started, 0)

    def write(self, event: str, **fields: Any) -> None:
        if not self.is_main:
            return
        line = {"ts": round(self.now(), 3), "event": event, **fields}
        with self.path.open("a") as fh:
            fh.write(json.dumps(line, default=float) + "\n")

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        if "loss" not in logs:
            return
        now = self.now()
        last_t, last_tokens = self._last
        tokens = int(state.num_input_tokens_seen or 0)
        rate = (tokens - last_tokens) / (now - last_t) if now > last_t else 0.0
        self._last = (now, tokens)
        lr = self.lr() or logs.get("learning_rate")
        progress = state.global_step / state.max_steps if state.max_steps else 0.0
        elapsed = now - self.started
        eta_epochs = elapsed / progress - elapsed if progress > 0 else None
        eta = min(max(0.0, self.train_until - now), eta_epochs) if eta_epochs is not None else self.train_until - now
        self.write("train", step=state.global_step, epoch=round(state.epoch or 0.0, 4), loss=logs["loss"], lr=lr,
                   tokens_per_s=round(rate, 1), elapsed_s=round(elapsed, 1), eta_s=round(eta, 1))


class DeadlineGuard(TrainerCallback):
    """Stops training so that the final evaluation and save end before ``train_until``; never later.

    It measures step and evaluation times and stops when one more step plus the reserve would
    overrun. Setting ``stop`` (SIGTERM) stops at the next step boundary.
    """

    def __init__(self, train_until: float, now: Now, reserve_s: float = 0.0,
                 stop: threading.Event | None = None) -> None:
        self.train_until = train_until
        self.now = now
        self.reserve_s = reserve_s
        self.stop = stop or threading.Event()
        self.step_s = 0.0
        self.eval_s = 0.0
        self.stopped_because: str | None = None
        self._step_started: float | None = None

    def note_eval(self, seconds: float) -> None:
        self.eval_s = max(self.eval_s, seconds)

    def time_left(self) -> float:
        return self.train_until - self.now()

    def can_evaluate(self) -> bool:
        """Room for an evaluation, one more step and the reserve before ``train_until``."""
        return self.time_left() > 1.2 * self.eval_s + 1.5 * self.step_s + self.reserve_s

    def must_stop(self) -> str | None:
        if self.stop.is_set():
            return "stop requested"
        needed = 1.5 * self.step_s + self.eval_s + self.reserve_s
        if self.now() + needed >= self.train_until:
            return "deadline"
        return None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        self._check(control)

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                      **kwargs: Any) -> None:
        self._step_started = self.now()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        if self._step_started is not None:
            took = self.now() - self._step_started
            self.step_s = took if self.step_s == 0 else 0.8 * self.step_s + 0.2 * took
        self._check(control)

    def _check(self, control: TrainerControl) -> None:
        reason = self.must_stop()
        if _world_any(reason is not None):
            self.stopped_because = reason or "another rank stopped"
            control.should_training_stop = True
            control.should_evaluate = False
            control.should_save = False


class TimeAwareSchedule(TrainerCallback):
    """Warm-up, then cosine to ``min_lr_rate`` over the larger of step progress and time progress.

    The deadline may stop training before the planned epochs; annealing by elapsed time as well
    means the learning rate is low when it does. Sets the next step's rate after the scheduler.
    """

    def __init__(self, base_lrs: list[float], warmup_steps: int, min_lr_rate: float, now: Now, train_until: float,
                 ) -> None:
        self.base_lrs = base_lrs
        self.warmup_steps = max(1, warmup_steps)
        self.min_lr_rate = min_lr_rate
        self.now = now
        self.started = now()
        self.train_until = train_until
        self.current_lr: float | None = None

    def factor(self, step: int, max_steps: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        by_steps = (step - self.warmup_steps) / max(1, max_steps - self.warmup_steps)
        span = max(1e-9, self.train_until - self.started)
        progress = min(1.0, max(by_steps, (self.now() - self.started) / span))
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return self.min_lr_rate + (1 - self.min_lr_rate) * cosine

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                      **kwargs: Any) -> None:
        optimizer = kwargs.get("optimizer")
        if optimizer is None:
            return
        factor = self.factor(state.global_step, state.max_steps)
        for group, base in zip(optimizer.param_groups, self.base_lrs, strict=False):
            group["lr"] = base * factor
        self.current_lr = self.base_lrs[0] * factor if self.base_lrs else None


class Ema:
    """Exponential moving average of the trainable weights, swapped in for evaluation and saving."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.shadow = [p.detach().clone() for p in self.params]
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for shadow, param in zip(self.shadow, self.params, strict=True):
            shadow.lerp_(param.detach(), 1 - decay)

    @contextmanager
    def applied(self) -> Iterator[None]:
        with torch.no_grad():
            for shadow, param in zip(self.shadow, self.params, strict=True):
                tmp = param.detach().clone()
                param.copy_(shadow)
                shadow.copy_(tmp)
        try:
            yield
        finally:
            with torch.no_grad():
                for shadow, param in zip(self.shadow, self.params, strict=True):
                    tmp = param.detach().clone()
                    param.copy_(shadow)
                    shadow.copy_(tmp)


class EmaCallback(TrainerCallback):
    def __init__(self, ema: Ema) -> None:
        self.ema = ema

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        self.ema.update()


@contextmanager
def fixed_randomness(seed: int) -> Iterator[None]:
    """Every evaluation samples with the same seed (common random numbers make sampled metrics such as
    GRPO rewards comparable between evaluations); training's random state is restored afterwards."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


class BestModelKeeper:
    """Scores dev evaluations (raw weights, and EMA weights when enabled) by the validator's metric
    and saves every improvement into the model slot; counts evaluations without one (early stopping)."""

    def __init__(
        self,
        trainer: Any,
        slot: ModelSlot,
        metric: Callable[[dict[str, float]], float],
        base_model: str,
        progress: ProgressWriter,
        guard: DeadlineGuard,
        ema: Ema | None,
        patience: int,
        now: Now,
    ) -> None:
        self.trainer = trainer
        self.slot = slot
        self.metric = metric
        self.base_model = base_model
        self.progress = progress
        self.guard = guard
        self.ema = ema
        self.patience = patience
        self.now = now
        self.best: float | None = None
        self.baseline: float | None = None
        self.bad_evals = 0

    def _evaluate(self) -> float:
        with fixed_randomness(self.trainer.args.seed):
            return self.metric(self.trainer.evaluate())

    def measure_baseline(self) -> None:
        """The untrained model's dev metric: the bar every saved model must beat (nothing is saved)."""
        started = self.now()
        self.baseline = self.best = self._evaluate()
        self.guard.note_eval(self.now() - started)
        self.progress.write("baseline", dev_metric=self.baseline, eval_s=round(self.now() - started, 3))

    def save(self, step: int, value: float, source: str) -> None:
        free, needed = self.slot.free_bytes(), self.slot.next_version_bytes()
        if free < needed:  # keep the current model rather than fail half-way through writing the next
            self.progress.write("save_skipped", step=step, free_bytes=free, needed_bytes=needed)
            return
        staged = self.slot.staging()
        self.trainer.save_model(str(staged))
        if self.trainer.is_world_process_zero():
            point_adapter_at_hub(staged, self.base_model)
            self.slot.commit(staged, {"step": step, "dev_metric": value, "weights": source,
                                      "baseline": self.baseline, "saved_at": time.time()})
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()

    def evaluate(self, step: int) -> None:
        """Score the raw weights (and the EMA weights) now; save an improvement into the model slot."""
        started = self.now()
        candidates = [("raw", self._evaluate())]
        if self.ema is not None and self.ema.updates:
            with self.ema.applied():
                candidates.append(("ema", self._evaluate()))
        took = self.now() - started
        self.guard.note_eval(took)
        source, value = min(candidates, key=lambda c: c[1] if math.isfinite(c[1]) else math.inf)
        improved = math.isfinite(value) and (self.best is None or value < self.best)
        self.progress.write("eval", step=step, dev_metric=value, weights=source, candidates=dict(candidates),
                            best=improved, eval_s=round(took, 3))
        if not improved:
            self.bad_evals += 1
            return
        self.best = value
        self.bad_evals = 0
        if source == "ema" and self.ema is not None:
            with self.ema.applied():
                self.save(step, value, source)
        else:
            self.save(step, value, source)


class EvaluateEvery(TrainerCallback):
    """Runs a dev evaluation every ``seconds`` of training, at most ``max_share`` of the time, never when
    the deadline guard says there is no room left; stops after ``patience`` evaluations without progress.
    Also asks for a trainer checkpoint (optimizer state, to resume after a crash) now and then."""

    def __init__(self, seconds: float, now: Now, guard: DeadlineGuard, keeper: BestModelKeeper,
                 checkpoint_every_s: float | None = None, max_share: float = 0.2) -> None:
        self.seconds = seconds
        self.now = now
        self.guard = guard
        self.keeper = keeper
        self.checkpoint_every_s = checkpoint_every_s
        self.max_share = max_share
        self._last_eval = now()
        self._last_checkpoint = now()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        now = self.now()
        interval = max(self.seconds, self.guard.eval_s * (1 - self.max_share) / self.max_share)
        if now - self._last_eval >= interval and self.guard.can_evaluate() and not control.should_training_stop:
            self.keeper.evaluate(state.global_step)
            self._last_eval = self.now()
            if self.keeper.bad_evals >= self.keeper.patience:
                self.guard.stopped_because = "early stopping"
                control.should_training_stop = True
        if self.checkpoint_every_s is not None and now - self._last_checkpoint >= self.checkpoint_every_s:
            control.should_save = True
            self._last_checkpoint = now
