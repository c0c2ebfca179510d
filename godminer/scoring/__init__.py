"""The G.O.D validator's real-time scoring (mid-2025) as pure functions: task outcome, work, weights, emissions.

`rules` holds stages 1–2 (one task's +3 / 0 / −1 outcomes and its work score); `weights` holds stages 3–4
(group scores, real-time weights), the era table and the tournament/burn split. Specification:
`reference/scoring.md` §1–§3 and §6(a).
"""

from godminer.scoring.rules import Submission, score_task, work_score
from godminer.scoring.weights import (
    BURN_KEY,
    ERAS,
    PERIODS,
    TOURNAMENT_KEY,
    TYPE_GROUPS,
    EmissionSplit,
    Era,
    GroupScore,
    PeriodScore,
    ScoredTask,
    chain_shares,
    emission_split,
    group_scores,
    normalised_scores,
    period_scores,
    realtime_weights,
    sigmoid_linear,
)

__all__ = [
    "BURN_KEY",
    "ERAS",
    "PERIODS",
    "TOURNAMENT_KEY",
    "TYPE_GROUPS",
    "EmissionSplit",
    "Era",
    "GroupScore",
    "PeriodScore",
    "ScoredTask",
    "Submission",
    "chain_shares",
    "emission_split",
    "group_scores",
    "normalised_scores",
    "period_scores",
    "realtime_weights",
    "score_task",
    "sigmoid_linear",
    "work_score",
]
