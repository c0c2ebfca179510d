"""Offer policy v1 (the plan's table + the box's capacity) and the reference rule, as tables of cases."""

from __future__ import annotations

import pytest

from godminer.engine.estimates import demand
from godminer.engine.policy import Offer, Snapshot, reference_policy, seed_policy
from godminer.engine.scheduler import Gpu, Reservation
from godminer.settings import OFFER_KINDS, EstimateSettings, GpuSettings, PolicySettings

NOW = 1_000_000.0
H100 = tuple(Gpu(i, 80.0) for i in range(4))


def snapshot(running=(), waiting=(), gpus=H100, disk=2000.0, policy=None, busy_until=None,
             trainable=frozenset(OFFER_KINDS)) -> Snapshot:
    return Snapshot(
        now=NOW, gpus=gpus, running=tuple(running), waiting=tuple(waiting), free_disk_gb=disk,
        policy=policy or PolicySettings(), estimates=EstimateSettings(), gpu_settings=GpuSettings(),
        busy_until=busy_until, trainable=trainable,
    )


def offer(kind="instruct", hours=4.0, params_b=8.0, model=None, task_id="new") -> Offer:
    task_type = {"instruct": "InstructTextTask", "chat": "ChatTask", "dpo": "DpoTask", "grpo": "GrpoTask",
                 "sdxl": "ImageTask", "flux": "ImageTask"}[kind]
    model = model or {"sdxl": "stabilityai/stable-diffusion-xl-base-1.0", "flux": "black-forest-labs/FLUX.1-dev"}.get(
        kind, "unsloth/Meta-Llama-3.1-8B-Instruct")
    return Offer(task_id, task_type, kind, model, params_b, hours)


def busy(gpu: int, hours: float, task_id: str | None = None) -> Reservation:
    return Reservation(task_id or f"busy{gpu}", "local", (gpu,), 20.0, NOW - 600, NOW + hours * 3600)


def committed(task_id: str, hours: float, params_b: float = 8.0, kind: str = "instruct", received_ago: float = 0):
    return demand(task_id=task_id, kind=kind, params_b=params_b, hours=hours, received_at=NOW - received_ago,
                  gpu_memory_gb=80.0, gpus=GpuSettings(), est=EstimateSettings(), min_train_fraction=0.5)


@pytest.mark.parametrize(
    ("kind", "hours", "accepted", "code"),
    [
        ("instruct", 8, True, "accepted"), ("instruct", 8.5, False, "too_long"),
        ("dpo", 10, True, "accepted"), ("dpo", 10.5, False, "too_long"),
        ("grpo", 10, True, "accepted"), ("grpo", 11, False, "too_long"),
        ("chat", 7, True, "accepted"), ("chat", 7.5, False, "too_long"),
        ("sdxl", 4, True, "accepted"), ("sdxl", 4.5, False, "too_long"),
        ("flux", 2, True, "accepted"), ("flux", 5, False, "too_long"),
    ],
)
def test_max_hours_per_type(kind, hours, accepted, code):
    params = {"sdxl": 3.5, "flux": 12.0}.get(kind, 8.0)
    decision = seed_policy(snapshot(), offer(kind, hours, params))
    assert (decision.accepted, decision.code) == (accepted, code), decision.reason


@pytest.mark.parametrize(
    ("params_b", "gpus"),
    [(0.5, 1), (3.0, 1), (8.0, 1), (14.0, 1), (32.0, 1), (36.0, 2), (70.0, 2), (70.6, 4), (110.0, 4)],
)
def test_every_size_is_accepted_with_the_plans_gpu_rule(params_b, gpus):
    decision = seed_policy(snapshot(), offer(hours=8, params_b=params_b))
    assert decision.accepted, decision.reason
    assert len(decision.placement.gpu_ids) == gpus


def test_a_model_too_big_for_the_box_is_declined():
    decision = seed_policy(snapshot(), offer(hours=8, params_b=405.0))
    assert not decision.accepted and decision.code == "capacity"
    assert "GPUs on one box" in decision.reason


def test_families_deny_list_and_size_limits_come_from_config():
    policy = PolicySettings(model_families=["llama", "qwen"], deny_models=["bad-model"], min_params_b=1,
                            max_params_b=40)
    snap = snapshot(policy=policy)
    assert seed_policy(snap, offer(model="Qwen/Qwen2.5-7B")).accepted
    assert seed_policy(snap, offer(model="mistralai/Mistral-7B")).code == "family"
    assert seed_policy(snap, offer(model="org/llama-bad-model-8b")).code == "model_denied"
    assert seed_policy(snap, offer(params_b=0.5)).code == "too_small"
    assert seed_policy(snap, offer(params_b=70)).code == "too_big"


def test_kinds_without_a_trainer_are_declined():
    decision = seed_policy(snapshot(trainable=frozenset({"instruct", "chat", "dpo", "grpo"})), offer("sdxl", 2, 3.5))
    assert decision.code == "unsupported_type" and "no trainer" in decision.reason


def test_max_hours_override_from_config():
    snap = snapshot(policy=PolicySettings(max_hours={"instruct": 12.0, "dpo": 10.0}))
    assert seed_policy(snap, offer(hours=12)).accepted
    assert seed_policy(snap, offer("chat", hours=1)).code == "unsupported_type"


def test_full_box_declines_what_it_cannot_finish():
    running = [busy(i, hours=4) for i in range(4)]
    decision = seed_policy(snapshot(running=running), offer(hours=3))
    assert not decision.accepted and decision.code == "capacity"
    # A long enough budget waits for a GPU and still trains its minimum (half of what it could have).
    assert seed_policy(snapshot(running=running), offer("dpo", hours=10)).accepted
    assert not seed_policy(snapshot(running=[busy(i, hours=6) for i in range(4)]), offer("dpo", hours=10)).accepted


def test_accepting_must_not_make_a_committed_job_late():
    # Three GPUs busy for 6 h; one free GPU promised to a committed 4 h job.
    running = [busy(i, hours=6) for i in range(3)]
    promised = committed("promised", hours=4)
    snap = snapshot(running=running, waiting=[promised])
    # A new, earlier-deadline job would take the free GPU first (EDF) and push the promised job late.
    decision = seed_policy(snap, offer("dpo", hours=3.5))
    assert not decision.accepted
    assert "promised"[:8] in decision.reason


def test_low_priority_keeps_headroom_for_better_work():
    running = [busy(i, hours=6) for i in range(3)]
    snap = snapshot(running=running)
    chat = seed_policy(snap, offer("chat", hours=4))
    assert not chat.accepted and chat.code == "headroom"
    assert seed_policy(snap, offer("dpo", hours=4)).accepted
    assert seed_policy(snapshot(), offer("chat", hours=4)).accepted


def test_disk_and_budget_checks():
    assert seed_policy(snapshot(disk=10.0), offer()).code == "disk"
    assert seed_policy(snapshot(), offer(hours=0.05, params_b=70)).code == "budget"


def test_reference_policy_mimics_the_reference_miner():
    assert reference_policy(snapshot(), offer(model="Qwen/Qwen2.5-7B")).code == "family"
    assert reference_policy(snapshot(), offer(hours=12.9)).accepted
    assert reference_policy(snapshot(), offer(hours=13)).code == "too_long"
    assert reference_policy(snapshot(busy_until=NOW + 7200), offer()).code == "busy"
    assert reference_policy(snapshot(busy_until=NOW + 1800), offer()).accepted
    assert reference_policy(snapshot(), offer("sdxl", hours=2, params_b=3.5)).accepted
    assert reference_policy(snapshot(), offer("sdxl", hours=3, params_b=3.5)).code == "too_long"
