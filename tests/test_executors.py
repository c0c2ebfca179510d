"""The Docker executor against a fake Docker client, and the Ray executor on a local Ray with fake GPUs."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from godminer.executors.base import ExecState, Launch
from godminer.executors.docker import DockerExecutor


# ----- Docker: a fake client with the bits of docker-py the executor uses -----------------------------
class FakeNotFound(Exception):
    status_code = 404  # what docker.errors.NotFound answers


class FakeContainer:
    def __init__(self, store: FakeContainers, cid: str, name: str, command: list[str], options: dict) -> None:
        self.store, self.id, self.name, self.command, self.options = store, cid, name, command, options
        self.state = {"Status": "running", "ExitCode": 0}
        self.output = b"loading\ntraining\n"
        self.stopped_with: int | None = None

    @property
    def attrs(self) -> dict:
        return {"State": dict(self.state)}

    def exit(self, code: int) -> None:
        self.state = {"Status": "exited", "ExitCode": code}

    def logs(self, tail: int | str = "all", stream: bool = False, follow: bool | None = None):
        lines = self.output.splitlines(keepends=True)
        lines = lines if tail == "all" else lines[-int(tail):]
        assert not (stream and follow is not False), "docker-py follows a stream by default: it would never end"
        return iter(lines) if stream else b"".join(lines)

    def stop(self, timeout: int) -> None:
        self.stopped_with = timeout
        self.exit(143)

    def remove(self, force: bool = False) -> None:
        del self.store.by_id[self.id]


class FakeContainers:
    def __init__(self) -> None:
        self.by_id: dict[str, FakeContainer] = {}
        self.ran: list[FakeContainer] = []

    def run(self, image: str, command: list[str], name: str, detach: bool, **options) -> FakeContainer:
        assert detach and name not in {c.name for c in self.by_id.values()}, "docker refuses a duplicate name"
        container = FakeContainer(self, f"c{len(self.ran)}", name, command, {"image": image, **options})
        self.by_id[container.id] = container
        self.ran.append(container)
        return container

    def get(self, ref: str) -> FakeContainer:
        for container in self.by_id.values():
            if ref in (container.id, container.name):
                return container
        raise FakeNotFound(ref)


class FakeClient:
    def __init__(self) -> None:
        self.containers = FakeContainers()


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """A Hugging Face cache whose snapshot files are symlinks into blobs/, as the Hub client lays it out."""
    from huggingface_hub import constants

    cache = tmp_path / "hf" / "hub"
    repo = cache / "models--org--tiny"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "abc").write_text("{}")
    (repo / "snapshots" / "rev").mkdir(parents=True)
    (repo / "snapshots" / "rev" / "config.json").symlink_to("../../blobs/abc")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def job_launch(tmp_path: Path, model_path: Path, dataset: Path, gpu_ids: tuple[int, ...] = (2, 3)) -> Launch:
    run_dir = tmp_path / "jobs" / "task-1"
    run_dir.mkdir(parents=True)
    (run_dir / "job.json").write_text(json.dumps({"model_path": str(model_path), "dataset_path": str(dataset)}))
    return Launch("task-1", run_dir, gpu_ids)


@pytest.fixture
def launch(tmp_path, hub_cache) -> Launch:
    dataset = tmp_path / "shared" / "data.json"
    dataset.parent.mkdir()
    dataset.write_text("[]")
    return job_launch(tmp_path, hub_cache / "models--org--tiny" / "snapshots" / "rev", dataset)


def test_docker_submit_gives_the_container_its_gpus_paths_and_a_clean_env(launch, hub_cache, monkeypatch):
    monkeypatch.setenv("GODMINER_HUB__TOKEN", "secret")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    client = FakeClient()
    handle = DockerExecutor(client, "trainer:1", "64g").submit(launch)
    (container,) = client.containers.ran
    options = container.options
    assert handle == {"executor": "docker", "container": container.id, "name": "godminer-task-1",
                      "run_dir": str(launch.run_dir), "started_at": handle["started_at"]}
    assert container.command[:6] == ["python", "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                                     "2"]
    assert container.command[-3:] == ["-m", "godminer.training", str(launch.run_dir)]
    assert options["device_requests"] == [{"device_ids": ["2", "3"], "capabilities": [["gpu"]]}]
    assert options["shm_size"] == "64g" and options["image"] == "trainer:1"
    assert options["network_mode"] == "none" and options["working_dir"] == str(launch.run_dir)
    assert options["labels"] == {"godminer.task_id": "task-1"}
    assert options["volumes"] == {
        str(launch.run_dir): {"bind": str(launch.run_dir), "mode": "rw"},
        str(hub_cache): {"bind": str(hub_cache), "mode": "ro"},  # covers the snapshot and the blobs it links to
        str(launch.run_dir.parent.parent / "shared"): {"bind": str(launch.run_dir.parent.parent / "shared"),
                                                       "mode": "ro"},
    }
    env = options["environment"]
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"  # host GPUs 2 and 3, as the container numbers them
    assert env["HF_HUB_OFFLINE"] == "1" and env["HF_HUB_CACHE"] == str(hub_cache)
    assert not [k for k in env if k.startswith(("GODMINER_", "HF_TOKEN"))]
    assert "PATH" not in env  # nothing of the miner's own environment: the image's PATH stays


def test_docker_device_request_is_one_docker_py_accepts(launch):
    types = pytest.importorskip("docker.types")
    client = FakeClient()
    DockerExecutor(client, "trainer:1").submit(launch)
    config = types.HostConfig(version="1.44", device_requests=client.containers.ran[0].options["device_requests"])
    assert config["DeviceRequests"][0]["DeviceIDs"] == ["2", "3"]
    assert config["DeviceRequests"][0]["Capabilities"] == [["gpu"]]


def test_docker_mounts_a_local_model_alone_and_no_dataset_inside_the_run_dir(tmp_path, hub_cache):
    model = tmp_path / "models" / "tiny"
    model.mkdir(parents=True)
    launch = job_launch(tmp_path, model, tmp_path / "jobs" / "task-1" / "data" / "train.json", gpu_ids=(5,))
    (launch.run_dir / "data").mkdir()
    (launch.run_dir / "data" / "train.json").write_text("[]")
    client = FakeClient()
    DockerExecutor(client, "trainer:1", memory_per_gpu_gb=110, cpus_per_gpu=24).submit(launch)
    container = client.containers.ran[0]
    assert container.command == ["python", "-m", "godminer.training", str(launch.run_dir)]
    assert {path: v["mode"] for path, v in container.options["volumes"].items()} == {
        str(launch.run_dir): "rw", str(model): "ro"}
    assert "HF_HUB_CACHE" not in container.options["environment"]
    assert container.options["environment"]["CUDA_VISIBLE_DEVICES"] == "0"
    assert container.options["mem_limit"] == "110g" and container.options["nano_cpus"] == 24 * 10**9


def test_docker_status_follows_the_container_and_removes_it_after_its_exit(launch):
    client = FakeClient()
    executor = DockerExecutor(client, "trainer:1")
    handle = executor.submit(launch)
    container = client.containers.ran[0]
    assert executor.status(handle).state is ExecState.RUNNING
    assert executor.logs(handle, tail=1) == "training\n"
    container.exit(3)
    status = executor.status(handle)
    assert (status.state, status.exit_code) == (ExecState.EXITED, 3)
    assert not client.containers.by_id  # removed once its exit was seen ...
    assert (launch.run_dir / "process.log").read_bytes() == b"loading\ntraining\n"  # ... its output kept
    assert executor.status(handle).exit_code == 3
    assert executor.logs(handle, tail=1) == "training"
    restarted = DockerExecutor(client, "trainer:1")  # the container is gone: only the run dir tells
    assert restarted.status(handle).state is ExecState.GONE
    (launch.run_dir / "result.json").write_text("{}")
    assert restarted.status(handle).state is ExecState.EXITED


def test_docker_a_restarted_miner_reattaches_and_cancels(launch):
    client = FakeClient()
    handle = json.loads(json.dumps(DockerExecutor(client, "trainer:1").submit(launch)))  # as the store keeps it
    restarted = DockerExecutor(client, "trainer:1")
    assert restarted.status(handle).state is ExecState.RUNNING
    restarted.cancel(handle, grace_s=15.0)
    assert client.containers.ran[0].stopped_with == 15
    status = restarted.status(handle)
    assert (status.state, status.exit_code) == (ExecState.EXITED, 143)
    restarted.cancel(handle)  # nothing left to stop


def test_docker_resubmitting_replaces_a_stale_container_of_the_same_job(launch):
    client = FakeClient()
    executor = DockerExecutor(client, "trainer:1")
    executor.submit(launch)
    handle = DockerExecutor(client, "trainer:1").submit(launch)  # the first attempt's exit was never seen
    assert list(client.containers.by_id) == [handle["container"]]
    assert (launch.run_dir / "process.log").read_bytes() == b"loading\ntraining\n"


def test_docker_a_missing_container_is_gone_and_other_errors_propagate(tmp_path):
    client = FakeClient()
    executor = DockerExecutor(client, "trainer:1")
    assert executor.status({"container": "nope", "run_dir": str(tmp_path)}).state is ExecState.GONE
    client.containers.get = lambda ref: (_ for _ in ()).throw(ConnectionError("daemon down"))
    with pytest.raises(ConnectionError):
        executor.status({"container": "c0", "run_dir": str(tmp_path)})


# ----- Ray: a local cluster with 4 fake GPUs; "training" is a tiny Python program ---------------------------
ray_test = pytest.mark.slow  # about 12 s, most of it starting Ray
FAKE_TRAINER = """
import json, os, sys, time
print("CUDA_VISIBLE_DEVICES=" + os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
open(os.path.join(sys.argv[1], "result.json"), "w").write(json.dumps({"status": "ok"}))
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
"""


def fake_command():
    def command(launch: Launch, python: str) -> list[str]:  # a closure: Ray ships it by value to its workers
        return [python, "-c", FAKE_TRAINER, str(launch.run_dir)]

    return command


@pytest.fixture(scope="module")
def ray_executor(tmp_path_factory):
    ray = pytest.importorskip("ray")
    from godminer.executors.ray import RayExecutor

    patch = pytest.MonkeyPatch()
    patch.setenv("HOME", str(tmp_path_factory.mktemp("home")))  # ray writes ~/.ray/auth_token
    patch.setenv("RAY_SCHEDULER_EVENTS", "0")
    ray.init(address="local", num_cpus=4, num_gpus=4, include_dashboard=False, log_to_driver=False)
    yield RayExecutor(namespace="godminer-test", command=fake_command(), start_timeout_s=30)
    ray.shutdown()
    patch.undo()


def ray_launch(tmp_path: Path, task_id: str, gpus: int, box: str = "local", **env: str) -> Launch:
    return Launch(task_id, tmp_path / task_id, tuple(range(gpus)), box, env)


def wait_exit(executor, handle, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while (status := executor.status(handle)).state is ExecState.RUNNING:
        assert time.monotonic() < deadline, "still running"
        time.sleep(0.05)
    return status


@ray_test
def test_ray_runs_jobs_side_by_side_on_distinct_gpus(ray_executor, tmp_path):
    handles = [ray_executor.submit(ray_launch(tmp_path, f"one-{i}", 1, FAKE_SLEEP="1")) for i in range(2)]
    assert [ray_executor.status(h).state for h in handles] == [ExecState.RUNNING] * 2  # concurrently
    assert len({h["gpu_ids"][0] for h in handles}) == 2
    for handle in handles:
        status = wait_exit(ray_executor, handle)
        assert (status.state, status.exit_code) == (ExecState.EXITED, 0)
        log = (Path(handle["run_dir"]) / "process.log").read_text()
        assert log == f"CUDA_VISIBLE_DEVICES={handle['gpu_ids'][0]}\n"
        assert (Path(handle["run_dir"]) / "result.json").is_file()


@ray_test
def test_ray_multi_gpu_job_gets_two_gpus_and_its_exit_code(ray_executor, tmp_path):
    import ray

    from godminer.executors.ray import RayInventory

    (node,) = {gpu.box for gpu in RayInventory(80.0).gpus()}
    handle = ray_executor.submit(ray_launch(tmp_path, "two", 2, box=node, FAKE_EXIT="3"))
    assert len(handle["gpu_ids"]) == 2 and handle["node"] == node
    status = wait_exit(ray_executor, handle)
    assert (status.state, status.exit_code) == (ExecState.EXITED, 3)
    assert ray_executor.logs(handle) == f"CUDA_VISIBLE_DEVICES={','.join(handle['gpu_ids'])}"
    with pytest.raises(ValueError):  # the actor was killed once its exit was seen
        ray.get_actor(handle["actor"], namespace="godminer-test")


@ray_test
def test_ray_a_restarted_miner_finds_the_job_and_cancels_it(ray_executor, tmp_path):
    from godminer.executors.ray import RayExecutor

    handle = json.loads(json.dumps(ray_executor.submit(ray_launch(tmp_path, "sleepy", 1, FAKE_SLEEP="60"))))
    restarted = RayExecutor(namespace="godminer-test")
    assert restarted.status(handle).state is ExecState.RUNNING
    deadline = time.monotonic() + 10
    while not restarted.logs(handle) and time.monotonic() < deadline:  # the program is still starting
        time.sleep(0.05)
    assert restarted.logs(handle) == f"CUDA_VISIBLE_DEVICES={handle['gpu_ids'][0]}"
    restarted.cancel(handle, grace_s=5.0)
    status = restarted.status(handle)
    assert (status.state, status.exit_code) == (ExecState.EXITED, -15)
    assert RayExecutor(namespace="godminer-test").status(handle).state is ExecState.GONE  # no actor, no result


@ray_test
def test_ray_retries_reuse_the_name_without_mixing_up_attempts(ray_executor, tmp_path):
    from godminer.executors.local import _is_ours
    from godminer.executors.ray import RayExecutor

    first = ray_executor.submit(ray_launch(tmp_path, "again", 1))
    assert wait_exit(ray_executor, first).exit_code == 0
    stale = ray_executor.submit(ray_launch(tmp_path, "again", 1, FAKE_SLEEP="60"))
    assert ray_executor.status(stale).state is ExecState.RUNNING  # not the first attempt's exit
    restarted = RayExecutor(namespace="godminer-test", command=fake_command())  # never saw that attempt end
    fresh = restarted.submit(ray_launch(tmp_path, "again", 1))
    deadline = time.monotonic() + 10
    while _is_ours(stale["pid"], stale["run_dir"]):  # the stale attempt was stopped, not left holding its GPU
        assert time.monotonic() < deadline, "the stale training process outlived its actor"
        time.sleep(0.05)
    assert wait_exit(restarted, fresh).exit_code == 0


@ray_test
def test_ray_a_crashed_actor_takes_its_process_along_and_reads_as_gone(ray_executor, tmp_path):
    from godminer.executors.local import _is_ours

    handle = ray_executor.submit(ray_launch(tmp_path, "crash", 1, FAKE_SLEEP="60"))
    worker = int(Path(f"/proc/{handle['pid']}/stat").read_text().rsplit(")", 1)[1].split()[1])
    os.kill(worker, signal.SIGKILL)  # the OOM killer, say: Ray's own clean-up of children never runs
    deadline = time.monotonic() + 10
    while _is_ours(handle["pid"], handle["run_dir"]):
        assert time.monotonic() < deadline, "the training process outlived its actor"
        time.sleep(0.05)
    assert wait_exit(ray_executor, handle).state is ExecState.GONE


@ray_test
def test_ray_refuses_what_no_node_can_hold(ray_executor, tmp_path):
    from godminer.executors.ray import RayInventory

    assert [(g.index, g.memory_gb) for g in RayInventory(80.0).gpus()] == [(i, 80.0) for i in range(4)]
    with pytest.raises(RuntimeError, match="needs 5 GPUs on one node; the largest Ray node has 4"):
        ray_executor.submit(ray_launch(tmp_path, "huge", 5))
    with pytest.raises(RuntimeError, match="not an alive Ray node"):
        ray_executor.submit(ray_launch(tmp_path, "lost", 1, box="f" * 56))
