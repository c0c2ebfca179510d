"""Offer policy v2 ("godminer"): expected gain from the validator's group scoring, as tables of cases."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_policy import NOW, busy, offer, snapshot

from godminer.engine.gain import (
    DAY,
    eligibility_at_risk,
    godminer_policy,
    outcome_probabilities,
    task_value,
)
from godminer.engine.policy import OwnResult, seed_policy
from godminer.settings import PolicySettings

SETTINGS = PolicySettings()


def results(*scores: float, kind: str = "instruct", age_days: float = 1.0, work: float = 10.0) -> tuple:
    return tuple(OwnResult(kind, NOW - age_days * DAY, s, work) for s in scores)


def test_probabilities_start_at_the_priors_and_follow_outcomes():
    assert outcome_probabilities((), "dpo", SETTINGS) == pytest.approx((0.25, 0.03))
    p_win, p_fail = outcome_probabilities(results(3, 3, 3, 3, 0, 0, 0, 0, kind="dpo"), "dpo", SETTINGS)
    assert p_win == pytest.approx((4 + 2) / 16) and p_fail == pytest.approx(0.24 / 16)
    _, failing = outcome_probabilities(results(-1, -1, -1, -1, kind="dpo"), "dpo", SETTINGS)
    assert failing > 0.25
    assert outcome_probabilities(results(3, 3, kind="grpo"), "dpo", SETTINGS) == pytest.approx((0.25, 0.03))


@pytest.mark.parametrize(
    ("history", "at_risk"),
    [((), True), (results(3, age_days=1), False), (results(3, age_days=5), True), (results(0, 0, age_days=1), True)],
)
def test_eligibility_guard(history, at_risk):
    assert eligibility_at_risk(history, NOW, 4.0) is at_risk


def test_value_of_wins_failures_and_clean_losses():
    history = results(3, 3)
    assert task_value(history, "instruct", 10.0, 0.3, 0.0, NOW, SETTINGS) > 0
    assert task_value(history, "instruct", 10.0, 0.0, 0.5, NOW, SETTINGS) < 0
    assert task_value(history, "instruct", 10.0, 0.0, 0.0, NOW, SETTINGS) == 0.0  # a clean loss changes nothing
    # A win counts most where it closes on the leader (the sigmoid's steep part): with five-day-old results
    # (7-day window only, leader at 150 × 7), q = 420 (x = 0.4) gains more from a win than q = 18 (x = 0.02).
    mid = results(*([3] * 5), age_days=5, work=140 / 15)
    low = results(3, age_days=5, work=2.0)
    assert task_value(mid, "instruct", 10.0, 1.0, 0.0, NOW, SETTINGS) > task_value(low, "instruct", 10.0, 1.0, 0.0,
                                                                                    NOW, SETTINGS)
    # Already far ahead of the leader, another win adds little.
    ahead = results(*([3] * 12), work=30.0)
    assert task_value(ahead, "instruct", 10.0, 1.0, 0.0, NOW, SETTINGS) < task_value(mid, "instruct", 10.0, 1.0,
                                                                                      0.0, NOW, SETTINGS)


def test_at_risk_takes_every_feasible_offer():
    snap = snapshot(running=[busy(i, hours=2) for i in range(3)])
    decision = godminer_policy(snap, offer("chat", hours=9))
    assert decision.accepted and "a win is due" in decision.reason
    assert not seed_policy(snap, offer("chat", hours=9)).accepted  # the plan's table stops at 7 h for chat


def test_low_value_is_declined_on_a_busy_box_but_taken_on_an_idle_one():
    policy = PolicySettings(gpu_hour_value=0.05, prior_win=0.02)
    history = results(3, age_days=0.5)  # a recent win: no eligibility pressure
    busy_box = replace(snapshot(running=[busy(i, hours=9) for i in range(3)], policy=policy), history=history)
    idle_box = replace(snapshot(policy=policy), history=history)
    assert godminer_policy(busy_box, offer(hours=8)).code == "low_value"
    assert godminer_policy(idle_box, offer(hours=8)).accepted


def test_v2_keeps_hard_limits_and_capacity():
    assert godminer_policy(snapshot(policy=PolicySettings(deny_models=["llama"])), offer()).code == "model_denied"
    full = snapshot(running=[busy(i, hours=8) for i in range(4)])
    assert godminer_policy(full, offer(hours=2)).code == "capacity"
    assert godminer_policy(snapshot(), offer(hours=0.05, params_b=70)).code == "budget"
