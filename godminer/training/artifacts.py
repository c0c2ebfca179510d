"""The run directory's model slot: ``model`` always points at a complete, loadable model.

Each new best model is written into ``versions/<n>.tmp``, renamed to ``versions/<n>`` and then the
``model`` symlink is replaced atomically (``os.replace``), so a reader (the publisher, a crash,
a deadline) never sees a half-written model. The two newest versions are kept.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

KEEP_VERSIONS = 2


class ModelSlot:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.versions = self.run_dir / "versions"
        self.link = self.run_dir / "model"

    def current(self) -> Path | None:
        """The model directory the slot points at, or None before the first commit."""
        if not self.link.is_symlink():
            return None
        target = self.link.resolve()
        return target if target.is_dir() else None

    def metadata(self) -> dict[str, Any]:
        current = self.current()
        meta = current / "godminer.json" if current else None
        return json.loads(meta.read_text()) if meta and meta.is_file() else {}

    def free_bytes(self) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.run_dir).free

    def next_version_bytes(self) -> int:
        """Room the next version needs: 1.5 × the current one (at least 1 GB when there is none yet)."""
        current = self.current()
        size = sum(p.stat().st_size for p in current.rglob("*") if p.is_file()) if current else 0
        return max(int(1.5 * size), 1 << 30)

    def staging(self) -> Path:
        """A fresh empty directory to write the next version into."""
        self.versions.mkdir(parents=True, exist_ok=True)
        numbers = [int(p.name.split(".")[0]) for p in self.versions.iterdir() if p.name.split(".")[0].isdigit()]
        path = self.versions / f"{max(numbers, default=0) + 1}.tmp"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir()
        return path

    def commit(self, staged: Path, meta: dict[str, Any]) -> Path:
        """Make a fully written staging directory the current model."""
        (staged / "godminer.json").write_text(json.dumps(meta, indent=2, default=str))
        final = staged.with_suffix("")
        os.replace(staged, final)
        tmp_link = self.run_dir / "model.link-tmp"
        if tmp_link.is_symlink() or tmp_link.exists():
            tmp_link.unlink()
        os.symlink(os.path.relpath(final, self.run_dir), tmp_link)
        os.replace(tmp_link, self.link)
        self._prune(final)
        return final

    def _prune(self, keep: Path) -> None:
        done = sorted(
            (p for p in self.versions.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True
        )
        for old in done[KEEP_VERSIONS:]:
            if old != keep:
                shutil.rmtree(old, ignore_errors=True)
        for stale in self.versions.glob("*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)


def point_adapter_at_hub(model_dir: Path, base_model: str) -> None:
    """Make a saved adapter name the Hub id of its base (the evaluator loads the base from it)."""
    config_path = model_dir / "adapter_config.json"
    if not config_path.is_file():
        return
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = base_model
    config_path.write_text(json.dumps(config, indent=2))
