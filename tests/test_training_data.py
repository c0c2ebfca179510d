"""Training rows formatted exactly as the evaluator formats them (training.md §1.1), token for token."""

from __future__ import annotations

import pytest

from godminer.protocol.payloads import ChatTemplateDatasetType, DpoDatasetType, InstructTextDatasetType
from godminer.training import data
from godminer.training.common import load_tokenizer
from godminer.training.tiny import build_tokenizer

VALIDATOR_TYPE = InstructTextDatasetType(field_system="system", field_instruction="instruct", field_input="input",
                                         field_output="output")


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return load_tokenizer(str(build_tokenizer(tmp_path_factory.mktemp("tok"))))


def evaluator_example(tok, prompt: str, output: str):
    """The evaluator's rule written out: prompt with BOS, output without BOS plus EOS, labels on the output."""
    p = tok(prompt)["input_ids"]
    o = [*tok(output)["input_ids"][1:], tok.eos_token_id]
    return p + o, [-100] * len(p) + o


@pytest.mark.parametrize(
    ("row", "prompt"),
    [
        ({"instruct": "repeat twice:", "input": "red cat", "output": "red cat red cat"}, "repeat twice: red cat"),
        ({"instruct": "repeat twice: red cat", "input": "", "output": "red cat red cat"}, "repeat twice: red cat"),
        ({"instruct": "repeat", "input": " ", "output": "x"}, "repeat  "),  # whitespace input is truthy
        ({"instruct": "repeat", "input": "dog", "output": "dog", "system": "be brief."}, "be brief.repeat dog"),
        ({"instruct": "repeat", "output": "dog", "system": ""}, "repeat"),
    ],
)
def test_instruct_prompt_and_labels_match_the_evaluator(tok, row, prompt):
    built_prompt, output = data.instruct_texts(row, VALIDATOR_TYPE)
    assert built_prompt == prompt
    example = data.tokenize_instruct(built_prompt, output, tok, 256)
    ids, labels = evaluator_example(tok, prompt, row["output"])
    assert example.input_ids == ids
    assert example.labels == labels


def test_system_prompt_applies_only_without_a_system_key(tok):
    dt = VALIDATOR_TYPE.model_copy(update={"system_prompt": "you copy. "})
    assert data.instruct_texts({"instruct": "a", "output": "b"}, dt)[0] == "you copy. a"
    assert data.instruct_texts({"instruct": "a", "output": "b", "system": "s:"}, dt)[0] == "s:a"
    no_system_field = dt.model_copy(update={"field_system": None})
    assert data.instruct_texts({"instruct": "a", "output": "b", "system": "s:"}, no_system_field)[0] == "you copy. a"


def test_custom_formats(tok):
    dt = VALIDATOR_TYPE.model_copy(update={
        "format": "Q: {instruction}\n{input}\nA:", "no_input_format": "Q: {instruction}\nA:",
        "system_format": "[{system}] ",
    })
    assert data.instruct_texts({"instruct": "i", "input": "x", "output": "o"}, dt)[0] == "Q: i\nx\nA:"
    assert data.instruct_texts({"instruct": "i", "output": "o", "system": "s"}, dt)[0] == "[s] Q: i\nA:"


def test_prompt_and_output_are_tokenised_separately(tok):
    prompt, output = "quick br", "own fox"
    example = data.tokenize_instruct(prompt, output, tok, 256)
    joint = tok(prompt + output)["input_ids"] + [tok.eos_token_id]
    assert example.input_ids == evaluator_example(tok, prompt, output)[0]
    assert example.input_ids != joint  # "brown" merges across the boundary when tokenised together


def test_dropped_samples(tok):
    assert data.tokenize_instruct("anything", "", tok, 256) is None  # empty output: nothing to score
    long_output = " ".join(["red"] * 300)
    assert data.tokenize_instruct("p", long_output, tok, 64) is None  # over sequence_len: dropped, not cut
    eos = data.tokenize_instruct("p", "dog</s>", tok, 256)
    assert eos.input_ids.count(tok.eos_token_id) == 1  # EOS already present is not doubled


def test_chat_labels_cover_assistant_turns_only(tok):
    dt = ChatTemplateDatasetType(chat_user_reference="human", chat_assistant_reference="gpt")
    row = {"conversations": [{"from": "system", "value": "copy."}, {"from": "human", "value": "red cat"},
                             {"from": "gpt", "value": "red cat red cat"}, {"from": "human", "value": "dog"},
                             {"from": "gpt", "value": "dog dog"}]}
    messages = data.chat_messages(row, dt)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    example = data.tokenize_chat(messages, tok, data.chat_template_for("chatml", tok), 512)
    text = tok.decode(example.input_ids)
    assert text.startswith("<|im_start|>system\ncopy.<|im_end|>\n<|im_start|>user\nred cat")
    labelled = [t for t, label in zip(example.input_ids, example.labels, strict=True) if label != data.IGNORE]
    assert tok.decode(labelled) == "red cat red cat<|im_end|>dog dog<|im_end|>"


def test_dpo_formats_and_dropped_rows():
    dt = DpoDatasetType(field_prompt="prompt", field_system="system", field_chosen="chosen",
                        field_rejected="rejected", prompt_format="{system} {prompt}", chosen_format="{chosen} <end>",
                        rejected_format=None)
    rows = data.dpo_rows([{"prompt": "p", "system": "s", "chosen": "c", "rejected": "r"},
                          {"prompt": "p", "chosen": "", "rejected": "r"}], dt)
    assert rows == [{"prompt": "s p", "chosen": "c <end>", "rejected": "r"}]
    with pytest.raises(data.DataError):
        data.dpo_rows([{"prompt": "p", "chosen": "", "rejected": ""}], dt)


def test_load_rows_accepts_array_and_lines_and_refuses_garbage(tmp_path):
    (tmp_path / "a.json").write_text('[{"a": 1}, {"a": 2}]')
    (tmp_path / "b.jsonl").write_text('{"a": 1}\n{"a": 2}\n')
    (tmp_path / "c.json").write_text("not json at all")
    (tmp_path / "d.json").write_text("[1, 2]")
    assert data.load_rows(tmp_path / "a.json") == data.load_rows(tmp_path / "b.jsonl")
    for bad in ("c.json", "d.json"):
        with pytest.raises(data.DataError):
            data.load_rows(tmp_path / bad)


def test_eval_sequence_len_and_dev_split():
    assert data.eval_sequence_len(131072) == 4096
    assert data.eval_sequence_len(2048) == 1024
    assert data.eval_sequence_len(None) == 4096
    train, dev = data.split_dev(list(range(100)), 10)
    assert len(dev) == 10 and not set(train) & set(dev) and len(train) == 90
    assert data.dev_size_for(1000, 8) % 8 == 0
