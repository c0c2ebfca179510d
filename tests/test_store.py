"""The store: validated transitions with events, leases, and every job back after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from godminer.engine.jobs import InvalidTransition, JobRecord, JobState
from godminer.engine.store import Store


def record(task_id: str, state: JobState = JobState.ACCEPTED) -> JobRecord:
    return JobRecord(task_id=task_id, validator_hotkey="5Val", task_type="InstructTextTask", kind="instruct",
                     model="m", params_b=8.0, hours=4.0, state=state, accepted_at=100.0)


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'g.db'}")
    yield s
    s.close()


def test_full_path_with_events(store):
    store.create_job(record("t"), 100.0, "accepted")
    path = [JobState.QUEUED, JobState.PREPARING, JobState.TRAINING, JobState.PUBLISHING, JobState.SUBMITTED]
    for i, state in enumerate(path):
        store.transition("t", state, 101.0 + i, f"to {state}")
    job = store.get("t")
    assert job.state is JobState.SUBMITTED and job.finished_at == 105.0
    assert [e["to_state"] for e in store.events("t")] == ["accepted", *[str(s) for s in path]]
    assert store.active() == []


def test_invalid_transition_changes_nothing(store):
    store.create_job(record("t"), 100.0)
    with pytest.raises(InvalidTransition):
        store.transition("t", JobState.SUBMITTED, 101.0)
    assert store.get("t").state is JobState.ACCEPTED
    assert len(store.events("t")) == 1


def test_failed_has_reason_and_leaves_cache(store):
    store.create_job(record("t", JobState.QUEUED), 100.0)
    assert [j.task_id for j in store.active()] == ["t"]
    store.transition("t", JobState.FAILED, 101.0, "dataset download failed: 404")
    assert store.get("t").reason == "dataset download failed: 404"
    assert store.active() == []


def test_leases_claim_expire_and_takeover(store):
    store.create_job(record("t", JobState.QUEUED), 100.0)
    assert store.claim("t", "worker-a", now=100.0, lease_s=60)
    assert not store.claim("t", "worker-b", now=130.0, lease_s=60)
    store.heartbeat("worker-a", now=150.0, lease_s=60)
    assert not store.claim("t", "worker-b", now=200.0, lease_s=60)
    assert store.claim("t", "worker-b", now=211.0, lease_s=60)  # worker-a's lease expired at 210
    assert store.get("t").lease_owner == "worker-b"
    store.release("t", "worker-b")
    assert store.get("t").lease_owner is None


def test_json_fields_round_trip(store):
    store.create_job(record("t", JobState.QUEUED), 100.0)
    store.update("t", 101.0, gpu_ids=(2, 3), executor_handle={"pid": 42}, plan={"train_until": 5.0})
    job = Store(store.url).get("t")
    assert job.gpu_ids == (2, 3) and job.executor_handle == {"pid": 42} and job.plan["train_until"] == 5.0


WRITER = textwrap.dedent("""
    import sys
    from godminer.engine.jobs import JobRecord, JobState
    from godminer.engine.store import Store
    store = Store(sys.argv[1])
    i = 0
    while True:
        tid = f"job-{i}"
        store.create_job(JobRecord(task_id=tid, validator_hotkey="v", task_type="DpoTask", kind="dpo", model="m",
                                   params_b=1.0, hours=1.0, state=JobState.ACCEPTED), float(i))
        store.transition(tid, JobState.QUEUED, float(i) + 0.5, "start_training")
        print(tid, flush=True)
        i += 1
""")


def test_every_job_survives_kill_9(tmp_path):
    url = f"sqlite:///{tmp_path / 'k.db'}"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, url], stdout=subprocess.PIPE, text=True)
    acknowledged = [proc.stdout.readline().strip() for _ in range(40)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = Store(url)
    for tid in acknowledged:
        job = store.get(tid)
        assert job is not None and job.state is JobState.QUEUED, tid
    assert {j.task_id for j in store.active()} >= set(acknowledged)
