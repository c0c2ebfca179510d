"""GPU allocation and deadline-aware ordering, as pure planning functions.

The box is a set of GPUs (on one or several hosts, "boxes"). Running jobs hold reservations on
their GPUs until their planned stop. Waiting jobs are placed earliest-deadline-first: each takes
the earliest moment at which enough GPUs of one box have room for it, for long enough to train at
least its minimum, then trains its planned epochs or until its deadline (less the time to save and
publish), whichever comes first. Jobs spread over idle GPUs first, so small jobs run side by side;
a GPU is shared by several jobs only up to ``max_jobs_per_gpu`` and when memory allows. The offer
policy plans with a new offer added: accepting it must leave every committed job feasible.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from godminer.engine.estimates import JobDemand

EPS = 1e-6


@dataclass(frozen=True)
class Gpu:
    index: int
    memory_gb: float
    box: str = "local"
    healthy: bool = True
    name: str = ""


@dataclass(frozen=True)
class Reservation:
    task_id: str
    box: str
    gpu_ids: tuple[int, ...]
    mem_per_gpu_gb: float
    start: float
    end: float


@dataclass(frozen=True)
class Placement:
    task_id: str
    feasible: bool
    box: str = ""
    gpu_ids: tuple[int, ...] = ()
    start: float = 0.0
    train_until: float = 0.0
    release_at: float = 0.0
    reason: str = ""

    def reservation(self, mem_per_gpu_gb: float) -> Reservation:
        return Reservation(self.task_id, self.box, self.gpu_ids, mem_per_gpu_gb, self.start, self.release_at)


def stop_time(d: JobDemand, start: float, safety_s: float) -> float:
    """When training must stop if it starts at ``start``: planned epochs or the deadline's margin."""
    latest = d.deadline - safety_s - d.upload_s - d.save_s
    return min(latest, start + d.load_s + d.full_train_s)


def place(
    d: JobDemand,
    gpus: Sequence[Gpu],
    reservations: Sequence[Reservation],
    now: float,
    safety_s: float,
    max_jobs_per_gpu: int = 1,
) -> Placement:
    """The earliest feasible placement of one job given the existing reservations."""
    healthy = [g for g in gpus if g.healthy]
    if not healthy:
        return Placement(d.task_id, False, reason="no healthy GPU")
    boxes: dict[str, list[Gpu]] = {}
    for g in healthy:
        boxes.setdefault(g.box, []).append(g)
    biggest_box = max(len(members) for members in boxes.values())
    if d.gpus > biggest_box:
        return Placement(d.task_id, False, reason=f"needs {d.gpus} GPUs on one box; the largest has {biggest_box}")
    if all(g.memory_gb + EPS < d.mem_per_gpu_gb for g in healthy):
        return Placement(d.task_id, False, reason=f"needs {d.mem_per_gpu_gb:.0f} GB per GPU")

    on_gpu: dict[tuple[str, int], list[Reservation]] = {}
    for r in reservations:
        for index in r.gpu_ids:
            on_gpu.setdefault((r.box, index), []).append(r)
    earliest = max(now, d.ready_at)
    candidates = sorted({earliest, *(r.end for r in reservations if r.end > earliest)})
    for start in candidates:
        train_until = stop_time(d, start, safety_s)
        if train_until - start - d.load_s < d.min_train_s - EPS or train_until <= start:
            return Placement(d.task_id, False, reason=_late_reason(d, start, now))
        release = train_until + d.save_s
        for box in sorted(boxes):
            free = []
            for g in boxes[box]:
                others = [r for r in on_gpu.get((box, g.index), ()) if r.start < release - EPS and r.end > start + EPS]
                room = g.memory_gb - sum(r.mem_per_gpu_gb for r in others)
                if len(others) < max_jobs_per_gpu and room + EPS >= d.mem_per_gpu_gb:
                    free.append((-room, g.index))
            if len(free) >= d.gpus:
                # Spread: the emptiest GPUs first, so jobs share a GPU only when they must.
                chosen = tuple(sorted(index for _, index in sorted(free)[: d.gpus]))
                return Placement(d.task_id, True, box, chosen, start, train_until, release)
    return Placement(d.task_id, False, reason=_late_reason(d, candidates[-1], now))


def _late_reason(d: JobDemand, start: float, now: float) -> str:
    wait_min = max(0.0, start - now) / 60.0
    return (
        f"cannot train the minimum {d.min_train_s / 60:.0f} min before the deadline "
        f"(GPUs free in {wait_min:.0f} min, {d.gpus} GPU(s) needed)"
    )


def plan(
    gpus: Sequence[Gpu],
    running: Sequence[Reservation],
    waiting: Sequence[JobDemand],
    now: float,
    safety_s: float,
    max_jobs_per_gpu: int = 1,
) -> dict[str, Placement]:
    """Place waiting jobs earliest-deadline-first around the running ones."""
    reservations = list(running)
    placements: dict[str, Placement] = {}
    for d in sorted(waiting, key=lambda x: (x.deadline, -x.priority, x.task_id)):
        p = place(d, gpus, reservations, now, safety_s, max_jobs_per_gpu)
        placements[d.task_id] = p
        if p.feasible:
            reservations.append(p.reservation(d.mem_per_gpu_gb))
    return placements


def idle_gpus_at(gpus: Sequence[Gpu], reservations: Iterable[Reservation], t: float) -> int:
    """Healthy GPUs with no reservation covering time t."""
    busy = {(r.box, i) for r in reservations if r.start <= t + EPS and r.end > t + EPS for i in r.gpu_ids}
    return sum(1 for g in gpus if g.healthy and (g.box, g.index) not in busy)


def utilisation(gpus: Sequence[Gpu], reservations: Iterable[Reservation], start: float, end: float) -> float:
    """Share of GPU-time in [start, end) covered by reservations (overlaps on one GPU counted once)."""
    healthy = [g for g in gpus if g.healthy]
    if not healthy or end <= start:
        return 0.0
    covered = 0.0
    for g in healthy:
        spans = sorted(
            (max(r.start, start), min(r.end, end))
            for r in reservations
            if r.box == g.box and g.index in r.gpu_ids and r.end > start and r.start < end
        )
        cursor = start
        for s, e in spans:
            if e > cursor:
                covered += e - max(s, cursor)
                cursor = e
    return covered / (len(healthy) * (end - start))
