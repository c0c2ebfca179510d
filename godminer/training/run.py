"""One training process: ``python -m godminer.training RUN_DIR`` (also under accelerate/torchrun).

Reads ``RUN_DIR/job.json``, builds the plan on the hardware it was given, runs the task's recipe
and writes ``RUN_DIR/result.json``: status ``ok``, ``data_error`` (do not retry), ``oom`` (retry
with a smaller micro-batch) or ``error``. SIGTERM stops training at the next step boundary and the
best model so far stays in ``RUN_DIR/model``. The deadline guard stops between steps; a watchdog
ends the process at ``train_until`` if a step or an evaluation overruns (the model slot is always
complete, so ending there loses nothing but the unfinished work).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from godminer.logs import JsonFormatter
from godminer.training.common import RunContext, RunResult, RunSpec
from godminer.training.data import DataError

log = logging.getLogger("godminer.training")


def _recipe(kind: str) -> Callable[[RunContext], RunResult]:
    if kind in ("instruct", "chat"):
        from godminer.training.recipes import sft

        return sft.run
    if kind == "dpo":
        from godminer.training.recipes import dpo

        return dpo.run
    if kind == "grpo":
        from godminer.training.recipes import grpo

        return grpo.run
    raise DataError(f"no text recipe for task kind {kind!r}")


def is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def write_result(run_dir: Path, payload: dict[str, Any]) -> None:
    if not _is_main():
        return
    tmp = run_dir / "result.json.tmp"
    tmp.write_text(json.dumps({**payload, "finished_at": time.time()}, indent=2, default=str))
    os.replace(tmp, run_dir / "result.json")


def start_watchdog(run_dir: Path, train_until: float, slot_has_model: Callable[[], bool]) -> threading.Event:
    """Ends the process at ``train_until`` (wall clock) unless the returned event is set first."""
    done = threading.Event()

    def watch() -> None:
        if done.wait(max(0.0, train_until - time.time())):
            return
        log.warning("hard deadline reached during a step or an evaluation: ending the process")
        status = {"status": "ok", "stopped_because": "hard deadline"} if slot_has_model() else {
            "status": "error", "error": "hard deadline reached before any model was saved"}
        write_result(run_dir, status)
        logging.shutdown()
        os._exit(0 if slot_has_model() else 1)

    threading.Thread(target=watch, name="deadline-watchdog", daemon=True).start()
    return done


def ensure_starting_model(ctx: RunContext) -> None:
    """Put the fallback adapter in an empty model slot: from the first second there is something valid
    (and distinct from the untouched base) to publish."""
    from godminer.training.fallback import write_fallback_adapter

    if ctx.slot.current() is not None or not _is_main():
        return
    staged = ctx.slot.staging()
    try:
        write_fallback_adapter(Path(ctx.spec.model_path), staged, ctx.spec.base_model)
    except (ValueError, OSError) as exc:
        log.warning("no fallback adapter for this model (%s); the first trained model will be kept", exc)
        return
    ctx.slot.commit(staged, {"fallback": True})


def run_training(run_dir: Path, now: Callable[[], float] = time.time, watchdog: bool = False) -> int:
    """Train the run in ``run_dir``; ``now`` is injectable (tests). ``watchdog`` may end the whole process at
    the deadline, so only the process entry point (``main``) turns it on."""
    from godminer.training.artifacts import ModelSlot

    spec = RunSpec.load(run_dir)
    done = threading.Event()
    if watchdog:
        done = start_watchdog(run_dir, spec.train_until, lambda: ModelSlot(run_dir).current() is not None)
    try:
        return _run(run_dir, spec, now)
    finally:
        done.set()


def _run(run_dir: Path, spec: RunSpec, now: Callable[[], float]) -> int:
    from godminer.training.prepare import make_plan

    if _is_main():
        (run_dir / "result.json").unlink(missing_ok=True)
    try:
        plan = make_plan(spec)
        if _is_main():
            (run_dir / "plan.json").write_text(plan.to_json())
        ctx = RunContext(spec, plan, now)
        ensure_starting_model(ctx)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: ctx.stop.set())
        log.info("training %s: %s on %d GPU(s), until %.0f", spec.kind, plan.method, plan.n_gpus, plan.train_until)
        result = _recipe(spec.kind)(ctx)
    except DataError as exc:
        write_result(run_dir, {"status": "data_error", "error": str(exc)})
        return 2
    except Exception as exc:
        status = "oom" if is_oom(exc) else "error"
        log.exception("training failed (%s)", status)
        write_result(run_dir, {"status": status, "error": f"{type(exc).__name__}: {exc}",
                               "traceback": traceback.format_exc()[-4000:]})
        return 3 if status == "oom" else 1
    write_result(run_dir, asdict(result))
    return 0 if result.model_dir else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m godminer.training RUN_DIR", file=sys.stderr)
        return 64
    run_dir = Path(argv[0])
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler, logging.StreamHandler(sys.stderr)])
    return run_training(run_dir, watchdog=True)
