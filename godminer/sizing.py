"""Model-size rules shared by the offer policy, the scheduler and the training plan (pure functions).

Sizes are in billions of parameters. The memory model is deliberately simple and conservative:

* full fine-tune: bf16 weights and gradients plus 8-bit AdamW states, 6 bytes per parameter;
* LoRA: the frozen bf16 base, 2 bytes per parameter, plus adapter and optimizer (a few %);
* DPO full fine-tune keeps a bf16 reference copy (+2 bytes); LoRA DPO uses the base as reference;
* GRPO adds room for generation (KV cache) and a reference model;
* activations with gradient checkpointing: a fixed workspace plus a share proportional to size.
Models that do not fit one GPU are sharded (FSDP / ZeRO-3) over the GPUs of one box.
"""

from __future__ import annotations

import math
import re

# The plan's allocation rule (seed §1): over 70 B → 4 GPUs, over 35 B → 2, else 1.
PLAN_GPU_RULE: tuple[tuple[float, int], ...] = ((70.0, 4), (35.0, 2))

IMAGE_PARAMS_B = {"sdxl": 3.5, "flux": 12.0}
_SIZE_IN_NAME = re.compile(r"(\d+(?:\.\d+)?)(?=[bB])")
USABLE_MEMORY_FRACTION = 0.97


def params_b(model_params_count: int | None, model_id: str, kind: str) -> float:
    """Best guess of the model size in billions: the offer's count, the id, or the image family."""
    if kind in IMAGE_PARAMS_B:
        return IMAGE_PARAMS_B[kind]
    if model_params_count and model_params_count > 0:
        return model_params_count / 1e9
    match = _SIZE_IN_NAME.search(model_id)
    if match:
        return float(match.group(1))
    return 8.0  # unknown: assume a common mid-size model rather than a tiny one


FAMILIES = ("llama", "qwen", "mistral", "mixtral", "gemma", "phi", "deepseek", "falcon", "gpt", "pythia", "opt",
            "bloom", "olmo", "smollm", "tinyllama", "stable-diffusion", "sdxl", "flux")


def model_family(model_id: str) -> str:
    """The family a model id names (for success rates per family); 'other' when none matches."""
    name = model_id.lower().rsplit("/", 1)[-1]
    for family in sorted(FAMILIES, key=len, reverse=True):
        if family in name:
            return {"sdxl": "stable-diffusion", "tinyllama": "llama", "mixtral": "mistral"}.get(family, family)
    return "other"


def image_kind(model_id: str, model_type: str | None = None) -> str:
    """'flux' or 'sdxl' for an image task (offers carry only the model id)."""
    if model_type:
        return str(model_type).lower()
    return "flux" if "flux" in model_id.lower() else "sdxl"


def finetune_method(size_b: float, kind: str) -> str:
    """'full' or 'lora': full fine-tunes win on small models (training.md §4.2), LoRA above."""
    if kind in IMAGE_PARAMS_B:
        return "lora"
    limit = 1.6 if kind == "grpo" else 3.5
    return "full" if size_b <= limit else "lora"


def lora_rank(size_b: float) -> int:
    """LoRA rank by model size, within the plan's 64-256."""
    if size_b <= 4:
        return 256
    if size_b <= 15:
        return 128
    return 96 if size_b <= 40 else 64


def training_memory_gb(size_b: float, kind: str, method: str) -> float:
    """Total accelerator memory to train, all GPUs together, before the activation workspace."""
    if kind in IMAGE_PARAMS_B:
        return 2.0 * size_b * 1.6 + 6.0  # bf16 UNet/transformer + text encoders + VAE + LoRA
    reference = 2.0 if kind in ("dpo", "grpo") else 0.0
    per_param = 6.0 + reference if method == "full" else 2.0 * 1.04
    total = per_param * size_b
    if kind == "grpo":
        total *= 1.3  # generation cache and sampling buffers
    return total


def activation_gb(size_b: float) -> float:
    """Per-GPU workspace with gradient checkpointing and a modest micro-batch."""
    return 3.0 + 0.02 * size_b


def gpus_needed(size_b: float, kind: str, method: str, gpu_memory_gb: float) -> int:
    """GPUs for a job: the plan's rule, or more when the memory estimate asks for it."""
    rule = next((n for threshold, n in PLAN_GPU_RULE if size_b > threshold), 1)
    total = training_memory_gb(size_b, kind, method)
    usable = gpu_memory_gb * USABLE_MEMORY_FRACTION - activation_gb(size_b)
    by_memory = math.ceil(total / usable) if usable > 0 else 64
    return max(rule, by_memory)


def memory_per_gpu_gb(size_b: float, kind: str, method: str, n_gpus: int) -> float:
    """Memory each GPU holds when the job is sharded over n_gpus (DDP if it fits one GPU)."""
    return training_memory_gb(size_b, kind, method) / max(1, n_gpus) + activation_gb(size_b)


def flops_per_token(size_b: float, method: str) -> float:
    """Training FLOPs per token: forward 2N, backward 4N (2N when weights are frozen), +2N recompute."""
    n = size_b * 1e9
    return (8.0 if method == "full" else 6.0) * n


# Work per training row relative to one SFT sequence: DPO runs chosen and rejected plus the
# reference; GRPO samples several completions autoregressively, which dominates its cost.
KIND_COST = {"instruct": 1.0, "chat": 1.0, "dpo": 2.6, "grpo": 10.0}
# Epochs a job trains when its deadline allows (winners train 2-3 epochs; GRPO is generation-bound).
PLANNED_EPOCHS = {"instruct": 3.0, "chat": 3.0, "dpo": 2.0, "grpo": 1.0}


def artefact_gb(size_b: float, kind: str, method: str) -> float:
    """Size of what gets published: full bf16 weights, or a LoRA adapter."""
    if kind in IMAGE_PARAMS_B:
        return 0.2
    if method == "full":
        return 2.0 * size_b
    return max(0.05, 2.0 * size_b * 0.02)
