"""A job's states and the transitions allowed between them (an explicit, persisted state machine).

accepted → queued → preparing → training → publishing → submitted, or failed with a reason.
``preparing`` fetches the data and prefetches the model while the job waits for its GPUs;
``training`` is the only state that holds GPUs.
``expired`` ends an accepted offer whose start-training request never came (a late request or a
new offer revives it); ``cancelled`` is the operator's. Retries go back to ``queued`` or
``preparing``; a new expected repo name sends a submitted job back to ``publishing``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    ACCEPTED = "accepted"
    QUEUED = "queued"
    PREPARING = "preparing"
    TRAINING = "training"
    PUBLISHING = "publishing"
    SUBMITTED = "submitted"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


FINISHED = frozenset({JobState.SUBMITTED, JobState.FAILED, JobState.EXPIRED, JobState.CANCELLED})
# Committed jobs that do not hold GPUs yet: the scheduler places them.
WAITING = frozenset({JobState.ACCEPTED, JobState.QUEUED, JobState.PREPARING})

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.ACCEPTED: frozenset({JobState.QUEUED, JobState.EXPIRED, JobState.CANCELLED}),
    JobState.QUEUED: frozenset({JobState.PREPARING, JobState.PUBLISHING, JobState.FAILED, JobState.CANCELLED}),
    JobState.PREPARING: frozenset(
        {JobState.TRAINING, JobState.QUEUED, JobState.PUBLISHING, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.TRAINING: frozenset(
        {JobState.PUBLISHING, JobState.PREPARING, JobState.QUEUED, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.PUBLISHING: frozenset({JobState.SUBMITTED, JobState.FAILED, JobState.CANCELLED}),
    JobState.SUBMITTED: frozenset({JobState.PUBLISHING}),
    JobState.FAILED: frozenset(),
    JobState.EXPIRED: frozenset({JobState.QUEUED, JobState.ACCEPTED}),
    JobState.CANCELLED: frozenset(),
}


class InvalidTransition(ValueError):
    pass


def check_transition(current: JobState, target: JobState) -> None:
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(f"a job cannot go from {current} to {target}")


@dataclass(frozen=True)
class JobRecord:
    """A job as read from the store: plain data, safe to share between threads."""

    task_id: str
    validator_hotkey: str
    task_type: str
    kind: str
    model: str
    params_b: float
    hours: float
    state: JobState
    reason: str = ""
    request_kind: str | None = None
    request_json: str | None = None
    expected_repo_name: str | None = None
    accepted_at: float | None = None
    received_at: float | None = None
    termination_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    gpu_ids: tuple[int, ...] = ()
    box: str = "local"
    attempts: int = 0
    executor_handle: dict[str, Any] = field(default_factory=dict)
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    repo: str | None = None
    model_hash: str | None = None
    submitted_at: float | None = None
    dev_metric: float | None = None
    base_metric: float | None = None
    plan: dict[str, Any] = field(default_factory=dict)
    updated_at: float = 0.0

    @property
    def finished(self) -> bool:
        return self.state in FINISHED
