"""The executor interface. The store, not the executor, is the source of truth: a handle is plain JSON
kept in the job's row, so a restarted miner re-attaches to what is still running."""

from __future__ import annotations

import contextlib
import os
import zlib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol


class ExecState(StrEnum):
    RUNNING = "running"
    EXITED = "exited"
    GONE = "gone"  # no trace of the process (lost with a machine, or never started)


@dataclass(frozen=True)
class ExecStatus:
    state: ExecState
    exit_code: int | None = None


@dataclass(frozen=True)
class Launch:
    """One training process to start: ``python -m godminer.training RUN_DIR`` on these GPUs."""

    task_id: str
    run_dir: Path
    gpu_ids: tuple[int, ...]
    box: str = "local"
    env: dict[str, str] = field(default_factory=dict)

    @property
    def processes(self) -> int:
        return max(1, len(self.gpu_ids))


class Executor(Protocol):
    name: str

    def submit(self, launch: Launch) -> dict[str, Any]:
        """Start the process; returns a JSON-able handle."""
        ...

    def status(self, handle: dict[str, Any]) -> ExecStatus: ...

    def logs(self, handle: dict[str, Any], tail: int = 200) -> str: ...

    def cancel(self, handle: dict[str, Any], grace_s: float = 30.0) -> None:
        """Ask the process to stop (SIGTERM: it keeps its best model), then kill it after ``grace_s``."""
        ...


# The training process runs offline: everything it needs was prefetched.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "WANDB_MODE": "offline",
    "TOKENIZERS_PARALLELISM": "false",
    "AXOLOTL_DO_NOT_TRACK": "1",
    "PYTHONUNBUFFERED": "1",
}
# Never hand secrets to a training process: it runs the validator's reward code (sandboxed) and our own.
_SECRET_PREFIXES = ("GODMINER_", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_TOKEN", "WANDB_API_KEY")


def training_command(launch: Launch, python: str) -> list[str]:
    """One process per GPU under accelerate for several GPUs; a plain process otherwise."""
    if launch.processes > 1:
        return [python, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(launch.processes),
                "--num_machines", "1", "--main_process_port", str(29500 + zlib.crc32(launch.task_id.encode()) % 1000),
                "-m", "godminer.training", str(launch.run_dir)]
    return [python, "-m", "godminer.training", str(launch.run_dir)]


def training_env(launch: Launch, base: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in (base if base is not None else os.environ).items() if not k.startswith(_SECRET_PREFIXES)}
    env.update(OFFLINE_ENV)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in launch.gpu_ids)
    env.update(launch.env)
    return env


def process_log(run_dir: Path) -> Path:
    """Where a training process's stdout and stderr go (the trainer's own log is ``train.log``)."""
    return Path(run_dir) / "process.log"


def log_tail(run_dir: Path, lines: int) -> str:
    path = process_log(run_dir)
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""


def signal_group(pid: int, sig: int) -> None:
    """Signal a process and everything it started (training runs in its own session and group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(os.getpgid(pid), sig)
