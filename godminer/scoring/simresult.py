"""A simulated run's result (`SimResult`, plain data, JSON-able) and how it is read off the final state.

Days count from our registration (after the market's warm-up). `emission_share` is the mean of our share at every
(two-hourly) tick after our 7-day scoring window has filled (from day 7, for runs of at least 10 days; shorter
runs: the whole run); `gpu_utilisation` covers the same period. Counts (wins, failures, offers) and the rivals'
statistics cover the whole run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from godminer.engine.scheduler import Reservation, utilisation
from godminer.scoring.simstate import SimState
from godminer.scoring.stream import DAY_S

MEASURE_FROM_DAY = 7.0
MEASURE_MIN_DAYS = 10.0


@dataclass(frozen=True)
class DayStats:
    """One simulated day (0 = the first): mean emission share, offers that reached us, wins, failures."""

    day: int
    emission_share: float
    offers: int
    wins: int
    failures: int


@dataclass(frozen=True)
class SimResult:
    """One simulated run; `to_json()` gives the plain-data form."""

    policy: str
    days: float
    seed: int
    era: str
    emission_share: float  # mean share of the subnet's emission over the measured period
    measured_from_day: float
    wins: int
    valid: int  # delivered, not first
    failures: int
    fallbacks: int  # accepted jobs that never got a GPU in time: the untrained fallback adapter was published
    accepted: int
    declined: int
    tasks: int  # tasks the validator created
    gpu_utilisation: float
    max_parallel_jobs: int  # most of our jobs holding GPUs at the same time
    eligible_share: float  # share of the ticks at which we were eligible for offers
    cut_off_day: float | None  # start of the ineligible spell the run ends in (None: eligible at the end)
    eligible_rivals: float  # mean number of eligible competing hotkeys
    rival_skill: tuple[float, float]  # mean and sd of the skill behind valid competing submissions
    by_kind: dict[str, dict[str, int]]
    daily: tuple[DayStats, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _cut_off_day(eligible: list[tuple[float, bool]], origin: float) -> float | None:
    """Start of the ineligible spell at the end of the run, in days from `origin` (None: eligible at the end)."""
    if not eligible or eligible[-1][1]:
        return None
    last_eligible = max((t for t, ok in eligible if ok), default=origin)
    return (min(t for t, ok in eligible if not ok and t > last_eligible) - origin) / DAY_S


def _max_parallel(reservations: Sequence[Reservation]) -> int:
    """Most reservations overlapping at one moment."""
    edges = sorted([(r.start, 1) for r in reservations] + [(r.end, -1) for r in reservations])
    most = current = 0
    for _, step in edges:  # at equal times a release comes before a start
        current += step
        most = max(most, current)
    return most


def summarise(state: SimState, name: str, days: float, seed: int) -> SimResult:
    """The result of a finished run."""
    measured_from = MEASURE_FROM_DAY if days >= MEASURE_MIN_DAYS else 0.0
    origin = state.cfg.joins_at
    start, end = origin + measured_from * DAY_S, origin + days * DAY_S
    daily = tuple(
        DayStats(
            day, _mean([s for t, s in state.shares if origin + day * DAY_S < t <= origin + (day + 1) * DAY_S]),
            state.by_day.get((day, "accepted"), 0) + state.by_day.get((day, "declined"), 0),
            state.by_day.get((day, "wins"), 0), state.by_day.get((day, "failures"), 0),
        )
        for day in range(math.ceil(days))
    )
    skills = state.rival_skill
    spread = math.sqrt(_mean([(x - _mean(skills)) ** 2 for x in skills]))
    return SimResult(
        policy=name, days=days, seed=seed, era=state.cfg.era,
        emission_share=_mean([s for t, s in state.shares if t > start]), measured_from_day=measured_from,
        wins=state.counts.get("wins", 0), valid=state.counts.get("valid", 0),
        failures=state.counts.get("failures", 0), fallbacks=state.counts.get("fallbacks", 0),
        accepted=state.counts.get("accepted", 0),
        declined=state.counts.get("declined", 0), tasks=state.tasks,
        gpu_utilisation=utilisation(state.cfg.view.gpus, state.trained, start, end),
        max_parallel_jobs=_max_parallel(state.trained),
        eligible_share=_mean([float(ok) for _, ok in state.eligible]), cut_off_day=_cut_off_day(state.eligible, origin),
        eligible_rivals=_mean([float(n) for n in state.eligible_rivals]), rival_skill=(_mean(skills), spread),
        by_kind=state.by_kind, daily=daily,
    )
