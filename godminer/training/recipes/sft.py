"""Supervised fine-tuning for InstructText and Chat tasks, read top to bottom.

The rows are tokenised exactly as the evaluator tokenises them (``training.data``), only the
answer tokens are labelled, and the loss is the evaluator's metric itself: the mean over samples
of each sample's mean token loss. The dev split is tokenised with the evaluator's sequence length
and its loss picks the model that is published.
"""

from __future__ import annotations

from typing import Any

from transformers import Trainer, TrainingArguments

from godminer.protocol.payloads import ChatTemplateDatasetType, InstructTextDatasetType
from godminer.training import data
from godminer.training.common import (
    PadCollator,
    RunContext,
    RunResult,
    attach_callbacks,
    load_model,
    load_tokenizer,
    per_sample_loss,
    train_and_finish,
    trainer_arguments,
    with_lora,
)


def examples(rows: list[dict[str, Any]], kind: str, dataset_type: dict[str, Any], tokenizer: Any,
             sequence_len: int) -> list[data.Example]:
    """Tokenised, labelled examples; rows the evaluator would drop are dropped."""
    out: list[data.Example | None] = []
    if kind == "chat":
        chat = ChatTemplateDatasetType.model_validate(dataset_type)
        template = data.chat_template_for(chat.chat_template, tokenizer)
        for row in rows:
            out.append(data.tokenize_chat(data.chat_messages(row, chat), tokenizer, template, sequence_len))
    else:
        instruct = InstructTextDatasetType.model_validate(dataset_type)
        for row in rows:
            prompt, answer = data.instruct_texts(row, instruct)
            out.append(data.tokenize_instruct(prompt, answer, tokenizer, sequence_len))
    return [e for e in out if e is not None]


def run(ctx: RunContext) -> RunResult:
    plan, spec = ctx.plan, ctx.spec

    # 1. Data: split first, then tokenise (the dev split exactly as the evaluator would).
    tokenizer = load_tokenizer(spec.model_path)
    rows = data.load_rows(spec.dataset_path)
    train_rows, dev_rows = data.split_dev(rows, plan.dev_size, seed=plan.seed)
    train = examples(train_rows, spec.kind, spec.dataset_type, tokenizer, plan.eval_sequence_len)
    dev = examples(dev_rows, spec.kind, spec.dataset_type, tokenizer, plan.eval_sequence_len)
    if not train:
        raise data.DataError("no training example survives tokenisation (empty answers or too long)")
    # Training may use a shorter window than the evaluator; longer examples are cut, not dropped.
    train_rows_tok = [{"input_ids": e.input_ids[: plan.sequence_len], "labels": e.labels[: plan.sequence_len]}
                      for e in train]
    dev_rows_tok = [{"input_ids": e.input_ids, "labels": e.labels} for e in dev] or train_rows_tok[:8]

    # 2. Model: the base, with a LoRA adapter when the plan says so.
    model = with_lora(load_model(spec.model_path, plan), plan)

    # 3. Trainer: the evaluator's metric as the loss; evaluation and stopping run on a clock.
    args = TrainingArguments(**trainer_arguments(plan, ctx.run_dir / "checkpoints"))
    trainer = Trainer(
        model=model, args=args, train_dataset=train_rows_tok, eval_dataset=dev_rows_tok,
        data_collator=PadCollator(tokenizer.pad_token_id), processing_class=tokenizer,
        compute_loss_func=per_sample_loss(plan.gradient_accumulation),
    )
    controls = attach_callbacks(trainer, ctx, metric=lambda m: m.get("eval_loss", float("inf")))

    # 4. Train until the planned epochs end or the deadline guard stops it; keep the best model.
    return train_and_finish(trainer, ctx, controls)
