"""Offer policy v2 ("godminer"): accept when the expected gain in emission is positive.

The validator pays per type group and window (scoring.md §3): q = Σ score·work × mean(score) over
our kept scores (+3 wins, −1 failures; clean losses are dropped), n = 0.7·σ(9(q/q_max − 0.5))^0.75
+ 0.05·q/q_max against the group's leader, times the period weight, the type weight and the days a
task stays in each window. An offer's value is the expected change it makes to that sum:

    E[Δ] = Σ_windows w_period · days · w_type · (P(win)·Δn(win) + P(fail)·Δn(fail))

so a failure costs twice (it subtracts work and drags the average), a clean loss costs nothing,
and a win counts most where we can close on the leader (the sigmoid's steep part). From the value
we subtract the GPU time the job takes from later offers: GPU-hours × ``gpu_hour_value`` × how busy
the box is over those hours. P(win) and P(fail) per kind are Beta priors (settings) updated with
our recorded outcomes; P(win) shrinks when the job would wait for GPUs and train less. The 7-day
eligibility rule (no recent win → no more offers) overrides all of it: while our last win is
getting old, every offer the box can finish is taken.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from godminer.engine.policy import Decision, Offer, OwnResult, Snapshot, capacity_check, decline, hard_limits
from godminer.engine.scheduler import stop_time, utilisation
from godminer.scoring import ERAS, PERIODS, sigmoid_linear, work_score
from godminer.settings import PolicySettings

GROUP_OF_KIND = {"instruct": "instruct", "chat": "instruct", "dpo": "dpo", "grpo": "grpo", "sdxl": "image",
                 "flux": "image"}
DAY = 86400.0
ERA = "2025-07-21"


@dataclass(frozen=True)
class Estimate:
    p_win: float
    p_fail: float
    work: float
    value: float
    cost: float
    at_risk: bool

    @property
    def gain(self) -> float:
        return self.value - self.cost


def outcome_probabilities(history: Iterable[OwnResult], kind: str, settings: PolicySettings) -> tuple[float, float]:
    """Posterior means of P(win) and P(fail) for a kind: the priors as pseudo-counts plus our outcomes."""
    results = [r.score for r in history if r.kind == kind]
    strength = settings.prior_strength
    wins = sum(1 for s in results if s > 0)
    fails = sum(1 for s in results if s < 0)
    p_win = (wins + settings.prior_win * strength) / (len(results) + strength)
    p_fail = (fails + settings.prior_fail * strength) / (len(results) + strength)
    return p_win, p_fail


def group_quality(summed: float, scores: list[float]) -> float:
    if not scores:
        return 0.0
    average = sum(scores) / len(scores)
    return 0.0 if average < 0 else summed * average


def _normalised(q: float, leader: float) -> float:
    return sigmoid_linear(q / max(leader, q)) if q > 0 else 0.0


def task_value(history: Iterable[OwnResult], kind: str, work: float, p_win: float, p_fail: float, now: float,
               settings: PolicySettings) -> float:
    """Expected change in emission-days of our weight if this task is delivered (see module docstring)."""
    group = GROUP_OF_KIND[kind]
    mine = [r for r in history if GROUP_OF_KIND.get(r.kind) == group and r.score != 0]
    type_weight = ERAS[ERA].type_weights[group]
    value = 0.0
    for days, period_weight in PERIODS:
        in_window = [r for r in mine if now - r.created_at < days * DAY]
        summed = sum(r.score * r.work for r in in_window)
        scores = [r.score for r in in_window]
        leader = settings.leader_q_per_day.get(group, 100.0) * days
        q_now = group_quality(summed, scores)
        base = _normalised(q_now, leader)
        after_win = _normalised(group_quality(summed + 3 * work, [*scores, 3.0]), leader)
        after_fail = _normalised(group_quality(summed - work, [*scores, -1.0]), leader)
        delta = p_win * (after_win - base) + p_fail * (after_fail - base)
        value += period_weight * days * type_weight * delta
    return value


def eligibility_at_risk(history: Iterable[OwnResult], now: float, guard_days: float) -> bool:
    """True when our newest win is older than ``guard_days`` (or there is none): winning again comes first."""
    wins = [r.created_at for r in history if r.score > 0]
    return not wins or now - max(wins) > guard_days * DAY


def estimate(snap: Snapshot, offer: Offer, accepted: Decision) -> Estimate:
    """P(win), P(fail), value and GPU cost of an offer the box can take (``accepted`` from capacity_check)."""
    settings = snap.policy
    d, placement = accepted.demand, accepted.placement
    assert d is not None and placement is not None
    p_win, p_fail = outcome_probabilities(snap.history, offer.kind, settings)
    # Waiting for GPUs means training less than the job could if it started at once.
    best_stop = stop_time(d, max(snap.now, d.ready_at), snap.estimates.safety_margin_s)
    could = max(1e-9, best_stop - max(snap.now, d.ready_at) - d.load_s)
    will = max(0.0, placement.train_until - placement.start - d.load_s)
    p_win *= math.sqrt(min(1.0, will / could))
    work = work_score(offer.hours, int(offer.params_b * 1e9), offer.model)
    value = task_value(snap.history, offer.kind, work, p_win, p_fail, snap.now, settings)
    gpu_hours = len(placement.gpu_ids) * (placement.release_at - placement.start) / 3600.0
    busy = utilisation(snap.gpus, snap.running, placement.start, placement.release_at) if gpu_hours else 0.0
    cost = gpu_hours * settings.gpu_hour_value * busy
    at_risk = eligibility_at_risk(snap.history, snap.now, settings.eligibility_guard_days)
    return Estimate(p_win, p_fail, work, value, cost, at_risk)


def godminer_policy(snap: Snapshot, offer: Offer) -> Decision:
    """Accept what the box can finish in time when its expected gain is positive (or winning is urgent)."""
    limited = hard_limits(snap, offer)
    if limited is not None:
        return limited
    fits = capacity_check(snap, offer, headroom=False)
    if not fits.accepted:
        return fits
    e = estimate(snap, offer, fits)
    detail = (f"gain {e.gain:+.5f} = value {e.value:.5f} - GPU time {e.cost:.5f}; P(win) {e.p_win:.2f}, "
              f"P(fail) {e.p_fail:.2f}, work {e.work:.1f}")
    if e.at_risk:
        return Decision(True, f"Yes. I can do {offer.task_type} jobs (a win is due; {detail})", "accepted",
                        placement=fits.placement, demand=fits.demand, value=e.gain)
    if e.gain <= 0:
        return decline("low_value", f"not worth the GPU time now: {detail}", placement=fits.placement,
                       demand=fits.demand, value=e.gain)
    return Decision(True, f"Yes. I can do {offer.task_type} jobs ({detail})", "accepted",
                    placement=fits.placement, demand=fits.demand, value=e.gain)
