"""The emergency model: a tiny LoRA adapter that changes the base model imperceptibly.

A failed submission costs −1 × work; a valid one that loses costs nothing (scoring.md §1). When no
trained model exists in time (the dataset vanished, training crashed near the deadline), this
adapter is published instead. It is built from the base model's safetensors *headers* only (names
and shapes; no weights are read, no torch is needed), with a small random B so that it is a real,
distinct fine-tune rather than a duplicate of anyone else's.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

RANK = 8
# Module names LoRA adapters commonly target, per architecture family; the first family found is used.
TARGETS = (("q_proj", "v_proj"), ("qkv_proj",), ("query_key_value",), ("c_attn",), ("Wqkv",), ("query", "value"))


def tensor_shapes(model_dir: Path) -> dict[str, list[int]]:
    """Names and shapes of the tensors in a model directory, read from the safetensors headers."""
    shapes: dict[str, list[int]] = {}
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        with path.open("rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(length))
        shapes.update({name: info["shape"] for name, info in header.items() if name != "__metadata__"})
    return shapes


def write_fallback_adapter(model_dir: Path, out_dir: Path, base_model: str, seed: int = 0) -> Path:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` into ``out_dir``."""
    shapes = tensor_shapes(model_dir)
    for family in TARGETS:
        layers = {name[: -len(".weight")]: shape for name, shape in shapes.items()
                  if len(shape) == 2 and name.endswith(".weight") and name.split(".")[-2] in family}
        if layers:
            break
    else:
        raise ValueError(f"no LoRA target modules found in {model_dir}")
    rng = np.random.default_rng(seed)
    conv1d = family == ("c_attn",)  # GPT-2's Conv1D stores its weight as (in, out)
    tensors = {}
    for module, shape in sorted(layers.items()):
        in_features, out_features = shape if conv1d else shape[::-1]
        key = f"base_model.model.{module}"
        tensors[f"{key}.lora_A.weight"] = rng.normal(0, in_features**-0.5, (RANK, in_features)).astype(np.float32)
        tensors[f"{key}.lora_B.weight"] = rng.normal(0, 1e-4, (out_features, RANK)).astype(np.float32)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model, "r": RANK,
        "lora_alpha": 2 * RANK, "lora_dropout": 0.0, "bias": "none", "target_modules": sorted(family),
        "fan_in_fan_out": conv1d, "inference_mode": True, "init_lora_weights": True,
        "modules_to_save": None, "use_rslora": False, "use_dora": False,
    }
    (out_dir / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return out_dir
