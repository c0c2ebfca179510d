"""Structured JSON logs: one object per line, with ``task_id``/``job_id`` from context on every line.

Lines about a job also go to that job's own file (``<data_dir>/jobs/<task_id>/miner.log``), so
``godminer jobs logs TASK_ID`` shows the miner's side and the trainer's side of one job.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

task_context: contextvars.ContextVar[str | None] = contextvars.ContextVar("task_id", default=None)
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}


@contextmanager
def job_context(task_id: str) -> Iterator[None]:
    token = task_context.set(task_id)
    try:
        yield
    finally:
        task_context.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        task_id = getattr(record, "task_id", None) or task_context.get()
        if task_id:
            data["task_id"] = task_id
            data["job_id"] = task_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in data and key != "task_id":
                data[key] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class JobFileHandler(logging.Handler):
    """Appends records that carry a task id to that job's own log file."""

    def __init__(self, jobs_dir: Path) -> None:
        super().__init__()
        self.jobs_dir = Path(jobs_dir)
        self._lock_files = threading.Lock()
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        task_id = getattr(record, "task_id", None) or task_context.get()
        if not task_id or "/" in task_id or task_id.startswith("."):
            return
        try:
            line = self.format(record)
            path = self.jobs_dir / task_id / "miner.log"
            with self._lock_files:
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a") as fh:
                    fh.write(line + "\n")
        except Exception:
            self.handleError(record)


def setup_logging(level: str = "INFO", jobs_dir: Path | None = None, json_lines: bool = True) -> None:
    root = logging.getLogger()
    root.handlers.clear()
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(JsonFormatter() if json_lines else logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(console)
    if jobs_dir is not None:
        root.addHandler(JobFileHandler(jobs_dir))
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "uvicorn.access", "huggingface_hub", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
