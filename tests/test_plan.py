"""TrainingPlan: values derived from model, hardware, data and budget, each with its reason; axolotl export."""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml

from godminer.devnet import datasets
from godminer.training import axolotl
from godminer.training.plan import DataFacts, Hardware, ModelFacts, TrainingPlan, build_plan

H100 = Hardware(n_gpus=1, gpu_memory_gb=80.0, bf16=True)
DATA = DataFacts(rows=20_000, token_lengths=tuple(range(100, 900)))


def make(kind="instruct", params=8.0, hw=H100, data=DATA, method=None, max_pos=131072) -> TrainingPlan:
    model = ModelFacts(params_b=params, max_position_embeddings=max_pos, hidden_size=4096, num_layers=32,
                       vocab_size=128_256)
    return build_plan(kind=kind, base_model="org/model", model=model, hardware=hw, data=data, budget_s=4 * 3600,
                      train_until=1e9, method=method)


def test_8b_instruct_on_one_h100():
    plan = make()
    assert (plan.method, plan.lora_r, plan.lora_alpha) == ("lora", 128, 256)
    assert plan.sequence_len == 896  # p99 of 100..899 tokens, rounded up to 64
    assert (plan.precision, plan.attn_implementation, plan.distributed) == ("bf16", "sdpa", "none")
    assert plan.gradient_checkpointing and plan.learning_rate == 1.5e-4
    assert 8 <= plan.global_batch <= 64 and plan.micro_batch_size >= 1
    for key in ("method", "lora_r", "sequence_len", "micro_batch_size", "gradient_accumulation", "learning_rate",
                "gradient_checkpointing", "attn_implementation", "distributed", "precision", "train_until"):
        assert plan.reasons.get(key), key
    assert "learning_rate" in plan.explain()


def test_small_models_are_fully_fine_tuned():
    plan = make(params=1.5)
    assert plan.method == "full" and plan.lora_r is None and plan.learning_rate == 5e-5


@pytest.mark.parametrize(("gpus", "scale"), [(2, 1.2), (4, 1.5)])
def test_learning_rate_scales_with_gpus(gpus, scale):
    plan = make(hw=Hardware(n_gpus=gpus, gpu_memory_gb=80.0, bf16=True))
    assert plan.learning_rate == pytest.approx(1.5e-4 * scale)
    assert plan.distributed == "ddp"


def test_70b_is_sharded_and_deepspeed_is_used_when_installed():
    fsdp = make(params=70.0, hw=Hardware(n_gpus=4, gpu_memory_gb=80.0, bf16=True))
    assert fsdp.method == "lora" and fsdp.distributed == "fsdp" and fsdp.lora_r == 64 and fsdp.ema_decay is None
    zero = make(params=70.0, hw=Hardware(n_gpus=4, gpu_memory_gb=80.0, bf16=True, deepspeed=True))
    assert zero.distributed == "deepspeed_zero3"


def test_flash_attention_and_8bit_optimizer_when_available():
    plan = make(params=1.0, hw=Hardware(n_gpus=1, gpu_memory_gb=80.0, bf16=True, flash_attention=True,
                                        bitsandbytes=True))
    assert plan.attn_implementation == "flash_attention_2" and plan.optimizer == "paged_adamw_8bit"


def test_cpu_plan_and_evaluator_sequence_length():
    plan = make(hw=Hardware(), max_pos=512, data=DataFacts(rows=400, token_lengths=(3000,)))
    assert (plan.precision, plan.optimizer, plan.gradient_checkpointing, plan.n_gpus) == ("fp32", "adamw_torch",
                                                                                          False, 0)
    assert plan.eval_sequence_len == 256 and plan.sequence_len == 256


def test_dpo_and_grpo_specifics():
    dpo = make(kind="dpo")
    assert dpo.dpo_beta == 0.1 and dpo.learning_rate == 1e-5
    grpo = make(kind="grpo", params=3.0)
    assert grpo.method == "lora" and grpo.grpo_num_generations == 4 and grpo.epochs == 1.0


def test_plan_round_trips_json():
    plan = make()
    assert TrainingPlan.from_json(plan.to_json()) == plan


@pytest.mark.parametrize("kind", ["instruct", "chat", "dpo", "grpo"])
def test_axolotl_export(kind, tmp_path):
    plan = make(kind=kind)
    data_file = tmp_path / "data" / "x_train_data.json"
    data_file.parent.mkdir()
    data_file.write_text("[]")
    command = axolotl.export(plan, "3f0c2a9e-5b7d", datasets.DATASET_TYPES[kind], data_file, tmp_path / "ax")
    config = yaml.safe_load((tmp_path / "ax" / "axolotl.yml").read_text())
    assert command.startswith("accelerate launch") and command.endswith("-m axolotl.cli.train " +
                                                                         str(tmp_path / "ax" / "axolotl.yml"))
    assert config["base_model"] == "org/model" and config["sequence_len"] == plan.sequence_len
    assert config["learning_rate"] == plan.learning_rate and config["lora_r"] == plan.lora_r
    entry = config["datasets"][0]
    assert entry["data_files"] == ["x_train_data.json"]
    if kind == "instruct":
        assert entry["type"]["format"] == "{instruction} {input}"
        assert entry["type"]["no_input_format"] == "{instruction}"
    if kind == "chat":
        assert entry["roles"] == {"assistant": ["gpt"], "user": ["human"]}
    if kind == "dpo":
        assert config["rl"] == "dpo" and config["rl_beta"] == 0.1
    if kind == "grpo":
        assert config["rl"] == "grpo" and config["trl"]["reward_weights"] == [0.8, 0.2]
        module, name = config["trl"]["reward_funcs"][0].rsplit(".", 1)
        spec = importlib.util.spec_from_file_location(module, tmp_path / "ax" / f"{module}.py")
        loaded = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loaded)
        assert getattr(loaded, name)(["eee", "xx"]) == [1.0, 0.0]


def test_multi_gpu_command():
    plan = make(hw=Hardware(n_gpus=4, gpu_memory_gb=80.0, bf16=True))
    command = axolotl.launch_command(plan, __import__("pathlib").Path("c.yml"))
    assert "--multi_gpu --num_processes 4" in command and "--mixed_precision bf16" in command
    assert json.loads(plan.to_json())["n_gpus"] == 4
