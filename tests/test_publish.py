"""Publishing: the validator's model hash, file selection, local and (faked) Hub publishing."""

from __future__ import annotations

import glob
import hashlib
import inspect
import os
import shutil
import tracemalloc
from fnmatch import fnmatchcase
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import HfApi
from huggingface_hub.hf_api import RepoFile, RepoFolder

from godminer.publish import (
    HubPublisher,
    LocalPublisher,
    PublishError,
    hashed_files,
    is_valid_model_hash,
    model_hash,
    select_upload_files,
)
from godminer.publish.base import stage_files
from godminer.publish.hub import is_transient

VECTOR_HASH = "7c0e26b86137fe33fb70946b2f385f0953dd4b45f5647de8342ca5bc7b3a357a"


def write(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def validator_hash(snapshot: Path) -> str | None:
    """An independent rendering of the validator's algorithm (glob-based, whole-file reads)."""
    names = [
        "adapter_model.bin",
        "adapter_model.safetensors",
        "pytorch_model.bin",
        "pytorch_model.safetensors",
        "model.safetensors",
        "adapter_config.json",
        "config.json",
    ]
    patterns = [
        "model-*.safetensors",
        "pytorch_model-*.bin",
        "pytorch_model-*.safetensors",
        "checkpoint/last.safetensors",
        "checkpoint/last-*.safetensors",
        "checkpoint/checkpoint-*.safetensors",
        "last-*.safetensors",
        "diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/pytorch_model.bin",
        "text_encoder_2/pytorch_model.bin",
    ]
    for pattern in patterns:
        names += [os.path.relpath(p, snapshot) for p in glob.glob(os.path.join(snapshot, pattern))]
    hasher, hashed = hashlib.sha256(), 0
    for name in sorted(set(names)):
        path = snapshot / name
        if path.is_file() and (data := path.read_bytes()):
            hasher.update(f"{name}:{hashlib.sha256(data).hexdigest()}".encode())
            hashed += 1
    return hasher.hexdigest() if hashed else None


@pytest.fixture
def lora(tmp_path: Path) -> Path:
    """A trained text-LoRA output folder with the usual training leftovers around the model."""
    return write(
        tmp_path / "out",
        {
            "adapter_config.json": b'{"peft_type": "LORA"}',
            "adapter_model.safetensors": b"\x00\x01weights",
            "tokenizer.json": b"{}",
            "tokenizer_config.json": b"{}",
            "special_tokens_map.json": b"{}",
            "chat_template.jinja": b"{{ messages }}",
            "README.md": b"# model",
            "training_args.bin": b"args",
            "trainer_state.json": b"{}",
            "optimizer.pt": b"opt",
            "scheduler.pt": b"sch",
            "rng_state_0.pth": b"rng",
            "adapter_model.safetensors.tmp": b"partial",
            "progress.log": b"step 1",
            "checkpoint-500/adapter_model.safetensors": b"old",
            "checkpoint-500/optimizer.pt": b"opt",
            "last-checkpoint/adapter_model.safetensors": b"old",
        },
    )


# --- model hash -------------------------------------------------------------------------------------------------


def test_hash_test_vector(tmp_path: Path) -> None:
    folder = write(
        tmp_path, {"adapter_config.json": b'{"peft_type": "LORA"}', "adapter_model.safetensors": b"\x00\x01weights"}
    )
    assert hashed_files(folder) == ["adapter_config.json", "adapter_model.safetensors"]
    assert model_hash(folder) == VECTOR_HASH == validator_hash(folder)
    assert is_valid_model_hash(model_hash(folder))


def test_sharded_full_model_hash_order(tmp_path: Path) -> None:
    folder = write(
        tmp_path,
        {
            "config.json": b'{"model_type": "llama"}',
            "model-00001-of-00002.safetensors": b"shard one",
            "model-00002-of-00002.safetensors": b"shard two",
            "model.safetensors": b"consolidated",
            "model.safetensors.index.json": b"{}",
            "generation_config.json": b"{}",
        },
    )
    names = ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors"]
    assert hashed_files(folder) == names
    running = hashlib.sha256()
    for name in names:
        running.update(f"{name}:{hashlib.sha256((folder / name).read_bytes()).hexdigest()}".encode())
    assert model_hash(folder) == running.hexdigest() == validator_hash(folder)


def test_image_layouts(tmp_path: Path) -> None:
    folder = write(
        tmp_path,
        {
            "checkpoint/last.safetensors": b"lora",
            "checkpoint/last-3.safetensors": b"epoch 3",
            "checkpoint/checkpoint-7.safetensors": b"ckpt",
            "checkpoint/other.safetensors": b"ignored",
            "checkpoint/sub/last.safetensors": b"ignored",
            "last-000010.safetensors": b"root epoch",
        },
    )
    assert hashed_files(folder) == [
        "checkpoint/checkpoint-7.safetensors",
        "checkpoint/last-3.safetensors",
        "checkpoint/last.safetensors",
        "last-000010.safetensors",
    ]
    assert model_hash(folder) == validator_hash(folder)


def test_ignored_files_do_not_change_hash(tmp_path: Path) -> None:
    folder = write(
        tmp_path, {"adapter_config.json": b'{"peft_type": "LORA"}', "adapter_model.safetensors": b"\x00\x01weights"}
    )
    write(
        folder,
        {
            "README.md": b"# readme",
            "tokenizer.json": b"{}",
            "tokenizer_config.json": b"{}",
            "training_args.bin": b"args",
            "last-checkpoint/adapter_model.safetensors": b"older",
            "checkpoint-500/model.safetensors": b"older",
            "sub/dir/model.safetensors": b"deep",
            "xmodel-1.safetensors": b"not a shard",
        },
    )
    assert model_hash(folder) == VECTOR_HASH == validator_hash(folder)


def test_empty_files_are_skipped(tmp_path: Path) -> None:
    folder = write(
        tmp_path,
        {
            "adapter_config.json": b'{"peft_type": "LORA"}',
            "adapter_model.safetensors": b"\x00\x01weights",
            "adapter_model.bin": b"",
            "config.json": b"",
        },
    )
    assert hashed_files(folder) == ["adapter_config.json", "adapter_model.safetensors"]
    assert model_hash(folder) == VECTOR_HASH
    empty = write(tmp_path / "empty", {"adapter_model.safetensors": b"", "README.md": b"x"})
    assert model_hash(empty) is None is validator_hash(empty)
    assert hashed_files(empty) == []


def test_is_valid_model_hash() -> None:
    assert is_valid_model_hash(VECTOR_HASH)
    assert not is_valid_model_hash(VECTOR_HASH.upper())
    assert not is_valid_model_hash(VECTOR_HASH[:-1])
    assert not is_valid_model_hash(VECTOR_HASH[:-1] + "g")
    assert not is_valid_model_hash("0x" + VECTOR_HASH[2:])
    assert not is_valid_model_hash(None)


def test_big_file_is_hashed_in_chunks(tmp_path: Path) -> None:
    chunk, expected = os.urandom(1 << 20), hashlib.sha256()
    with (tmp_path / "model.safetensors").open("wb") as handle:
        for _ in range(20):
            handle.write(chunk)
            expected.update(chunk)
    running = hashlib.sha256(f"model.safetensors:{expected.hexdigest()}".encode())
    tracemalloc.start()
    try:
        assert model_hash(tmp_path) == running.hexdigest()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


# --- selection --------------------------------------------------------------------------------------------------


def test_selection_keeps_model_files_and_drops_training_leftovers(lora: Path) -> None:
    assert [p.as_posix() for p in select_upload_files(lora)] == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "chat_template.jinja",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]


def test_selection_of_sharded_and_image_outputs(tmp_path: Path) -> None:
    full = write(
        tmp_path / "full",
        {
            "config.json": b"{}",
            "generation_config.json": b"{}",
            "model-00001-of-00002.safetensors": b"1",
            "model-00002-of-00002.safetensors": b"2",
            "model.safetensors.index.json": b"{}",
            "optimizer.pt": b"o",
        },
    )
    assert [p.as_posix() for p in select_upload_files(full)] == [
        "config.json",
        "generation_config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
    ]
    image = write(
        tmp_path / "image",
        {
            "checkpoint/last.safetensors": b"lora",
            "checkpoint/state.json": b"{}",
            "sample/prompt.png": b"png",
            "train.log": b"log",
        },
    )
    assert select_upload_files(image) == [Path("checkpoint/last.safetensors")]


def test_staging_refuses_a_folder_without_model_files(tmp_path: Path) -> None:
    folder = write(tmp_path / "out", {"README.md": b"x", "adapter_model.safetensors": b""})
    with pytest.raises(PublishError, match="no model files"):
        stage_files(folder, tmp_path / "staged")


# --- local publisher --------------------------------------------------------------------------------------------


def test_local_publish_layout_and_hash(lora: Path, tmp_path: Path) -> None:
    publisher = LocalPublisher(tmp_path / "hub", "alice")
    assert not publisher.exists("repo-1")
    result = publisher.publish(lora, "repo-1", task_id="t1")
    target = tmp_path / "hub" / "alice" / "repo-1"
    assert result.repo == "alice/repo-1"
    assert result.model_hash == VECTOR_HASH == model_hash(target) == validator_hash(target)
    assert result.files == tuple(p.as_posix() for p in select_upload_files(lora))
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()) == list(result.files)
    assert result.bytes_uploaded == sum((target / name).stat().st_size for name in result.files)
    assert publisher.exists("repo-1")
    assert [p.name for p in target.parent.iterdir()] == ["repo-1"]  # no staging leftovers

    again = publisher.publish(lora, "repo-1", task_id="t1")
    assert (again.model_hash, again.bytes_uploaded) == (result.model_hash, 0)
    (lora / "adapter_model.safetensors").unlink()
    (lora / "adapter_model.safetensors").write_bytes(b"retrained")
    with pytest.raises(PublishError, match="already published"):
        publisher.publish(lora, "repo-1", task_id="t1")
    assert model_hash(target) == VECTOR_HASH


# --- fake Hub ---------------------------------------------------------------------------------------------------


class FakeHTTPError(Exception):
    def __init__(self, status: int | None = None) -> None:
        super().__init__(f"HTTP {status}" if status else "connection reset")
        if status:
            self.response = SimpleNamespace(status_code=status)


class FakeHfApi:
    """The HfApi methods HubPublisher uses, over repos stored as directories under ``root``."""

    LFS_SUFFIXES = (".safetensors", ".bin", ".pt")

    def __init__(self, root: Path) -> None:
        self.root = root
        self.private: dict[str, bool] = {}
        self.calls: list[tuple[str, tuple, dict]] = []
        self.failures: dict[str, list[Exception]] = {}
        self.drop: str | None = None
        self.drop_times = 0

    def fail(self, method: str, times: int, status: int | None = None) -> None:
        self.failures[method] = [FakeHTTPError(status) for _ in range(times)]

    def repo_dir(self, repo_id: str) -> Path:
        return self.root / repo_id

    def count(self, method: str) -> int:
        return sum(name == method for name, _, _ in self.calls)

    def _call(self, method: str, *args: object, **kwargs: object) -> None:
        self.calls.append((method, args, kwargs))
        assert kwargs.get("repo_type") == "model"
        if self.failures.get(method):
            raise self.failures[method].pop(0)

    def _require(self, repo_id: str) -> Path:
        if repo_id not in self.private:
            raise FakeHTTPError(404)
        return self.repo_dir(repo_id)

    def create_repo(self, repo_id, *, private=None, repo_type=None, exist_ok=False):
        self._call("create_repo", repo_id, private=private, repo_type=repo_type, exist_ok=exist_ok)
        if repo_id in self.private:
            if not exist_ok:
                raise FakeHTTPError(409)
        else:
            self.private[repo_id] = bool(private)
            write(self.repo_dir(repo_id), {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"})
        return f"https://huggingface.co/{repo_id}"

    def repo_info(self, repo_id, *, repo_type=None):
        self._call("repo_info", repo_id, repo_type=repo_type)
        self._require(repo_id)
        return SimpleNamespace(id=repo_id, private=self.private[repo_id])

    def repo_exists(self, repo_id, *, repo_type=None):
        self._call("repo_exists", repo_id, repo_type=repo_type)
        return repo_id in self.private

    def list_repo_tree(self, repo_id, path_in_repo=None, *, recursive=False, repo_type=None):
        self._call("list_repo_tree", repo_id, path_in_repo, recursive=recursive, repo_type=repo_type)
        base = self._require(repo_id)
        assert recursive and path_in_repo is None
        for path in sorted(base.rglob("*")):
            name = path.relative_to(base).as_posix()
            if path.is_dir():
                yield RepoFolder(path=name, oid="f" * 40)
                continue
            data = path.read_bytes()
            blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            if name.endswith(self.LFS_SUFFIXES) or len(data) > 10 << 20:
                lfs = {"size": len(data), "oid": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
                yield RepoFile(path=name, size=len(data), oid="0" * 40, lfs=lfs)
            else:
                yield RepoFile(path=name, size=len(data), oid=blob)

    def upload_folder(self, *, repo_id, folder_path, commit_message=None, repo_type=None, delete_patterns=None):
        self._call(
            "upload_folder",
            repo_id=repo_id,
            folder_path=folder_path,
            commit_message=commit_message,
            repo_type=repo_type,
            delete_patterns=delete_patterns,
        )
        base, source = self._require(repo_id), Path(folder_path)
        new = {p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()}
        for path in [p for p in base.rglob("*") if p.is_file()]:
            name = path.relative_to(base).as_posix()
            if delete_patterns and name != ".gitattributes" and name not in new and fnmatchcase(name, delete_patterns):
                path.unlink()
        for name in new:
            if name == self.drop and self.drop_times > 0:
                self.drop_times -= 1
                continue
            (base / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, base / name)
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/abc")

    def update_repo_settings(self, repo_id, *, private=None, repo_type=None):
        self._call("update_repo_settings", repo_id, private=private, repo_type=repo_type)
        self._require(repo_id)
        self.private[repo_id] = bool(private)


@pytest.fixture
def api(tmp_path: Path) -> FakeHfApi:
    return FakeHfApi(tmp_path / "hub")


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def hub(api: FakeHfApi, sleeps: list[float]) -> HubPublisher:
    return HubPublisher(api, "alice", retries=3, backoff_s=1.0, sleep=sleeps.append)


# --- hub publisher ----------------------------------------------------------------------------------------------


def test_hub_publish_happy_path(hub: HubPublisher, api: FakeHfApi, lora: Path, sleeps: list[float]) -> None:
    result = hub.publish(lora, "repo-1", task_id="t1")
    stored = api.repo_dir("alice/repo-1")
    assert api.private == {"alice/repo-1": False}
    assert result.repo == "alice/repo-1"
    assert result.model_hash == VECTOR_HASH == model_hash(lora) == model_hash(stored) == validator_hash(stored)
    assert result.files == tuple(p.as_posix() for p in select_upload_files(lora))
    assert sorted(p.relative_to(stored).as_posix() for p in stored.rglob("*") if p.is_file()) == sorted(
        [*result.files, ".gitattributes"]
    )
    assert result.bytes_uploaded == sum((lora / name).stat().st_size for name in result.files)
    assert sleeps == []
    methods = [name for name, _, _ in api.calls]
    assert methods.index("create_repo") < methods.index("upload_folder") < methods.index("update_repo_settings")
    assert api.calls[0] == ("create_repo", ("alice/repo-1",), {"private": True, "repo_type": "model", "exist_ok": True})
    assert not [p for p in lora.parent.iterdir() if p.name.startswith(".")]  # staging folder removed
    assert hub.exists("repo-1") and not hub.exists("repo-2")


def test_calls_bind_to_the_real_hfapi_signatures(hub: HubPublisher, api: FakeHfApi, lora: Path) -> None:
    hub.publish(lora, "repo-1", task_id="t1")
    hub.exists("repo-1")
    assert {name for name, _, _ in api.calls} == {
        "create_repo",
        "repo_info",
        "list_repo_tree",
        "upload_folder",
        "update_repo_settings",
        "repo_exists",
    }
    for name, args, kwargs in api.calls:
        inspect.signature(getattr(HfApi, name)).bind(HfApi(), *args, **kwargs)
        assert (
            inspect.signature(getattr(FakeHfApi, name)).parameters.keys()
            <= inspect.signature(getattr(HfApi, name)).parameters.keys()
        )


def test_transient_failures_are_retried_with_backoff(
    hub: HubPublisher, api: FakeHfApi, lora: Path, sleeps: list[float]
) -> None:
    api.fail("create_repo", 1)
    api.fail("upload_folder", 2, status=503)
    api.fail("update_repo_settings", 1, status=429)
    result = hub.publish(lora, "repo-1", task_id="t1")
    assert sleeps == [1.0, 1.0, 2.0, 1.0]
    assert api.count("upload_folder") == 3
    assert api.private["alice/repo-1"] is False
    assert result.model_hash == model_hash(api.repo_dir("alice/repo-1"))


def test_persistent_failure_raises_and_repo_stays_private(
    hub: HubPublisher, api: FakeHfApi, lora: Path, sleeps: list[float]
) -> None:
    api.fail("upload_folder", 10)
    with pytest.raises(PublishError, match=r"upload to alice/repo-1 failed after 4 attempt"):
        hub.publish(lora, "repo-1", task_id="t1")
    assert sleeps == [1.0, 2.0, 4.0]
    assert api.private["alice/repo-1"] is True
    assert api.count("update_repo_settings") == 0


def test_client_errors_are_not_retried(hub: HubPublisher, api: FakeHfApi, lora: Path, sleeps: list[float]) -> None:
    api.fail("create_repo", 1, status=401)
    with pytest.raises(PublishError, match="create alice/repo-1 failed after 1 attempt"):
        hub.publish(lora, "repo-1", task_id="t1")
    assert sleeps == []
    assert is_transient(FakeHTTPError(500)) and is_transient(FakeHTTPError(409)) and is_transient(OSError("x"))
    assert not is_transient(FakeHTTPError(403))


def test_dropped_file_is_detected_and_uploaded_again(
    hub: HubPublisher, api: FakeHfApi, lora: Path, sleeps: list[float]
) -> None:
    api.drop, api.drop_times = "adapter_model.safetensors", 1
    result = hub.publish(lora, "repo-1", task_id="t1")
    assert api.count("upload_folder") == 2 and sleeps == [1.0]
    assert api.private["alice/repo-1"] is False
    assert result.model_hash == model_hash(api.repo_dir("alice/repo-1")) == VECTOR_HASH


def test_persistent_verification_mismatch_keeps_repo_private(
    hub: HubPublisher, api: FakeHfApi, lora: Path, sleeps: list[float]
) -> None:
    api.drop, api.drop_times = "adapter_model.safetensors", 100
    with pytest.raises(PublishError, match=r"adapter_model\.safetensors missing"):
        hub.publish(lora, "repo-1", task_id="t1")
    assert api.count("upload_folder") == 4 and len(sleeps) == 3
    assert api.private["alice/repo-1"] is True
    assert api.count("update_repo_settings") == 0


def test_republish_of_a_public_repo_does_not_upload(hub: HubPublisher, api: FakeHfApi, lora: Path) -> None:
    first = hub.publish(lora, "repo-1", task_id="t1")
    api.calls.clear()
    second = hub.publish(lora, "repo-1", task_id="t1")
    assert (second.repo, second.model_hash, second.files) == (first.repo, first.model_hash, first.files)
    assert second.bytes_uploaded == 0
    assert api.count("upload_folder") == 0 and api.count("update_repo_settings") == 0


def test_public_repo_that_differs_is_never_pushed_to(hub: HubPublisher, api: FakeHfApi, lora: Path) -> None:
    first = hub.publish(lora, "repo-1", task_id="t1")
    (lora / "adapter_model.safetensors").unlink()
    (lora / "adapter_model.safetensors").write_bytes(b"retrained")
    api.calls.clear()
    with pytest.raises(PublishError, match="already public"):
        hub.publish(lora, "repo-1", task_id="t1")
    assert api.count("upload_folder") == 0
    assert model_hash(api.repo_dir("alice/repo-1")) == first.model_hash


def test_private_complete_repo_is_resumed_without_upload(
    hub: HubPublisher, api: FakeHfApi, lora: Path, sleeps: list[float]
) -> None:
    api.fail("update_repo_settings", 1, status=403)
    with pytest.raises(PublishError, match="make alice/repo-1 public"):
        hub.publish(lora, "repo-1", task_id="t1")
    assert api.private["alice/repo-1"] is True
    api.calls.clear()
    result = hub.publish(lora, "repo-1", task_id="t1")
    assert api.count("upload_folder") == 0 and result.bytes_uploaded == 0
    assert api.private["alice/repo-1"] is False and result.model_hash == VECTOR_HASH


def test_private_partial_repo_is_completed_and_stray_hashed_files_removed(
    hub: HubPublisher, api: FakeHfApi, lora: Path
) -> None:
    api.create_repo("alice/repo-1", private=True, repo_type="model", exist_ok=True)
    write(
        api.repo_dir("alice/repo-1"),
        {"adapter_config.json": b'{"peft_type": "LORA"}', "model.safetensors": b"from an earlier attempt"},
    )
    result = hub.publish(lora, "repo-1", task_id="t1")
    stored = api.repo_dir("alice/repo-1")
    assert not (stored / "model.safetensors").exists()
    assert result.model_hash == VECTOR_HASH == validator_hash(stored)
    assert api.private["alice/repo-1"] is False


def test_from_token_builds_a_real_hfapi() -> None:
    publisher = HubPublisher.from_token("hf_dummy", "alice")
    assert isinstance(publisher.api, HfApi) and publisher.namespace == "alice"
