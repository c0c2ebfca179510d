"""The command line: jobs list/show/logs/cancel/outcome, config show with secrets redacted, plan, train."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from godminer.cli import main
from godminer.devnet import datasets
from godminer.devnet.history import populate
from godminer.engine.store import Store
from godminer.training.tiny import build_model


@pytest.fixture
def data_dir(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'godminer.db'}")
    ids = populate(store, tmp_path, time.time(), jobs=6, running=2, curves=2)
    store.close()
    return tmp_path, ids


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_jobs_list_show_logs_and_cancel(data_dir):
    root, ids = data_dir
    listed = json.loads(run("jobs", "list", "--json", "--data-dir", str(root)))
    assert {j["task_id"] for j in listed} == set(ids) and "request_json" not in listed[0]
    assert "training" in run("jobs", "list", "--data-dir", str(root))
    shown = json.loads(run("jobs", "show", ids[0], "--data-dir", str(root)))
    assert shown["job"]["task_id"] == ids[0] and shown["events"][0]["to_state"] == "accepted"
    logs = run("jobs", "logs", ids[0], "--data-dir", str(root))
    assert "==> miner <==" in logs and "job prepared" in logs and "training lora" in logs
    assert run("jobs", "cancel", ids[0], "--data-dir", str(root)).startswith("cancelled")
    refused = CliRunner().invoke(main, ["jobs", "cancel", ids[0], "--data-dir", str(root)])
    assert refused.exit_code != 0 and "cannot go from cancelled" in refused.output
    assert "recorded win" in run("jobs", "outcome", ids[-1], "win", "--data-dir", str(root))
    missing = CliRunner().invoke(main, ["jobs", "show", "nope", "--data-dir", str(root)])
    assert missing.exit_code != 0 and "no job nope" in missing.output


def test_config_show_redacts_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("GODMINER_HUB__TOKEN", "hf_real_secret_value")
    monkeypatch.setenv("GODMINER_MONITOR__WEBHOOK_URL", "https://discord.com/api/webhooks/123/secret")
    output = run("config", "show", "--data-dir", str(tmp_path))
    assert "hf_real_secret_value" not in output and "discord.com" not in output and "token: '***'" in output


def test_serve_refuses_placeholder_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("GODMINER_HUB__TOKEN", "changeme")
    result = CliRunner().invoke(main, ["serve", "--data-dir", str(tmp_path)])
    assert result.exit_code != 0 and "hub.token is missing or a placeholder" in result.output


def test_bad_config_is_a_clear_error(tmp_path):
    bad = tmp_path / "miner.yaml"
    bad.write_text("policy:\n  max_hours:\n    video: 3\n")
    result = CliRunner().invoke(main, ["config", "show", "--config", str(bad)])
    assert result.exit_code != 0 and "unknown offer kinds" in result.output


def write_request(tmp_path, model) -> str:
    data = tmp_path / "x_train_data.json"
    data.write_text(json.dumps(datasets.instruct_rows(120)))
    request = {"model": str(model), "task_id": "t-1", "hours_to_complete": 0.02, "expected_repo_name": "r",
               "dataset": str(data), "dataset_type": datasets.INSTRUCT_TYPE, "file_format": "s3"}
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    return str(path)


@pytest.mark.slow
def test_plan_and_train_commands(tmp_path):
    model = build_model(tmp_path / "tiny")
    request = write_request(tmp_path, model)
    plan = run("plan", "--request", request, "--gpus", "4", "--axolotl", str(tmp_path / "ax"))
    assert "learning_rate" in plan and "accelerate launch --multi_gpu --num_processes 4" in plan
    assert (tmp_path / "ax" / "axolotl.yml").is_file()
    output = run("train", "--request", request, "--out", str(tmp_path / "run"), "--method", "lora", "--rslora")
    assert '"status": "ok"' in output
    assert json.loads((tmp_path / "run" / "plan.json").read_text())["use_rslora"] is True
    assert (tmp_path / "run" / "model" / "adapter_config.json").is_file()
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    refused = CliRunner().invoke(main, ["train", "--request", str(bad), "--out", str(tmp_path / "x")])
    assert refused.exit_code != 0 and "one start-training payload" in refused.output
