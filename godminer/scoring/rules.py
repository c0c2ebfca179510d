"""Stages 1 and 2 of the validator's scoring: one task's outcome per miner, and the task's work score.

Pure functions over plain data, following `reference/scoring.md` §1, §2 and the exactness notes of §6(a),
with the validator's own float arithmetic (`1 - 0.7` as the synthetic weight, Python `max`, stable sorts).

A task's outcome is +3 for the single winner, 0 for other valid results (and for text results outside the
top 4 by test metric), −1 for failures, duplicates, non-finetunes, NaN test losses and the image bottom
quartile. When no valid result exists, or when the validator would raise on a NaN synthetic loss, every
miner gets 0 (the task does not count).

Reading of `Submission` (ties and orders follow the order in which submissions are given):

* `failure` set: the miner failed (no repo, wrong name, bad hash, evaluation error, ...). For a text task a
  failed finetune that still reports a test loss is read as "the synthetic evaluation raised": it keeps its
  top-4 slot by that test loss (exactness note 7). Every failure scores −1 when a valid result exists.
* text non-finetunes are recorded as test = synth = 0.0 (note 3); image non-finetunes are failures (note 4).
* image tasks read `test_loss` as the image loss (the validator sets synth = test); `None` losses are NaN.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

INSTRUCT_TASK = "InstructTextTask"
CHAT_TASK = "ChatTask"
DPO_TASK = "DpoTask"
GRPO_TASK = "GrpoTask"
IMAGE_TASK = "ImageTask"
TEXT_TASK_TYPES = (INSTRUCT_TASK, CHAT_TASK, DPO_TASK, GRPO_TASK)
TASK_TYPES = (*TEXT_TASK_TYPES, IMAGE_TASK)
MAX_OF_TEST_SYNTH_TYPES = (INSTRUCT_TASK, CHAT_TASK, DPO_TASK)

FIRST_PLACE_SCORE = 3.0
SCORE_PENALTY = -1.0
MIN_IDEAL_NUM_MINERS_IN_POOL = 8
BOTTOM_FRACTION = 0.25
SYNTH_EVAL_TOP_K = 4
OUTSIDE_TOP_K_SYNTH_LOSS = 1000.0
REAL_SYNTH_LOSS_BELOW = 999.0
TEST_SCORE_WEIGHTING = 0.7
SYNTH_SCORE_WEIGHTING = 1 - TEST_SCORE_WEIGHTING  # 0.30000000000000004, as the validator computes it
MAX_SYNTH_TEST_RATIO = 1.5
SYNTH_VALID_FRACTION = 0.4

MAX_SIZE_B = 40
MAX_REGEX_SIZE_B = 8
_SIZE_IN_MODEL_ID = re.compile(r"(\d+)(?=[bB])")


@dataclass(frozen=True)
class Submission:
    """What one miner handed in for a task, as measured by the validator's evaluation."""

    hotkey: str
    test_loss: float | None
    synth_loss: float | None
    is_finetune: bool = True
    failure: str | None = None


@dataclass(frozen=True)
class _Result:
    """One miner's evaluation record as the validator holds it before ranking (failures: NaN, not finetuned)."""

    hotkey: str
    test: float
    synth: float
    is_finetune: bool


def _loss(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _failed(hotkey: str) -> _Result:
    return _Result(hotkey, math.nan, math.nan, is_finetune=False)


def _image_results(submissions: Sequence[Submission]) -> list[_Result]:
    return [
        _failed(s.hotkey)
        if s.failure is not None or not s.is_finetune
        else _Result(s.hotkey, _loss(s.test_loss), _loss(s.test_loss), is_finetune=True)
        for s in submissions
    ]


def _outside_top_k(task_type: str, submissions: Sequence[Submission]) -> set[int]:
    """Indices of finetunes past the top 4 by test metric (GRPO descending, NaN last, ties in given order)."""
    grpo = task_type == GRPO_TASK
    tested = [
        (i, _loss(s.test_loss))
        for i, s in enumerate(submissions)
        if s.is_finetune and (s.failure is None or not math.isnan(_loss(s.test_loss)))
    ]
    tested.sort(key=lambda it: (-math.inf if grpo else math.inf) if math.isnan(it[1]) else it[1], reverse=grpo)
    return {i for i, _ in tested[SYNTH_EVAL_TOP_K:]}


def _text_results(task_type: str, submissions: Sequence[Submission]) -> list[_Result]:
    """Records after the test evaluation of every repo and the synthetic evaluation of the top 4."""
    outside = _outside_top_k(task_type, submissions)
    results: list[_Result] = []
    for i, s in enumerate(submissions):
        if s.failure is not None:
            results.append(_failed(s.hotkey))
        elif not s.is_finetune:
            results.append(_Result(s.hotkey, 0.0, 0.0, is_finetune=False))
        else:
            synth = OUTSIDE_TOP_K_SYNTH_LOSS if i in outside else _loss(s.synth_loss)
            results.append(_Result(s.hotkey, _loss(s.test_loss), synth, is_finetune=True))
    return results


def _mark_duplicates(results: Sequence[_Result]) -> list[_Result]:
    """Identical (test, synth) pairs: the first in order keeps its result, the others become failures."""
    seen: set[tuple[float, float]] = set()
    marked: list[_Result] = []
    for r in results:
        losses = (r.test, r.synth)
        if math.isnan(r.test) or math.isnan(r.synth):
            marked.append(r)
        elif losses in seen:
            marked.append(_failed(r.hotkey))
        else:
            seen.add(losses)
            marked.append(r)
    return marked


def _is_valid(r: _Result) -> bool:
    return r.is_finetune and not math.isnan(r.test) and r.synth != OUTSIDE_TOP_K_SYNTH_LOSS


def _synth_is_usable(valid: Sequence[_Result]) -> bool:
    """The validator's `_is_synth_loss_valid_for_group` (GRPO and image)."""
    real = [r for r in valid if not math.isnan(r.synth) and r.synth < REAL_SYNTH_LOSS_BELOW]
    if not real:
        return False
    sane = sum(1 for r in real if r.test > 0 and r.synth / r.test <= MAX_SYNTH_TEST_RATIO)
    return sane / len(real) >= SYNTH_VALID_FRACTION


def _ranked(task_type: str, valid: Sequence[_Result]) -> list[_Result] | None:
    """Valid results best first, or None where the validator raises on a NaN synthetic loss (note 5)."""
    use_max = task_type in MAX_OF_TEST_SYNTH_TYPES
    weighted = use_max or _synth_is_usable(valid)
    if weighted and any(math.isnan(r.synth) for r in valid):
        return None
    if use_max:
        metrics = [max(r.test, r.synth) for r in valid]
    elif weighted:
        metrics = [TEST_SCORE_WEIGHTING * r.test + SYNTH_SCORE_WEIGHTING * r.synth for r in valid]
    else:
        metrics = [r.test for r in valid]
    if task_type == GRPO_TASK:
        order = sorted(range(len(valid)), key=lambda i: -math.inf if math.isnan(metrics[i]) else -metrics[i])
    else:
        order = sorted(range(len(valid)), key=lambda i: math.inf if math.isnan(metrics[i]) else metrics[i])
    return [valid[i] for i in order]


def _outcomes(results: Sequence[_Result], ranked: Sequence[_Result]) -> dict[str, float]:
    scores = {r.hotkey: 0.0 for r in results}
    scores[ranked[0].hotkey] = FIRST_PLACE_SCORE
    n = len(ranked)
    if n > MIN_IDEAL_NUM_MINERS_IN_POOL:
        for r in ranked[n - max(1, int(n * BOTTOM_FRACTION)) :]:
            scores[r.hotkey] = SCORE_PENALTY
    for r in results:
        if (not r.is_finetune or math.isnan(r.test)) and scores[r.hotkey] == 0.0:
            scores[r.hotkey] = SCORE_PENALTY
    return scores


def score_task(task_type: str, submissions: Sequence[Submission]) -> dict[str, float]:
    """Stage 1: each miner's quality score for one task (+3, 0 or −1), keyed by hotkey in the given order."""
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task type {task_type!r}")
    if len({s.hotkey for s in submissions}) != len(submissions):
        raise ValueError("a hotkey appears more than once")
    evaluated = _image_results(submissions) if task_type == IMAGE_TASK else _text_results(task_type, submissions)
    results = _mark_duplicates(evaluated)
    valid = [r for r in results if _is_valid(r)]
    ranked = _ranked(task_type, valid) if valid else None
    if ranked is None:
        return {r.hotkey: 0.0 for r in results}
    return _outcomes(results, ranked)


def work_score(hours: float, model_params_count: int | None = 0, model_id: str = "") -> float:
    """Stage 2: `max(1, 2·√(hours · size))`, size the floored billions in [1, 40] or the id's number (cap 8).

    Where the validator would assert (hours ≤ 0, no stored count) this returns 1.0 / uses the id (note 9).
    """
    if model_params_count and model_params_count > 0:
        size_b = min(MAX_SIZE_B, max(1, model_params_count // 1_000_000_000))
    else:
        match = _SIZE_IN_MODEL_ID.search(model_id)
        size_b = min(MAX_REGEX_SIZE_B, int(match.group(1)) if match else 1)
    product = hours * size_b
    if product <= 0:
        return 1.0
    return max(1.0, 2 * math.sqrt(float(product)))
