"""Run validator-supplied GRPO reward functions (Python source strings) in a sandboxed worker process.

The training process never executes validator code: it only parses the sources with ``ast`` and talks JSON lines
over pipes to one long-lived worker, ``python -m godminer.training.sandbox`` (its isolation is described
there). Before any validator code runs, the worker

* enters new user + network namespaces when the kernel allows (then it has no usable network interface);
* sets rlimits: address space (``memory_mb``), a lifetime CPU backstop, no core files, few fds, small files;
* confines itself with Landlock when available (Linux >= 5.13): read-only access to the Python installation and
  system library/data directories, read-write only to its fresh temp dir, no ``execve`` anywhere, no TCP
  (ABI >= 4), no signals to processes outside the sandbox (ABI >= 6); children inherit all of this;
* installs an audit hook, which Python code cannot remove, denying sockets, process creation, signals, chdir,
  rlimit changes, and opening files outside the same allow-lists (writes only in the temp dir).

It starts with a scrubbed environment (no tokens, no ``GODMINER_*``), HOME and cwd in its temp dir. The parent
enforces a wall-clock timeout per call, kills and transparently restarts the worker after a timeout or crash,
checks every answer (one finite number or None per completion) and counts failures per function.

Out of scope: native-code escapes (ctypes; ``_posixsubprocess.fork_exec``, which raises no audit event) bypass
the audit hook. What still bounds them is the kernel side (namespaces, Landlock, rlimits, the scrubbed
environment). Where the kernel offers neither Landlock nor namespaces, such code can read what the miner's user
can read: run the miner unprivileged. The worker's answers are never trusted; a hostile function can at worst
return wrong rewards, which its author controls anyway.
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from godminer.training.sandbox import MAX_ERROR_CHARS

# What TRL's GRPOTrainer passes besides dataset columns: not data, and not JSON-serialisable.
_TRL_INJECTED = frozenset({"completion_ids", "trainer_state", "log_extra", "log_metric", "environments"})
_NOT_COLUMNS = _TRL_INJECTED | {"completions", "prompts"}

_STARTUP_TIMEOUT_S = 30.0
_MAX_REPLY_BYTES = 16 * 2**20


@dataclass(frozen=True)
class RewardSpec:
    """One validator reward function: its name, Python source and weight."""

    name: str
    source: str
    weight: float


def load_specs(reward_functions: list[dict[str, Any]]) -> list[RewardSpec]:
    """Parse the payload's ``reward_functions`` entries (``reward_func``, ``reward_weight``) without running them."""
    return [_load_spec(position, entry) for position, entry in enumerate(reward_functions)]


def column_args(spec: RewardSpec) -> list[str]:
    """Parameters of the function that TRL fills from dataset columns (e.g. ``extra_data``)."""
    args = _main_def(spec.source).args
    return [arg.arg for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs) if arg.arg not in _NOT_COLUMNS]


def _load_spec(position: int, entry: Mapping[str, Any]) -> RewardSpec:
    source, weight = entry.get("reward_func"), entry.get("reward_weight")
    if not isinstance(source, str):
        raise ValueError(f"reward function #{position}: 'reward_func' must be a source string")
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight < math.inf:
        raise ValueError(f"reward function #{position}: 'reward_weight' must be a finite number >= 0")
    try:
        name = _main_def(source).name
    except ValueError as exc:
        raise ValueError(f"reward function #{position}: {exc}") from exc
    return RewardSpec(name, source, float(weight))


def _main_def(source: str) -> ast.FunctionDef:
    """The first top-level ``def``: the validator names a function by the text between ``def `` and ``(``."""
    try:
        module = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError) as exc:
        raise ValueError(f"not valid Python: {exc}") from exc
    for node in module.body:
        if isinstance(node, ast.FunctionDef):
            return node
    raise ValueError("no top-level 'def' in the source")


class _Failure(Exception):
    """A call that produced no usable values; ``kind`` is how :meth:`SandboxedRewards.report` counts it."""

    def __init__(self, kind: str, error: str) -> None:
        super().__init__(f"{kind}: {error}")
        self.kind, self.error = kind, error[:MAX_ERROR_CHARS]


@dataclass
class _Stats:
    calls: int = 0
    seconds: float = 0.0
    failures: Counter[str] = field(default_factory=Counter)
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        mean = self.seconds / self.calls if self.calls else 0.0
        return {"calls": self.calls, "failures": dict(self.failures), "last_error": self.last_error,
                "mean_latency_s": mean}


class SandboxedRewards:
    """Owns the sandbox worker and hands TRL one plain callable per reward function.

    ``functions()`` and ``weights()`` go to ``GRPOTrainer(reward_funcs=...)`` and ``GRPOConfig(reward_weights=...)``.
    A failed call returns ``[None] * len(completions)``: TRL turns None into NaN and sums rewards with ``nansum``,
    so that function simply does not count for those completions (a row where every function failed gets advantage
    0). The first call of each function in a fresh worker may take ``warmup_timeout_s`` (imports, model loads).
    ``read_roots`` and ``env`` extend what the worker may read and its environment (e.g. a model cache for
    detoxify with ``HF_HUB_OFFLINE=1``); never put secrets there.
    """

    def __init__(self, specs: Sequence[RewardSpec], timeout_s: float = 10.0, memory_mb: int = 2048,
                 warmup_timeout_s: float = 120.0, read_roots: Sequence[str] = (),
                 env: Mapping[str, str] | None = None) -> None:
        self._specs = list(specs)
        self._timeout_s, self._warmup_timeout_s = timeout_s, max(timeout_s, warmup_timeout_s)
        self._worker_args = (memory_mb, tuple(read_roots), dict(env or {}))
        self._worker: _Worker | None = None
        self._load_errors: dict[int, str] = {}
        self._lock = threading.Lock()
        self._names = _unique_names([spec.name for spec in self._specs])
        self._stats = [_Stats() for _ in self._specs]
        self._functions = [self._make_function(index, name) for index, name in enumerate(self._names)]

    def __enter__(self) -> SandboxedRewards:
        with self._lock:
            try:
                self._ensure_worker()
            except _Failure as failure:
                raise RuntimeError(f"the reward sandbox cannot start: {failure}") from failure
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill the worker; a later call would start a new one."""
        with self._lock:
            if self._worker is not None:
                self._worker.close()

    def functions(self) -> list[Callable[..., list[float | None]]]:
        """One callable per spec, named like the reward function (made unique), in spec order."""
        return list(self._functions)

    def weights(self) -> list[float]:
        """The reward weights, in the order of :meth:`functions`."""
        return [spec.weight for spec in self._specs]

    def report(self) -> dict[str, dict[str, Any]]:
        """Per function: calls, failures by kind, last error (truncated) and mean latency in seconds."""
        return {name: stats.as_dict() for name, stats in zip(self._names, self._stats, strict=True)}

    def isolation(self) -> dict[str, Any]:
        """What the last worker achieved: ``network_namespace`` (bool) and ``landlock_abi`` (0 = none)."""
        return dict(self._worker.isolation) if self._worker is not None else {}

    def evaluate(self, prompts: list[Any] | None, completions: list[Any],
                 columns: Mapping[str, list[Any]] | None = None) -> list[list[float | None]]:
        """Score held-out samples with every function: one list per function, one value (or None) per completion."""
        return [function(prompts=prompts, completions=completions, **(columns or {})) for function in self._functions]

    def _make_function(self, index: int, name: str) -> Callable[..., list[float | None]]:
        def reward(prompts: list[Any] | None = None, completions: list[Any] | None = None,
                   **kwargs: Any) -> list[float | None]:
            return self._score(index, prompts, list(completions or []), kwargs)

        reward.__name__ = reward.__qualname__ = name
        return reward

    def _score(self, index: int, prompts: list[Any] | None, completions: list[Any],
               kwargs: Mapping[str, Any]) -> list[float | None]:
        columns = {key: value for key, value in kwargs.items() if key not in _TRL_INJECTED and _is_json(value)}
        arguments = {"prompts": prompts, "completions": completions, **columns}
        stats = self._stats[index]
        started = time.monotonic()
        with self._lock:
            stats.calls += 1
            try:
                return self._call(index, arguments, len(completions))
            except _Failure as failure:
                stats.failures[failure.kind] += 1
                stats.last_error = failure.error
                return [None] * len(completions)
            finally:
                stats.seconds += time.monotonic() - started

    def _call(self, index: int, arguments: dict[str, Any], count: int) -> list[float | None]:
        worker = self._ensure_worker()
        if index in self._load_errors:
            raise _Failure("load", self._load_errors[index])
        timeout_s = self._timeout_s if index in worker.warm else self._warmup_timeout_s
        reply = worker.request({"op": "call", "index": index, "kwargs": arguments}, timeout_s)
        worker.warm.add(index)
        if not reply.get("ok"):
            raise _Failure(str(reply.get("kind")), str(reply.get("error")))
        return _check_values(reply.get("values"), count)

    def _ensure_worker(self) -> _Worker:
        # Each respawn either succeeds or marks one more function as unloadable, so this is bounded.
        for _attempt in range(len(self._specs) + 2):
            if self._worker is not None and self._worker.alive:
                return self._worker
            self._respawn()
        raise _Failure("crashed", "the sandbox worker keeps dying")

    def _respawn(self) -> None:
        if self._worker is not None:
            self._worker.close()
        self._worker = _Worker(*self._worker_args)
        for index, spec in enumerate(self._specs):
            if index in self._load_errors:
                continue
            message = {"op": "load", "index": index, "name": spec.name, "source": spec.source}
            try:
                reply = self._worker.request(message, self._warmup_timeout_s)
            except _Failure as failure:  # the worker is dead; the caller starts another without this function
                self._load_errors[index] = str(failure)
                return
            if not reply.get("ok"):
                self._load_errors[index] = f"{reply.get('kind')}: {reply.get('error')}"[:MAX_ERROR_CHARS]


def _unique_names(names: list[str]) -> list[str]:
    seen: Counter[str] = Counter()
    unique = []
    for name in names:
        seen[name] += 1
        unique.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return unique


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def _check_values(values: Any, count: int) -> list[float | None]:
    """The worker is untrusted: exactly one finite number (or None, which TRL ignores) per completion."""
    if not isinstance(values, list):
        raise _Failure("bad_shape", f"returned {type(values).__name__}, expected a list of numbers")
    if len(values) != count:
        raise _Failure("bad_shape", f"returned {len(values)} values for {count} completions")
    return [_number(value) for value in values]


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float):
        raise _Failure("bad_shape", f"non-numeric value {value!r:.60}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if math.isinf(number):
        raise _Failure("bad_shape", "infinite value")
    return None if math.isnan(number) else number


class _Worker:
    """One sandbox process: spawn, request/answer under a deadline, kill."""

    def __init__(self, memory_mb: int, read_roots: Sequence[str], env: Mapping[str, str]) -> None:
        self.tmp = tempfile.mkdtemp(prefix="godminer-reward-")
        self.warm: set[int] = set()
        self._log = os.path.join(self.tmp, "stderr.log")
        self._buffer = bytearray()
        self._closed = False
        with open(self._log, "wb") as log:
            self._proc = subprocess.Popen([sys.executable, "-m", "godminer.training.sandbox"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=log, cwd=self.tmp,
                                          env=_worker_env(self.tmp, env), start_new_session=True)
        config = {"tmp": self.tmp, "memory_mb": memory_mb, "read_roots": list(read_roots)}
        self.isolation: dict[str, Any] = self.request(config, _STARTUP_TIMEOUT_S).get("isolation", {})

    @property
    def alive(self) -> bool:
        return not self._closed and self._proc.poll() is None

    def request(self, message: Mapping[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send one message and wait for its answer; on timeout or death the worker is killed."""
        try:
            data = json.dumps(message).encode() + b"\n"
        except (TypeError, ValueError) as exc:
            raise _Failure("bad_input", f"arguments are not JSON-serialisable: {exc}") from exc
        try:
            self._send(data)
            return self._receive(timeout_s)
        except _Failure:
            self.close()
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._proc.returncode is None:  # not reaped yet, so the id is still ours
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)  # its own session: takes any stray children along
        self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stdout):
            with contextlib.suppress(OSError):
                pipe.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _send(self, data: bytes) -> None:
        try:
            self._proc.stdin.write(data)
            self._proc.stdin.flush()
        except OSError as exc:
            raise _Failure("crashed", self._death_note()) from exc

    def _receive(self, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        stdout = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Failure("timeout", f"no answer within {timeout_s:g} s")
            if not select.select([stdout], [], [], remaining)[0]:
                continue
            chunk = os.read(stdout, 1 << 16)
            if not chunk:
                raise _Failure("crashed", self._death_note())
            self._buffer += chunk
            if len(self._buffer) > _MAX_REPLY_BYTES:
                raise _Failure("bad_shape", "answer larger than 16 MiB")
        end = self._buffer.index(b"\n")
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        try:
            reply = json.loads(line)
        except ValueError as exc:
            raise _Failure("crashed", "malformed answer from the worker") from exc
        if not isinstance(reply, dict):
            raise _Failure("crashed", "malformed answer from the worker")
        return reply

    def _death_note(self) -> str:
        try:
            code = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "the worker closed its pipe"
        how = f"was killed by {signal.strsignal(-code) or -code}" if code < 0 else f"exited with code {code}"
        return f"the worker {how}" + self._log_excerpt()

    def _log_excerpt(self) -> str:
        """The interesting lines of a crash (faulthandler's message and the reward code's frames), else the last."""
        try:
            with open(self._log, "rb") as log:
                log.seek(max(0, os.fstat(log.fileno()).st_size - 4096))
                lines = [line.strip() for line in log.read().decode(errors="replace").splitlines() if line.strip()]
        except OSError:
            return ""
        picked = [line for line in lines if line.startswith("Fatal Python error") or '"<reward ' in line]
        return f"; {' | '.join(picked or lines[-1:])}" if lines else ""


def _worker_env(tmp: str, extra: Mapping[str, str]) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": tmp,
        "TMPDIR": tmp,
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),  # to import this module; pruned before user code
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONFAULTHANDLER": "1",  # a segfault leaves a traceback in the log
        "OMP_NUM_THREADS": "1",
        "MALLOC_ARENA_MAX": "2",
        **extra,
    }
