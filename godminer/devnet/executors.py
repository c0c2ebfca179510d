"""A simulated executor: training replaced by the clock (for lifecycle tests and the day benchmark).

It goes through the same interface as the real executors and leaves what a real run leaves in the
run directory (progress lines, ``result.json``), so the lifecycle cannot tell the difference;
``outcomes`` scripts each attempt (e.g. an out-of-memory error on the first).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from godminer.clock import Clock
from godminer.executors.base import ExecState, ExecStatus, Launch
from godminer.training.common import RunSpec


@dataclass
class _Run:
    launch: Launch
    end: float
    result: dict[str, Any]
    finished: bool = False


class SimulatedExecutor:
    name = "simulated"

    def __init__(
        self,
        clock: Clock,
        duration: Callable[[RunSpec], float] | None = None,
        outcomes: Callable[[Launch, int], dict[str, Any]] | None = None,
    ) -> None:
        self.clock = clock
        self.duration = duration or (lambda spec: spec.train_until - clock.now())
        self.outcomes = outcomes or (lambda launch, attempt: {"status": "ok", "stopped_because": "simulated"})
        self.runs: dict[str, _Run] = {}
        self.submitted: list[Launch] = []

    def submit(self, launch: Launch) -> dict[str, Any]:
        spec = RunSpec.load(launch.run_dir)
        attempt = sum(1 for s in self.submitted if s.task_id == launch.task_id) + 1
        self.submitted.append(launch)
        now = self.clock.now()
        end = min(spec.train_until, now + max(0.0, self.duration(spec)))
        key = f"{launch.task_id}#{attempt}"
        self.runs[key] = _Run(launch, end, self.outcomes(launch, attempt))
        (launch.run_dir / "result.json").unlink(missing_ok=True)
        _progress(launch.run_dir, now, "start")
        return {"executor": self.name, "key": key, "run_dir": str(launch.run_dir)}

    def status(self, handle: dict[str, Any]) -> ExecStatus:
        run = self.runs.get(handle.get("key", ""))
        if run is None:
            return ExecStatus(ExecState.GONE)
        if not run.finished and self.clock.now() >= run.end:
            self._finish(run)
        elif not run.finished and run.result.get("status") != "hang":
            _progress(run.launch.run_dir, self.clock.now(), "train")  # a live run reports progress
        return ExecStatus(ExecState.EXITED, 0) if run.finished else ExecStatus(ExecState.RUNNING)

    def logs(self, handle: dict[str, Any], tail: int = 200) -> str:
        return ""

    def cancel(self, handle: dict[str, Any], grace_s: float = 30.0) -> None:
        run = self.runs.get(handle.get("key", ""))
        if run is not None and not run.finished:
            run.end = self.clock.now()
            if run.result.get("status") == "ok":
                run.result = {**run.result, "stopped_because": "stop requested"}
            self._finish(run)

    def _finish(self, run: _Run) -> None:
        run.finished = True
        if run.result.get("status") != "hang":
            _progress(run.launch.run_dir, run.end, "done")
            (run.launch.run_dir / "result.json").write_text(json.dumps(run.result))


def _progress(run_dir: Path, ts: float, event: str) -> None:
    with (run_dir / "progress.jsonl").open("a") as fh:
        fh.write(json.dumps({"ts": ts, "event": event}) + "\n")
