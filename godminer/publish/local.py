"""Publishing to a local tree ``root/<namespace>/<repo_name>/`` with the Hub repo layout (demo and tests).

The directory appears atomically (staged next to it, then renamed), and the demo's validator hashes it
exactly as the real validator hashes a snapshot. Like the Hub publisher, an existing repo is never changed.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from godminer.publish.base import PublishError, PublishResult, stage_files, total_size
from godminer.publish.model_hash import model_hash


class LocalPublisher:
    """Publishes ``<namespace>/<repo_name>`` as a directory under ``root``."""

    def __init__(self, root: Path, namespace: str) -> None:
        self.root = root
        self.namespace = namespace

    def repo_dir(self, repo_name: str) -> Path:
        """Where ``<namespace>/<repo_name>`` lives."""
        return self.root / self.namespace / repo_name

    def exists(self, repo_name: str) -> bool:
        return self.repo_dir(repo_name).is_dir()

    def publish(self, folder: Path, repo_name: str, *, task_id: str) -> PublishResult:
        repo, target = f"{self.namespace}/{repo_name}", self.repo_dir(repo_name)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{repo_name}.{task_id}."))
        try:
            names = stage_files(folder, staged)
            digest = model_hash(staged)
            if target.exists():
                if model_hash(target) != digest:
                    raise PublishError(f"{target} is already published and differs from {folder}")
                return PublishResult(repo, digest, names, 0)
            staged.rename(target)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        return PublishResult(repo, digest, names, total_size(target, names))
