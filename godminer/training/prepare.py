"""From a run spec to a training plan: read the model's config and measure the data on this hardware."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from godminer.protocol.payloads import (
    ChatTemplateDatasetType,
    DpoDatasetType,
    GrpoDatasetType,
    InstructTextDatasetType,
    TrainRequestGrpo,
    TrainRequestText,
)
from godminer.training import data
from godminer.training.common import RunSpec
from godminer.training.plan import DataFacts, Hardware, TrainingPlan, build_plan, detect_hardware, load_model_facts


def sample_texts(rows: list[dict[str, Any]], kind: str, dataset_type: dict[str, Any], tokenizer: Any) -> list[str]:
    """The full text of each example as it will be tokenised (for its length)."""
    if kind == "instruct":
        dt = InstructTextDatasetType.model_validate(dataset_type)
        return ["".join(data.instruct_texts(r, dt)) for r in rows]
    if kind == "chat":
        chat = ChatTemplateDatasetType.model_validate(dataset_type)
        template = data.chat_template_for(chat.chat_template, tokenizer)
        return [tokenizer.apply_chat_template(data.chat_messages(r, chat), chat_template=template, tokenize=False)
                for r in rows]
    if kind == "dpo":
        pairs = data.dpo_rows(rows, DpoDatasetType.model_validate(dataset_type))
        return [p["prompt"] + max(p["chosen"], p["rejected"], key=len) for p in pairs]
    return [r["prompt"] for r in data.grpo_rows(rows, GrpoDatasetType.model_validate(dataset_type))]


def apply_overrides(plan: TrainingPlan, overrides: dict[str, Any]) -> TrainingPlan:
    """The engine's corrections after a failed attempt; the global batch is kept where possible."""
    changes: dict[str, Any] = {}
    reasons = dict(plan.reasons)
    cap = overrides.get("max_micro_batch")
    if cap is not None and plan.micro_batch_size > cap:
        factor = plan.micro_batch_size / cap
        changes["micro_batch_size"] = int(cap)
        changes["gradient_accumulation"] = max(1, round(plan.gradient_accumulation * factor))
        reasons["micro_batch_size"] = f"capped at {cap} after an out-of-memory error"
    if overrides.get("gradient_checkpointing"):
        changes["gradient_checkpointing"] = True
        reasons["gradient_checkpointing"] = "on after an out-of-memory error"
    for name, value in (overrides.get("set") or {}).items():  # values pinned by the operator or a benchmark
        if name not in TrainingPlan.__dataclass_fields__ or name == "reasons":
            raise data.DataError(f"unknown plan field {name!r} in overrides")
        changes[name] = value
        reasons[name] = "set by the caller"
    if not changes:
        return plan
    return dataclasses.replace(plan, **changes, reasons=reasons)


def make_plan(spec: RunSpec, hardware: Hardware | None = None, tokenizer: Any = None) -> TrainingPlan:
    from godminer.training.common import load_tokenizer

    tokenizer = tokenizer or load_tokenizer(spec.model_path)
    rows = data.load_rows(spec.dataset_path)
    texts = sample_texts(rows, spec.kind, spec.dataset_type, tokenizer)
    facts = DataFacts(rows=len(rows), token_lengths=tuple(data.token_lengths(texts, tokenizer)))
    plan = build_plan(
        kind=spec.kind, base_model=spec.base_model, model=load_model_facts(spec.model_path, spec.params_b),
        hardware=hardware or detect_hardware(), data=facts, budget_s=spec.budget_s, train_until=spec.train_until,
        method=spec.overrides.get("method"), use_rslora=bool(spec.overrides.get("use_rslora")),
        use_dora=bool(spec.overrides.get("use_dora")),
    )
    return apply_overrides(plan, spec.overrides)


def parse_text_request(request: dict[str, Any]) -> TrainRequestText | TrainRequestGrpo:
    """A start-training payload for a text task (image payloads are refused with a clear error)."""
    if "dataset_zip" in request:
        raise data.DataError("image tasks (dataset_zip) are not trained by the text engine")
    if "reward_functions" in (request.get("dataset_type") or {}):
        return TrainRequestGrpo.model_validate(request)
    return TrainRequestText.model_validate(request)


def spec_from_request(
    request: dict[str, Any],
    run_dir: Path,
    now: float,
    hours: float | None = None,
    overrides: dict[str, Any] | None = None,
    margin_s: float | None = None,
) -> RunSpec:
    """Resolve a start-training payload (dataset path or URL, model directory or Hub id) into a run spec."""
    from godminer.engine.fetch import prefetch_model, resolve_dataset
    from godminer.engine.policy import offer_kind

    parsed = parse_text_request(request)
    run_dir.mkdir(parents=True, exist_ok=True)
    dataset_path = resolve_dataset(parsed.dataset, run_dir / "data")
    model_path = prefetch_model(parsed.model)
    budget = (hours if hours is not None else parsed.hours_to_complete) * 3600.0
    margin = margin_s if margin_s is not None else min(600.0, 0.05 * budget)
    return RunSpec(
        run_dir=str(run_dir), kind=offer_kind(str(parsed.task_type), parsed.model), base_model=parsed.model,
        model_path=str(model_path), dataset_path=str(dataset_path),
        dataset_type=parsed.dataset_type.model_dump(), train_until=now + budget - margin, budget_s=budget,
        overrides=dict(overrides or {}),
    )
