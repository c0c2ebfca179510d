"""The validator's side of the simulation: its synthetic task stream and its offers (`reference/scoring.md` §4, §6(b)).

* `task_stream`: every synthetic task of a run, drawn up front from the seed, so that every policy faces the same
  tasks (and the oracle may read their pre-drawn outcomes). One task is created per 5-minute check while fewer
  than the era's cap are between creation and evaluation; type mix, chat share, pools and hour bins: `ERAS`.
* `ValidatorBook`: what the validator knows of each hotkey when it offers: scored at all, its last win, today's
  scores. Hence eligibility (§4.5: scored and no win on a task created in the last 7 days ⇒ no offers) and the
  priority of the weighted shuffle.
* `offer_order`: the validator's weighted shuffle, in the order the offers are made.
* `task_offer`: a task as the offer payload the miner receives, read into the policy's `Offer`.

Guesses (§6(b) "Guess" rows), all here: the model lists, the SDXL/Flux split, the dataset rows (equal thirds of
20–50 k / 50–100 k / 100–500 k rows, uniform inside each, which gives P(3..10 h) = .014 .069 .136 .136 .206 .206 .150
.083 in the 2025-07-21 era), 10 minutes from creation to the offers, and 5–60 minutes from `termination_at` to the
evaluation. Offers and the start of training are simultaneous; a task counts against the cap from creation to
evaluation. The stream assumes every task finds a miner (with tens of eligible miners one always accepts).
"""

from __future__ import annotations

import heapq
import math
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from godminer.engine.policy import Offer
from godminer.protocol.payloads import MinerTaskOffer
from godminer.scoring.rules import CHAT_TASK, IMAGE_TASK, INSTRUCT_TASK, work_score
from godminer.scoring.weights import ERAS, SCORING_WINDOW_DAYS, Era

DAY_S = 86400.0
START = 1_753_056_000.0  # 2025-07-21 00:00 UTC: simulated days start at UTC midnight
CREATION_CHECK_S = 300.0
OFFER_DELAY_S = 600.0  # creation → offers (data preparation)
EVAL_WAIT_S = (300.0, 3600.0)  # termination_at → scores stored
BIG_MODEL_PROBABILITY = 0.05
FLUX_SHARE = 0.5
ROW_THIRDS = ((20_000, 50_000), (50_000, 100_000), (100_000, 500_000))
TEXT_DS_SIZE = 100_000  # the validator's constant for text offers
IMAGE_PAIRS = (10, 50)
FIRST_DAILY_PRIORITY = 2.0  # DEFAULT_SCORE_FOR_FIRST_DAILY_COMP
MIN_PRIORITY = 0.01

STANDARD_TEXT_MODELS: tuple[tuple[str, int], ...] = (
    ("Qwen/Qwen2.5-0.5B-Instruct", 494_032_768),
    ("Qwen/Qwen2.5-1.5B-Instruct", 1_543_714_304),
    ("unsloth/Llama-3.2-3B-Instruct", 3_212_749_824),
    ("Qwen/Qwen2.5-7B-Instruct", 7_615_616_512),
    ("unsloth/Meta-Llama-3.1-8B-Instruct", 8_030_261_248),
)
BIG_TEXT_MODELS: tuple[tuple[str, int], ...] = (
    ("Qwen/Qwen2.5-14B-Instruct", 14_770_033_664),
    ("Qwen/Qwen2.5-32B-Instruct", 32_763_876_352),
    ("unsloth/Llama-3.3-70B-Instruct", 70_553_706_496),
)
SDXL_MODEL = ("stabilityai/stable-diffusion-xl-base-1.0", 3_470_000_000)
FLUX_MODEL = ("black-forest-labs/FLUX.1-dev", 11_900_000_000)


@dataclass(frozen=True)
class Task:
    """One synthetic task, with every random number that decides our part in it drawn up front."""

    task_id: str
    index: int
    seed: int  # seeds the task's own draws: offer order, competitors' acceptances and results
    task_type: str
    model: str
    params_count: int
    hours: int
    ds_size: int
    created_at: float
    offered_at: float  # offers and start of training
    termination_at: float
    evaluated_at: float
    pool_target: int
    our_slot: float  # where we stand in the validator's list of candidates, in [0, 1)
    our_order_u: float  # uniform: our key in the offer shuffle
    our_noise: float  # standard normal: our result's quality noise
    our_split: tuple[float, float]  # standard normal: test and synthetic loss noise
    our_fail_u: float  # uniform: we fail when it is below our failure probability

    @property
    def work(self) -> float:
        return work_score(self.hours, self.params_count, self.model)


def _hours(rng: random.Random, spec: Era, task_type: str) -> int:
    if task_type == IMAGE_TASK:
        return rng.randint(*spec.image_hours)
    rows = rng.uniform(*rng.choice(ROW_THIRDS))
    lo, hi = next((h_lo, h_hi) for r_lo, r_hi, h_lo, h_hi in spec.text_hours if r_lo <= rows < r_hi)
    return rng.randint(lo, hi)


def _model(rng: random.Random, task_type: str) -> tuple[str, int]:
    if task_type == IMAGE_TASK:
        return FLUX_MODEL if rng.random() < FLUX_SHARE else SDXL_MODEL
    return rng.choice(BIG_TEXT_MODELS if rng.random() < BIG_MODEL_PROBABILITY else STANDARD_TEXT_MODELS)


def _draw_task(rng: random.Random, spec: Era, index: int, created_at: float) -> Task:
    task_type = rng.choices(list(spec.task_mix), weights=list(spec.task_mix.values()))[0]
    if task_type == INSTRUCT_TASK and rng.random() < spec.chat_share_of_instruct:
        task_type = CHAT_TASK
    model, params_count = _model(rng, task_type)
    hours = _hours(rng, spec, task_type)
    image = task_type == IMAGE_TASK
    offered_at = created_at + OFFER_DELAY_S
    termination_at = offered_at + hours * 3600.0
    return Task(
        task_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)), index=index, seed=rng.getrandbits(48),
        task_type=task_type, model=model, params_count=params_count, hours=hours,
        ds_size=rng.randint(*IMAGE_PAIRS) if image else TEXT_DS_SIZE, created_at=created_at, offered_at=offered_at,
        termination_at=termination_at, evaluated_at=termination_at + rng.uniform(*EVAL_WAIT_S),
        pool_target=rng.randint(*(spec.image_pool if image else spec.text_pool)), our_slot=rng.random(),
        our_order_u=rng.random(),
        our_noise=rng.gauss(0.0, 1.0), our_split=(rng.gauss(0.0, 1.0), rng.gauss(0.0, 1.0)),
        our_fail_u=rng.random(),
    )


def task_stream(days: float, seed: int, era: str) -> tuple[Task, ...]:
    """The validator's synthetic scheduler over `days`: at most one task per check, below the concurrency cap."""
    spec = ERAS[era]
    rng = random.Random(seed)
    tasks: list[Task] = []
    counting: list[float] = []  # evaluation times of the tasks that count against the cap
    for check in range(math.ceil(days * DAY_S / CREATION_CHECK_S)):
        now = START + check * CREATION_CHECK_S
        while counting and counting[0] <= now:
            heapq.heappop(counting)
        if len(counting) < spec.max_concurrent_synthetic_jobs:
            task = _draw_task(rng, spec, len(tasks), now)
            tasks.append(task)
            heapq.heappush(counting, task.evaluated_at)
    return tuple(tasks)


def task_offer(task: Task) -> Offer:
    """The offer payload the validator sends for `task`, as the miner reads it."""
    payload = MinerTaskOffer(
        ds_size=task.ds_size, model=task.model, hours_to_complete=task.hours, task_id=task.task_id,
        task_type=task.task_type, model_params_count=task.params_count,
    )
    return Offer.from_payload(payload)


def day_of(t: float) -> int:
    return math.floor((t - START) / DAY_S)


@dataclass
class HotkeyRecord:
    """The validator's rows for one hotkey: scored at all, newest won task, scores per creation day."""

    scored: bool = False
    last_win_created_at: float = -math.inf
    day_scores: dict[int, tuple[float, int]] = field(default_factory=dict)  # creation day → (sum, count)


@dataclass
class ValidatorBook:
    """Per-hotkey facts the validator's offer step reads (§4.5)."""

    records: dict[str, HotkeyRecord] = field(default_factory=dict)

    def record(self, created_at: float, scores: Mapping[str, float]) -> None:
        """Store one evaluated task's quality scores."""
        day = day_of(created_at)
        for hotkey, score in scores.items():
            rec = self.records.setdefault(hotkey, HotkeyRecord())
            rec.scored = True
            if score > 0:
                rec.last_win_created_at = max(rec.last_win_created_at, created_at)
            total, count = rec.day_scores.get(day, (0.0, 0))
            rec.day_scores[day] = (total + score, count + 1)

    def eligible(self, hotkey: str, now: float) -> bool:
        """Never scored, or a win on a task created in the last 7 days."""
        rec = self.records.get(hotkey)
        return rec is None or not rec.scored or rec.last_win_created_at >= now - SCORING_WINDOW_DAYS * DAY_S

    def priority(self, hotkey: str, now: float) -> float:
        """2.0 without an evaluated task created today, else the mean of today's scores (at least 0.01)."""
        rec = self.records.get(hotkey)
        today = rec.day_scores.get(day_of(now)) if rec is not None else None
        if today is None:
            return FIRST_DAILY_PRIORITY
        return max(today[0] / today[1], MIN_PRIORITY)


def offer_order(candidates: Sequence[tuple[str, float, float]]) -> list[str]:
    """Hotkeys in the order offers are made: the validator's `_weighted_random_shuffle`, popped from the end.

    Candidates (hotkey, priority, u) are sorted by priority (stable), weighted 3 − 2i/n by position, and sampled
    without replacement: Efraimidis–Spirakis keys u^(1/w), largest first, have the same distribution, and a
    uniform u per hotkey keeps the order stable when one priority changes. The validator pops from the end of the
    sampled list, so the hotkey sampled last is asked first.
    """
    ranked = sorted(candidates, key=lambda c: -c[1])
    n = len(ranked)
    keyed = [(u ** (1.0 / (3.0 - i * 2.0 / n)), hotkey) for i, (hotkey, _, u) in enumerate(ranked)]
    return [hotkey for _, hotkey in sorted(keyed)]
