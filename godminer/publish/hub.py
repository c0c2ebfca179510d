"""Publishing to the Hugging Face Hub: upload privately, verify, only then make public (ecosystem.md §2.2).

Flow for ``<namespace>/<repo_name>``: stage the selected files (hard links) in a temp folder; create the repo
private (``exist_ok``); if it is already public and matches, return the same hash without pushing (a public
repo that differs is never pushed to: its hash may have been reported); otherwise upload the staged folder
(remote files outside it are deleted, so the snapshot the validator hashes is exactly the staged folder),
check every file's size and content id on the Hub, then make the repo public. With ``hf_xet``,
``upload_folder`` is resumable: a retry skips what is already committed. Each network step is retried with
exponential backoff; 4xx answers other than 408/409/429 are not retried.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Protocol, TypeVar

from huggingface_hub import HfApi, RepoFile

from godminer.publish.base import PublishError, PublishResult, stage_files, total_size
from godminer.publish.model_hash import combine_file_hashes, enters_hash, file_sha256, hashed_files

log = logging.getLogger(__name__)
T = TypeVar("T")
REPO_TYPE = "model"
DEFAULT_RETRIES = 5
DEFAULT_BACKOFF_S = 2.0
_RETRYABLE_4XX = frozenset({408, 409, 429})


class RepoVisibility(Protocol):
    """The part of ``ModelInfo`` used here."""

    private: bool | None


class HubApi(Protocol):
    """The ``huggingface_hub.HfApi`` methods (and keyword arguments) a HubPublisher calls."""

    def create_repo(
        self, repo_id: str, *, private: bool | None = ..., repo_type: str | None = ..., exist_ok: bool = ...
    ) -> object: ...

    def repo_info(self, repo_id: str, *, repo_type: str | None = ...) -> RepoVisibility: ...

    def repo_exists(self, repo_id: str, *, repo_type: str | None = ...) -> bool: ...

    def list_repo_tree(
        self, repo_id: str, path_in_repo: str | None = ..., *, recursive: bool = ..., repo_type: str | None = ...
    ) -> Iterable[object]: ...

    def upload_folder(
        self,
        *,
        repo_id: str,
        folder_path: str | Path,
        commit_message: str | None = ...,
        repo_type: str | None = ...,
        delete_patterns: list[str] | str | None = ...,
    ) -> object: ...

    def update_repo_settings(
        self, repo_id: str, *, private: bool | None = ..., repo_type: str | None = ...
    ) -> None: ...


class RemoteMismatch(Exception):
    """The Hub's copy differs from the staged folder after an upload (retried like a network error)."""


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: anything but an HTTP 4xx answer other than timeout, conflict and rate limit."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return not (isinstance(status, int) and 400 <= status < 500 and status not in _RETRYABLE_4XX)


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file (what the Hub reports as ``blob_id`` for files not stored in LFS)."""
    header = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, lambda: header).hexdigest()


def remote_mismatches(staged: Path, digests: Mapping[str, str], remote: Mapping[str, RepoFile]) -> list[str]:
    """Why the remote files differ from the staged ones (``digests``: name → sha256); empty when they match.

    Each staged file must be there with its size and content id (LFS sha256, else git blob id), and no other
    remote file may enter the model hash.
    """
    problems: list[str] = []
    for name, sha256 in digests.items():
        entry, size = remote.get(name), (staged / name).stat().st_size
        if entry is None:
            problems.append(f"{name} missing")
        elif entry.size != size:
            problems.append(f"{name} has {entry.size} bytes, expected {size}")
        elif entry.lfs is not None and entry.lfs.sha256 != sha256:
            problems.append(f"{name} has LFS sha256 {entry.lfs.sha256}, expected {sha256}")
        elif entry.lfs is None and entry.blob_id != git_blob_sha1(staged / name):
            problems.append(f"{name} has different content")
    problems.extend(
        f"unexpected {name} would enter the hash"
        for name, entry in remote.items()
        if name not in digests and entry.size > 0 and enters_hash(name)
    )
    return problems


class HubPublisher:
    """Publishes to ``<namespace>/<repo_name>`` on the Hub through ``api`` (a ``HfApi`` in production)."""

    def __init__(
        self,
        api: HubApi,
        namespace: str,
        retries: int = DEFAULT_RETRIES,
        backoff_s: float = DEFAULT_BACKOFF_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``retries``: extra attempts per network step, after waits of ``backoff_s``, 2×, 4×… seconds."""
        self.api = api
        self.namespace = namespace
        self.retries = retries
        self.backoff_s = backoff_s
        self.sleep = sleep

    @classmethod
    def from_token(cls, token: str, namespace: str) -> HubPublisher:
        """A publisher over a real ``HfApi`` authenticated with ``token``."""
        return cls(HfApi(token=token), namespace)

    def exists(self, repo_name: str) -> bool:
        repo_id = f"{self.namespace}/{repo_name}"
        return self._attempt(f"check {repo_id}", lambda: self.api.repo_exists(repo_id, repo_type=REPO_TYPE))

    def publish(self, folder: Path, repo_name: str, *, task_id: str) -> PublishResult:
        repo_id = f"{self.namespace}/{repo_name}"
        with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}.publish-") as tmp:
            staged = Path(tmp)
            names = stage_files(folder, staged)
            digests = {name: file_sha256(staged / name) for name in names}
            model_hash = combine_file_hashes({name: digests[name] for name in hashed_files(staged)})
            self._attempt(
                f"create {repo_id}",
                lambda: self.api.create_repo(repo_id, private=True, exist_ok=True, repo_type=REPO_TYPE),
            )
            private = self._attempt(
                f"read visibility of {repo_id}", lambda: self.api.repo_info(repo_id, repo_type=REPO_TYPE).private
            )
            remote = self._attempt(f"list {repo_id}", lambda: self._remote_files(repo_id))
            problems = remote_mismatches(staged, digests, remote)
            if not private:
                if problems:
                    raise PublishError(
                        f"{repo_id} is already public and differs from {folder} ({'; '.join(problems)});"
                        " refusing to push to a published submission"
                    )
                log.info("%s is already public with the same files; not uploading again", repo_id)
                return PublishResult(repo_id, model_hash, names, 0)
            uploaded = 0
            if problems:
                self._attempt(
                    f"upload to {repo_id}", lambda: self._upload_and_verify(repo_id, staged, digests, task_id)
                )
                uploaded = total_size(staged, names)
            self._attempt(
                f"make {repo_id} public",
                lambda: self.api.update_repo_settings(repo_id, private=False, repo_type=REPO_TYPE),
            )
            log.info("published %s (%d files, %d bytes uploaded, hash %s)", repo_id, len(names), uploaded, model_hash)
            return PublishResult(repo_id, model_hash, names, uploaded)

    def _remote_files(self, repo_id: str) -> dict[str, RepoFile]:
        """The repo's files by path (one attempt; callers retry)."""
        entries = self.api.list_repo_tree(repo_id, recursive=True, repo_type=REPO_TYPE)
        return {entry.path: entry for entry in entries if isinstance(entry, RepoFile)}

    def _upload_and_verify(self, repo_id: str, staged: Path, digests: Mapping[str, str], task_id: str) -> None:
        self.api.upload_folder(
            repo_id=repo_id,
            folder_path=staged,
            commit_message=f"godminer: model for task {task_id}",
            repo_type=REPO_TYPE,
            delete_patterns="*",
        )
        problems = remote_mismatches(staged, digests, self._remote_files(repo_id))
        if problems:
            raise RemoteMismatch("; ".join(problems))

    def _attempt(self, step: str, action: Callable[[], T]) -> T:
        """``action()``, retried with exponential backoff; PublishError once retries are spent or not worth it."""
        attempt = 0
        while True:
            try:
                return action()
            except Exception as exc:
                if attempt == self.retries or not is_transient(exc):
                    raise PublishError(f"{step} failed after {attempt + 1} attempt(s): {exc}") from exc
                delay = self.backoff_s * 2**attempt
                log.warning("%s failed (%s); retrying in %.0f s", step, exc, delay)
                self.sleep(delay)
                attempt += 1
