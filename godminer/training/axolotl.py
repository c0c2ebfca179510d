"""The same TrainingPlan as an axolotl YAML and the exact launch command (for operators who use axolotl).

Exported, not run by godminer. The dataset entries follow the validator's ``create_dataset_entry``
(protocol.md §6.3) so axolotl tokenises as the evaluator does; GRPO reward functions are written
to ``rewards_<task>.py`` beside the YAML. axolotl has no wall-clock guard: ``max_steps`` is left to
the epochs, so run it with a budget you have checked against ``godminer plan``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from godminer.training.plan import TrainingPlan

_OPTIMIZER = {"adamw_torch": "adamw_torch", "adamw_torch_fused": "adamw_torch_fused",
              "paged_adamw_8bit": "paged_adamw_8bit"}


def dataset_entry(kind: str, dataset_type: dict[str, Any], data_file: Path) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": str(data_file.parent), "ds_type": "json", "data_files": [data_file.name]}
    if kind == "instruct":
        fields = {k: v for k, v in dataset_type.items() if v is not None and k != "field"}
        fields.setdefault("no_input_format", "{instruction}")
        fields.setdefault("format", "{instruction} {input}" if dataset_type.get("field_input") else "{instruction}")
        entry.update({"format": "custom", "type": fields})
    elif kind == "chat":
        role, content = dataset_type.get("chat_role_field", "from"), dataset_type.get("chat_content_field", "value")
        entry.update({
            "type": "chat_template", "chat_template": dataset_type.get("chat_template") or "chatml",
            "field_messages": dataset_type.get("chat_column") or "conversations",
            "message_property_mappings": {"role": role, "content": content},
            "roles": {"assistant": [dataset_type.get("chat_assistant_reference") or "assistant"],
                      "user": [dataset_type.get("chat_user_reference") or "user"]},
        })
    elif kind == "dpo":
        entry.update({"split": "train", "type": {
            "field_prompt": dataset_type.get("field_prompt") or "prompt",
            "field_system": dataset_type.get("field_system"),
            "field_chosen": dataset_type.get("field_chosen") or "chosen",
            "field_rejected": dataset_type.get("field_rejected") or "rejected",
            "prompt_format": dataset_type.get("prompt_format") or "{prompt}",
            "chosen_format": dataset_type.get("chosen_format") or "{chosen}",
            "rejected_format": dataset_type.get("rejected_format") or "{rejected}",
        }})
    else:
        entry["split"] = "train"
    return entry


def reward_module_name(task_id: str) -> str:
    return "rewards_" + re.sub(r"\W", "_", task_id)


def _reward_module(task_id: str, dataset_type: dict[str, Any]) -> tuple[str, list[str], list[float]]:
    sources, names, weights = [], [], []
    for fn in dataset_type.get("reward_functions") or []:
        source = fn["reward_func"]
        match = re.search(r"def\s+([A-Za-z_]\w*)\s*\(", source)
        if match:
            sources.append(source)
            names.append(f"{reward_module_name(task_id)}.{match.group(1)}")
            weights.append(float(fn["reward_weight"]))
    return "\n\n\n".join(sources) + "\n", names, weights


def axolotl_config(plan: TrainingPlan, task_id: str, dataset_type: dict[str, Any], data_file: Path,
                   output_dir: Path) -> dict[str, Any]:
    config: dict[str, Any] = {
        "base_model": plan.base_model,
        "model_type": "AutoModelForCausalLM",
        "tokenizer_type": "AutoTokenizer",
        "datasets": [dataset_entry(plan.kind, dataset_type, data_file)],
        "val_set_size": 0.05 if plan.dev_size else 0.0,  # godminer holds out ~5 % for model selection
        "sequence_len": plan.sequence_len,
        "sample_packing": False,
        "pad_to_sequence_len": False,
        "train_on_inputs": False,
        "micro_batch_size": plan.micro_batch_size,
        "gradient_accumulation_steps": plan.gradient_accumulation,
        "num_epochs": plan.epochs,
        "learning_rate": plan.learning_rate,
        "lr_scheduler": "cosine",
        "cosine_min_lr_ratio": plan.min_lr_rate,
        "warmup_ratio": plan.warmup_ratio,
        "optimizer": _OPTIMIZER.get(plan.optimizer, "adamw_torch"),
        "weight_decay": 0.0,
        "bf16": plan.precision == "bf16",
        "tf32": plan.precision == "bf16",
        "gradient_checkpointing": plan.gradient_checkpointing,
        "flash_attention": plan.attn_implementation == "flash_attention_2",
        "sdp_attention": plan.attn_implementation == "sdpa",
        "evals_per_epoch": 4,
        "saves_per_epoch": 4,
        "save_total_limit": 2,
        "early_stopping_patience": plan.early_stopping_patience,
        "load_best_model_at_end": True,
        "logging_steps": 1,
        "seed": plan.seed,
        "output_dir": str(output_dir),
    }
    if plan.method == "lora":
        config.update({"adapter": "lora", "lora_r": plan.lora_r, "lora_alpha": plan.lora_alpha,
                       "lora_dropout": plan.lora_dropout, "lora_target_linear": True,
                       "peft_use_rslora": plan.use_rslora, "peft_use_dora": plan.use_dora})
    if plan.kind == "dpo":
        config.update({"rl": "dpo", "rl_beta": plan.dpo_beta})
    if plan.kind == "grpo":
        _, names, weights = _reward_module(task_id, dataset_type)
        config.update({"rl": "grpo", "trl": {
            "beta": plan.grpo_beta, "num_generations": plan.grpo_num_generations,
            "max_completion_length": plan.grpo_max_completion_length, "use_vllm": False,
            "reward_funcs": names, "reward_weights": weights,
        }})
    if plan.distributed == "fsdp":
        config.update({"fsdp_version": 2, "fsdp_config": {"reshard_after_forward": True,
                                                          "auto_wrap_policy": "TRANSFORMER_BASED_WRAP"}})
    elif plan.distributed == "deepspeed_zero3":
        config["deepspeed"] = "deepspeed_configs/zero3_bf16.json"
    return config


def launch_command(plan: TrainingPlan, config_path: Path) -> str:
    """The plan's command: ``accelerate launch`` with one process per GPU."""
    processes = max(1, plan.n_gpus)
    parts = ["accelerate", "launch"]
    if processes > 1:
        parts.append("--multi_gpu")
    parts += ["--num_processes", str(processes), "--num_machines", "1", "--machine_rank", "0",
              "--main_process_port", "29500"]
    if plan.precision == "bf16":
        parts += ["--mixed_precision", "bf16"]
    parts += ["-m", "axolotl.cli.train", str(config_path)]
    return shlex.join(parts)


def export(plan: TrainingPlan, task_id: str, dataset_type: dict[str, Any], data_file: Path, out_dir: Path) -> str:
    """Write ``axolotl.yml`` (and the GRPO reward module) into ``out_dir``; return the launch command."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = axolotl_config(plan, task_id, dataset_type, data_file, out_dir / "outputs")
    if plan.kind == "grpo":
        source, _, _ = _reward_module(task_id, dataset_type)
        (out_dir / f"{reward_module_name(task_id)}.py").write_text(source)
    config_path = out_dir / "axolotl.yml"
    header = (f"# godminer plan exported for axolotl. Launch with (PYTHONPATH holds the reward module for GRPO):\n"
              f"#   {launch_command(plan, config_path)}\n")
    config_path.write_text(header + yaml.safe_dump(config, sort_keys=False))
    return launch_command(plan, config_path)
