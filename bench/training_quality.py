"""The validator's metric reached in a fixed wall-clock budget: godminer's plan against fixed settings.

One CPU task (a tiny model built here; the repeat-twice instruct task and a DPO task from
godminer.devnet.datasets), the same data and split, the same budget for every row, the same engine
(exact tokenisation, deadline guard, dev selection); only the plan's values differ:

* godminer plan: what ``build_plan`` chooses for this model, data and hardware;
* reference miner: LoRA r8 / alpha 16, lr 2e-4, sequence 512, one epoch (its base.yml);
* plan's fixed settings: LoRA r64 / alpha 128, lr 3e-4, sequence 2048 (the operator's plan).

With ``--gpu`` it instead measures tokens/s per GPU and model FLOPs utilisation for a randomly
initialised ~1 B Llama (nothing downloaded) on the visible GPUs.
Usage: python bench/training_quality.py [--seconds 90] | --gpu [--size 1b]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from godminer.devnet import datasets
from godminer.training import evaluate
from godminer.training.common import RunSpec, load_tokenizer
from godminer.training.run import run_training
from godminer.training.tiny import build_model

CONFIGS: dict[str, dict[str, Any]] = {
    "godminer plan": {},
    "reference miner (r8/a16, lr 2e-4, seq 512, 1 epoch)": {
        "method": "lora", "set": {"lora_r": 8, "lora_alpha": 16, "learning_rate": 2e-4, "sequence_len": 512,
                                  "epochs": 1.0, "ema_decay": None}},
    "plan's fixed settings (r64/a128, lr 3e-4, seq 2048)": {
        "method": "lora", "set": {"lora_r": 64, "lora_alpha": 128, "learning_rate": 3e-4, "sequence_len": 2048}},
}


def train_once(root: Path, model: Path, kind: str, rows: list[dict[str, Any]], seconds: float,
               overrides: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    run_dir = Path(tempfile.mkdtemp(dir=root, prefix=f"{kind}-"))
    (run_dir / "train.json").write_text(json.dumps(rows))
    RunSpec(run_dir=str(run_dir), kind=kind, base_model=str(model), model_path=str(model),
            dataset_path=str(run_dir / "train.json"), dataset_type=datasets.DATASET_TYPES[kind],
            train_until=time.time() + seconds, budget_s=seconds, overrides=overrides).save()
    run_training(run_dir)
    plan = json.loads((run_dir / "plan.json").read_text())
    return (run_dir / "model").resolve(), plan


def quality(seconds: float) -> None:
    root = Path(tempfile.mkdtemp(prefix="godminer-quality-"))
    model = build_model(root / "base", hidden=128, layers=4)
    tokenizer = load_tokenizer(str(model))
    base = evaluate.load_submission(model)
    tasks = {"instruct": datasets.split(datasets.instruct_rows(3000, seed=7)),
             "dpo": datasets.split(datasets.dpo_rows(1500, seed=8))}
    print(f"tiny Llama (hidden 128, 4 layers), {seconds:.0f} s of wall clock per run, 2 CPU cores\n")
    print(f"{'task':<9} {'configuration':<55} {'method':<6} {'lr':>8} {'test metric':>12}")
    for kind, (train, test) in tasks.items():
        dt = datasets.DATASET_TYPES[kind]
        if kind == "dpo":
            untrained = evaluate.dpo_loss(evaluate.load_submission(model), base, tokenizer, test, dt)
        else:
            untrained = evaluate.sft_loss(base, tokenizer, test, kind, dt, 256)
        print(f"{kind:<9} {'base model (untrained)':<55} {'-':<6} {'-':>8} {untrained:>12.4f}")
        for name, overrides in CONFIGS.items():
            model_dir, plan = train_once(root, model, kind, train, seconds, overrides)
            trained = evaluate.load_submission(model_dir)
            if kind == "dpo":
                metric = evaluate.dpo_loss(trained, base, tokenizer, test, dt)
            else:
                metric = evaluate.sft_loss(trained, tokenizer, test, kind, dt, 256)
            print(f"{kind:<9} {name:<55} {plan['method']:<6} {plan['learning_rate']:>8.0e} {metric:>12.4f}",
                  flush=True)


def gpu_throughput(size: str, steps_seconds: float) -> None:
    """Tokens/s per GPU and MFU for a random ~1 B (or ~8 B) Llama on the visible GPUs."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    shapes = {"1b": (2048, 16, 32, 8, 8192), "8b": (4096, 32, 32, 8, 14336)}
    hidden, layers, heads, kv, inter = shapes[size]
    root = Path(tempfile.mkdtemp(prefix="godminer-gpu-"))
    build_model(root / "tok")  # only for its tokenizer
    tokenizer = AutoTokenizer.from_pretrained(root / "tok")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
                         max_position_embeddings=8192, torch_dtype="bfloat16")
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    params = sum(p.numel() for p in model.parameters())
    del model
    rows = [{"instruct": " ".join(["word"] * 600), "input": "", "output": " ".join(["text"] * 600)}] * 4000
    for method in ("full", "lora"):
        model_dir, plan = train_once(root, root / "model", "instruct", rows, steps_seconds, {"method": method})
        lines = [json.loads(x) for x in (model_dir.parent.parent / "progress.jsonl").read_text().splitlines()]
        rates = [x["tokens_per_s"] for x in lines if x.get("event") == "train"][5:]
        per_gpu = sum(rates) / len(rates) / max(1, plan["n_gpus"]) if rates else 0.0
        flops = (8 if method == "full" else 6) * params  # with gradient checkpointing's recompute
        peak = 989e12  # H100/H200 dense bf16
        print(f"{size} ({params / 1e9:.2f} B) {method}: {per_gpu:,.0f} tokens/s per GPU, "
              f"MFU {per_gpu * flops / peak:.1%} (micro-batch {plan['micro_batch_size']}, "
              f"sequence {plan['sequence_len']})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--size", choices=["1b", "8b"], default="1b")
    args = parser.parse_args()
    if args.gpu:
        gpu_throughput(args.size, args.seconds)
    else:
        quality(args.seconds)


if __name__ == "__main__":
    main()
