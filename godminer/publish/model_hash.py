"""The validator's model hash (protocol.md §4.6), computed locally over a model folder.

The validator downloads the whole repo and hashes a fixed set of names plus a few glob matches, sorted by
Python string order, skipping empty files: ``sha256(concat(f"{name}:{sha256(file)}"))``. Everything else
(README, tokenizer files, ``last-checkpoint/``, ``training_args.bin``, …) is ignored. Files are read in
chunks, so multi-GB safetensors never sit in memory.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from fnmatch import fnmatchcase
from pathlib import Path

HASH_CANDIDATES: tuple[str, ...] = (
    "adapter_model.bin",
    "adapter_model.safetensors",
    "pytorch_model.bin",
    "pytorch_model.safetensors",
    "model.safetensors",
    "adapter_config.json",
    "config.json",
)
HASH_GLOBS: tuple[str, ...] = (
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
)
_HEX64 = re.compile(r"[0-9a-f]{64}")


def enters_hash(name: str) -> bool:
    """Whether the repo-relative POSIX path ``name`` is one the validator hashes (if the file is non-empty).

    ``glob`` semantics: ``*`` never crosses a ``/``, which equal separator counts guarantee for ``fnmatchcase``.
    """
    return name in HASH_CANDIDATES or any(
        name.count("/") == pattern.count("/") and fnmatchcase(name, pattern) for pattern in HASH_GLOBS
    )


def shallow_files(folder: Path) -> list[str]:
    """Regular files at the root of ``folder`` and one level below (following symlinks), as POSIX names."""
    names: list[str] = []
    for entry in folder.iterdir():
        if entry.is_file():
            names.append(entry.name)
        elif entry.is_dir():
            names.extend(f"{entry.name}/{child.name}" for child in entry.iterdir() if child.is_file())
    return names


def hashed_files(folder: Path) -> list[str]:
    """The relative names that enter the hash of ``folder``, in hashing order (every pattern is ≤ 1 level deep)."""
    return sorted(name for name in shallow_files(folder) if enters_hash(name) and (folder / name).stat().st_size > 0)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def combine_file_hashes(file_hashes: Mapping[str, str]) -> str | None:
    """The running hash over ``{name: sha256}`` of the hashed files, or None when there are none."""
    if not file_hashes:
        return None
    running = hashlib.sha256()
    for name in sorted(file_hashes):
        running.update(f"{name}:{file_hashes[name]}".encode())
    return running.hexdigest()


def model_hash(folder: Path) -> str | None:
    """The hash the validator computes for a repo whose snapshot equals ``folder``; None if nothing is hashed."""
    return combine_file_hashes({name: file_sha256(folder / name) for name in hashed_files(folder)})


def is_valid_model_hash(value: object) -> bool:
    """A 64-character lowercase hex string: the only form that can equal the validator's ``hexdigest()``."""
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None
