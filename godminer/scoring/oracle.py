"""The clairvoyant "oracle": an upper bound in spirit on what an offer policy could earn with the same box.

When an offer reaches us, the simulator lets the oracle ask what score a given placement of the job would get
(`Foresight.score`): the pool we would join is already decided by the competitors' pre-drawn habits, and every result
in it is pre-drawn too (theirs, and ours: noise, failure draw, and the training the placement gives). The oracle
places the job with the real scheduler's `place`, next to every job it already holds (they stay pinned to their
placements), and takes it when that placement would win. It never takes a would-be −1, so it never fails. It
also takes would-be zeros while a GPU stays idle: a 0 is invisible to weights, but today's scored tasks set the
validator's offer priority (a miner with only wins today is asked last), so declining every non-win costs offers;
the idle GPU keeps room for the wins. A zero scored before our first win would end our offers (§4.5: a scored
miner needs a win on a task of the last 7 days), so until a win of ours is scored first, zeros are declined. The
operator's limits (kinds with a trainer, families, sizes) hold for the oracle too: same box, same miner.

Not a proven optimum: packing is first come, first placed (no look-ahead over the stream), the one-idle-GPU rule
for zeros is a heuristic (it beat none and two on a few seeds), and our results change later offer rounds
(priorities, competitors' eligibility) in ways the oracle does not plan for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from godminer.engine.estimates import JobDemand
from godminer.engine.policy import Decision, Offer, Snapshot, decline, hard_limits, offer_demand
from godminer.engine.scheduler import Placement, idle_gpus_at, place
from godminer.scoring.rules import FIRST_PLACE_SCORE

Scorer = Callable[[str, JobDemand, Placement], float]  # our score if the job (kind, demand) runs on a placement
IDLE_GPUS_FOR_ZEROS = 1  # a would-be zero is taken only if this many GPUs stay idle when it starts


@dataclass(frozen=True)
class Foresight:
    """What the simulator tells the oracle about the offered task."""

    score: Scorer
    evaluated_at: float  # when the validator scores this task
    first_win_at: float | None  # when the first win we took is scored (None: no win taken yet)


def decide(snap: Snapshot, offer: Offer, foresight: Foresight) -> Decision:
    """Take a would-be win wherever the box can place it, a would-be zero only with a GPU to spare.

    The operator's limits (`hard_limits`: kinds switched on, kinds we have a trainer for, families, sizes) hold.

    `snap.running` holds every reservation we committed to, including pinned jobs that have not started.
    """
    refused = hard_limits(snap, offer)
    if refused is not None:
        return refused
    d = offer_demand(snap, offer)
    held = [r for r in snap.running if r.end > snap.now and r.start < d.deadline]
    p = place(d, snap.gpus, held, snap.now, snap.estimates.safety_margin_s, snap.gpu_settings.max_jobs_per_gpu)
    if not p.feasible:
        return decline("oracle", p.reason, demand=d, placement=p)
    score = foresight.score(offer.kind, d, p)
    if score < 0:
        return decline("oracle", f"would score {score:+g}", demand=d, placement=p)
    if score < FIRST_PLACE_SCORE:
        if foresight.first_win_at is None or foresight.first_win_at > foresight.evaluated_at:
            return decline("oracle", "would score 0 before our first win is scored", demand=d, placement=p)
        idle = idle_gpus_at(snap.gpus, [*held, p.reservation(d.mem_per_gpu_gb)], p.start)
        if idle < IDLE_GPUS_FOR_ZEROS:
            return decline("oracle", "would score 0; keeping a GPU free for wins", demand=d, placement=p)
    return Decision(True, f"would score {score:+g}", "accepted", placement=p, demand=d, value=score)
