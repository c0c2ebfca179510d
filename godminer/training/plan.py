"""TrainingPlan: every hyperparameter of one run, derived from (task, model, hardware, data, time budget).

The plan is frozen and carries the reason behind each value, so ``godminer plan --request FILE``
can show what will happen and why before anything trains. Size rules shared with the scheduler
(full fine-tune or LoRA, LoRA rank, epochs) come from ``godminer.sizing``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from godminer import sizing

TARGET_GLOBAL_BATCH = 64
MIN_STEPS_PER_EPOCH = 40


@dataclass(frozen=True)
class ModelFacts:
    """What the plan needs to know about the base model (from its config.json)."""

    params_b: float
    max_position_embeddings: int | None = None
    hidden_size: int = 4096
    num_layers: int = 32
    vocab_size: int = 128_000
    model_type: str = "llama"

    @classmethod
    def from_config(cls, config: dict[str, Any], params_b: float | None = None) -> ModelFacts:
        hidden = int(config.get("hidden_size") or config.get("n_embd") or 4096)
        layers = int(config.get("num_hidden_layers") or config.get("n_layer") or 32)
        vocab = int(config.get("vocab_size") or 32_000)
        inter = int(config.get("intermediate_size") or 4 * hidden)
        estimate = (layers * (4 * hidden * hidden + 3 * hidden * inter) + 2 * vocab * hidden) / 1e9
        return cls(
            params_b=params_b if params_b is not None else estimate,
            max_position_embeddings=config.get("max_position_embeddings") or config.get("n_positions"),
            hidden_size=hidden, num_layers=layers, vocab_size=vocab, model_type=str(config.get("model_type", "")),
        )


@dataclass(frozen=True)
class Hardware:
    n_gpus: int = 0
    gpu_memory_gb: float = 0.0
    bf16: bool = False
    flash_attention: bool = False
    bitsandbytes: bool = False
    deepspeed: bool = False

    @property
    def cpu_only(self) -> bool:
        return self.n_gpus == 0


def detect_hardware() -> Hardware:
    """The GPUs visible to this process (CUDA_VISIBLE_DEVICES applies) and the optional kernels."""
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        return Hardware()
    n = torch.cuda.device_count()
    props = torch.cuda.get_device_properties(0)
    return Hardware(
        n_gpus=n, gpu_memory_gb=props.total_memory / 2**30, bf16=torch.cuda.is_bf16_supported(),
        flash_attention=importlib.util.find_spec("flash_attn") is not None and props.major >= 8,
        bitsandbytes=importlib.util.find_spec("bitsandbytes") is not None,
        deepspeed=importlib.util.find_spec("deepspeed") is not None,
    )


@dataclass(frozen=True)
class DataFacts:
    rows: int
    token_lengths: tuple[int, ...] = ()  # a sample of full-example token counts

    def quantile(self, q: float) -> int:
        if not self.token_lengths:
            return 1024
        ordered = sorted(self.token_lengths)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True)
class TrainingPlan:
    kind: str
    base_model: str
    params_b: float
    method: str
    lora_r: int | None
    lora_alpha: int | None
    lora_dropout: float
    use_rslora: bool
    use_dora: bool
    sequence_len: int
    eval_sequence_len: int
    micro_batch_size: int
    gradient_accumulation: int
    learning_rate: float
    lr_scheduler: str
    min_lr_rate: float
    warmup_ratio: float
    epochs: float
    precision: str
    gradient_checkpointing: bool
    attn_implementation: str
    distributed: str
    n_gpus: int
    optimizer: str
    dev_size: int
    eval_batch_size: int
    eval_every_s: float
    early_stopping_patience: int
    ema_decay: float | None
    dpo_beta: float
    grpo_num_generations: int
    grpo_max_completion_length: int
    grpo_beta: float
    train_until: float
    seed: int = 42
    reasons: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def global_batch(self) -> int:
        return self.micro_batch_size * self.gradient_accumulation * max(1, self.n_gpus)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrainingPlan:
        return cls(**json.loads(text))

    def explain(self) -> str:
        """One line per value with its reason."""
        lines = []
        for key, value in asdict(self).items():
            if key == "reasons":
                continue
            reason = self.reasons.get(key, "")
            lines.append(f"{key:<28} {value!s:<22} {reason}".rstrip())
        return "\n".join(lines)


def _lr(kind: str, method: str, params_b: float) -> tuple[float, str]:
    if params_b < 0.05:
        return 1e-3, "tiny model (< 50 M parameters)"
    if kind == "dpo":
        if method == "full":
            return 5e-6, "DPO full fine-tune"
        return (1e-5 if params_b <= 9 else 8e-6), "DPO LoRA bucket"
    if kind == "grpo":
        return (5e-6, "GRPO full fine-tune") if method == "full" else (5e-5, "GRPO LoRA")
    if method == "full":
        for limit, lr in ((0.6, 1e-4), (2.0, 5e-5), (4.0, 3e-5)):
            if params_b <= limit:
                return lr, f"full fine-tune, ≤ {limit:g} B bucket"
        return 2e-5, "full fine-tune, large"
    for limit, lr in ((4.0, 2e-4), (9.0, 1.5e-4), (15.0, 1.2e-4), (40.0, 1e-4)):
        if params_b <= limit:
            return lr, f"LoRA, ≤ {limit:g} B bucket"
    return 8e-5, "LoRA, > 40 B bucket"


def _gpu_lr_scale(n_gpus: int) -> float:
    """The plan's ×1.2 to ×1.5 for several GPUs (the global batch grows with them)."""
    return 1.0 if n_gpus <= 1 else (1.2 if n_gpus == 2 else 1.5)


def build_plan(
    *,
    kind: str,
    base_model: str,
    model: ModelFacts,
    hardware: Hardware,
    data: DataFacts,
    budget_s: float,
    train_until: float,
    method: str | None = None,
    use_rslora: bool = False,
    use_dora: bool = False,
) -> TrainingPlan:
    """Derive the plan; ``method`` forces full or LoRA (otherwise chosen by size)."""
    r: dict[str, str] = {}
    size = model.params_b
    chosen = method or sizing.finetune_method(size, kind)
    r["method"] = "forced by the caller" if method else (
        "full fine-tune wins on small models" if chosen == "full" else "LoRA: the model is too big to fine-tune fully"
    )
    lora_r = sizing.lora_rank(size) if chosen == "lora" else None
    if lora_r:
        r["lora_r"] = f"rank by model size ({size:.1f} B), within the plan's 64-256"
        r["lora_alpha"] = "2 × rank"

    eval_len = _eval_len(model)
    r["eval_sequence_len"] = "the evaluator's: 4096, or half the model's context when that is shorter"
    p99 = data.quantile(0.99)
    sequence_len = min(eval_len, max(64, math.ceil(p99 / 64) * 64))
    r["sequence_len"] = f"p99 of the data's token lengths ({p99}), rounded to 64, at most the evaluator's"

    n_gpus = max(1, hardware.n_gpus) if not hardware.cpu_only else 0
    distributed, why = _distribution(size, kind, chosen, hardware)
    r["distributed"] = why
    micro = _micro_batch(model, size, chosen, kind, hardware, sequence_len, distributed)
    r["micro_batch_size"] = "fits the GPU memory left after weights, optimizer and logits" if n_gpus else "CPU"
    workers = max(1, n_gpus)
    global_target = min(TARGET_GLOBAL_BATCH, max(micro * workers, data.rows // MIN_STEPS_PER_EPOCH))
    accumulation = max(1, round(global_target / (micro * workers)))
    r["gradient_accumulation"] = (
        f"global batch ≈ {micro * workers * accumulation} sequences (≤ {TARGET_GLOBAL_BATCH}, "
        f"≥ {MIN_STEPS_PER_EPOCH} steps per epoch)"
    )
    lr, why_lr = _lr(kind, chosen, size)
    scale = _gpu_lr_scale(n_gpus)
    r["learning_rate"] = why_lr + (f", × {scale} for {n_gpus} GPUs" if scale != 1.0 else "")

    gpu = not hardware.cpu_only
    checkpointing = gpu and size >= 1.0
    r["gradient_checkpointing"] = "on for models ≥ 1 B on GPU (memory)" if checkpointing else "off: small model or CPU"
    attn = "flash_attention_2" if hardware.flash_attention else "sdpa"
    r["attn_implementation"] = "flash-attention installed" if hardware.flash_attention else "SDPA (no flash-attn)"
    precision = "bf16" if hardware.bf16 else "fp32"
    r["precision"] = "bf16 on a GPU that supports it" if hardware.bf16 else "fp32 (no bf16 GPU)"
    optimizer = _optimizer(chosen, hardware)
    r["optimizer"] = "8-bit paged AdamW (full fine-tune memory)" if "8bit" in optimizer else "AdamW"
    eval_batch = 4 if gpu else 8
    dev = _dev_size(data.rows, eval_batch * workers)
    r["dev_size"] = "held out for model selection: ~5 % of rows, full evaluation batches"
    every = min(1800.0, max(5.0 if hardware.cpu_only else 60.0, budget_s / 15))
    r["eval_every_s"] = "about 15 dev evaluations over the budget"
    ema = None if distributed == "fsdp" or (chosen == "full" and size > 3) or kind == "grpo" else 0.999
    if ema:
        r["ema_decay"] = "EMA of trainable weights, evaluated beside the raw weights"
    else:
        r["ema_decay"] = "off: sampled evaluation is costly" if kind == "grpo" else "off: sharded or large (memory)"
    epochs = sizing.PLANNED_EPOCHS[kind]
    r["epochs"] = "planned epochs; the deadline guard stops earlier when time runs out"
    r["train_until"] = "the end of the budget less the margin for saving and publishing"
    return TrainingPlan(
        kind=kind, base_model=base_model, params_b=size, method=chosen, lora_r=lora_r,
        lora_alpha=2 * lora_r if lora_r else None, lora_dropout=0.05, use_rslora=use_rslora, use_dora=use_dora,
        sequence_len=sequence_len, eval_sequence_len=eval_len, micro_batch_size=micro,
        gradient_accumulation=accumulation, learning_rate=lr * scale, lr_scheduler="cosine_with_min_lr",
        min_lr_rate=0.25, warmup_ratio=0.03, epochs=epochs, precision=precision,
        gradient_checkpointing=checkpointing, attn_implementation=attn, distributed=distributed, n_gpus=n_gpus,
        optimizer=optimizer, dev_size=dev, eval_batch_size=eval_batch, eval_every_s=every,
        early_stopping_patience=4, ema_decay=ema, dpo_beta=0.1,
        grpo_num_generations=4 if size < 14 else 2, grpo_max_completion_length=256 if gpu else 32,
        grpo_beta=0.04,
        train_until=train_until, reasons=r,
    )


def _eval_len(model: ModelFacts) -> int:
    from godminer.training.data import eval_sequence_len

    return eval_sequence_len(model.max_position_embeddings)


def _distribution(size: float, kind: str, method: str, hw: Hardware) -> tuple[str, str]:
    if hw.n_gpus <= 1:
        return "none", "one device"
    per_gpu = sizing.memory_per_gpu_gb(size, kind, method, 1)
    if per_gpu <= hw.gpu_memory_gb * sizing.USABLE_MEMORY_FRACTION:
        return "ddp", f"the model fits one GPU ({per_gpu:.0f} GB): data parallel over {hw.n_gpus}"
    if hw.deepspeed:
        return "deepspeed_zero3", "too big for one GPU; DeepSpeed is installed: ZeRO-3"
    return "fsdp", f"too big for one GPU ({per_gpu:.0f} GB): fully sharded over {hw.n_gpus}"


def _micro_batch(
    model: ModelFacts, size: float, method: str, kind: str, hw: Hardware, seq: int, distributed: str
) -> int:
    if hw.cpu_only:
        return 4
    shards = hw.n_gpus if distributed in ("fsdp", "deepspeed_zero3") else 1
    fixed = sizing.training_memory_gb(size, kind, method) / shards
    free_gb = hw.gpu_memory_gb * sizing.USABLE_MEMORY_FRACTION - fixed - 2.0
    checkpointed = size >= 1.0
    per_token = 2 * model.hidden_size * model.num_layers * (6 if checkpointed else 34) + 12 * model.vocab_size
    sequences = int(free_gb * 1e9 / (per_token * seq)) if free_gb > 0 else 1
    if kind == "dpo":
        sequences //= 2  # chosen and rejected go through together
    return max(1, min(64, sequences))


def _optimizer(method: str, hw: Hardware) -> str:
    if hw.cpu_only:
        return "adamw_torch"
    if method == "full" and hw.bitsandbytes:
        return "paged_adamw_8bit"
    return "adamw_torch_fused"


def _dev_size(rows: int, multiple: int) -> int:
    from godminer.training.data import dev_size_for

    return dev_size_for(rows, multiple)


def load_model_facts(model: str, params_b: float | None = None) -> ModelFacts:
    """Facts from a local model directory's config.json, or the Hub's (small download); name as a fallback."""
    local = Path(model)
    config: dict[str, Any] | None = None
    if (local / "config.json").is_file():
        config = json.loads((local / "config.json").read_text())
    else:
        try:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(model).to_dict()
        except Exception:
            config = None
    if config is None:
        return ModelFacts(params_b=params_b if params_b is not None else sizing.params_b(None, model, "instruct"))
    facts = ModelFacts.from_config(config, params_b)
    if params_b is None and local.is_dir():
        counted = _count_safetensors_params(local)
        if counted:
            facts = replace(facts, params_b=counted / 1e9)
    return facts


def _count_safetensors_params(folder: Path) -> int:
    """Parameter count from safetensors headers only (no weights are read)."""
    from safetensors import safe_open

    total = 0
    for path in folder.glob("*.safetensors"):
        with safe_open(str(path), framework="pt") as fh:
            for name in fh.keys():  # noqa: SIM118 - safe_open is not a mapping
                shape = fh.get_slice(name).get_shape()
                total += math.prod(shape)
    return total
