"""Fit our part of the outcome model (`market.SimParams`) to the miner's own recorded outcomes.

Rows are the store's `outcomes` (dicts with at least `kind` and `result` ∈ win / valid / fail). Per kind, the
share of wins among delivered results is shrunk towards the model's current prediction (`prior_strength`
pseudo-results) and turned into a skill by inverting `win_probability`; the failure rate is shrunk the same way
over all kinds. Kinds without rows keep their skill.

`win_probability` is the latent model's chance of beating every valid competitor in a typical pool (the era's
mean pool size × the mean valid rate): ours ~ N(skill, noise²), theirs ~ N(mean, sd² + noise²), integrated by
Gauss–Hermite quadrature. It ignores the text top-4 cut and the test/synthetic split. The competitors' skill
(mean, sd) is that of new miners unless `field` is given; the miners left after eligibility cuts are stronger
(`SimResult.rival_skill` measures them), so pass that to fit a skill that reproduces our win rate in the simulator.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from godminer.scoring.market import SimParams
from godminer.scoring.weights import ERAS
from godminer.settings import OFFER_KINDS
from godminer.sizing import IMAGE_PARAMS_B

_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(64)  # ∫ f(z) φ(z) dz ≈ Σ w f(z) / √(2π)
SKILL_RANGE = (-6.0, 10.0)


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def rivals_in_pool(kind: str, params: SimParams, era: str) -> float:
    """Valid competing submissions in a typical pool of this kind."""
    spec = ERAS[era]
    lo, hi = spec.image_pool if kind in IMAGE_PARAMS_B else spec.text_pool
    return ((lo + hi) / 2.0 - 1.0) * sum(params.valid_rate) / 2.0


def win_probability(
    skill: float, kind: str, params: SimParams, era: str = "2025-07-21", field: tuple[float, float] | None = None
) -> float:
    """P(our delivered result is first) under the latent model, for a typical pool of competitors from `field`."""
    mean, sd = field or params.competitor_skill
    spread = math.sqrt(sd**2 + params.noise_sd**2)
    k = rivals_in_pool(kind, params, era)
    ours = skill + params.noise_sd * _NODES
    beaten = np.array([_normal_cdf((x - mean) / spread) for x in ours]) ** k
    return float(np.dot(_WEIGHTS, beaten) / math.sqrt(2.0 * math.pi))


def skill_for(
    p_win: float, kind: str, params: SimParams, era: str = "2025-07-21", field: tuple[float, float] | None = None
) -> float:
    """The skill whose `win_probability` is `p_win` (bisection; the probability rises with skill)."""
    lo, hi = SKILL_RANGE
    for _ in range(60):
        mid = (lo + hi) / 2.0
        if win_probability(mid, kind, params, era, field) < p_win:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def outcome_counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Per kind: how many win, valid and fail results."""
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        per_kind = counts.setdefault(str(row["kind"]), {"win": 0, "valid": 0, "fail": 0})
        per_kind[str(row["result"])] += 1
    return counts


def calibrate(
    params: SimParams,
    rows: Iterable[Mapping[str, Any]],
    era: str = "2025-07-21",
    prior_strength: float = 8.0,
    field: tuple[float, float] | None = None,
) -> SimParams:
    """`params` with our per-kind skill and our failure rate fitted to recorded outcomes."""
    counts = outcome_counts(rows)
    skill = dict(params.our_skill)
    for kind, c in counts.items():
        if kind not in OFFER_KINDS or c["win"] + c["valid"] == 0:
            continue
        prior = win_probability(skill[kind], kind, params, era, field)
        p_win = (c["win"] + prior_strength * prior) / (c["win"] + c["valid"] + prior_strength)
        skill[kind] = skill_for(p_win, kind, params, era, field)
    fails = sum(c["fail"] for c in counts.values())
    total = sum(sum(c.values()) for c in counts.values())
    failure = (fails + prior_strength * params.our_failure) / (total + prior_strength)
    return replace(params, our_skill=skill, our_failure=failure)
