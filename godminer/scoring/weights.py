"""Stages 3 and 4 of the validator's scoring, the era table, and the split of emissions (`reference/scoring.md`).

* `ERAS`: one table with every constant that changed between the three reference commits, keyed by date
  ("2025-07-04" = commit A, "2025-07-21" = B, "2025-10-13" = C).
* Stage 3: per group (window × type group × organic/synthetic) each hotkey's q = Σ s·w × mean(s) over its +3/−1
  scores, then n = 0.7·σ(9(x − 0.5))^0.75 + 0.05x with x = q / max q, divided by Σn in eras from 2025-07-10.
* Stage 4: `realtime_weights` = Σ over groups of n × period weight × type weight × (organic share | 1 − share),
  with the organic "suspicious" rule; this is the real-time part before the tournament/burn split.
* `emission_split` and `chain_shares`: the §3.6 split between tournament, real-time miners and burn.

Float order follows the validator (exactness notes 1, 2): tasks newest first, InstructText before Chat in their
group, node scores highest first, numpy mean/std/exp, groups accumulated period by period in type order, organic
before synthetic. `realtime_weights` omits the validator's final `× regular` per contribution; `chain_shares`
applies it to the sum instead (a last-bit difference at most).

Not modelled: the 2025-07-08…07-21 `WEIGHT_FOR_TOURN` burn, tournament participation weights, and the exclusion
of tournament tasks from 2025-08-07 (pass only real-time tasks).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from godminer.scoring.rules import CHAT_TASK, DPO_TASK, GRPO_TASK, IMAGE_TASK, INSTRUCT_TASK, work_score

TYPE_GROUPS: dict[str, tuple[str, ...]] = {
    "instruct": (INSTRUCT_TASK, CHAT_TASK),
    "dpo": (DPO_TASK,),
    "image": (IMAGE_TASK,),
    "grpo": (GRPO_TASK,),
}
PERIODS: tuple[tuple[float, float], ...] = ((1, 0.3), (3, 0.3), (7, 0.4))  # (window in days, period weight)
SCORING_WINDOW_DAYS = 7
SIGMOID_WEIGHT = 0.7
SIGMOID_STEEPNESS = 9
SIGMOID_SHIFT = 0.5
SIGMOID_POWER = 0.75
LINEAR_WEIGHT = 0.05
ORGANIC_STD_FACTOR = 0.5
TOURNAMENT_KEY = "tournament"
BURN_KEY = "burn"

HoursBins = tuple[tuple[int, int, int, int], ...]  # (min rows, max rows, min hours, max hours) for text tasks
_HOURS_UNTIL_0829: HoursBins = (
    (1_000, 10_000, 1, 3), (10_000, 25_000, 3, 6), (25_000, 50_000, 4, 8), (50_000, 100_000, 5, 9),
    (100_000, 500_000, 7, 10),
)  # fmt: skip
_HOURS_FROM_0829: HoursBins = (
    (1_000, 10_000, 1, 3), (10_000, 25_000, 2, 4), (25_000, 50_000, 3, 5), (50_000, 100_000, 3, 6),
    (100_000, 500_000, 4, 6),
)  # fmt: skip


@dataclass(frozen=True)
class Era:
    """Every constant of one era; `base_*`, `burn_*` and `tournament_*` feed `emission_split` (§3.6)."""

    type_weights: Mapping[str, float]  # per type group; GRPO = 1 − instruct − image − DPO as in constants.py
    sum_to_one: bool  # group scores divided by their sum (from 2025-07-10)
    min_synth_jobs_per_day: int  # organic rule: fewer than 7× this many synthetic scores ⇒ suspicious
    max_concurrent_synthetic_jobs: int
    task_mix: Mapping[str, float]  # synthetic task draw weights; chat is a share of the instruct draws
    chat_share_of_instruct: float
    text_hours: HoursBins
    image_hours: tuple[int, int]
    text_pool: tuple[int, int]  # miners sought per text task (min, max)
    image_pool: tuple[int, int]
    base_regular_weight: float
    base_tournament_weight: float
    burn_reduction_rate: float
    max_burn_reduction: float
    legacy_gain: float  # LEGACY_PERFORM_DIFF_EMISSION_GAIN_PERCENT
    tournament_text_weight: float
    tournament_image_weight: float
    separated_burn: bool  # text and image tournaments burn separately (2025-09-18 on)


def _type_weights(instruct: float, image: float, dpo: float) -> dict[str, float]:
    return {"instruct": instruct, "dpo": dpo, "image": image, "grpo": 1 - instruct - image - dpo}


def _mix(instruct: float, image: float, dpo: float, grpo: float) -> dict[str, float]:
    return {INSTRUCT_TASK: instruct, IMAGE_TASK: image, DPO_TASK: dpo, GRPO_TASK: grpo}


ERAS: dict[str, Era] = {
    # Commit A: no sum-to-one, no synthetic minimum, no tournaments (everything goes to real-time miners).
    "2025-07-04": Era(
        type_weights=_type_weights(instruct=0.25, image=0.25, dpo=0.15), sum_to_one=False,
        min_synth_jobs_per_day=0, max_concurrent_synthetic_jobs=25,
        task_mix=_mix(instruct=0.25, image=0.35, dpo=0.10, grpo=0.30), chat_share_of_instruct=0.5,
        text_hours=_HOURS_UNTIL_0829, image_hours=(1, 2), text_pool=(8, 15), image_pool=(15, 25),
        base_regular_weight=1.0, base_tournament_weight=0.0, burn_reduction_rate=0.0, max_burn_reduction=0.0,
        legacy_gain=0.0, tournament_text_weight=0.0, tournament_image_weight=0.0, separated_burn=False,
    ),
    # Commit B (5.0): tournaments and burn.
    "2025-07-21": Era(
        type_weights=_type_weights(instruct=0.35, image=0.2, dpo=0.15), sum_to_one=True,
        min_synth_jobs_per_day=3, max_concurrent_synthetic_jobs=12,
        task_mix=_mix(instruct=0.35, image=0.25, dpo=0.15, grpo=0.25), chat_share_of_instruct=0.5,
        text_hours=_HOURS_UNTIL_0829, image_hours=(1, 2), text_pool=(8, 15), image_pool=(15, 25),
        base_regular_weight=0.35, base_tournament_weight=0.40, burn_reduction_rate=5.0, max_burn_reduction=0.9,
        legacy_gain=0.25, tournament_text_weight=0.6, tournament_image_weight=0.4, separated_burn=False,
    ),
    # Commit C: "separated" burn; the rate and cap of the burn reduction are assumed unchanged since B.
    "2025-10-13": Era(
        type_weights=_type_weights(instruct=0.35, image=0.2, dpo=0.2), sum_to_one=True,
        min_synth_jobs_per_day=3, max_concurrent_synthetic_jobs=10,
        task_mix=_mix(instruct=0.40, image=0.20, dpo=0.15, grpo=0.25), chat_share_of_instruct=0.5,
        text_hours=_HOURS_FROM_0829, image_hours=(1, 2), text_pool=(8, 15), image_pool=(15, 25),
        base_regular_weight=0.15, base_tournament_weight=0.525, burn_reduction_rate=5.0, max_burn_reduction=0.9,
        legacy_gain=0.25, tournament_text_weight=0.6, tournament_image_weight=0.4, separated_burn=True,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class ScoredTask:
    """One scored task as the weight setter reads it; `scores` maps hotkey → stage-1 quality score."""

    task_type: str
    is_organic: bool
    age_days: float
    hours: float
    model_params_count: int | None
    model_id: str
    scores: Mapping[str, float]


@dataclass(frozen=True)
class PeriodScore:
    """One hotkey's aggregate in one group: Σ s·w, mean and population std of s, and q."""

    summed: float
    average: float
    std: float
    quality: float


@dataclass(frozen=True)
class GroupScore:
    """One group's normalised scores and weight multiplier; `suspicious` hotkeys get multiplier 0."""

    period_days: float
    type_group: str
    is_organic: bool
    multiplier: float
    scores: dict[str, float]
    suspicious: frozenset[str]


class EmissionSplit(NamedTuple):
    """Multipliers for tournament winners, for real-time (regular) weights, and the burn hotkey's weight."""

    tournament: float
    regular: float
    burn: float


def kept_scores(task: ScoredTask) -> list[tuple[str, float]]:
    """The node scores that enter aggregation (≥ 1 or < 0, i.e. +3 and −1), highest first."""
    kept = [(hotkey, float(score)) for hotkey, score in task.scores.items() if score >= 1 or score < 0]
    return sorted(kept, key=lambda item: -item[1])


def period_scores(tasks: Sequence[ScoredTask]) -> dict[str, PeriodScore]:
    """Stage 3 aggregation over one group's tasks, in the order given (the validator's order matters)."""
    summed: dict[str, float] = {}
    raw: dict[str, list[float]] = {}
    for task in tasks:
        work = work_score(task.hours, task.model_params_count, task.model_id)
        for hotkey, score in kept_scores(task):
            summed[hotkey] = summed.get(hotkey, 0.0) + score * work
            raw.setdefault(hotkey, []).append(score)
    result: dict[str, PeriodScore] = {}
    for hotkey, scores in raw.items():
        average = float(np.mean(scores))
        quality = 0.0 if average < 0 else summed[hotkey] * average
        result[hotkey] = PeriodScore(summed[hotkey], average, float(np.std(scores)), quality)
    return result


def sigmoid_linear(x: float) -> float:
    """The validator's normalisation of x = q / q_max: 0.7·σ(9(x − 0.5))^0.75 + 0.05·x."""
    sigmoid = 1 / (1 + np.exp(-SIGMOID_STEEPNESS * (x - SIGMOID_SHIFT)))
    return float(SIGMOID_WEIGHT * pow(sigmoid, SIGMOID_POWER) + LINEAR_WEIGHT * x)


def normalised_scores(quality: Mapping[str, float], sum_to_one: bool) -> dict[str, float]:
    """Sigmoid + linear normalisation of a group's q values (0 for q ≤ 0), optionally divided by their sum."""
    if not quality:
        return {}
    top = max(quality.values())
    if top <= 0:
        return dict.fromkeys(quality, 0.0)
    scores = {hotkey: sigmoid_linear(q / top) if q > 0 else 0.0 for hotkey, q in quality.items()}
    total = sum(scores.values())
    return {hotkey: n / total for hotkey, n in scores.items()} if sum_to_one else scores


def _of_types(tasks: Sequence[ScoredTask], types: tuple[str, ...], organic: bool) -> list[ScoredTask]:
    """Tasks of a type group, interleaved in the given order (as the organic checks read them)."""
    return [t for t in tasks if t.task_type in types and t.is_organic == organic]


def _suspicious(window: Sequence[ScoredTask], types: tuple[str, ...], min_synth_jobs: int) -> frozenset[str]:
    """Hotkeys whose organic scores in this type group are ignored (§3.4, exactness note 1)."""
    synth_tasks = _of_types(window, types, organic=False)
    synth = period_scores(synth_tasks)
    counts = Counter(hotkey for task in synth_tasks for hotkey, _ in kept_scores(task))
    return frozenset(
        hotkey
        for hotkey, organic in period_scores(_of_types(window, types, organic=True)).items()
        if counts[hotkey] < min_synth_jobs
        or hotkey not in synth
        or organic.average > synth[hotkey].average + ORGANIC_STD_FACTOR * synth[hotkey].std
    )


def _organic_proportion(window: Sequence[ScoredTask], types: tuple[str, ...]) -> float:
    of_group = [t for t in window if t.task_type in types]
    return sum(1 for t in of_group if t.is_organic) / len(of_group) if of_group else 0.0


def group_scores(tasks: Sequence[ScoredTask], era: str = "2025-07-21") -> list[GroupScore]:
    """Stage 3 for every non-empty group, in the validator's accumulation order."""
    spec = ERAS[era]
    window = sorted((t for t in tasks if t.age_days < SCORING_WINDOW_DAYS and kept_scores(t)), key=lambda t: t.age_days)
    per_group = {
        group: (_organic_proportion(window, types), _suspicious(window, types, spec.min_synth_jobs_per_day * 7))
        for group, types in TYPE_GROUPS.items()
    }
    groups: list[GroupScore] = []
    for days, period_weight in PERIODS:
        in_period = [t for t in window if t.age_days < days]
        for group, types in TYPE_GROUPS.items():
            proportion, suspicious = per_group[group]
            for organic, share in ((True, proportion), (False, 1 - proportion)):
                if share <= 0:
                    continue  # the validator skips a group whose share is 0
                group_tasks = [t for task_type in types for t in _of_types(in_period, (task_type,), organic)]
                quality = {hotkey: ps.quality for hotkey, ps in period_scores(group_tasks).items()}
                if quality:
                    multiplier = period_weight * spec.type_weights[group] * share
                    flagged = suspicious if organic else frozenset()
                    scores = normalised_scores(quality, spec.sum_to_one)
                    groups.append(GroupScore(days, group, organic, multiplier, scores, flagged))
    return groups


def realtime_weights(tasks: Sequence[ScoredTask], era: str = "2025-07-21") -> dict[str, float]:
    """Stage 4: each hotkey's real-time weight before the tournament/burn split (absent hotkeys: 0)."""
    weights: dict[str, float] = {}
    for group in group_scores(tasks, era):
        for hotkey, n in group.scores.items():
            multiplier = 0.0 if hotkey in group.suspicious else group.multiplier
            weights[hotkey] = weights.get(hotkey, 0.0) + n * multiplier
    return weights


def _burn_reduction(spec: Era, difference: float | None) -> float:
    """Share of a tournament allocation that is burnt: all of it without tournament data."""
    if difference is None:
        return 1.0
    if difference <= 0:
        return 0.0
    return min(spec.max_burn_reduction, difference * spec.burn_reduction_rate)


def _separated_split(
    spec: Era, text_difference: float | None, image_difference: float | None, text_share: float | None
) -> EmissionSplit:
    text_base = spec.base_tournament_weight * spec.tournament_text_weight
    image_base = spec.base_tournament_weight * spec.tournament_image_weight
    text_burn = text_base * _burn_reduction(spec, text_difference)
    image_burn = image_base * _burn_reduction(spec, image_difference)
    total_burn = text_burn + image_burn
    boosted = spec.base_regular_weight + spec.legacy_gain * total_burn
    text_regular = (
        boosted * text_burn / total_burn if text_burn > 0 else spec.base_regular_weight * spec.tournament_text_weight
    )
    image_regular = (
        boosted * image_burn / total_burn if image_burn > 0 else spec.base_regular_weight * spec.tournament_image_weight
    )
    regular = (
        spec.base_regular_weight if text_share is None else text_regular * text_share + image_regular * (1 - text_share)
    )
    return EmissionSplit(
        (text_base - text_burn) + (image_base - image_burn),
        regular,
        (1 - spec.base_regular_weight - spec.base_tournament_weight) + (1 - spec.legacy_gain) * total_burn,
    )


def emission_split(
    era: str,
    tournament_difference: float | None = None,
    *,
    text_difference: float | None = None,
    image_difference: float | None = None,
    text_share: float | None = None,
) -> EmissionSplit:
    """(tournament, regular, burn) multipliers of §3.6; a difference of None means "no tournament data".

    `tournament_difference` is the combined d of the eras before 2025-09-18. The separated era ("2025-10-13")
    takes `text_difference` / `image_difference` instead, and `text_share`, the real-time miner's 7-day share of
    scored text (vs image) tasks; without it the miner has no record and gets `base_regular_weight`.
    """
    spec = ERAS[era]
    if spec.separated_burn:
        if tournament_difference is not None:
            raise ValueError(f"era {era} takes text_difference / image_difference")
        return _separated_split(spec, text_difference, image_difference, text_share)
    if text_difference is not None or image_difference is not None or text_share is not None:
        raise ValueError(f"era {era} takes one combined tournament_difference")
    tournament_burn = spec.base_tournament_weight * _burn_reduction(spec, tournament_difference)
    return EmissionSplit(
        spec.base_tournament_weight - tournament_burn,
        spec.base_regular_weight + tournament_burn * spec.legacy_gain,
        (1 - spec.base_regular_weight - spec.base_tournament_weight) + tournament_burn * (1 - spec.legacy_gain),
    )


def chain_shares(
    realtime: Mapping[str, float],
    split: tuple[float, float, float],
    regular_by_hotkey: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Emission shares after the chain normalises the weight vector.

    Real-time weights are multiplied by the split's `regular` (or a hotkey's own multiplier from
    `regular_by_hotkey`, as the separated era computes per miner); the tournament multiplier is taken as one
    entry `TOURNAMENT_KEY` (its winners' distribution sums to 1) and the burn hotkey's weight as `BURN_KEY`.
    """
    tournament, regular, burn = split
    overrides = regular_by_hotkey or {}
    raw = {hotkey: weight * overrides.get(hotkey, regular) for hotkey, weight in realtime.items()}
    raw[TOURNAMENT_KEY] = tournament
    raw[BURN_KEY] = burn
    total = sum(raw.values())
    return {key: value / total if total > 0 else 0.0 for key, value in raw.items()}
