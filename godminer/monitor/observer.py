"""Gathers what the alert rules look at: recent outcomes, GPU readings, rank, disk, reachability."""

from __future__ import annotations

import shutil
from collections import deque
from collections.abc import Callable

import httpx

from godminer.clock import Clock
from godminer.engine.inventory import Inventory
from godminer.engine.jobs import JobState
from godminer.engine.store import Store
from godminer.monitor.alerts import Observation
from godminer.protocol.metagraph import Metagraph
from godminer.settings import Settings


def http_probe(url: str, timeout_s: float = 5.0) -> str | None:
    """None if the URL answers HTTP at all (any status: auth refusals included), else why not."""
    try:
        httpx.get(url.rstrip("/") + "/get_latest_model_submission/probe", timeout=timeout_s)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


class Observer:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        inventory: Inventory,
        metagraph: Metagraph,
        hotkey: str,
        clock: Clock,
        probe: Callable[[str], str | None] = http_probe,
        disk_free_gb: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.inventory = inventory
        self.metagraph = metagraph
        self.hotkey = hotkey
        self.clock = clock
        self.probe = probe
        self.disk_free_gb = disk_free_gb or (lambda: shutil.disk_usage(settings.data_dir).free / 1e9)
        self.gpu_samples: deque[tuple[float, float]] = deque(maxlen=20_000)
        self.ranks: deque[tuple[float, int]] = deque(maxlen=20_000)
        self._publish_failures = store.counter("publish_failures")

    def observe(self) -> Observation:
        now = self.clock.now()
        readings = self.inventory.status()
        if readings:
            self.gpu_samples.append((now, sum(r.utilization for r in readings) / len(readings)))
        rank = self.metagraph.rank_of(self.hotkey)
        if rank is not None:
            self.ranks.append((now, rank))
        failures = self.store.counter("publish_failures")
        new_failures, self._publish_failures = failures - self._publish_failures, failures
        limits = self.settings.monitor
        return Observation(
            now=now,
            recent_outcomes=tuple(self.store.recent_finished_states(limits.failure_window_jobs)),
            gpu_utilisation=tuple(self.gpu_samples), gpu_count=len(readings), ranks=tuple(self.ranks),
            training_since=tuple((j.task_id, j.started_at or now) for j in self.store.active()
                                 if j.state is JobState.TRAINING),
            publish_failures=new_failures, free_disk_gb=self.disk_free_gb(),
            gpu_errors=tuple((r.index, r.error or "unhealthy") for r in readings if not r.healthy),
            endpoint_error=self.probe(limits.public_url) if limits.public_url else None,
        )
