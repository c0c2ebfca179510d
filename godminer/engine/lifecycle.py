"""Drives every job from start-training to submission: fetch, prefetch, schedule, train, watch, publish.

A tick reads the store's active jobs and moves each one on; blocking work (downloads, the fallback
model, uploads, stopping a process) runs in worker threads. Every state change is written to the
store before it takes effect, under a lease, so a restarted miner (even after ``kill -9``)
re-attaches to running training processes and carries on from where the store says each job is.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from godminer.clock import Clock
from godminer.engine import recovery
from godminer.engine.fetch import FetchError, prefetch_model, resolve_dataset
from godminer.engine.inventory import Inventory
from godminer.engine.jobs import WAITING, JobRecord, JobState
from godminer.engine.miner import job_demand, job_reservation
from godminer.engine.scheduler import plan
from godminer.engine.store import Store
from godminer.executors.base import ExecState, Executor, Launch
from godminer.logs import job_context
from godminer.protocol.payloads import TrainRequestImage, parse_train_request
from godminer.publish.base import Publisher, PublishError
from godminer.settings import Settings
from godminer.training.artifacts import ModelSlot
from godminer.training.common import RunSpec
from godminer.training.fallback import write_fallback_adapter

log = logging.getLogger(__name__)
PUBLISH_GRACE_S = 1800.0  # the validator fetches a little after termination_at; keep trying until then
RETRY_AFTER_S = 30.0  # between failed preparations or publications (each already retries internally)


class Lifecycle:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        clock: Clock,
        inventory: Inventory,
        executor: Executor,
        publisher: Publisher,
        hub_token: str | None = None,
        owner: str | None = None,
        workers: int = 8,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.inventory = inventory
        self.executor = executor
        self.publisher = publisher
        self.hub_token = hub_token
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lifecycle")
        self.busy: dict[str, Future[None]] = {}
        self.launched: dict[str, dict[str, Any]] = {}

    def run_dir(self, task_id: str) -> Path:
        return self.settings.data_dir / "jobs" / task_id

    # ----- the loop -------------------------------------------------------------------------
    def tick(self) -> None:
        """Move every active job one step on (quick: slow work goes to worker threads)."""
        now = self.clock.now()
        self.store.reload_active()
        self.store.heartbeat(self.owner, now, self.settings.executor.lease_s)
        self._reap()
        self._stop_cancelled()
        for job in self.store.active():
            if job.task_id in self.busy or not self._claim(job, now):
                continue
            with job_context(job.task_id):
                try:
                    self._step(job, now)
                except Exception:
                    log.exception("job %s: step failed in state %s", job.task_id, job.state)
        self._dispatch(now)

    def drain(self, timeout: float = 60.0) -> None:
        """Wait for the background work in flight (tests and benchmarks)."""
        for future in list(self.busy.values()):
            future.result(timeout=timeout)
        self._reap()

    def close(self, wait: bool = True) -> None:
        self.pool.shutdown(wait=wait, cancel_futures=not wait)

    def _claim(self, job: JobRecord, now: float) -> bool:
        return job.state is JobState.ACCEPTED or self.store.claim(
            job.task_id, self.owner, now, self.settings.executor.lease_s
        )

    def _work(self, task_id: str, fn: Callable[[], None]) -> None:
        def run() -> None:
            with job_context(task_id):
                try:
                    fn()
                except Exception:
                    log.exception("job %s: background work failed", task_id)

        self.busy[task_id] = self.pool.submit(run)

    def _reap(self) -> None:
        for task_id, future in list(self.busy.items()):
            if future.done():
                del self.busy[task_id]

    def _stop_cancelled(self) -> None:
        """An operator cancelled a job we are training: stop its process."""
        for task_id, handle in list(self.launched.items()):
            if self.store.active_job(task_id) is None:
                del self.launched[task_id]
                if self.executor.status(handle).state is ExecState.RUNNING:
                    self._work(task_id, lambda h=handle: self.executor.cancel(h, grace_s=30.0))

    # ----- per state ------------------------------------------------------------------------
    def _step(self, job: JobRecord, now: float) -> None:
        if job.state is JobState.ACCEPTED:
            if now - (job.accepted_at or now) > self.settings.policy.accepted_ttl_s:
                self.store.transition(job.task_id, JobState.EXPIRED, now, "no start-training request came")
        elif job.state is JobState.QUEUED:
            self.store.transition(job.task_id, JobState.PREPARING, now, "fetching the dataset and the model")
            self._work(job.task_id, lambda: self._prepare(job))
        elif job.state is JobState.PREPARING:
            self._step_preparing(job, now)
        elif job.state is JobState.TRAINING:
            self._watch(job, now)
        elif job.state is JobState.PUBLISHING and now >= float(job.plan.get("publish_retry_at", 0.0)):
            self._work(job.task_id, lambda: self._publish(job))

    def _step_preparing(self, job: JobRecord, now: float) -> None:
        if job.plan.get("prep_error") and not job.plan.get("prefetched") and job.plan.get("prep_permanent"):
            self._give_up_waiting(job, now, f"cannot prepare: {job.plan['prep_error']}")
            return
        if not job.plan.get("prefetched") or job.plan.get("prep_error"):
            if now >= float(job.plan.get("prep_retry_at", 0.0)):
                self._work(job.task_id, lambda: self._prepare(job))
            return
        demand = job_demand(job, self.settings, self._gpu_memory(), prefetch_done=True)
        if job.termination_at and recovery.must_publish_now(now, job.termination_at, demand.upload_s,
                                                            self.settings.estimates.safety_margin_s):
            self._give_up_waiting(job, now, "no GPU in time")

    def _give_up_waiting(self, job: JobRecord, now: float, why: str) -> None:
        if ModelSlot(self.run_dir(job.task_id)).current() is not None:
            self.store.transition(job.task_id, JobState.PUBLISHING, now, f"{why}: publishing the fallback model")
        else:
            self.store.transition(job.task_id, JobState.FAILED, now, f"{why}; no model to publish")

    # ----- preparation (worker thread) ------------------------------------------------------
    def _prepare(self, job: JobRecord) -> None:
        run_dir = self.run_dir(job.task_id)
        request = parse_train_request(job.request_kind or "text", job.request_json or "{}")
        facts: dict[str, Any] = {k: v for k, v in job.plan.items()
                                 if k not in ("prep_error", "prep_permanent", "prep_retry_at")}
        try:
            if isinstance(request, TrainRequestImage):
                raise FetchError("image tasks need the image trainer, which this miner does not run", permanent=True)
            if not facts.get("model_path"):
                facts["model_path"] = str(prefetch_model(request.model, token=self.hub_token))
            slot = ModelSlot(run_dir)
            if slot.current() is None:
                staged = slot.staging()
                write_fallback_adapter(Path(facts["model_path"]), staged, request.model)
                slot.commit(staged, {"fallback": True})
            facts["dataset_path"] = str(resolve_dataset(request.dataset, run_dir / "data"))
            facts["prefetched"] = True
            self.store.update(job.task_id, self.clock.now(), plan=facts)
            log.info("job %s prepared", job.task_id)
        except (FetchError, ValueError, OSError) as exc:
            permanent = getattr(exc, "permanent", True)
            facts.update(prep_error=str(exc), prep_permanent=permanent, prep_retry_at=self.clock.now() + RETRY_AFTER_S)
            self.store.update(job.task_id, self.clock.now(), plan=facts)
            log.warning("job %s: preparation failed (%s): %s", job.task_id,
                        "permanent" if permanent else "will retry", exc)

    # ----- scheduling -----------------------------------------------------------------------
    def _gpu_memory(self) -> float:
        return max((g.memory_gb for g in self.inventory.gpus() if g.healthy), default=self.settings.gpus.memory_gb)

    def _dispatch(self, now: float) -> None:
        active = self.store.active()
        ready = [j for j in active if j.state is JobState.PREPARING and j.plan.get("prefetched")
                 and not j.plan.get("prep_error") and j.task_id not in self.busy]
        if not ready:
            return
        memory = self._gpu_memory()
        running = [r for r in (job_reservation(j) for j in active) if r is not None]
        waiting = []
        for j in active:
            if j.state in WAITING:
                d = job_demand(j, self.settings, memory, prefetch_done=bool(j.plan.get("prefetched")))
                waiting.append(recovery.promised(d, j.hours))
        placements = plan(self.inventory.gpus(), running, waiting, now, self.settings.estimates.safety_margin_s,
                          self.settings.gpus.max_jobs_per_gpu)
        demands = {d.task_id: d for d in waiting}
        for job in ready:
            placement = placements.get(job.task_id)
            if placement is not None and placement.feasible and placement.start <= now + 1.0:
                self._launch(job, placement, demands[job.task_id].mem_per_gpu_gb, now)
                running.append(placement.reservation(demands[job.task_id].mem_per_gpu_gb))

    def _launch(self, job: JobRecord, placement: Any, mem_per_gpu_gb: float, now: float) -> None:
        request = parse_train_request(job.request_kind or "text", job.request_json or "{}")
        run_dir = self.run_dir(job.task_id)
        RunSpec(
            run_dir=str(run_dir), kind=job.kind, base_model=request.model, model_path=job.plan["model_path"],
            dataset_path=job.plan["dataset_path"], dataset_type=request.dataset_type.model_dump(),  # type: ignore[union-attr]
            train_until=placement.train_until, budget_s=job.hours * 3600.0, params_b=job.params_b,
            overrides=job.plan.get("overrides", {}),
        ).save()
        facts = {**job.plan, "start": placement.start, "train_until": placement.train_until,
                 "release_at": placement.release_at, "mem_per_gpu_gb": mem_per_gpu_gb}
        gpus = ",".join(map(str, placement.gpu_ids))
        self.store.transition(job.task_id, JobState.TRAINING, now, f"training on GPU(s) {gpus}",
                              gpu_ids=placement.gpu_ids, box=placement.box, started_at=now,
                              attempts=job.attempts + 1, plan=facts, executor_handle={})
        try:
            handle = self.executor.submit(Launch(job.task_id, run_dir, tuple(placement.gpu_ids), placement.box))
        except Exception as exc:
            log.exception("job %s: could not start training", job.task_id)
            self.store.transition(job.task_id, JobState.PREPARING, self.clock.now(), f"could not start: {exc}")
            return
        self.launched[job.task_id] = handle
        self.store.update(job.task_id, self.clock.now(), executor_handle=handle)

    # ----- watching a training process ------------------------------------------------------
    def _watch(self, job: JobRecord, now: float) -> None:
        handle = job.executor_handle
        state = self.executor.status(handle).state if handle else ExecState.GONE
        train_until = float(job.plan.get("train_until", job.termination_at or now))
        run_dir = self.run_dir(job.task_id)
        if state is ExecState.RUNNING:
            self.launched[job.task_id] = handle
            progress = _last_progress(run_dir)
            timeout = self.settings.executor.stall_timeout_s
            if recovery.overdue(now, train_until) or recovery.stalled(now, progress, job.started_at or now, timeout):
                reason = "overdue" if recovery.overdue(now, train_until) else "stalled"
                log.warning("job %s: training %s; stopping it", job.task_id, reason)
                self.store.update(job.task_id, now, plan={**job.plan, "stopped": reason})
                self._work(job.task_id, lambda: self.executor.cancel(handle, grace_s=15.0))
            else:
                self._record_metrics(job, run_dir, now)
            return
        self.launched.pop(job.task_id, None)
        self._after_attempt(job, run_dir, now)

    def _after_attempt(self, job: JobRecord, run_dir: Path, now: float) -> None:
        result = _read_json(run_dir / "result.json")
        if job.plan.get("stopped") == "stalled" and result is None:
            result = {"status": "stalled", "error": "no progress"}
        demand = job_demand(job, self.settings, self._gpu_memory(), prefetch_done=True)
        time_left = (job.termination_at or now) - now - demand.upload_s - self.settings.estimates.safety_margin_s
        planned = _read_json(run_dir / "plan.json") or {}
        nxt = recovery.after_attempt(
            result, attempts=job.attempts, max_attempts=self.settings.executor.max_attempts,
            has_model=ModelSlot(run_dir).current() is not None, time_left_s=time_left,
            min_useful_s=max(120.0, 0.1 * job.hours * 3600), overrides=job.plan.get("overrides", {}),
            micro_batch=planned.get("micro_batch_size"),
        )
        self._record_metrics(job, run_dir, now)
        facts = {k: v for k, v in job.plan.items() if k not in ("stopped",)}
        if nxt.action == "retry":
            facts["overrides"] = nxt.overrides
            self.store.transition(job.task_id, JobState.PREPARING, now, nxt.reason, plan=facts, gpu_ids=())
        elif nxt.action == "publish":
            self.store.transition(job.task_id, JobState.PUBLISHING, now, nxt.reason, plan=facts)
        else:
            self.store.transition(job.task_id, JobState.FAILED, now, nxt.reason, plan=facts)

    def _record_metrics(self, job: JobRecord, run_dir: Path, now: float) -> None:
        meta = ModelSlot(run_dir).metadata()
        metric, baseline = meta.get("dev_metric"), meta.get("baseline")
        if metric is not None and (metric != job.dev_metric or baseline != job.base_metric):
            self.store.update(job.task_id, now, dev_metric=metric, base_metric=baseline)

    # ----- publishing (worker thread) -------------------------------------------------------
    def _publish(self, job: JobRecord) -> None:
        model_dir = ModelSlot(self.run_dir(job.task_id)).current()
        now = self.clock.now()
        if model_dir is None:
            self.store.transition(job.task_id, JobState.FAILED, now, "no model to publish")
            return
        repo_name = job.expected_repo_name or job.task_id
        try:
            result = self.publisher.publish(model_dir, repo_name, task_id=job.task_id)
        except (PublishError, OSError) as exc:
            now = self.clock.now()
            if now > (job.termination_at or now) + PUBLISH_GRACE_S:
                self.store.transition(job.task_id, JobState.FAILED, now, f"publishing failed: {exc}")
            else:
                log.warning("job %s: publishing failed, will retry: %s", job.task_id, exc)
                self.store.increment("publish_failures")
                self.store.update(job.task_id, now, plan={**job.plan, "publish_retry_at": now + RETRY_AFTER_S,
                                                          "publish_error": str(exc)})
            return
        self.store.transition(job.task_id, JobState.SUBMITTED, self.clock.now(), f"published {result.repo}",
                              repo=result.repo, model_hash=result.model_hash, submitted_at=self.clock.now())
        log.info("job %s submitted as %s (hash %s)", job.task_id, result.repo, result.model_hash)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _last_progress(run_dir: Path) -> float | None:
    """The time of the newest progress line (the trainer's clock), read from the end of the file."""
    try:
        with (run_dir / "progress.jsonl").open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4096))
            last = fh.read().splitlines()[-1]
        return float(json.loads(last)["ts"])
    except (OSError, IndexError, ValueError, KeyError, TypeError):
        return None
