"""The default executor: a child process on this machine, in its own session and process group.

Its own session means a miner crash (even ``kill -9``) leaves training running; the restarted miner
re-attaches by pid (checked against the command line, so a reused pid is not mistaken for ours).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from godminer.executors.base import (
    ExecState,
    ExecStatus,
    Launch,
    log_tail,
    process_log,
    signal_group,
    training_command,
    training_env,
)


class LocalExecutor:
    name = "local"

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def submit(self, launch: Launch) -> dict[str, Any]:
        launch.run_dir.mkdir(parents=True, exist_ok=True)
        log = process_log(launch.run_dir).open("ab")
        child = subprocess.Popen(
            training_command(launch, self.python), env=training_env(launch), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, cwd=launch.run_dir,
        )
        log.close()
        self._children[child.pid] = child
        return {"executor": self.name, "pid": child.pid, "run_dir": str(launch.run_dir), "started_at": time.time()}

    def status(self, handle: dict[str, Any]) -> ExecStatus:
        pid = int(handle["pid"])
        child = self._children.get(pid)
        if child is not None:
            code = child.poll()
            return ExecStatus(ExecState.RUNNING) if code is None else ExecStatus(ExecState.EXITED, code)
        # Re-attached after a restart: not our child any more, so no exit code; look at /proc.
        if _is_ours(pid, handle["run_dir"]):
            return ExecStatus(ExecState.RUNNING)
        return ExecStatus(ExecState.EXITED if (Path(handle["run_dir"]) / "result.json").is_file() else ExecState.GONE)

    def logs(self, handle: dict[str, Any], tail: int = 200) -> str:
        return log_tail(Path(handle["run_dir"]), tail)

    def cancel(self, handle: dict[str, Any], grace_s: float = 30.0) -> None:
        pid = int(handle["pid"])
        if self.status(handle).state is not ExecState.RUNNING:
            return
        signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and self.status(handle).state is ExecState.RUNNING:
            time.sleep(0.1)
        if self.status(handle).state is ExecState.RUNNING:
            signal_group(pid, signal.SIGKILL)
            child = self._children.get(pid)
            if child is not None:
                child.wait(timeout=10)


def _is_ours(pid: int, run_dir: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":  # a zombie has finished
        return False
    return run_dir.encode() in cmdline

