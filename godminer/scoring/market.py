"""The miners' side of the simulation: the calibratable outcome model, the competing miners, and their results.

Outcome model. Every submission has a latent quality `perf` (in units of new miners' skill spread):
* a competitor: its skill + `noise_sd`·N(0, 1);
* us: our skill for the task's kind + `train_gain`·ln(trained / ideal) + `noise_sd`·N(0, 1), where `ideal` is the
  training the job gets when it starts as soon as its model is downloaded (its full planned training, or all the
  budget allows when that is less: a deadline-cut job on an idle box is every miner's normal case and part of
  skill) and `trained` what the scheduler's placement gave it.
Losses follow from it: base · exp(∓`loss_scale`·(perf + `split_sd`·ε)) with separate ε for the test and the
synthetic split (rewards for GRPO, higher better; one loss for images), and then go through the validator's own
`score_task`. A competitor fails with 1 − its valid-submission rate; we fail with `our_failure`, and always when
the scheduler could not keep our job feasible.

Competitors: a fixed number of registration slots. A slot's miner is either "reference-like" (the reference
miner's rule, run through the real `reference_policy`: one job at a time, llama text under 13 h, images under
3 h) or broad (some kinds switched off, 1–6 jobs at once, an acceptance rate). A miner that loses eligibility
is replaced by a newly registered one after an exponential delay.

`SimParams` holds every number of the model; it round-trips through JSON and `calibration.calibrate` fits our
part of it to the miner's own recorded outcomes.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from godminer.engine.estimates import JobDemand
from godminer.engine.policy import Offer, Snapshot, reference_policy
from godminer.engine.scheduler import Gpu, stop_time
from godminer.scoring.rules import DPO_TASK, GRPO_TASK, IMAGE_TASK, Submission
from godminer.settings import OFFER_KINDS, EstimateSettings, GpuSettings, PolicySettings

BASE_METRIC = {DPO_TASK: 0.6, IMAGE_TASK: 0.06, GRPO_TASK: 1.0}  # others (instruct, chat): 1.0
FAILURE_REASON = "Invalid/No repo submitted"
DEFAULT_SKILL = 1.5  # our guessed skill per kind, before calibration


@dataclass(frozen=True)
class SimParams:
    """Every number of the outcome and competition model (guesses until calibrated)."""

    our_skill: Mapping[str, float] = field(default_factory=dict)  # per kind; kinds left out: DEFAULT_SKILL
    our_failure: float = 0.03
    train_gain: float = 0.5  # quality per e-fold of training time
    fallback_quality: float = -3.0  # the untrained fallback adapter: about the base model, far below any finetune
    noise_sd: float = 0.6  # per-submission quality noise
    split_sd: float = 0.25  # test vs synthetic loss noise
    loss_scale: float = 0.05  # relative loss change per unit of quality
    competitors: int = 150  # registration slots of other miners (about half are eligible at a time: ≈ 75-80)
    competitor_skill: tuple[float, float] = (0.0, 1.0)  # mean, sd of a new miner's skill
    valid_rate: tuple[float, float] = (0.60, 0.85)  # uniform range of a miner's valid-submission rate
    reference_like_share: float = 0.3
    slots: tuple[int, int] = (1, 6)  # jobs a broad miner holds at once
    accept_rate: tuple[float, float] = (0.5, 1.0)  # share of acceptable offers a broad miner takes
    kind_on_probability: float = 0.8  # chance a broad miner does a given kind at all
    reregister_hours: float = 12.0  # mean delay before a cut-off miner's slot holds a new miner

    def __post_init__(self) -> None:
        # Kinds left out keep the default skill; frozen, hence object.__setattr__.
        object.__setattr__(self, "our_skill", {**dict.fromkeys(OFFER_KINDS, DEFAULT_SKILL), **self.our_skill})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimParams:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown simulation parameters {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    @classmethod
    def load(cls, path: Path) -> SimParams:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


@dataclass(frozen=True)
class Competitor:
    """One competing miner (a hotkey) and its fixed habits."""

    uid: int
    hotkey: str
    skill: float
    valid_rate: float
    reference_like: bool
    slots: int
    accept_rate: float
    kinds: frozenset[str]


@dataclass(frozen=True)
class Draw:
    """A competitor's random numbers for one task (same task and miner ⇒ same numbers, whatever we do)."""

    order_u: float
    accept_u: float
    fail_u: float
    noise: float
    split: tuple[float, float]


def new_competitor(rng: random.Random, params: SimParams, uid: int) -> Competitor:
    kinds = frozenset(k for k in OFFER_KINDS if rng.random() < params.kind_on_probability)
    return Competitor(
        uid=uid, hotkey=f"miner{uid:05d}", skill=rng.gauss(*params.competitor_skill),
        valid_rate=rng.uniform(*params.valid_rate), reference_like=rng.random() < params.reference_like_share,
        slots=rng.randint(*params.slots), accept_rate=rng.uniform(*params.accept_rate),
        kinds=kinds or frozenset([rng.choice(OFFER_KINDS)]),
    )


def draw_for(task_seed: int, uid: int) -> Draw:
    rng = random.Random(task_seed * 1_000_003 + uid)
    return Draw(
        rng.random(), rng.random(), rng.random(), rng.gauss(0.0, 1.0), (rng.gauss(0.0, 1.0), rng.gauss(0.0, 1.0))
    )


_REFERENCE_VIEW = (PolicySettings(name="reference"), EstimateSettings(), GpuSettings())


def competitor_accepts(c: Competitor, offer: Offer, now: float, terminations: Sequence[float], accept_u: float) -> bool:
    """Whether a competitor takes an offer, holding tasks that end at `terminations`."""
    active = [t for t in terminations if t > now]
    if c.reference_like:
        policy, est, gpus = _REFERENCE_VIEW
        snap = Snapshot(
            now=now, gpus=(Gpu(0, gpus.memory_gb),), running=(), waiting=(), free_disk_gb=math.inf, policy=policy,
            estimates=est, gpu_settings=gpus, busy_until=max(active) if active else None,
        )
        return reference_policy(snap, offer).accepted
    return offer.kind in c.kinds and len(active) < c.slots and accept_u < c.accept_rate


def ideal_train_s(d: JobDemand, safety_s: float) -> float:
    """Training a job gets when it starts on the GPUs as soon as its model is downloaded."""
    return stop_time(d, d.ready_at, safety_s) - d.ready_at - d.load_s


def train_effect(trained_s: float, ideal_s: float, gain: float) -> float:
    """Quality lost by training less than the ideal: gain · ln(trained / ideal), 0 at or above the ideal."""
    if ideal_s <= 0 or trained_s >= ideal_s:
        return 0.0
    return gain * math.log(max(trained_s, 1e-9) / ideal_s)


def submission(hotkey: str, task_type: str, perf: float, split: tuple[float, float], params: SimParams) -> Submission:
    """The losses the validator measures for a submission of latent quality `perf`."""
    base = BASE_METRIC.get(task_type, 1.0)
    sign = 1.0 if task_type == GRPO_TASK else -1.0
    test = base * math.exp(sign * params.loss_scale * (perf + params.split_sd * split[0]))
    if task_type == IMAGE_TASK:
        return Submission(hotkey, test, None)
    synth = base * math.exp(sign * params.loss_scale * (perf + params.split_sd * split[1]))
    return Submission(hotkey, test, synth)


def failed(hotkey: str) -> Submission:
    return Submission(hotkey, None, None, failure=FAILURE_REASON)


def delivers(c: Competitor, draw: Draw) -> bool:
    """Whether the competitor hands in a valid finetune for this task."""
    return draw.fail_u < c.valid_rate


def competitor_submission(c: Competitor, task_type: str, draw: Draw, params: SimParams) -> Submission:
    if not delivers(c, draw):
        return failed(c.hotkey)
    return submission(c.hotkey, task_type, c.skill + params.noise_sd * draw.noise, draw.split, params)
