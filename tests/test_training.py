"""The text training engine on CPU with a tiny model built here: all four task types train, the output
loads the way the validator loads it and beats the base model on held-out data."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from godminer.devnet import datasets
from godminer.training import evaluate
from godminer.training.common import RunSpec, load_tokenizer
from godminer.training.run import run_training
from godminer.training.tiny import build_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("tiny") / "base")


def train(base: Path, tmp_path: Path, kind: str, rows: list, method: str = "lora", seconds: float = 60) -> Path:
    (tmp_path / "train.json").write_text(json.dumps(rows))
    spec = RunSpec(
        run_dir=str(tmp_path / "run"), kind=kind, base_model=str(base), model_path=str(base),
        dataset_path=str(tmp_path / "train.json"), dataset_type=datasets.DATASET_TYPES[kind],
        train_until=time.time() + seconds, budget_s=seconds, overrides={"method": method},
    )
    spec.save()
    assert run_training(tmp_path / "run") == 0, (tmp_path / "run" / "result.json").read_text()
    model_dir = (tmp_path / "run" / "model").resolve()
    assert model_dir.is_dir()
    return model_dir


@pytest.mark.parametrize(("kind", "method"), [("instruct", "lora"), ("chat", "full")])
def test_sft_lowers_held_out_loss(base, tmp_path, kind, method):
    train_rows, test_rows = datasets.split(datasets.ROWS[kind](400, seed=1))
    model_dir = train(base, tmp_path, kind, train_rows, method=method)
    files = {p.name for p in model_dir.iterdir()}
    if method == "lora":
        assert {"adapter_config.json", "adapter_model.safetensors"} <= files
        config = json.loads((model_dir / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == str(base)
    else:
        assert "model.safetensors" in files and "adapter_config.json" not in files
    tokenizer = load_tokenizer(str(base))
    trained = evaluate.load_submission(model_dir)
    if method == "lora":
        assert type(trained).__name__.startswith("Peft")  # AutoPeftModelForCausalLM, as the validator loads it
    assert trained.get_input_embeddings().weight.shape[0] == len(tokenizer)  # no added tokens
    reference = evaluate.load_submission(base)
    dt = datasets.DATASET_TYPES[kind]
    before = evaluate.sft_loss(reference, tokenizer, test_rows, kind, dt, 256)
    after = evaluate.sft_loss(trained, tokenizer, test_rows, kind, dt, 256)
    assert after < before - 0.3, (before, after)


def test_dpo_lowers_held_out_dpo_loss(base, tmp_path):
    train_rows, test_rows = datasets.split(datasets.dpo_rows(300, seed=2))
    model_dir = train(base, tmp_path, "dpo", train_rows)
    tokenizer = load_tokenizer(str(base))
    reference = evaluate.load_submission(base)
    trained = evaluate.load_submission(model_dir)
    untrained = evaluate.dpo_loss(evaluate.load_submission(base), reference, tokenizer, test_rows, datasets.DPO_TYPE)
    loss = evaluate.dpo_loss(trained, reference, tokenizer, test_rows, datasets.DPO_TYPE)
    assert untrained == pytest.approx(0.6931, abs=1e-3)  # ln 2: the base has learned no preference
    assert loss < 0.6, loss


def test_grpo_raises_held_out_reward(base, tmp_path):
    train_rows, test_rows = datasets.split(datasets.grpo_rows(480, seed=3), test_share=0.1)
    model_dir = train(base, tmp_path, "grpo", train_rows, method="full", seconds=90)
    tokenizer = load_tokenizer(str(base))
    before = evaluate.grpo_reward(evaluate.load_submission(base), tokenizer, test_rows, datasets.GRPO_TYPE)
    after = evaluate.grpo_reward(evaluate.load_submission(model_dir), tokenizer, test_rows, datasets.GRPO_TYPE)
    assert after > before, (before, after)
    report = [json.loads(line) for line in (tmp_path / "run" / "progress.jsonl").read_text().splitlines()]
    rewards = next(r["report"] for r in report if r["event"] == "rewards")
    assert all(fn["calls"] > 0 and not fn["failures"] for fn in rewards.values())
