"""Accept or decline an offer: pure functions of (snapshot, offer) → Decision with a reason.

``seed`` is the plan's table (max hours per type, every family, priorities) plus the box's real
capacity: an offer is accepted only if the scheduler can place it, with every job already
committed still finishing before its deadline. ``reference`` mimics the reference miner, for
comparison. The expected-gain policy (``godminer``) lives in ``engine/gain.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from godminer import sizing
from godminer.engine import estimates
from godminer.engine.estimates import JobDemand
from godminer.engine.scheduler import Gpu, Placement, Reservation, idle_gpus_at, plan
from godminer.protocol.payloads import MinerTaskOffer, TaskType
from godminer.settings import EstimateSettings, GpuSettings, PolicySettings

KIND_OF_TYPE = {
    TaskType.INSTRUCT: "instruct", TaskType.CHAT: "chat", TaskType.DPO: "dpo", TaskType.GRPO: "grpo",
}
TEXT_KINDS = frozenset(KIND_OF_TYPE.values())


def offer_kind(task_type: str, model: str, model_type: str | None = None) -> str:
    """The policy's kind of a task: instruct, chat, dpo, grpo, sdxl or flux ('' if unknown)."""
    if task_type == TaskType.IMAGE:
        return sizing.image_kind(model, model_type)
    try:
        return KIND_OF_TYPE.get(TaskType(task_type), "")
    except ValueError:
        return ""


@dataclass(frozen=True)
class Offer:
    """The policy's view of an offer."""

    task_id: str
    task_type: str
    kind: str
    model: str
    params_b: float
    hours: float
    validator: str = ""
    ds_size: int | None = None

    @classmethod
    def from_payload(cls, offer: MinerTaskOffer, validator: str = "") -> Offer:
        kind = offer_kind(offer.task_type, offer.model)
        return cls(
            task_id=offer.task_id, task_type=str(offer.task_type), kind=kind, model=offer.model,
            params_b=sizing.params_b(offer.model_params_count, offer.model, kind), hours=offer.hours_to_complete,
            validator=validator, ds_size=offer.ds_size,
        )


@dataclass(frozen=True)
class OwnResult:
    """One of our tasks as the validator scored it: +3 win, 0 valid non-win, −1 failure."""

    kind: str
    created_at: float  # task creation (the validator's windows count from it)
    score: float
    work: float


@dataclass(frozen=True)
class Snapshot:
    """Everything a policy may look at, frozen at the moment of the offer."""

    now: float
    gpus: tuple[Gpu, ...]
    running: tuple[Reservation, ...]
    waiting: tuple[JobDemand, ...]
    free_disk_gb: float
    policy: PolicySettings
    estimates: EstimateSettings
    gpu_settings: GpuSettings
    busy_until: float | None = None
    history: tuple[OwnResult, ...] = ()
    trainable: frozenset[str] = TEXT_KINDS


@dataclass(frozen=True)
class Decision:
    accepted: bool
    reason: str
    code: str
    placement: Placement | None = None
    demand: JobDemand | None = None
    value: float | None = None


def decline(code: str, reason: str, **extra: object) -> Decision:
    return Decision(False, reason, code, **extra)  # type: ignore[arg-type]


def offer_demand(snap: Snapshot, offer: Offer) -> JobDemand:
    gpu_memory = max((g.memory_gb for g in snap.gpus if g.healthy), default=snap.gpu_settings.memory_gb)
    return estimates.demand(
        task_id=offer.task_id, kind=offer.kind, params_b=offer.params_b, hours=offer.hours, received_at=snap.now,
        gpu_memory_gb=gpu_memory, gpus=snap.gpu_settings, est=snap.estimates,
        min_train_fraction=snap.policy.min_train_fraction, priority=snap.policy.priority.get(offer.kind, 0),
    )


def hard_limits(snap: Snapshot, offer: Offer) -> Decision | None:
    """The operator's limits every policy keeps: kinds switched on, deny list, families, sizes."""
    limits = snap.policy
    if not offer.kind:
        return decline("unsupported_type", f"I don't do {offer.task_type} jobs")
    if offer.kind not in limits.max_hours:
        return decline("unsupported_type", f"{offer.kind} jobs are switched off")
    if offer.kind not in snap.trainable:
        return decline("unsupported_type", f"this miner has no trainer for {offer.kind} jobs")
    if offer.hours <= 0:
        return decline("bad_offer", "hours_to_complete must be positive")
    model = offer.model.lower()
    if any(d.lower() in model for d in limits.deny_models):
        return decline("model_denied", f"{offer.model} is on my deny list")
    families = [f.lower() for f in limits.model_families]
    if "*" not in families and not any(f in model for f in families):
        return decline("family", f"{offer.model} is not a model family I train")
    if offer.params_b < limits.min_params_b:
        return decline("too_small", f"{offer.params_b:.1f} B is under my {limits.min_params_b:g} B minimum")
    if limits.max_params_b is not None and offer.params_b > limits.max_params_b:
        return decline("too_big", f"{offer.params_b:.1f} B is over my {limits.max_params_b:g} B maximum")
    return None


def static_checks(snap: Snapshot, offer: Offer) -> Decision | None:
    """The table's rules that need no capacity: the operator's limits and the maximum hours per kind."""
    found = hard_limits(snap, offer)
    if found is not None:
        return found
    max_hours = snap.policy.max_hours[offer.kind]
    if offer.hours > max_hours:
        return decline("too_long", f"{offer.hours:g} h is over my {max_hours:g} h limit for {offer.kind}")
    return None


def capacity_check(snap: Snapshot, offer: Offer, headroom: bool = True) -> Decision:
    """Place the offer with every committed job; accept only if all of them still make it."""
    d = offer_demand(snap, offer)
    safety = snap.estimates.safety_margin_s
    if not estimates.fits_budget(d, safety):
        reason = f"{offer.hours:g} h is too short for a {offer.params_b:.0f} B {offer.kind} job"
        return decline("budget", reason, demand=d)
    need_disk = estimates.disk_needed_gb(offer.params_b, offer.kind)
    committed_disk = sum(estimates.disk_needed_gb(w.params_b, w.kind) for w in snap.waiting)
    if snap.free_disk_gb - committed_disk < need_disk:
        reason = f"not enough free disk ({snap.free_disk_gb:.0f} GB, {need_disk:.0f} GB needed)"
        return decline("disk", reason, demand=d)
    share = snap.gpu_settings.max_jobs_per_gpu
    after = plan(snap.gpus, snap.running, (*snap.waiting, d), snap.now, safety, share)
    mine = after[d.task_id]
    if not mine.feasible:
        return decline("capacity", mine.reason, demand=d, placement=mine)
    before = plan(snap.gpus, snap.running, snap.waiting, snap.now, safety, share)
    for task_id, p in before.items():
        if p.feasible and not after[task_id].feasible:
            return decline("capacity", f"would make job {task_id[:8]} miss its deadline", demand=d, placement=mine)
    keep_free = snap.policy.headroom_gpus.get(d.priority, 0) if headroom else 0
    if keep_free:
        reservations = [*snap.running, *(p.reservation(0) for p in after.values() if p.feasible)]
        if idle_gpus_at(snap.gpus, reservations, max(snap.now, mine.start)) < keep_free:
            return decline(
                "headroom", f"keeping {keep_free} GPU(s) free for higher-priority work", demand=d, placement=mine
            )
    return Decision(True, f"Yes. I can do {offer.task_type} jobs", "accepted", placement=mine, demand=d)


def seed_policy(snap: Snapshot, offer: Offer) -> Decision:
    """The plan's fixed table and priorities, on the box's real capacity."""
    return static_checks(snap, offer) or capacity_check(snap, offer)


def reference_policy(snap: Snapshot, offer: Offer) -> Decision:
    """The reference miner's rule: llama text under 13 h, images under 3 h, one job at a time."""
    busy = snap.busy_until is not None and snap.now + 3600.0 <= snap.busy_until
    if offer.task_type == TaskType.IMAGE:
        if busy:
            return decline("busy", "Currently busy with another job")
        if offer.hours < 3:
            return Decision(True, "Yes. I can do image jobs", "accepted")
        return decline("too_long", "I only accept small jobs")
    if offer.kind not in ("instruct", "chat", "dpo", "grpo"):
        return decline("unsupported_type", f"This endpoint only accepts text tasks: {offer.task_type}")
    if "llama" not in offer.model.lower():
        return decline("family", "I'm not yet optimised and only accept llama-type jobs")
    if busy:
        return decline("busy", "Currently busy with another job")
    if offer.hours < 13:
        return Decision(True, f"Yes. I can do {offer.task_type} jobs", "accepted")
    return decline("too_long", "I only accept small jobs")


PolicyFn = Callable[[Snapshot, Offer], Decision]


def get_policy(name: str) -> PolicyFn:
    if name == "godminer":
        from godminer.engine.gain import godminer_policy

        return godminer_policy
    policies: dict[str, PolicyFn] = {"seed": seed_policy, "reference": reference_policy}
    if name not in policies:
        raise ValueError(f"unknown policy {name!r}")
    return policies[name]

