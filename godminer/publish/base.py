"""What a publisher is, what it returns, and which files of a trained-model folder get published.

A published repo holds the model files (everything the validator hashes, protocol.md §4.6) plus the small
root-level files loaders may want (configs, tokenizer, chat template, README, shard indexes). Training
leftovers (``checkpoint-*/``, optimizer/scheduler/RNG state, ``trainer_state.json``, ``training_args.bin``,
``*.tmp``, logs) are never selected: selection is an allow-list.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Protocol

from godminer.publish.model_hash import hashed_files, shallow_files

SUPPORT_PATTERNS: tuple[str, ...] = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "spiece.model",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
    "README.md",
    "*.safetensors.index.json",
    "*.bin.index.json",
)


class PublishError(RuntimeError):
    """Publishing failed; the repo was not made public (or was public already and differs)."""


@dataclass(frozen=True)
class PublishResult:
    """A published submission: ``repo`` and ``model_hash`` are what the submission endpoint answers."""

    repo: str
    model_hash: str | None
    files: tuple[str, ...]
    bytes_uploaded: int


class Publisher(Protocol):
    """Publishes a trained-model folder as ``<namespace>/<repo_name>``."""

    def publish(self, folder: Path, repo_name: str, *, task_id: str) -> PublishResult:
        """Publish ``folder``; the repo is public (and unchanged from then on) when this returns."""
        ...

    def exists(self, repo_name: str) -> bool:
        """Whether ``<namespace>/<repo_name>`` already exists (public or not)."""
        ...


def select_upload_files(folder: Path) -> list[Path]:
    """The files to publish from ``folder``, relative to it, sorted by POSIX path."""
    support = {name for name in shallow_files(folder) if any(fnmatchcase(name, p) for p in SUPPORT_PATTERNS)}
    return [Path(name) for name in sorted(support.union(hashed_files(folder)))]


def stage_files(folder: Path, dest: Path) -> tuple[str, ...]:
    """Hard-link (or copy, across filesystems) the selected files of ``folder`` into ``dest``; their POSIX names.

    Raises PublishError when ``folder`` holds nothing the validator would hash.
    """
    if not hashed_files(folder):
        raise PublishError(f"{folder} holds no model files (nothing the validator hashes)")
    names = tuple(path.as_posix() for path in select_upload_files(folder))
    for name in names:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(folder / name, target)
        except OSError:
            shutil.copy2(folder / name, target)
    return names


def total_size(folder: Path, names: tuple[str, ...]) -> int:
    """Bytes in the named files of ``folder``."""
    return sum((folder / name).stat().st_size for name in names)
