"""The reward sandbox's worker: ``python -m godminer.training.sandbox``, started by ``SandboxedRewards``.

Before any validator code runs it isolates itself: new user and network namespaces where the kernel
allows, ``no_new_privs``, Landlock (read-only system and Python roots, read-write only its temp dir,
no ``execve``, no TCP, no signals out), rlimits, and an audit hook denying sockets, processes,
signals and files outside the allow-lists. Then it executes the reward sources once and answers
calls as JSON lines. Only the standard library is imported here.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import site
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

MAX_ERROR_CHARS = 500
_CPU_SECONDS = 3600  # lifetime CPU backstop (orphaned worker); on expiry the worker dies and is restarted
_MAX_FILES = 64
_MAX_FILE_BYTES = 64 * 2**20
_SYSTEM_READ_ROOTS = ("/usr/lib", "/usr/lib64", "/usr/share", "/etc/ssl", "/etc/ld.so.cache", "/etc/localtime",
                      "/dev/null", "/dev/urandom")
_DENIED_EVENTS = ("socket.", "subprocess.", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
                  "os.kill", "os.chdir", "os.symlink", "os.link", "signal.pthread_kill", "resource.setrlimit",
                  "resource.prlimit", "pty.")
_MUTATING_EVENTS = frozenset({"os.chmod", "os.chown", "os.mkdir", "os.remove", "os.rename", "os.rmdir",
                              "os.setxattr", "os.removexattr", "os.truncate", "os.utime", "shutil.rmtree"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_CLONE_NEWUSER, _CLONE_NEWNET, _PR_SET_NO_NEW_PRIVS = 0x10000000, 0x40000000, 38
# Landlock syscalls have the same numbers on every Linux architecture.
_LANDLOCK_CREATE_RULESET, _LANDLOCK_ADD_RULE, _LANDLOCK_RESTRICT_SELF, _LANDLOCK_RULE_PATH_BENEATH = 444, 445, 446, 1
_FS_EXECUTE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 2, 1 << 3
_FS_FILE_RIGHTS = 1 << 0 | 1 << 1 | 1 << 2 | 1 << 14 | 1 << 15  # the rights that apply to a non-directory
_FS_RIGHTS_PER_ABI = {1: 13, 2: 14, 3: 15, 4: 15}  # number of filesystem access bits; 16 from ABI 5 on

def worker_main() -> None:
    """Serve requests on stdin/stdout after isolating this process (started by SandboxedRewards)."""
    requests, replies = _claim_protocol_pipes()
    config = json.loads(requests.readline())
    isolation = _isolate(os.path.realpath(config["tmp"]), config["memory_mb"], config["read_roots"])
    _answer(replies, {"ok": True, "isolation": isolation})
    functions: dict[int, Callable[..., Any]] = {}
    for line in requests:
        _answer(replies, _handle(json.loads(line), functions))


def _claim_protocol_pipes() -> tuple[TextIO, TextIO]:
    """Keep private copies of stdin/stdout for the protocol; reward code's prints go to the log instead."""
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return requests, replies


def _isolate(tmp: str, memory_mb: int, extra_roots: Sequence[str]) -> dict[str, Any]:
    libc = ctypes.CDLL(None, use_errno=True)
    namespaced = any(libc.unshare(flags) == 0 for flags in (_CLONE_NEWUSER | _CLONE_NEWNET, _CLONE_NEWNET))
    libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    roots = _read_roots(tmp, extra_roots)
    landlock_abi = _landlock(libc, roots, (tmp, os.devnull))
    _limit_resources(memory_mb)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails with EFBIG instead of killing
    sys.path[:] = [entry for entry in sys.path if _within(os.path.realpath(entry or "."), roots)]
    sys.addaudithook(_audit_hook(tmp, roots))
    return {"network_namespace": namespaced, "landlock_abi": landlock_abi}


def _read_roots(tmp: str, extra: Sequence[str]) -> tuple[str, ...]:
    candidates = (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *site.getsitepackages(),
                  *_SYSTEM_READ_ROOTS, *extra, tmp)
    resolved = (os.path.realpath(path) for path in candidates)
    return tuple(dict.fromkeys(path for path in resolved if path != "/" and os.path.exists(path)))


def _limit_resources(memory_mb: int) -> None:
    limits = {resource.RLIMIT_AS: memory_mb * 2**20, resource.RLIMIT_CPU: _CPU_SECONDS, resource.RLIMIT_CORE: 0,
              resource.RLIMIT_NOFILE: _MAX_FILES, resource.RLIMIT_FSIZE: _MAX_FILE_BYTES}
    for limit, wanted in limits.items():
        hard = resource.getrlimit(limit)[1]
        value = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(limit, (value, value))


class _RulesetAttr(ctypes.Structure):
    _fields_ = (("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64))


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed", ctypes.c_uint64), ("fd", ctypes.c_int32))


def _landlock(libc: ctypes.CDLL, read_roots: Sequence[str], write_roots: Sequence[str]) -> int:
    """Confine this process and its future children to the given trees; returns the ABI used (0: unavailable)."""
    abi = _syscall(libc, _LANDLOCK_CREATE_RULESET, None, 0, 1)  # flag 1 asks for the ABI version
    if abi < 1:
        return 0
    handled = (1 << _FS_RIGHTS_PER_ABI.get(abi, 16)) - 1
    attr = _RulesetAttr(handled, 0b11 if abi >= 4 else 0, 0b11 if abi >= 6 else 0)  # TCP; signals, unix sockets
    ruleset = _syscall(libc, _LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    if ruleset < 0:
        return 0
    try:
        rules = [(root, _FS_READ_FILE | _FS_READ_DIR) for root in read_roots]
        for path, rights in [*rules, *((root, handled & ~_FS_EXECUTE) for root in write_roots)]:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneath(rights if os.path.isdir(path) else rights & _FS_FILE_RIGHTS, fd)
                _syscall(libc, _LANDLOCK_ADD_RULE, ruleset, _LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(rule), 0)
            finally:
                os.close(fd)
        return abi if _syscall(libc, _LANDLOCK_RESTRICT_SELF, ruleset, 0) == 0 else 0
    finally:
        os.close(ruleset)


def _syscall(libc: ctypes.CDLL, number: int, *args: Any) -> int:
    libc.syscall.restype = ctypes.c_long
    return libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) if isinstance(a, int) else a for a in args))


def _audit_hook(tmp: str, roots: tuple[str, ...]) -> Callable[[str, tuple[Any, ...]], None]:
    writable = (tmp, os.devnull)

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            _check_open(args, writable, roots)
        elif event.startswith(_DENIED_EVENTS):
            raise PermissionError(f"reward sandbox: {event} is not allowed")
        elif event in _MUTATING_EVENTS and not all(
            _within(_resolve(arg), (tmp,)) for arg in args if isinstance(arg, str | bytes | os.PathLike)
        ):
            raise PermissionError(f"reward sandbox: {event} outside the sandbox directory")

    return hook


def _check_open(args: tuple[Any, ...], writable: tuple[str, ...], roots: tuple[str, ...]) -> None:
    path, mode, flags = args
    if path is None or isinstance(path, int):
        return  # an already-open file descriptor
    target = _resolve(path)
    writing = bool(flags & _WRITE_FLAGS) or any(letter in (mode or "") for letter in "wax+")
    # Directory descriptors outside the sandbox are refused too: they would anchor dir_fd-relative opens.
    allowed = writable if writing or os.path.isdir(target) else roots
    if not _within(target, allowed):
        raise PermissionError(f"reward sandbox: may not {'write' if writing else 'read'} {target}")


def _resolve(path: str | bytes | os.PathLike[str]) -> str:
    return os.path.realpath(os.fsdecode(os.fspath(path)))


def _within(path: str, roots: Sequence[str]) -> bool:
    return any(path == root or path.startswith(root + os.sep) for root in roots)


def _handle(request: dict[str, Any], functions: dict[int, Callable[..., Any]]) -> dict[str, Any]:
    try:
        if request["op"] == "load":
            functions[request["index"]] = _load(request["name"], request["source"])
            return {"ok": True}
        return {"ok": True, "values": functions[request["index"]](**request["kwargs"])}
    except MemoryError:
        return {"ok": False, "kind": "memory", "error": "MemoryError: the memory limit was reached"}
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from reward code are contained too
        return {"ok": False, "kind": "exception", "error": _describe(exc)}


def _load(name: str, source: str) -> Callable[..., Any]:
    namespace: dict[str, Any] = {"__name__": "reward_functions"}
    exec(compile(source, f"<reward {name}>", "exec"), namespace)
    function = namespace.get(name)
    if not callable(function):
        raise TypeError(f"the source does not define a function named {name!r}")
    return function


def _answer(replies: TextIO, reply: dict[str, Any]) -> None:
    try:
        text = json.dumps(reply, default=_plain)
    except Exception as exc:
        text = json.dumps({"ok": False, "kind": "bad_shape", "error": f"unusable result: {_describe(exc)}"})
    replies.write(text + "\n")
    replies.flush()


def _plain(value: Any) -> Any:
    """numpy / torch results (arrays, scalars) become plain lists and numbers; anything else is refused."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not a number")


def _describe(exc: BaseException) -> str:
    try:
        return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
    except Exception:
        return type(exc).__name__


if __name__ == "__main__":
    worker_main()
