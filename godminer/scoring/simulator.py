"""Days of the subnet with our miner run by the real offer policy and scheduler: the event loop and `simulate()`.

The validator's stream (`stream`) and the competing miners (`market`) surround our miner, which is the production
code: for each offer the simulator builds the `Offer` and `Snapshot` the node builds (`engine/miner.py`) and calls
the policy; accepted jobs wait until `scheduler.plan` gives them a placement starting now, then hold their GPUs
until the placement's release, as the lifecycle runs them. A waiting job that the plan can no longer make
feasible is a failure (−1): the honest price of over-accepting.

The market (validator and competitors) runs `warmup_days` before our new hotkey registers, so that we meet a
settled field rather than a subnet where nobody has been scored yet. Time jumps from event to event (offers,
evaluations, job starts and releases, a tick every two hours), so a fortnight runs in seconds. Each evaluation
scores the task with the validator's `score_task`; once we are in, every tick the 7-day window goes through
`realtime_weights`, `emission_split` and `chain_shares` and our share of the subnet's whole emission is recorded
(`simresult` reads the run off the final state).

Policy "reference" runs its jobs one at a time (the reference miner has a single training worker); "oracle" is the
clairvoyant upper bound of `oracle`, whose jobs are pinned to the placements it chose.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Sequence
from dataclasses import replace

from godminer.engine import recovery
from godminer.engine.estimates import JobDemand
from godminer.engine.policy import Offer, OwnResult, PolicyFn, Snapshot, get_policy, offer_demand
from godminer.engine.scheduler import EPS, Placement, Reservation, plan
from godminer.scoring import oracle
from godminer.scoring.market import (
    Competitor,
    Draw,
    SimParams,
    competitor_accepts,
    competitor_submission,
    delivers,
    draw_for,
    failed,
    ideal_train_s,
    new_competitor,
    submission,
    train_effect,
)
from godminer.scoring.rules import FIRST_PLACE_SCORE, Submission, score_task
from godminer.scoring.simresult import DayStats, SimResult, summarise
from godminer.scoring.simstate import Box, Pool, Rivals, RunConfig, SimJob, SimState
from godminer.scoring.stream import DAY_S, START, Task, offer_order, task_offer, task_stream
from godminer.scoring.weights import SCORING_WINDOW_DAYS, ScoredTask, chain_shares, emission_split, realtime_weights
from godminer.settings import EstimateSettings, PolicySettings

__all__ = ["Box", "DayStats", "SimParams", "SimResult", "simulate"]

US = "godminer"  # our hotkey
HOUR_S = 3600.0
TICK_S = 2 * HOUR_S  # scoring the whole window costs ~0.1 s (weights.period_scores), so not every hour
WARMUP_DAYS = 14.0  # the rivals' field settles in about 10-14 days (eligibility cuts select the stronger miners)
HISTORY_DAYS = 8.0  # what the node keeps in `Snapshot.history` (Miner.refresh_history)
EVALUATE, TICK, WAKE, OFFER = range(4)  # order of events at the same instant
NAMED_POLICIES = ("seed", "godminer", "reference")


# ----- our miner ----------------------------------------------------------------------------------------------
def snapshot(state: SimState, now: float) -> Snapshot:
    """What the node's `Miner.snapshot()` would hold at `now`."""
    running = tuple(j.reservation() for j in state.active.values() if j.state == "training")
    pinned = tuple(
        state.pinned[t].reservation(j.demand.mem_per_gpu_gb) for t, j in state.active.items()
        if j.state == "waiting" and t in state.pinned
    )
    waiting = tuple(j.demand for t, j in state.active.items() if j.state == "waiting" and t not in state.pinned)
    ends = [j.task.termination_at for j in state.active.values()]
    since = now - HISTORY_DAYS * DAY_S
    history = tuple(r for r in state.history if r.created_at >= since)
    return replace(
        state.cfg.view, now=now, running=running + pinned, waiting=waiting, busy_until=max(ends) if ends else None,
        history=history,
    )


def _wake(state: SimState, events: list[tuple[float, int, int]], at: float) -> None:
    if at not in state.wakes:
        state.wakes.add(at)
        heapq.heappush(events, (at, WAKE, 0))


def _start(state: SimState, job: SimJob, p: Placement, events: list[tuple[float, int, int]]) -> None:
    job.state, job.placement = "training", p
    state.trained.append(job.reservation())
    _wake(state, events, p.release_at)


def _fall_back(state: SimState, job: SimJob) -> None:
    """No GPU in time even for the relaxed minimum: the lifecycle publishes the untrained fallback adapter."""
    job.state = "fallback"
    state.counts["fallbacks"] = state.counts.get("fallbacks", 0) + 1
    del state.active[job.task.task_id]


def dispatch(state: SimState, now: float, events: list[tuple[float, int, int]]) -> None:
    """The lifecycle's step: release finished jobs, start those the plan places now, fail the infeasible."""
    view = state.cfg.view
    for job in list(state.active.values()):
        if job.state == "training" and job.placement is not None and job.placement.release_at <= now + EPS:
            job.state = "done"
            del state.active[job.task.task_id]
    waiting = [j for j in state.active.values() if j.state == "waiting"]
    for job in [j for j in waiting if j.task.task_id in state.pinned]:
        pinned = state.pinned[job.task.task_id]
        if pinned.start <= now + EPS:
            _start(state, job, pinned, events)
        else:
            _wake(state, events, pinned.start)
    free = {j.task.task_id: j for j in waiting if j.task.task_id not in state.pinned}
    if not free:
        return
    running = [j.reservation() for j in state.active.values() if j.state == "training"]
    if state.cfg.serial:  # the single worker: a running job blocks the whole box
        every = tuple(g.index for g in view.gpus)
        running = [Reservation(r.task_id, r.box, every, math.inf, r.start, r.end) for r in running]
    safety = view.estimates.safety_margin_s
    demands = [recovery.promised(j.demand, j.task.hours) for j in free.values()]  # as the lifecycle plans them
    placements = plan(view.gpus, running, demands, now, safety, view.gpu_settings.max_jobs_per_gpu)
    for task_id, p in placements.items():
        job = free[task_id]
        busy = state.cfg.serial and any(j.state == "training" for j in state.active.values())
        if not p.feasible:
            _fall_back(state, job)
        elif p.start <= now + EPS and not busy:
            _start(state, job, p, events)
        elif p.start > now + EPS:
            _wake(state, events, p.start)


def _decide(
    state: SimState, policy: PolicyFn | None, task: Task, now: float, score: oracle.Scorer
) -> bool:
    """Our node's answer; `policy` None is the oracle, told our `score` for each placement of the job."""
    snap = snapshot(state, now)
    offer = task_offer(task)
    if policy is None:
        decision = oracle.decide(snap, offer, oracle.Foresight(score, task.evaluated_at, state.first_win_at))
    else:
        decision = policy(snap, offer)
    state.count("accepted" if decision.accepted else "declined", offer.kind, now)
    if decision.accepted:
        job = SimJob(task, offer.kind, offer_demand(snap, offer))
        state.active[task.task_id] = state.jobs[task.task_id] = job
        if policy is None and decision.placement is not None:
            state.pinned[task.task_id] = decision.placement
            if decision.value == FIRST_PLACE_SCORE:
                state.first_win_at = min(state.first_win_at or math.inf, task.evaluated_at)
    return decision.accepted


def _our_submission(
    state: SimState, task: Task, kind: str, demand: JobDemand, placement: Placement | None
) -> Submission:
    """Ours as the validator measures it, for a job that trained on `placement` (None: it never ran and the
    fallback adapter, the base model barely changed, was published)."""
    params = state.cfg.params
    if task.our_fail_u < params.our_failure:
        return failed(US)
    if placement is None:
        return submission(US, task.task_type, params.fallback_quality + params.noise_sd * task.our_noise,
                          task.our_split, params)
    trained = placement.train_until - placement.start - demand.load_s
    ideal = ideal_train_s(demand, state.cfg.view.estimates.safety_margin_s)
    perf = params.our_skill.get(kind, 0.0) + train_effect(trained, ideal, params.train_gain)
    return submission(US, task.task_type, perf + params.noise_sd * task.our_noise, task.our_split, params)


# ----- the validator ------------------------------------------------------------------------------------------
def _acceptors(
    state: SimState, offer: Offer, hotkeys: list[str], draws: dict[str, tuple[Competitor, Draw]], limit: int, now: float
) -> list[str]:
    """The first `limit` competitors among `hotkeys` (in offer order) that take the offer."""
    taken: list[str] = []
    for hotkey in hotkeys:
        if len(taken) >= limit:
            break
        c, draw = draws[hotkey]
        if competitor_accepts(c, offer, now, state.rivals.holding.get(hotkey, ()), draw.accept_u):
            taken.append(hotkey)
    return taken


def offer_task(state: SimState, policy: PolicyFn | None, task: Task, now: float) -> Pool | None:
    """The validator's offer round: sequential offers until the pool target is reached (None: nobody took it).

    A competitor's answer depends only on its own habits and tasks, so the round is decided in two halves: the
    acceptors asked before us, then those after us, of whom one fewer joins if we accept.
    """
    rivals, book = state.rivals, state.book
    draws = {c.hotkey: (c, draw_for(task.seed, c.uid)) for c in rivals.slots if book.eligible(c.hotkey, now)}
    candidates = [(hotkey, book.priority(hotkey, now), d.order_u) for hotkey, (_, d) in draws.items()]
    if now >= state.cfg.joins_at and book.eligible(US, now):
        candidates.insert(int(task.our_slot * (len(candidates) + 1)), (US, book.priority(US, now), task.our_order_u))
    order = offer_order(candidates)
    ours_at = order.index(US) if US in order else len(order)
    offer = task_offer(task)
    before = _acceptors(state, offer, order[:ours_at], draws, task.pool_target, now)
    after: list[str] = []
    we_accepted = False
    if ours_at < len(order) and len(before) < task.pool_target:
        after = _acceptors(state, offer, order[ours_at + 1 :], draws, task.pool_target - len(before), now)
        with_us = [draws[h] for h in before + after[: task.pool_target - len(before) - 1]]

        def would_be(kind: str, demand: JobDemand, placement: Placement) -> float:
            ours = _our_submission(state, task, kind, demand, placement)
            return _score(state, task, with_us, len(before), ours)[US]

        we_accepted = _decide(state, policy, task, now, would_be)
    members = before + after[: task.pool_target - len(before) - we_accepted]
    for hotkey in members:
        rivals.holding[hotkey] = [t for t in rivals.holding.get(hotkey, ()) if t > now] + [task.termination_at]
    if not members and not we_accepted:
        return None
    return Pool(tuple(draws[h] for h in members), we_accepted, len(before))


def _score(
    state: SimState, task: Task, members: Sequence[tuple[Competitor, Draw]], our_index: int, ours: Submission | None
) -> dict[str, float]:
    """The validator's scores of one pool; our submission (if any) stands at `our_index`."""
    subs = [competitor_submission(c, task.task_type, d, state.cfg.params) for c, d in members]
    if ours is not None:
        subs.insert(our_index, ours)
    return score_task(task.task_type, subs)


def evaluate(state: SimState, task: Task, now: float) -> None:
    """The validator scores the task; we learn our result."""
    pool = state.pools.pop(task.task_id)
    job = state.jobs.get(task.task_id) if pool.we_accepted else None
    ours = None
    if job is not None:
        ours = _our_submission(state, task, job.kind, job.demand, job.placement if job.state == "done" else None)
    scores = _score(state, task, pool.competitors, pool.our_index, ours)
    if task.created_at >= state.cfg.joins_at:
        state.rival_skill.extend(c.skill for c, d in pool.competitors if delivers(c, d))
    state.book.record(task.created_at, scores)
    state.scored.append((task, scores))
    if job is not None and ours is not None:
        score = scores[US]
        state.history.append(OwnResult(job.kind, task.created_at, score, task.work))
        outcome = "wins" if score >= FIRST_PLACE_SCORE else "failures" if ours.failure else "valid"
        state.count(outcome, job.kind, now)


def tick(state: SimState, now: float) -> None:
    """Re-registrations of cut-off rivals; once we are in, our emission share and eligibility."""
    rivals, params = state.rivals, state.cfg.params
    for i, c in enumerate(rivals.slots):
        if i in rivals.rejoin_at:
            if rivals.rejoin_at[i] <= now:
                rivals.slots[i] = new_competitor(rivals.rng, params, rivals.next_uid)
                rivals.next_uid += 1
                del rivals.rejoin_at[i]
        elif not state.book.eligible(c.hotkey, now):
            rivals.rejoin_at[i] = now + rivals.rng.expovariate(1.0 / (params.reregister_hours * HOUR_S))
    if now <= state.cfg.joins_at:
        return
    horizon = now - SCORING_WINDOW_DAYS * DAY_S
    state.scored = [(t, s) for t, s in state.scored if t.created_at > horizon]
    window = [
        ScoredTask(t.task_type, False, (now - t.created_at) / DAY_S, t.hours, t.params_count, t.model, s)
        for t, s in state.scored
    ]
    state.shares.append((now, chain_shares(realtime_weights(window, state.cfg.era), state.cfg.split).get(US, 0.0)))
    state.eligible.append((now, state.book.eligible(US, now)))
    state.eligible_rivals.append(sum(1 for c in rivals.slots if state.book.eligible(c.hotkey, now)))


def run(tasks: tuple[Task, ...], days: float, seed: int, policy: PolicyFn | None, cfg: RunConfig) -> SimState:
    """Drive the events from the stream's start to `days` after we join; `policy` None is the oracle."""
    rng = random.Random(f"rivals-{seed}")
    first = [new_competitor(rng, cfg.params, uid) for uid in range(cfg.params.competitors)]
    ours = sum(1 for t in tasks if t.created_at >= cfg.joins_at)
    state = SimState(cfg, Rivals(first, {}, {}, len(first), rng), tasks=ours)
    end = cfg.joins_at + days * DAY_S
    events = [(t.offered_at, OFFER, t.index) for t in tasks if t.offered_at <= end]
    events += [(START + k * TICK_S, TICK, k) for k in range(1, math.floor((end - START) / TICK_S) + 1)]
    heapq.heapify(events)
    while events:
        now, kind, index = heapq.heappop(events)
        dispatch(state, now, events)
        if kind == OFFER:
            pool = offer_task(state, policy, tasks[index], now)
            if pool is not None and tasks[index].evaluated_at <= end:
                state.pools[tasks[index].task_id] = pool
                heapq.heappush(events, (tasks[index].evaluated_at, EVALUATE, index))
            dispatch(state, now, events)  # a job just accepted starts (or is woken) on time
        elif kind == EVALUATE:
            evaluate(state, tasks[index], now)
        elif kind == TICK:
            tick(state, now)
    return state


def simulate(
    days: float = 14.0,
    seed: int = 0,
    policy: str | PolicyFn = "godminer",
    box: Box | None = None,
    params: SimParams | None = None,
    era: str = "2025-07-21",
    tournament_difference: float | None = 0.0,
    policy_settings: PolicySettings | None = None,
    estimate_settings: EstimateSettings | None = None,
    serial: bool | None = None,
    warmup_days: float = WARMUP_DAYS,
    trainable: frozenset[str] | None = None,
) -> SimResult:
    """Simulate `days` of the subnet with our miner deciding by `policy` (a name, "oracle", or a policy function).

    The market runs `warmup_days` before our new hotkey registers, so that we meet a settled field; the result's
    days count from then. `policy_settings` default to `PolicySettings(name=policy)`; `serial` (one job at a time)
    defaults to True for "reference" only; `trainable` (kinds we have a trainer for) defaults to the `Snapshot`'s.
    Same arguments ⇒ same result.
    """
    box = box or Box()
    name = policy if isinstance(policy, str) else getattr(policy, "__name__", "custom")
    settings = policy_settings or (PolicySettings(name=name) if name in NAMED_POLICIES else PolicySettings())
    view = Snapshot(
        now=START, gpus=box.gpu_list(), running=(), waiting=(), free_disk_gb=box.free_disk_gb, policy=settings,
        estimates=estimate_settings or EstimateSettings(), gpu_settings=box.gpu_settings(),
    )
    if trainable is not None:
        view = replace(view, trainable=trainable)
    cfg = RunConfig(
        era=era, params=params or SimParams(), view=view, split=tuple(emission_split(era, tournament_difference)),
        serial=name == "reference" if serial is None else serial, joins_at=START + warmup_days * DAY_S,
    )
    if not isinstance(policy, str):
        chosen: PolicyFn | None = policy
    else:
        chosen = None if name == "oracle" else get_policy(name)
    state = run(task_stream(warmup_days + days, seed, era), days, seed, chosen, cfg)
    return summarise(state, name, days, seed)
