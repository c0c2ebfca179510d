"""What the validator sends and expects, as pydantic models (protocol.md §3).

Models ignore unknown fields (newer validators add some), accept ``hours_to_complete`` as an int
(G@09) or a float (G@a5+), and tell the four text dataset types apart by their keys, explicitly.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag


class TaskType(StrEnum):
    INSTRUCT = "InstructTextTask"
    IMAGE = "ImageTask"
    DPO = "DpoTask"
    GRPO = "GrpoTask"
    CHAT = "ChatTask"


TEXT_TASK_TYPES = frozenset({TaskType.INSTRUCT, TaskType.DPO, TaskType.GRPO, TaskType.CHAT})


class FileFormat(StrEnum):
    CSV = "csv"
    JSON = "json"
    HF = "hf"
    S3 = "s3"


class ImageModelType(StrEnum):
    FLUX = "flux"
    SDXL = "sdxl"


class TournamentType(StrEnum):
    TEXT = "text"
    IMAGE = "image"


# Task ids become directory names and repo names become Hub repos: refuse anything else plainly.
TaskId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
RepoName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class MinerTaskOffer(_Payload):
    ds_size: int | None = None
    model: str
    hours_to_complete: float
    task_id: TaskId
    task_type: TaskType
    model_params_count: int | None = None


class MinerTaskResponse(_Payload):
    message: str
    accepted: bool


class InstructTextDatasetType(_Payload):
    system_prompt: str | None = ""
    system_format: str | None = "{system}"
    field_system: str | None = None
    field_instruction: str | None = None
    field_input: str | None = None
    field_output: str | None = None
    format: str | None = None
    no_input_format: str | None = None
    field: str | None = None


class DpoDatasetType(_Payload):
    field_prompt: str | None = None
    field_system: str | None = None
    field_chosen: str | None = None
    field_rejected: str | None = None
    prompt_format: str | None = "{prompt}"
    chosen_format: str | None = "{chosen}"
    rejected_format: str | None = "{rejected}"


class ChatTemplateDatasetType(_Payload):
    chat_template: str | None = "chatml"
    chat_column: str | None = "conversations"
    chat_role_field: str | None = "from"
    chat_content_field: str | None = "value"
    chat_user_reference: str | None = "user"
    chat_assistant_reference: str | None = "assistant"


class RewardFunction(_Payload):
    reward_id: str | None = None
    reward_func: str
    reward_weight: float = Field(ge=0)
    func_hash: str | None = None
    is_generic: bool | None = None
    is_manual: bool | None = None


class GrpoDatasetType(_Payload):
    field_prompt: str | None = None
    reward_functions: list[RewardFunction] | None = Field(default_factory=list)
    extra_column: str | None = None


def text_dataset_kind(value: Any) -> str:
    """Which text dataset type a payload is: decided by its keys, never by luck (protocol.md §3.4)."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if not isinstance(value, dict):
        return "instruct"
    if "chat_column" in value or "chat_template" in value:
        return "chat"
    if "field_chosen" in value or "field_rejected" in value:
        return "dpo"
    if "reward_functions" in value:
        return "grpo"
    return "instruct"


TextDatasetType = Annotated[
    Annotated[InstructTextDatasetType, Tag("instruct")]
    | Annotated[ChatTemplateDatasetType, Tag("chat")]
    | Annotated[DpoDatasetType, Tag("dpo")]
    | Annotated[GrpoDatasetType, Tag("grpo")],
    Discriminator(text_dataset_kind),
]


class TrainRequest(_Payload):
    model: str = Field(min_length=1)
    task_id: TaskId
    hours_to_complete: float = Field(gt=0)
    expected_repo_name: RepoName | None = None


class TrainRequestText(TrainRequest):
    dataset: str = Field(min_length=1)
    dataset_type: TextDatasetType
    file_format: FileFormat = FileFormat.S3

    @property
    def task_type(self) -> TaskType:
        return {
            InstructTextDatasetType: TaskType.INSTRUCT,
            ChatTemplateDatasetType: TaskType.CHAT,
            DpoDatasetType: TaskType.DPO,
            GrpoDatasetType: TaskType.GRPO,
        }[type(self.dataset_type)]


class TrainRequestGrpo(TrainRequest):
    dataset: str = Field(min_length=1)
    dataset_type: GrpoDatasetType
    file_format: FileFormat = FileFormat.S3

    @property
    def task_type(self) -> TaskType:
        return TaskType.GRPO


class TrainRequestImage(TrainRequest):
    dataset_zip: str = Field(min_length=1)
    model_type: ImageModelType = ImageModelType.SDXL

    @property
    def task_type(self) -> TaskType:
        return TaskType.IMAGE


AnyTrainRequest = TrainRequestText | TrainRequestGrpo | TrainRequestImage


class TrainResponse(_Payload):
    message: str
    task_id: str


class MinerSubmission(_Payload):
    repo: str
    model_hash: str | None = None


class TrainingRepoResponse(_Payload):
    github_repo: str
    commit_hash: str


RequestKind = Literal["text", "grpo", "image"]
_REQUEST_MODELS: dict[str, type[TrainRequest]] = {
    "text": TrainRequestText, "grpo": TrainRequestGrpo, "image": TrainRequestImage,
}


def parse_train_request(kind: str, data: dict[str, Any] | str | bytes) -> AnyTrainRequest:
    """Parse a stored or received start-training payload of the given route kind."""
    model = _REQUEST_MODELS[kind]
    if isinstance(data, str | bytes):
        return model.model_validate_json(data)  # type: ignore[return-value]
    return model.model_validate(data)  # type: ignore[return-value]


def request_kind(request: AnyTrainRequest) -> RequestKind:
    if isinstance(request, TrainRequestImage):
        return "image"
    if isinstance(request, TrainRequestGrpo):
        return "grpo"
    return "text"
