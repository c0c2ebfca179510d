"""The job lifecycle on a fake box of 4 × 80 GB GPUs, training replaced by the clock (SimulatedExecutor)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from godminer.clock import ManualClock
from godminer.devnet import datasets
from godminer.devnet.executors import SimulatedExecutor
from godminer.engine.inventory import StaticInventory
from godminer.engine.jobs import JobState
from godminer.node import MinerNode, dev_overrides
from godminer.protocol.payloads import MinerTaskOffer, TrainRequestText
from godminer.publish.model_hash import model_hash
from godminer.settings import load_settings
from godminer.training.common import RunSpec
from godminer.training.tiny import build_model


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {"8b": build_model(root / "llama-8b"), "70b": build_model(root / "llama-70b")}


@pytest.fixture
def data_file(tmp_path) -> Path:
    path = tmp_path / "7d3f9a0c1b2e4f56_train_data.json"
    path.write_text(json.dumps(datasets.instruct_rows(50)))
    return path


def make_node(tmp_path, executor_factory=None, max_attempts=3):
    clock = ManualClock(time.time())
    settings = load_settings(**dev_overrides(tmp_path / "var"), executor={"max_attempts": max_attempts})
    executor = (executor_factory or SimulatedExecutor)(clock)
    node = MinerNode(settings, clock=clock, inventory=StaticInventory.uniform(4, 80.0), executor=executor,
                     background=False, disk_free_gb=lambda: 2000.0)
    return node, executor, clock


@pytest.fixture
def box(tmp_path):
    node, executor, clock = make_node(tmp_path)
    yield node, executor, clock
    node.close()


def assign(node, model: Path, params_b: float, hours: float, data_file: Path, kind="InstructTextTask") -> str:
    """An accepted offer followed by its start-training request, as the validator sends them."""
    task_id = str(uuid.uuid4())
    offer = MinerTaskOffer(model=str(model), hours_to_complete=hours, task_id=task_id, task_type=kind,
                           model_params_count=int(params_b * 1e9))
    decision = node.miner.decide_offer(offer, "validator")
    assert decision.accepted, decision.reason
    request = TrainRequestText(model=str(model), task_id=task_id, hours_to_complete=hours,
                               expected_repo_name=f"repo-{task_id[:8]}", dataset=str(data_file),
                               dataset_type=datasets.INSTRUCT_TYPE)
    node.miner.start_training(request, "validator")
    return task_id


def settle(node, rounds: int = 4) -> None:
    for _ in range(rounds):
        node.lifecycle.tick()
        node.lifecycle.drain()


def state(node, task_id) -> JobState:
    return node.store.require(task_id).state


def test_two_8b_and_one_70b_run_concurrently_as_the_plan_rule_says(box, models, data_file):
    node, _executor, clock = box
    small = [assign(node, models["8b"], 8.0, 4.0, data_file) for _ in range(2)]
    big = assign(node, models["70b"], 70.0, 8.0, data_file)
    settle(node)
    jobs = {t: node.store.require(t) for t in [*small, big]}
    assert all(j.state is JobState.TRAINING for j in jobs.values())
    assert [len(jobs[t].gpu_ids) for t in small] == [1, 1] and len(jobs[big].gpu_ids) == 2
    assert sorted(g for j in jobs.values() for g in j.gpu_ids) == [0, 1, 2, 3]
    assert len({j.started_at for j in jobs.values()}) == 1  # started in the same pass: side by side
    for task_id in [*small, big]:  # each training ends at its planned stop, then publishes
        clock.set(max(clock.now(), node.store.require(task_id).plan["train_until"]))
        settle(node)
    for task_id in [*small, big]:
        job = node.store.require(task_id)
        assert job.state is JobState.SUBMITTED and job.submitted_at < job.termination_at
        assert job.repo == f"godminer-dev/repo-{task_id[:8]}"
        published = node.settings.hub.local_dir / job.repo
        assert job.model_hash == model_hash(published)  # the validator's algorithm over exactly the files
        assert node.miner.submission(task_id).model_hash == job.model_hash
        assert [e["to_state"] for e in node.store.events(task_id)] == [
            "accepted", "queued", "preparing", "training", "publishing", "submitted"]


def test_a_job_that_cannot_meet_its_deadline_is_declined_at_offer_time(box, models, data_file):
    node, _executor, _clock = box
    for _ in range(4):
        assign(node, models["8b"], 8.0, 8.0, data_file)
    settle(node)
    offer = MinerTaskOffer(model=str(models["8b"]), hours_to_complete=2.0, task_id="late-1",
                           task_type="InstructTextTask", model_params_count=8_000_000_000)
    decision = node.miner.decide_offer(offer, "validator")
    assert not decision.accepted and decision.code == "capacity"
    assert node.store.get("late-1") is None  # declined, not accepted and failed


def test_out_of_memory_is_retried_with_safer_settings(tmp_path, models, data_file):
    def factory(clock):
        return SimulatedExecutor(clock, outcomes=lambda launch, attempt: (
            {"status": "oom", "error": "CUDA out of memory"} if attempt == 1 else {"status": "ok"}))

    node, executor, clock = make_node(tmp_path, factory)
    task_id = assign(node, models["8b"], 8.0, 4.0, data_file)
    (tmp_path / "plan.json").write_text("{}")
    settle(node)
    run_dir = node.lifecycle.run_dir(task_id)
    (run_dir / "plan.json").write_text(json.dumps({"micro_batch_size": 8}))
    clock.advance(600)  # the first attempt "ends" (out of memory) once its time is up
    executor.runs[f"{task_id}#1"].end = clock.now()
    settle(node)
    assert len(executor.submitted) == 2
    assert RunSpec.load(run_dir).overrides == {"max_micro_batch": 4, "gradient_checkpointing": True}
    assert "out of memory" in " ".join(e["reason"] for e in node.store.events(task_id))
    clock.advance(5 * 3600)
    settle(node)
    assert state(node, task_id) is JobState.SUBMITTED
    node.close()


def test_a_stalled_process_is_stopped_and_retried(tmp_path, models, data_file):
    def factory(clock):
        return SimulatedExecutor(clock, duration=lambda spec: 1e9, outcomes=lambda launch, attempt: (
            {"status": "hang"} if attempt == 1 else {"status": "ok"}))

    node, executor, clock = make_node(tmp_path, factory)
    task_id = assign(node, models["8b"], 8.0, 6.0, data_file)
    settle(node)
    clock.advance(node.settings.executor.stall_timeout_s + 10)
    settle(node)
    assert len(executor.submitted) == 2 and state(node, task_id) is JobState.TRAINING
    node.close()


def test_an_unusable_dataset_publishes_the_fallback_model_not_a_failure(box, models, tmp_path):
    node, _executor, _clock = box
    task_id = assign(node, models["8b"], 8.0, 4.0, tmp_path / "does-not-exist.json")
    settle(node)
    job = node.store.require(task_id)
    assert job.state is JobState.SUBMITTED, job.reason
    published = node.settings.hub.local_dir / job.repo
    config = json.loads((published / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(models["8b"]) and job.model_hash == model_hash(published)


def test_an_overdue_process_is_ended_and_its_best_model_published(tmp_path, models, data_file):
    def factory(clock):
        return SimulatedExecutor(clock, duration=lambda spec: 1e9, outcomes=lambda launch, attempt: {"status": "hang"})

    node, _executor, clock = make_node(tmp_path, factory, max_attempts=1)
    task_id = assign(node, models["8b"], 8.0, 2.0, data_file)
    settle(node)
    train_until = node.store.require(task_id).plan["train_until"]
    clock.set(train_until + 120)
    settle(node)
    job = node.store.require(task_id)
    assert job.state is JobState.SUBMITTED and clock.now() < job.termination_at
    node.close()


def test_cancel_stops_the_process_and_offers_expire(box, models, data_file):
    node, executor, clock = box
    task_id = assign(node, models["8b"], 8.0, 4.0, data_file)
    settle(node)
    node.store.transition(task_id, JobState.CANCELLED, clock.now(), "operator")
    settle(node)
    assert executor.runs[f"{task_id}#1"].finished
    offer = MinerTaskOffer(model=str(models["8b"]), hours_to_complete=3.0, task_id="never-started",
                           task_type="InstructTextTask", model_params_count=8_000_000_000)
    assert node.miner.decide_offer(offer, "validator").accepted
    clock.advance(node.settings.policy.accepted_ttl_s + 1)
    settle(node)
    assert state(node, "never-started") is JobState.EXPIRED


def test_a_restarted_miner_takes_over_after_the_lease(tmp_path, models, data_file):
    node, executor, clock = make_node(tmp_path)
    task_id = assign(node, models["8b"], 8.0, 4.0, data_file)
    settle(node)
    assert state(node, task_id) is JobState.TRAINING
    node.close()  # the old process is gone; its lease stays in the store until it expires
    settings = node.settings
    again = MinerNode(settings, clock=clock, inventory=StaticInventory.uniform(4, 80.0), executor=executor,
                      background=False, disk_free_gb=lambda: 2000.0)
    settle(again)
    assert again.store.require(task_id).lease_owner != again.lifecycle.owner  # still the old lease
    clock.advance(settings.executor.lease_s + 1)
    settle(again)
    assert again.store.require(task_id).lease_owner == again.lifecycle.owner
    clock.advance(4 * 3600)
    settle(again)
    assert state(again, task_id) is JobState.SUBMITTED
    again.close()
