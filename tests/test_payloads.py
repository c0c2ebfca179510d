"""Protocol models: tolerant parsing and explicit text dataset-type discrimination (protocol.md §3)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from godminer.protocol.payloads import (
    ChatTemplateDatasetType,
    DpoDatasetType,
    GrpoDatasetType,
    InstructTextDatasetType,
    MinerTaskOffer,
    TaskType,
    TrainRequestGrpo,
    TrainRequestImage,
    TrainRequestText,
    text_dataset_kind,
)

INSTRUCT = (
    '{"model": "unsloth/Meta-Llama-3.1-8B-Instruct", "task_id": "3f0c2a9e-5b7d-4e8a-9c1f-2d6b8e4a7c10", '
    '"hours_to_complete": 4.0, "expected_repo_name": "9a2f6c1e", "dataset": "https://s3/x_train_data.json?a=1", '
    '"dataset_type": {"system_prompt": "", "system_format": "{system}", "field_system": null, '
    '"field_instruction": "instruct", "field_input": "input", "field_output": "output", "format": null, '
    '"no_input_format": null, "field": null}, "file_format": "s3"}'
)
DPO = (
    '{"model": "Qwen/Qwen2.5-7B-Instruct", "task_id": "5e0d", "hours_to_complete": 6.0, '
    '"expected_repo_name": "c0ffee00", "dataset": "https://s3/y_train_data.json?q", '
    '"dataset_type": {"field_prompt": "prompt", "field_system": null, '
    '"field_chosen": "chosen", "field_rejected": "rejected", "prompt_format": null, "chosen_format": null, '
    '"rejected_format": null}, "file_format": "s3"}'
)
CHAT = (
    '{"model": "unsloth/Llama-3.2-3B-Instruct", "task_id": "c1", "hours_to_complete": 3.0, "expected_repo_name": "r",'
    ' "dataset": "https://s3/a41c_train_data.json?q", "dataset_type": {"chat_template": "chatml", '
    '"chat_column": "conversations", "chat_role_field": "from", "chat_content_field": "value", '
    '"chat_user_reference": "human", "chat_assistant_reference": "gpt"}, "file_format": "s3"}'
)
GRPO = (
    '{"model": "Qwen/Qwen2.5-1.5B-Instruct", "task_id": "g1", "hours_to_complete": 3.0, "expected_repo_name": "r", '
    '"dataset": "https://s3/e7a0_train_data.json?q", "dataset_type": {"field_prompt": "prompt", "reward_functions": '
    '[{"reward_id": "0f8e", "reward_func": "def reward_long(completions, **kwargs):\\n    return [float(len(c)) '
    'for c in completions]", "reward_weight": 0.6171, "func_hash": "b108", "is_generic": true, "is_manual": true}], '
    '"extra_column": null}, "file_format": "s3"}'
)


@pytest.mark.parametrize(
    ("body", "model", "task_type"),
    [
        (INSTRUCT, InstructTextDatasetType, TaskType.INSTRUCT),
        (DPO, DpoDatasetType, TaskType.DPO),
        (CHAT, ChatTemplateDatasetType, TaskType.CHAT),
        (GRPO, GrpoDatasetType, TaskType.GRPO),
    ],
)
def test_text_dataset_types_are_told_apart(body, model, task_type):
    request = TrainRequestText.model_validate_json(body)
    assert type(request.dataset_type) is model
    assert request.task_type is task_type


def test_discrimination_is_by_keys_not_by_luck():
    # A chat payload that only names its column, and a DPO payload with only chosen/rejected set.
    assert text_dataset_kind({"chat_column": "messages"}) == "chat"
    assert text_dataset_kind({"field_prompt": "p", "field_chosen": "c"}) == "dpo"
    assert text_dataset_kind({"field_prompt": "p", "reward_functions": []}) == "grpo"
    assert text_dataset_kind({"field_prompt": "p"}) == "instruct"
    assert text_dataset_kind({"field_instruction": "instruct", "field_output": "output"}) == "instruct"


def test_grpo_route_model_and_reward_functions():
    request = TrainRequestGrpo.model_validate_json(GRPO)
    fn = request.dataset_type.reward_functions[0]
    assert fn.reward_weight == pytest.approx(0.6171)
    assert fn.reward_func.startswith("def reward_long(")


def test_offer_tolerates_int_float_hours_and_unknown_fields():
    a = MinerTaskOffer.model_validate_json(
        '{"ds_size": 100000, "model": "m", "hours_to_complete": 4, "task_id": "t", "task_type": "DpoTask", '
        '"model_params_count": 3212749824, "brand_new_field": [1, 2]}'
    )
    b = MinerTaskOffer.model_validate_json(
        '{"model": "m", "hours_to_complete": 4.5, "task_id": "t", "task_type": "ImageTask", "model_params_count": null}'
    )
    assert a.hours_to_complete == 4 and b.hours_to_complete == 4.5
    assert a.task_type is TaskType.DPO and b.ds_size is None


def test_image_request_defaults_and_validation():
    request = TrainRequestImage.model_validate({
        "model": "stabilityai/stable-diffusion-xl-base-1.0", "task_id": "t", "hours_to_complete": 2,
        "dataset_zip": "https://s3/91ab_train_data.zip?q",
    })
    assert request.model_type == "sdxl" and request.expected_repo_name is None
    with pytest.raises(ValidationError):
        TrainRequestImage.model_validate({"model": "", "task_id": "t", "hours_to_complete": 2, "dataset_zip": "z"})
    with pytest.raises(ValidationError):
        TrainRequestText.model_validate_json(INSTRUCT.replace('"hours_to_complete": 4.0', '"hours_to_complete": "x"'))
