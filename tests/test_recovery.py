"""Recovery decisions as tables, and the fallback adapter loading the way the validator loads it."""

from __future__ import annotations

import json

import pytest
import torch

from godminer.engine import recovery
from godminer.training import evaluate
from godminer.training.fallback import tensor_shapes, write_fallback_adapter
from godminer.training.tiny import build_model

KW = {"attempts": 1, "max_attempts": 3, "has_model": True, "time_left_s": 3600.0, "min_useful_s": 300.0,
      "overrides": {}, "micro_batch": 8}


@pytest.mark.parametrize(
    ("result", "changes", "action", "overrides"),
    [
        ({"status": "ok", "stopped_because": "deadline"}, {}, "publish", {}),
        ({"status": "oom"}, {}, "retry", {"max_micro_batch": 4, "gradient_checkpointing": True}),
        ({"status": "oom"}, {"micro_batch": 1}, "retry", {"max_micro_batch": 1, "gradient_checkpointing": True}),
        ({"status": "oom"}, {"attempts": 3}, "publish", {}),
        ({"status": "oom"}, {"time_left_s": 100.0}, "publish", {}),
        ({"status": "error", "error": "NCCL timeout"}, {}, "retry", {}),
        (None, {}, "retry", {}),
        (None, {"attempts": 3, "has_model": False}, "fail", {}),
        ({"status": "data_error", "error": "no rows"}, {}, "publish", {}),
        ({"status": "data_error", "error": "no rows"}, {"has_model": False}, "fail", {}),
    ],
)
def test_after_attempt(result, changes, action, overrides):
    decision = recovery.after_attempt(result, **{**KW, **changes})
    assert decision.action == action
    assert decision.overrides == overrides


def test_stall_overdue_and_last_call():
    assert recovery.stalled(now=2000, last_progress=100, started_at=0, stall_timeout_s=1200)
    assert not recovery.stalled(now=2000, last_progress=1900, started_at=0, stall_timeout_s=1200)
    assert not recovery.stalled(now=1000, last_progress=None, started_at=0, stall_timeout_s=1200)
    assert recovery.overdue(now=1061, train_until=1000) and not recovery.overdue(now=1059, train_until=1000)
    assert recovery.must_publish_now(now=950, termination_at=1000, upload_s=30, safety_s=20)
    assert not recovery.must_publish_now(now=940, termination_at=1000, upload_s=30, safety_s=20)


@pytest.mark.slow
def test_fallback_adapter_is_a_valid_barely_different_finetune(tmp_path):
    base = build_model(tmp_path / "base")
    assert "model.layers.0.self_attn.q_proj.weight" in tensor_shapes(base)
    out = write_fallback_adapter(base, tmp_path / "fallback", base_model=str(base))
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["target_modules"] == ["q_proj", "v_proj"] and config["base_model_name_or_path"] == str(base)
    adapted = evaluate.load_submission(out)  # AutoPeftModelForCausalLM, as the validator loads adapters
    plain = evaluate.load_submission(base)
    ids = torch.tensor([[0, 5, 9, 13, 21]])
    with torch.no_grad():
        a, b = adapted(input_ids=ids).logits, plain(input_ids=ids).logits
    assert not torch.equal(a, b)
    assert (a - b).abs().max() < 0.01 * b.abs().max()  # a real fine-tune, but barely different
    other = write_fallback_adapter(base, tmp_path / "other", base_model=str(base), seed=1)
    assert (out / "adapter_model.safetensors").read_bytes() != (other / "adapter_model.safetensors").read_bytes()
