"""Real processes: the miner is killed with SIGKILL mid-training and restarted, and the job still ends
submitted before its deadline with nothing lost; an out-of-memory attempt is retried for real."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from functools import partial
from pathlib import Path

import httpx
import pytest

from godminer.devnet import datasets
from godminer.devnet.client import ValidatorClient
from godminer.devnet.server import free_port
from godminer.engine.inventory import StaticInventory
from godminer.engine.jobs import JobState
from godminer.engine.store import Store
from godminer.executors.base import ExecState, ExecStatus, Launch
from godminer.executors.local import LocalExecutor
from godminer.node import MinerNode, dev_overrides
from godminer.protocol import keys
from godminer.publish.model_hash import model_hash
from godminer.settings import load_settings
from godminer.training.tiny import build_model

pytestmark = pytest.mark.slow
FAST = {"GODMINER_EXECUTOR__TICK_S": "0.3", "GODMINER_EXECUTOR__LEASE_S": "3",
        "GODMINER_ESTIMATES__SAFETY_MARGIN_S": "15", "HF_HUB_OFFLINE": "1"}


@pytest.fixture
def data_server(tmp_path):
    """A stand-in for the validator's S3 bucket: serves the train split at a presigned-looking URL."""
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    (bucket / "7d3f9a0c1b2e4f56_train_data.json").write_text(json.dumps(datasets.instruct_rows(3000)))
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(bucket))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/7d3f9a0c1b2e4f56_train_data.json?X-Amz-Signature=abc"
    server.shutdown()


def start_miner(data_dir: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, **FAST}
    process = subprocess.Popen(
        [sys.executable, "-m", "godminer", "serve", "--dev", "--data-dir", str(data_dir), "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "WARNING"],
        env=env, stdout=subprocess.DEVNULL, stderr=(data_dir.parent / "miner.log").open("ab"),
    )
    for _ in range(300):
        try:
            httpx.get(f"http://127.0.0.1:{port}/nope", timeout=0.5)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("miner did not start")


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigkill_during_training_loses_nothing(tmp_path, data_server):
    model = build_model(tmp_path / "tiny")
    data_dir, port = tmp_path / "var", free_port()
    miner = start_miner(data_dir, port)
    alice, bob = keys.dev_keypair(keys.DEV_VALIDATOR_URI), keys.dev_keypair(keys.DEV_MINER_URI)
    task_id, repo_name = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            validator = ValidatorClient(http, alice, bob.ss58_address)
            offer = {"ds_size": 100000, "model": str(model), "hours_to_complete": 0.07, "task_id": task_id,
                     "task_type": "InstructTextTask", "model_params_count": 120_000}
            assert validator.offer(offer).json()["accepted"] is True
            assert validator.start_training({
                "model": str(model), "task_id": task_id, "hours_to_complete": 0.07, "expected_repo_name": repo_name,
                "dataset": data_server, "dataset_type": datasets.INSTRUCT_TYPE, "file_format": "s3",
            }).status_code == 200
        store = Store(f"sqlite:///{data_dir / 'godminer.db'}")
        run_dir = data_dir / "jobs" / task_id
        progress = run_dir / "progress.jsonl"
        wait_for(lambda: progress.is_file() and '"train"' in progress.read_text(), 120, "training to make progress")
        job = store.require(task_id)
        assert job.state is JobState.TRAINING
        trainer_pid = job.executor_handle["pid"]
        miner.send_signal(signal.SIGKILL)  # no clean-up of any kind
        miner.wait()
        os.kill(trainer_pid, 0)  # training carries on without the miner
        miner = start_miner(data_dir, port)
        job = wait_for(lambda: (j := store.require(task_id)).state is JobState.SUBMITTED and j, 240, "submission")
        assert job.submitted_at < job.termination_at
        states = [e["to_state"] for e in store.events(task_id)]
        assert states == ["accepted", "queued", "preparing", "training", "publishing", "submitted"]
        assert job.attempts == 1  # re-attached to the running process, not restarted
        published = data_dir / "published" / job.repo
        assert job.repo.endswith(repo_name) and job.model_hash == model_hash(published)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            answer = ValidatorClient(http, alice, bob.ss58_address).submission(task_id).json()
        assert answer == {"repo": job.repo, "model_hash": job.model_hash}
    finally:
        miner.terminate()
        miner.wait(timeout=30)


class OomOnce(LocalExecutor):
    """The first attempt fails as an out-of-memory error would (result.json says so); later ones run for real."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def submit(self, launch: Launch):
        self.attempts += 1
        if self.attempts == 1:
            (launch.run_dir / "result.json").write_text(json.dumps({"status": "oom", "error": "CUDA out of memory"}))
            (launch.run_dir / "plan.json").write_text(json.dumps({"micro_batch_size": 4}))
            return {"executor": "oom-once", "run_dir": str(launch.run_dir)}
        return super().submit(launch)

    def status(self, handle):
        if handle.get("executor") == "oom-once":
            return ExecStatus(ExecState.EXITED, 3)
        return super().status(handle)


def test_out_of_memory_once_then_trained_and_submitted(tmp_path, data_server):
    from godminer.clock import SystemClock
    from godminer.protocol.payloads import MinerTaskOffer, TrainRequestText

    model = build_model(tmp_path / "tiny")
    settings = load_settings(**dev_overrides(tmp_path / "var"), estimates={"safety_margin_s": 15})
    executor = OomOnce()
    node = MinerNode(settings, clock=SystemClock(), inventory=StaticInventory.uniform(2, 80.0), executor=executor,
                     background=False)
    task_id = str(uuid.uuid4())
    offer = MinerTaskOffer(model=str(model), hours_to_complete=0.05, task_id=task_id,
                           task_type="InstructTextTask", model_params_count=120_000)
    assert node.miner.decide_offer(offer, "v").accepted
    node.miner.start_training(TrainRequestText(
        model=str(model), task_id=task_id, hours_to_complete=0.05, expected_repo_name="oom-repo",
        dataset=data_server, dataset_type=datasets.INSTRUCT_TYPE), "v")

    def advanced():
        node.lifecycle.tick()
        node.lifecycle.drain()
        return node.store.require(task_id).state is JobState.SUBMITTED

    wait_for(advanced, 200, "submission after the retry")
    job = node.store.require(task_id)
    plan = json.loads((node.lifecycle.run_dir(task_id) / "plan.json").read_text())
    assert executor.attempts == 2 and job.attempts == 2
    assert plan["micro_batch_size"] <= 2 and plan["gradient_checkpointing"] is True  # safer settings, for real
    result = json.loads((node.lifecycle.run_dir(task_id) / "result.json").read_text())
    assert result["status"] == "ok" and result["best_dev_metric"] < result["baseline_dev_metric"]
    assert job.submitted_at < job.termination_at
    node.close()
