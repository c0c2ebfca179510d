"""The simulation's state: our box, the run's fixed configuration, our jobs, the rivals, and everything recorded.

Mutable dataclasses, changed only by the event handlers of `simulator`; `simresult.summarise` reads them.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from godminer.engine.estimates import JobDemand
from godminer.engine.policy import OwnResult, Snapshot
from godminer.engine.scheduler import Gpu, Placement, Reservation
from godminer.scoring.market import Competitor, Draw, SimParams
from godminer.scoring.stream import DAY_S, Task, ValidatorBook
from godminer.settings import GpuSettings


@dataclass(frozen=True)
class Box:
    """Our hardware: identical GPUs on one box (default: the plan's 4 × H100 80 GB)."""

    gpus: int = 4
    memory_gb: float = 80.0
    tflops: float = 400.0
    mfu: float = 0.35
    max_jobs_per_gpu: int = 1
    free_disk_gb: float = 100_000.0

    def gpu_list(self) -> tuple[Gpu, ...]:
        return tuple(Gpu(i, self.memory_gb) for i in range(self.gpus))

    def gpu_settings(self) -> GpuSettings:
        return GpuSettings(
            inventory="config", count=self.gpus, memory_gb=self.memory_gb, tflops=self.tflops, mfu=self.mfu,
            max_jobs_per_gpu=self.max_jobs_per_gpu,
        )


@dataclass(frozen=True)
class RunConfig:
    """What stays fixed during a run."""

    era: str
    params: SimParams
    view: Snapshot  # our box and settings, empty: each offer's snapshot replaces the moving parts
    split: tuple[float, float, float]  # (tournament, regular, burn) of the era
    serial: bool  # one job at a time (the reference miner's single worker)
    joins_at: float  # when our hotkey registers (after the market's warm-up); our days count from here


@dataclass
class SimJob:
    """One of our accepted jobs: waiting → training → done, or failed."""

    task: Task
    kind: str
    demand: JobDemand
    state: str = "waiting"
    placement: Placement | None = None

    def reservation(self) -> Reservation:
        assert self.placement is not None
        return self.placement.reservation(self.demand.mem_per_gpu_gb)


@dataclass(frozen=True)
class Pool:
    """Who took a task: competitors in the order asked, and where we stood among them."""

    competitors: tuple[tuple[Competitor, Draw], ...]
    we_accepted: bool
    our_index: int  # competitors that accepted before we were asked


@dataclass
class Rivals:
    """The competing miners: registration slots, the tasks each holds, slots waiting for a new miner."""

    slots: list[Competitor]
    holding: dict[str, list[float]]  # hotkey → termination times of the tasks it holds
    rejoin_at: dict[int, float]
    next_uid: int
    rng: random.Random


@dataclass
class SimState:
    """Everything that changes during a run."""

    cfg: RunConfig
    rivals: Rivals
    book: ValidatorBook = field(default_factory=ValidatorBook)
    active: dict[str, SimJob] = field(default_factory=dict)
    jobs: dict[str, SimJob] = field(default_factory=dict)
    trained: list[Reservation] = field(default_factory=list)
    pools: dict[str, Pool] = field(default_factory=dict)
    scored: list[tuple[Task, dict[str, float]]] = field(default_factory=list)
    history: list[OwnResult] = field(default_factory=list)
    shares: list[tuple[float, float]] = field(default_factory=list)
    eligible_rivals: list[int] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    by_day: dict[tuple[int, str], int] = field(default_factory=dict)
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    pinned: dict[str, Placement] = field(default_factory=dict)  # the oracle's jobs and their fixed placements
    first_win_at: float | None = None  # the oracle's: when the first win it took is scored
    eligible: list[tuple[float, bool]] = field(default_factory=list)  # (tick, were we eligible for offers)
    rival_skill: list[float] = field(default_factory=list)  # skills behind valid competing submissions
    wakes: set[float] = field(default_factory=set)
    tasks: int = 0

    def count(self, what: str, kind: str, now: float) -> None:
        """One more `what` (accepted, declined, wins, valid, failures), in total, per kind and per day."""
        self.counts[what] = self.counts.get(what, 0) + 1
        per_kind = self.by_kind.setdefault(kind, {})
        per_kind[what] = per_kind.get(what, 0) + 1
        key = (math.floor((now - self.cfg.joins_at) / DAY_S), what)
        self.by_day[key] = self.by_day.get(key, 0) + 1
