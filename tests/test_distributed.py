"""The same trainer under accelerate with two processes (DDP over gloo on CPU): both ranks agree when to
stop, only rank 0 writes progress, results and models, and the model loads as the validator loads it."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from godminer.devnet import datasets
from godminer.training import evaluate
from godminer.training.common import RunSpec
from godminer.training.tiny import build_model

pytestmark = pytest.mark.slow


def test_two_process_ddp_training(tmp_path):
    model = build_model(tmp_path / "base")
    (tmp_path / "train.json").write_text(json.dumps(datasets.instruct_rows(400)))
    run_dir = tmp_path / "run"
    RunSpec(run_dir=str(run_dir), kind="instruct", base_model=str(model), model_path=str(model),
            dataset_path=str(tmp_path / "train.json"), dataset_type=datasets.INSTRUCT_TYPE,
            train_until=time.time() + 240, budget_s=240, overrides={"method": "lora"}).save()
    completed = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
         "--main_process_port", "29561", "-m", "godminer.training", str(run_dir)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "ok" and result["best_dev_metric"] < result["baseline_dev_metric"]
    steps = [json.loads(line)["step"] for line in (run_dir / "progress.jsonl").read_text().splitlines()
             if '"train"' in line]
    assert steps == list(range(1, result["steps"] + 1))  # one line per step: rank 1 writes nothing
    evaluate.load_submission((run_dir / "model").resolve())
