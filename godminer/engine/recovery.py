"""What to do when a training attempt ends, stalls or runs out of time: pure decisions, tested by tables.

A failure costs −1 × work and a valid losing submission costs nothing, so every path that still
has a model publishes it: retries happen only while there is time to train usefully again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from godminer.engine.estimates import JobDemand

# Seconds a training process may outlive its own train_until before the lifecycle ends it.
HARD_GRACE_S = 60.0


@dataclass(frozen=True)
class Next:
    action: str  # "publish" | "retry" | "fail"
    reason: str
    overrides: dict[str, Any] = field(default_factory=dict)


def after_attempt(
    result: dict[str, Any] | None,
    *,
    attempts: int,
    max_attempts: int,
    has_model: bool,
    time_left_s: float,
    min_useful_s: float,
    overrides: dict[str, Any],
    micro_batch: int | None,
) -> Next:
    """The next step after a training process ended (``result`` is its result.json, None if it left none)."""
    status = (result or {}).get("status", "crashed")
    error = (result or {}).get("error", "the training process left no result")
    if status == "ok":
        return Next("publish", f"trained ({(result or {}).get('stopped_because', 'done')})")
    if status == "data_error":
        return _last_resort(has_model, f"the dataset cannot be trained on: {error}")
    can_retry = attempts < max_attempts and time_left_s > min_useful_s
    if status == "oom" and can_retry:
        smaller = max(1, (micro_batch or 2) // 2)
        return Next("retry", f"out of memory: retrying with micro-batch {smaller} and gradient checkpointing",
                    {**overrides, "max_micro_batch": smaller, "gradient_checkpointing": True})
    if can_retry:
        return Next("retry", f"attempt {attempts} failed ({status}: {error}); resuming", dict(overrides))
    return _last_resort(has_model, f"attempt {attempts} failed ({status}: {error}) and no retry fits")


def _last_resort(has_model: bool, why: str) -> Next:
    if has_model:
        return Next("publish", f"{why}; publishing the best model so far")
    return Next("fail", f"{why}; no model to publish")


def stalled(now: float, last_progress: float | None, started_at: float, stall_timeout_s: float) -> bool:
    """No progress line for ``stall_timeout_s`` (counting from the start when there is none yet)."""
    return now - max(last_progress or 0.0, started_at) > stall_timeout_s


def overdue(now: float, train_until: float) -> bool:
    """The process should have stopped by itself: end it and publish what it saved."""
    return now > train_until + HARD_GRACE_S


def promised(d: JobDemand, hours: float) -> JobDemand:
    """An accepted job's demand once it is ours: any useful training beats none, so its minimum drops to
    5 % of the budget (at least a minute). Past that, the lifecycle publishes the fallback model instead."""
    return replace(d, min_train_s=min(d.min_train_s, max(60.0, 0.05 * hours * 3600.0)))


def must_publish_now(now: float, termination_at: float, upload_s: float, safety_s: float) -> bool:
    """A job still waiting for GPUs publishes its fallback model once waiting longer would miss the deadline."""
    return now >= termination_at - upload_s - safety_s
