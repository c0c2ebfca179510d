"""Training in one Docker container per job: the same entry point, only the job's GPUs, the host's paths.

The container gets exactly its GPUs (``DeviceRequest(device_ids=...)``; inside they are numbered 0..k-1), no
network by default (training is offline; loopback still serves accelerate's rendezvous), the offline environment
and nothing of the miner's own environment (no secrets, no host ``PATH``). What the job reads and writes is
bind-mounted at the same absolute path as on the host, so ``<run_dir>/job.json`` holds valid paths inside too:
the run directory read-write; the model, with the Hugging Face cache its snapshot links into, and a dataset
outside the run directory read-only. It runs as the miner's user, so the run directory stays the miner's.

Containers outlive the miner: a restarted miner re-attaches by container id. A container is removed once its
exit has been seen; its output is kept first in ``<run_dir>/process.log``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from godminer.executors.base import ExecState, ExecStatus, Launch, log_tail, process_log, training_command, training_env

if TYPE_CHECKING:
    from godminer.settings import Settings

log = logging.getLogger(__name__)
TASK_LABEL = "godminer.task_id"
_RUNNING = {"created", "running", "restarting", "paused"}
Mounts = dict[str, str]  # host path (also the path inside) -> "rw" | "ro"


class DockerExecutor:
    name = "docker"

    def __init__(
        self,
        client: Any,
        image: str,
        shm_size: str = "32g",
        *,
        mounts: Callable[[Launch], Mounts] | None = None,
        network_mode: str = "none",
        memory_per_gpu_gb: float | None = None,
        cpus_per_gpu: float | None = None,
        user: str | None = f"{os.getuid()}:{os.getgid()}",
    ) -> None:
        self.client = client
        self.image = image
        self.shm_size = shm_size
        self.mounts = mounts or job_mounts
        self.network_mode = network_mode
        self.memory_per_gpu_gb = memory_per_gpu_gb
        self.cpus_per_gpu = cpus_per_gpu
        self.user = user
        self._exit_codes: dict[str, int] = {}  # containers this process saw exit (and removed)

    @classmethod
    def from_settings(cls, settings: Settings) -> DockerExecutor:
        import docker

        return cls(docker.from_env(), settings.executor.docker_image, settings.executor.docker_shm_size)

    # ----- the Executor interface -----------------------------------------------------------------
    def submit(self, launch: Launch) -> dict[str, Any]:
        launch.run_dir.mkdir(parents=True, exist_ok=True)
        name = container_name(launch.task_id)
        stale = self._find(name)
        if stale is not None:  # an earlier attempt whose exit was never seen: it holds GPUs nobody accounts for
            log.warning("job %s: removing the stale container %s", launch.task_id, name)
            self._retire(stale, launch.run_dir)
        container = self.client.containers.run(
            self.image, training_command(launch, "python"), name=name, detach=True, **self._options(launch),
        )
        return {"executor": self.name, "container": container.id, "name": name, "run_dir": str(launch.run_dir),
                "started_at": time.time()}

    def status(self, handle: dict[str, Any]) -> ExecStatus:
        ref, run_dir = handle["container"], Path(handle["run_dir"])
        if ref in self._exit_codes:
            return ExecStatus(ExecState.EXITED, self._exit_codes[ref])
        container = self._find(ref)
        if container is None:  # removed by someone else, or by an earlier miner process after its exit
            return ExecStatus(ExecState.EXITED if (run_dir / "result.json").is_file() else ExecState.GONE)
        state = container.attrs["State"]
        if state["Status"] in _RUNNING:
            return ExecStatus(ExecState.RUNNING)
        self._exit_codes[ref] = int(state["ExitCode"])
        self._retire(container, run_dir)
        return ExecStatus(ExecState.EXITED, self._exit_codes[ref])

    def logs(self, handle: dict[str, Any], tail: int = 200) -> str:
        container = self._find(handle["container"])
        if container is not None:
            return container.logs(tail=tail).decode(errors="replace")
        return log_tail(Path(handle["run_dir"]), tail)

    def cancel(self, handle: dict[str, Any], grace_s: float = 30.0) -> None:
        """``docker stop``: SIGTERM (through the container's init to the trainer), SIGKILL after ``grace_s``."""
        container = self._find(handle["container"])
        if container is not None and container.attrs["State"]["Status"] in _RUNNING:
            container.stop(timeout=max(1, round(grace_s)))

    # ----- helpers --------------------------------------------------------------------------------
    def _options(self, launch: Launch) -> dict[str, Any]:
        """Everything but the image, the command and the name: devices, environment, mounts, limits."""
        mounts = self.mounts(launch)
        options: dict[str, Any] = {
            "environment": container_env(launch, mounts), "labels": {TASK_LABEL: launch.task_id},
            "volumes": {path: {"bind": path, "mode": mode} for path, mode in mounts.items()},
            "working_dir": str(launch.run_dir), "shm_size": self.shm_size, "network_mode": self.network_mode,
            "init": True, "user": self.user,
        }
        if launch.gpu_ids:  # a plain dict: docker-py turns it into a DeviceRequest
            options["device_requests"] = [{"device_ids": [str(i) for i in launch.gpu_ids], "capabilities": [["gpu"]]}]
        if self.memory_per_gpu_gb:
            options["mem_limit"] = f"{round(self.memory_per_gpu_gb * launch.processes)}g"
        if self.cpus_per_gpu:
            options["nano_cpus"] = round(self.cpus_per_gpu * launch.processes * 1e9)
        return options

    def _find(self, ref: str) -> Any | None:
        """The container by id or name (fresh attributes), or None when Docker has no such container."""
        try:
            return self.client.containers.get(ref)
        except Exception as exc:
            if getattr(exc, "status_code", None) == 404:  # docker.errors.NotFound, without importing docker
                return None
            raise

    def _retire(self, container: Any, run_dir: Path) -> None:
        """Keep the container's output in ``process.log``, then remove it (killing it if it still runs)."""
        with process_log(run_dir).open("ab") as fh:
            fh.writelines(container.logs(stream=True, follow=False))  # in chunks: a long run says a lot
        container.remove(force=True)


def container_name(task_id: str) -> str:
    return "godminer-" + re.sub(r"[^A-Za-z0-9_.-]", "-", task_id)


def container_env(launch: Launch, mounts: Mounts) -> dict[str, str]:
    """The offline environment without anything of the miner's own; GPUs renumbered as the container sees them."""
    env = training_env(launch, base={})
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(len(launch.gpu_ids)))
    env["HOME"] = str(launch.run_dir)  # the miner's uid has no home in the image; caches need a writable one
    cache = _hub_cache()
    if cache in mounts:  # hub ids resolve offline from the same cache as on the host
        env["HF_HUB_CACHE"] = cache
    return env


def job_mounts(launch: Launch) -> Mounts:
    """The run directory read-write; the model and the dataset from ``job.json`` read-only, nested ones merged."""
    run_dir = os.path.abspath(launch.run_dir)
    wanted = {run_dir: "rw"}
    try:
        spec = json.loads((launch.run_dir / "job.json").read_text())
    except (OSError, ValueError):
        return wanted
    model, dataset = _existing(spec.get("model_path")), _existing(spec.get("dataset_path"))
    if model is not None and model.is_dir():  # else a hub id: nothing to mount (the trainer is offline)
        cache = _hub_cache()
        wanted[cache if model.is_relative_to(cache) else str(model)] = "ro"  # snapshot files link into blobs/
    if dataset is not None:
        wanted[str(dataset if dataset.is_dir() else dataset.parent)] = "ro"
    return _merge_nested(wanted)


def _existing(path: str | None) -> Path | None:
    return Path(os.path.abspath(path)) if path and os.path.exists(path) else None


def _merge_nested(wanted: Mounts) -> Mounts:
    """Drop a mount another one already covers (a read-write parent, or a read-only child of any parent)."""
    kept: Mounts = {}
    for path in sorted(wanted, key=len):
        covered = any(Path(path).is_relative_to(parent) and (mode == "rw" or wanted[path] == "ro")
                      for parent, mode in kept.items())
        if not covered:
            kept[path] = wanted[path]
    return kept


def _hub_cache() -> str:
    from huggingface_hub import constants

    return os.path.abspath(constants.HF_HUB_CACHE)
