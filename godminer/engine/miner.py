"""The node's core, without HTTP: decide offers, register training requests, answer submissions.

Decisions are made from an in-memory snapshot (the store's cache of active jobs, the GPU
inventory, the clock) under one lock, so two concurrent offers can never both take the last
slot. Each decision and each new job is written to the store before the answer goes out.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from godminer import sizing
from godminer.clock import Clock
from godminer.engine import estimates
from godminer.engine.estimates import JobDemand
from godminer.engine.inventory import Inventory
from godminer.engine.jobs import FINISHED, WAITING, JobRecord, JobState
from godminer.engine.policy import Decision, Offer, OwnResult, PolicyFn, Snapshot, get_policy, offer_kind
from godminer.engine.scheduler import Reservation
from godminer.engine.store import Store
from godminer.protocol.payloads import (
    AnyTrainRequest,
    MinerSubmission,
    MinerTaskOffer,
    TrainRequestImage,
    request_kind,
)
from godminer.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartResult:
    record: JobRecord
    message: str


def job_demand(job: JobRecord, settings: Settings, gpu_memory_gb: float, prefetch_done: bool = False) -> JobDemand:
    """A committed job's demand, from its stored facts (the budget starts at start-training receipt)."""
    start = job.received_at if job.received_at is not None else (job.accepted_at or 0.0)
    return estimates.demand(
        task_id=job.task_id, kind=job.kind, params_b=job.params_b, hours=job.hours, received_at=start,
        gpu_memory_gb=gpu_memory_gb, gpus=settings.gpus, est=settings.estimates,
        min_train_fraction=settings.policy.min_train_fraction,
        priority=settings.policy.priority.get(job.kind, 0), prefetch_done=prefetch_done,
    )


def job_reservation(job: JobRecord) -> Reservation | None:
    """The GPUs a training job holds, until its planned release."""
    if job.state != JobState.TRAINING or not job.gpu_ids:
        return None
    plan = job.plan
    return Reservation(
        job.task_id, job.box, tuple(job.gpu_ids), float(plan.get("mem_per_gpu_gb", 0.0)),
        float(plan.get("start", job.started_at or 0.0)), float(plan.get("release_at", job.termination_at or 0.0)),
    )


class Miner:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        clock: Clock,
        hotkey: str,
        inventory: Inventory,
        policy: PolicyFn | None = None,
        disk_free_gb: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.hotkey = hotkey
        self.inventory = inventory
        self.policy = policy or get_policy(settings.policy.name)
        self.policy_name = settings.policy.name if policy is None else getattr(policy, "__name__", "custom")
        self._decide = threading.Lock()
        self._history: tuple[OwnResult, ...] = ()
        self._disk_checked = (0.0, 0.0)
        self._disk_reader = disk_free_gb
        self._demands: dict[str, tuple[tuple[str, float, float], JobDemand]] = {}
        self.refresh_history()

    # ----- snapshot -------------------------------------------------------------------------
    def free_disk_gb(self) -> float:
        """Free disk under the data dir, read at most once a second."""
        if self._disk_reader is not None:
            return self._disk_reader()
        read_at, value = self._disk_checked
        mono = time.monotonic()
        if mono - read_at > 1.0:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            value = shutil.disk_usage(self.settings.data_dir).free / 1e9
            self._disk_checked = (mono, value)
        return value

    def snapshot(self) -> Snapshot:
        active = self.store.active()
        gpus = tuple(self.inventory.gpus())
        memory = max((g.memory_gb for g in gpus if g.healthy), default=self.settings.gpus.memory_gb)
        running = tuple(r for r in (job_reservation(j) for j in active) if r is not None)
        waiting = tuple(self._demand(j, memory) for j in active if j.state in WAITING)
        ends = [
            (j.termination_at or (j.accepted_at or 0.0) + j.hours * 3600.0)
            for j in active if j.state not in (JobState.PUBLISHING,)
        ]
        return Snapshot(
            now=self.clock.now(), gpus=gpus, running=running, waiting=waiting, free_disk_gb=self.free_disk_gb(),
            policy=self.settings.policy, estimates=self.settings.estimates, gpu_settings=self.settings.gpus,
            busy_until=max(ends) if ends else None, history=self._history,
        )

    def _demand(self, job: JobRecord, gpu_memory_gb: float) -> JobDemand:
        """A waiting job's demand, memoised per version of the job (snapshots are taken per offer)."""
        key = (job.task_id, job.updated_at, gpu_memory_gb)
        cached = self._demands.get(job.task_id)
        if cached is None or cached[0] != key:
            prefetched = bool(job.plan.get("prefetched"))
            cached = (key, job_demand(job, self.settings, gpu_memory_gb, prefetch_done=prefetched))
            if len(self._demands) > 4096:
                self._demands.clear()
            self._demands[job.task_id] = cached
        return cached[1]

    @property
    def history(self) -> tuple[OwnResult, ...]:
        return self._history

    def refresh_history(self) -> None:
        """Our scored tasks of the last 8 days, for the expected-gain policy."""
        from godminer.scoring import work_score

        since = self.clock.now() - 8 * 86400.0
        self._history = tuple(
            OwnResult(row["kind"], row["created_at"], {"win": 3.0, "valid": 0.0, "fail": -1.0}[row["result"]],
                      work_score(row["hours"], int(row["params_b"] * 1e9)))
            for row in self.store.outcomes(since=since)
        )

    # ----- offers ---------------------------------------------------------------------------
    def decide_offer(self, payload: MinerTaskOffer, validator: str, route: str = "text") -> Decision:
        """Decide, record the offer, and reserve capacity for an accepted one (state ACCEPTED)."""
        started = time.perf_counter()
        offer = Offer.from_payload(payload, validator)
        with self._decide:
            now = self.clock.now()
            existing = self.store.active_job(offer.task_id)
            if (route == "image") != (offer.task_type == "ImageTask"):
                decision = Decision(False, f"This endpoint does not take {offer.task_type} offers", "wrong_route")
            elif existing is not None and not existing.finished:
                decision = Decision(True, f"Yes. I already hold task {offer.task_id}", "already_accepted")
            else:
                decision = self.policy(self.snapshot(), offer)
                if decision.accepted:
                    decision = self._commit_acceptance(offer, validator, decision, now)
            self.store.record_offer(
                task_id=offer.task_id, validator_hotkey=validator, task_type=offer.task_type,
                kind=offer.kind or "unknown", model=offer.model, params_b=offer.params_b, hours=offer.hours,
                ds_size=offer.ds_size, accepted=decision.accepted, reason=decision.reason, policy=self.policy_name,
                received_at=now, latency_us=(time.perf_counter() - started) * 1e6,
            )
        log.info("offer %s %s: %s", offer.task_id, "accepted" if decision.accepted else "declined", decision.reason,
                 extra={"task_id": offer.task_id})
        return decision

    def _commit_acceptance(self, offer: Offer, validator: str, decision: Decision, now: float) -> Decision:
        """Write the accepted job before answering; a task that already ended is not taken again."""
        ended = self.store.get(offer.task_id)
        if ended is not None and ended.state != JobState.EXPIRED:
            return Decision(False, f"Task {offer.task_id} already ended: {ended.state}", "task_ended")
        if ended is not None:
            self.store.transition(offer.task_id, JobState.ACCEPTED, now, decision.reason, accepted_at=now)
        else:
            self.store.create_job(JobRecord(
                task_id=offer.task_id, validator_hotkey=validator, task_type=offer.task_type, kind=offer.kind,
                model=offer.model, params_b=offer.params_b, hours=offer.hours, state=JobState.ACCEPTED,
                accepted_at=now,
            ), now, reason=decision.reason)
        return decision

    # ----- training requests ----------------------------------------------------------------
    def start_training(self, request: AnyTrainRequest, validator: str) -> StartResult:
        """Register a start-training request; idempotent per task_id; never downloads anything."""
        now = self.clock.now()
        termination = now + request.hours_to_complete * 3600.0
        fields = {
            "request_kind": request_kind(request), "request_json": request.model_dump_json(),
            "expected_repo_name": request.expected_repo_name, "hours": request.hours_to_complete,
        }
        with self._decide:
            job = self.store.get(request.task_id)
            if job is None:
                model_type = request.model_type if isinstance(request, TrainRequestImage) else None
                kind = offer_kind(str(request.task_type), request.model, model_type)
                record = JobRecord(
                    task_id=request.task_id, validator_hotkey=validator, task_type=str(request.task_type), kind=kind,
                    model=request.model, params_b=sizing.params_b(None, request.model, kind),
                    hours=request.hours_to_complete, state=JobState.QUEUED, received_at=now,
                    termination_at=termination, **{k: v for k, v in fields.items() if k != "hours"},
                )
                created = self.store.create_job(record, now, reason="start_training without a prior offer")
                return StartResult(created, "Training job enqueued.")
            if job.state in (JobState.ACCEPTED, JobState.EXPIRED):
                queued = self.store.transition(
                    job.task_id, JobState.QUEUED, now, "start_training received",
                    received_at=now, termination_at=termination, **fields,
                )
                return StartResult(queued, "Training job enqueued.")
            if job.state in FINISHED and job.state != JobState.SUBMITTED:
                return StartResult(job, f"Task {job.task_id} already ended: {job.state}")
            if job.expected_repo_name == request.expected_repo_name:
                return StartResult(job, "Training job already enqueued.")
            # The validator re-ran its start-training pass: a new repo name and a new deadline.
            if job.state == JobState.SUBMITTED:
                moved = self.store.transition(
                    job.task_id, JobState.PUBLISHING, now, "new expected_repo_name: publish again",
                    received_at=now, termination_at=termination, **fields,
                )
                return StartResult(moved, "Training job enqueued.")
            updated = self.store.update(job.task_id, now, received_at=now, termination_at=termination, **fields)
            return StartResult(updated, "Training job enqueued.")

    # ----- submissions ----------------------------------------------------------------------
    def submission(self, task_id: str) -> MinerSubmission | None:
        job = self.store.get(task_id)
        if job is None or job.state != JobState.SUBMITTED or not job.repo:
            return None
        return MinerSubmission(repo=job.repo, model_hash=job.model_hash)

    def record_outcome(self, task_id: str, result: str) -> None:
        self.store.record_outcome(task_id, result, self.clock.now())
        self.refresh_history()

