"""Training on a Ray cluster of several boxes: one detached, named actor per job holds its GPUs and runs it.

The actor is a lease plus a supervisor. Created with ``num_gpus=k`` and no CPUs (logical CPUs would otherwise hide
GPU scheduling on small boxes), pinned to ``launch.box`` when that names a Ray node (``RayInventory`` names boxes
by node id), it starts ``python -m godminer.training RUN_DIR`` on its box with the GPUs Ray gave it and answers
``poll``, ``logs`` and ``stop``. Named and detached, it outlives the miner's driver: a restarted miner finds it by
name. It is killed once its exit has been seen.

Ray keeps no durable record (a head restart loses every actor) and moves no files: our store stays the source of
truth, an actor lost with its node or the head reads as GONE (EXITED when a result file exists), and run
directories, models and datasets must sit at the same paths on every box (a shared filesystem).
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from godminer.engine.inventory import GpuStatus
from godminer.engine.scheduler import Gpu
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

if TYPE_CHECKING:
    from godminer.settings import Settings

NAMESPACE = "godminer"
Command = Callable[[Launch, str], list[str]]  # (launch, the box's python) -> argv
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: the forked child only makes the call


def connect(settings: Settings) -> None:
    """Join the cluster this box belongs to (``ray start`` first): a head owned by the miner would die with it."""
    if not ray.is_initialized():
        ray.init(address=settings.executor.ray_address or "auto", namespace=NAMESPACE)


@ray.remote
class TrainingActor:
    """Runs on the job's box and supervises its training process (in its own session, like ``LocalExecutor``)."""

    def __init__(self, launch: Launch, command: Command) -> None:
        self.run_dir = launch.run_dir
        self.gpu_ids = [str(i) for i in ray.get_gpu_ids()]
        env = training_env(launch)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpu_ids)
        launch.run_dir.mkdir(parents=True, exist_ok=True)
        with process_log(self.run_dir).open("ab") as log:
            self.proc = subprocess.Popen(
                command(launch, sys.executable), env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=launch.run_dir, start_new_session=True, preexec_fn=_stop_with_parent,
            )

    def ready(self) -> dict[str, Any]:
        return {"gpu_ids": self.gpu_ids, "node": ray.get_runtime_context().get_node_id(), "pid": self.proc.pid}

    def poll(self) -> int | None:
        return self.proc.poll()

    def logs(self, tail: int) -> str:
        return log_tail(self.run_dir, tail)

    def stop(self, grace_s: float) -> int:
        """SIGTERM to the process group (the trainer keeps its best model), SIGKILL after ``grace_s``."""
        signal_group(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            signal_group(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


class RayExecutor:
    name = "ray"

    def __init__(
        self,
        namespace: str = NAMESPACE,
        command: Command = training_command,
        start_timeout_s: float = 60.0,
        call_timeout_s: float = 10.0,
    ) -> None:
        self.namespace = namespace
        self.command = command
        self.start_timeout_s = start_timeout_s
        self.call_timeout_s = call_timeout_s
        self._exit_codes: dict[str, int] = {}  # attempts this process saw exit (and whose actor it killed)

    @classmethod
    def from_settings(cls, settings: Settings) -> RayExecutor:
        connect(settings)
        return cls()

    # ----- the Executor interface -----------------------------------------------------------------
    def submit(self, launch: Launch) -> dict[str, Any]:
        """Start the job's actor and wait until it runs: a request Ray cannot place is refused, never left pending."""
        strategy = self._placement(launch)
        name = actor_name(launch.task_id)
        stale = self._find(name)
        if stale is not None:  # an earlier attempt whose exit was never seen: it holds GPUs nobody accounts for
            self._stop(stale, grace_s=0.0)
            ray.kill(stale, no_restart=True)
        actor = TrainingActor.options(  # type: ignore[attr-defined]
            name=name, namespace=self.namespace, lifetime="detached", num_gpus=len(launch.gpu_ids), num_cpus=0,
            max_restarts=0, scheduling_strategy=strategy,
        ).remote(launch, self.command)
        try:
            started = ray.get(actor.ready.remote(), timeout=self.start_timeout_s)
        except GetTimeoutError:
            ray.kill(actor, no_restart=True)
            raise RuntimeError(f"Ray could not start {name} within {self.start_timeout_s:.0f}s (GPUs busy?)") from None
        except RayActorError:
            ray.kill(actor, no_restart=True)
            raise
        return {"executor": self.name, "actor": name, "run_dir": str(launch.run_dir), "gpu_ids": started["gpu_ids"],
                "node": started["node"], "pid": started["pid"], "started_at": time.time()}

    def status(self, handle: dict[str, Any]) -> ExecStatus:
        name, attempt = handle["actor"], f"{handle['actor']}/{handle['pid']}"  # a retry reuses the name
        if attempt in self._exit_codes:
            return ExecStatus(ExecState.EXITED, self._exit_codes[attempt])
        actor = self._find(name)
        if actor is None:
            return _lost(handle)
        try:
            code = ray.get(actor.poll.remote(), timeout=self.call_timeout_s)
        except GetTimeoutError:  # a slow or briefly unreachable node is no proof of death
            return ExecStatus(ExecState.RUNNING)
        except RayActorError:  # died with its node
            return _lost(handle)
        if code is None:
            return ExecStatus(ExecState.RUNNING)
        self._exit_codes[attempt] = code
        ray.kill(actor, no_restart=True)
        return ExecStatus(ExecState.EXITED, code)

    def logs(self, handle: dict[str, Any], tail: int = 200) -> str:
        actor = self._find(handle["actor"])
        if actor is not None:
            try:
                return ray.get(actor.logs.remote(tail), timeout=self.call_timeout_s)
            except (GetTimeoutError, RayActorError):
                pass
        return log_tail(Path(handle["run_dir"]), tail)  # visible here on a shared filesystem

    def cancel(self, handle: dict[str, Any], grace_s: float = 30.0) -> None:
        actor = self._find(handle["actor"])
        if actor is not None:
            self._stop(actor, grace_s)

    # ----- helpers --------------------------------------------------------------------------------
    def _find(self, name: str) -> Any | None:
        try:
            return ray.get_actor(name, namespace=self.namespace)
        except ValueError:
            return None

    def _stop(self, actor: Any, grace_s: float) -> None:
        with contextlib.suppress(RayActorError):  # already gone
            ray.get(actor.stop.remote(grace_s), timeout=grace_s + self.call_timeout_s)

    def _placement(self, launch: Launch) -> NodeAffinitySchedulingStrategy | None:
        """Pin to ``launch.box`` when it names a node; refuse what no alive node can hold (Ray would wait forever)."""
        gpus = {n["NodeID"]: n["Resources"].get("GPU", 0.0) for n in ray.nodes() if n["Alive"]}
        pinned = launch.box in gpus
        if launch.box != "local" and not pinned:
            raise RuntimeError(f"box {launch.box} is not an alive Ray node")
        most = gpus[launch.box] if pinned else max(gpus.values(), default=0.0)
        if len(launch.gpu_ids) > most:
            where = f"box {launch.box} has" if pinned else "the largest Ray node has"
            raise RuntimeError(f"job {launch.task_id} needs {len(launch.gpu_ids)} GPUs on one node; {where} {most:g}")
        return NodeAffinitySchedulingStrategy(launch.box, soft=False) if pinned else None


class RayInventory:
    """The GPUs of every alive Ray node, each node a box (its node id). Ray reports no memory and no readings."""

    def __init__(self, memory_gb: float) -> None:
        self.memory_gb = memory_gb

    @classmethod
    def from_settings(cls, settings: Settings) -> RayInventory:
        connect(settings)
        return cls(settings.gpus.memory_gb)

    def gpus(self) -> list[Gpu]:
        return [Gpu(s.index, s.memory_gb, box=box, name=s.name) for box, s in self._per_node()]

    def status(self) -> list[GpuStatus]:
        """Indices restart at 0 on each box; ``gpus()`` says which box each one is on."""
        return [s for _, s in self._per_node()]

    def _per_node(self) -> list[tuple[str, GpuStatus]]:
        out = []
        for node in sorted((n for n in ray.nodes() if n["Alive"]), key=lambda n: n["NodeID"]):
            resources = node["Resources"]
            kind = next((k.split(":", 1)[1] for k in resources if k.startswith("accelerator_type:")), "ray")
            out += [(node["NodeID"], GpuStatus(i, kind, self.memory_gb)) for i in range(int(resources.get("GPU", 0)))]
        return out


def actor_name(task_id: str) -> str:
    return f"godminer-{task_id}"


def _lost(handle: dict[str, Any]) -> ExecStatus:
    finished = (Path(handle["run_dir"]) / "result.json").is_file()
    return ExecStatus(ExecState.EXITED if finished else ExecState.GONE)



def _stop_with_parent() -> None:
    """In the child: SIGTERM when the actor's worker dies (killed, or lost with its raylet), so no orphan keeps GPUs."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
