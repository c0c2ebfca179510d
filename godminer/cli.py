"""Command line: serve, demo, jobs, config (and, registered from their modules, train, plan, simulate)."""

from __future__ import annotations

import functools
import gc
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from godminer.settings import Settings, dump_yaml, load_settings

log = logging.getLogger("godminer")


def settings_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--config and --data-dir on any command that reads the settings."""

    @click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
                  help="YAML configuration file.")
    @click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                  help="Store, job folders and logs (default ./var).")
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


def build_settings(config_file: Path | None, data_dir: Path | None, dev: bool = False, **overrides: Any) -> Settings:
    from godminer.node import dev_overrides

    try:
        if dev:
            base = dev_overrides(data_dir or Path("./var/dev"))
            for key, value in overrides.items():
                if isinstance(value, dict) and isinstance(base.get(key), dict):
                    base[key] = {**base[key], **value}  # type: ignore[dict-item]
                else:
                    base[key] = value
            return load_settings(config_file, **base)
        return load_settings(config_file, data_dir=data_dir, **overrides)
    except Exception as exc:
        raise click.ClickException(f"invalid configuration: {exc}") from exc


@click.group()
@click.version_option(package_name="godminer")
def main() -> None:
    """godminer: a miner for G.O.D (Gradients on Demand, Bittensor subnet 56)."""


@main.command()
@settings_options
@click.option("--dev", is_flag=True, help="Offline: miner //Bob, validator //Alice, local publisher.")
@click.option("--host", default=None, help="Bind address (default from config: 0.0.0.0).")
@click.option("--port", type=int, default=None, help="Port (default from config: 7999).")
@click.option("--log-level", default="INFO", show_default=True)
def serve(config_file: Path | None, data_dir: Path | None, dev: bool, host: str | None, port: int | None,
          log_level: str) -> None:
    """Run the miner."""
    import uvicorn

    from godminer.logs import setup_logging
    from godminer.node import MinerNode

    settings = build_settings(config_file, data_dir, dev=dev, node={"host": host, "port": port})
    problems = [] if settings.dev else settings.check_for_production()
    if problems:
        raise click.ClickException("refusing to start:\n  - " + "\n  - ".join(problems))
    setup_logging(log_level, jobs_dir=settings.data_dir / "jobs")
    log.info("configuration", extra={"config": settings.redacted()})
    node = MinerNode(settings)
    # Long-lived objects built at start-up never need collecting: keep them out of the GC's way,
    # so full collections (which stall every request) stay short.
    gc.collect()
    gc.freeze()
    log.info("miner hotkey %s listening on %s:%d", node.keypair.ss58_address, settings.node.host, settings.node.port)
    uvicorn.run(node.app(), host=settings.node.host, port=settings.node.port, log_config=None,
                access_log=False, loop="auto", http="auto")


@main.group()
def jobs() -> None:
    """Inspect and steer jobs in the store."""


def _open_store(config_file: Path | None, data_dir: Path | None) -> Any:
    from godminer.engine.store import Store

    settings = build_settings(config_file, data_dir)
    if settings.database_url is None and not (settings.data_dir / "godminer.db").exists():
        raise click.ClickException(f"no store at {settings.data_dir / 'godminer.db'} (use --data-dir)")
    return Store(settings.db_url), settings


@jobs.command("list")
@settings_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--limit", default=50, show_default=True)
def jobs_list(config_file: Path | None, data_dir: Path | None, as_json: bool, limit: int) -> None:
    """List jobs, most recently changed first."""
    store, _ = _open_store(config_file, data_dir)
    records = store.jobs(limit=limit)
    if as_json:
        click.echo(json.dumps([_job_json(r) for r in records], indent=2, default=str))
        return
    now = time.time()
    click.echo(f"{'TASK':<10} {'TYPE':<9} {'STATE':<11} {'GPUS':<8} {'SLACK':>8}  {'MODEL':<40} REASON")
    for r in records:
        slack = f"{(r.termination_at - now) / 3600:+.1f}h" if r.termination_at and not r.finished else "-"
        gpus = ",".join(map(str, r.gpu_ids)) or "-"
        click.echo(f"{r.task_id[:8]:<10} {r.kind:<9} {r.state:<11} {gpus:<8} {slack:>8}  {r.model[:40]:<40} "
                   f"{r.reason[:60]}")


def _job_json(record: Any) -> dict[str, Any]:
    data = asdict(record)
    data.pop("request_json", None)
    data["state"] = str(record.state)
    return data


@jobs.command("show")
@settings_options
@click.argument("task_id")
def jobs_show(config_file: Path | None, data_dir: Path | None, task_id: str) -> None:
    """One job with its transitions."""
    store, _ = _open_store(config_file, data_dir)
    record = store.get(task_id)
    if record is None:
        raise click.ClickException(f"no job {task_id}")
    click.echo(json.dumps({"job": _job_json(record), "events": store.events(task_id)}, indent=2, default=str))


@jobs.command("logs")
@settings_options
@click.argument("task_id")
@click.option("--tail", default=100, show_default=True, help="Lines of each log.")
@click.option("--follow", is_flag=True, help="Keep printing new lines of the miner's and the trainer's logs.")
def jobs_logs(config_file: Path | None, data_dir: Path | None, task_id: str, tail: int, follow: bool) -> None:
    """A job's logs: the miner's lines about it, the trainer's log and the process's output."""
    from godminer.monitor.queries import logs

    store, settings = _open_store(config_file, data_dir)
    if store.get(task_id) is None:
        raise click.ClickException(f"no job {task_id}")
    run_dir = settings.data_dir / "jobs" / task_id
    for name, text in logs(run_dir, tail).items():
        click.echo(f"==> {name} <==\n{text}\n" if text else f"==> {name} <== (empty)\n")
    if follow:
        _follow([run_dir / "miner.log", run_dir / "train.log"])


def _follow(paths: list[Path]) -> None:
    offsets = {p: p.stat().st_size if p.exists() else 0 for p in paths}
    while True:
        for path in paths:
            if path.exists() and path.stat().st_size > offsets[path]:
                with path.open() as fh:
                    fh.seek(offsets[path])
                    click.echo(fh.read(), nl=False)
                    offsets[path] = fh.tell()
        time.sleep(1.0)


@jobs.command("cancel")
@settings_options
@click.argument("task_id")
def jobs_cancel(config_file: Path | None, data_dir: Path | None, task_id: str) -> None:
    """Cancel a job; a running miner stops its training process at its next pass."""
    from godminer.engine.jobs import InvalidTransition, JobState

    store, _ = _open_store(config_file, data_dir)
    try:
        store.transition(task_id, JobState.CANCELLED, time.time(), "cancelled by the operator")
    except KeyError as exc:
        raise click.ClickException(f"no job {task_id}") from exc
    except InvalidTransition as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"cancelled {task_id}")


@jobs.command("outcome")
@settings_options
@click.argument("task_id")
@click.argument("result", type=click.Choice(["win", "valid", "fail"]))
def jobs_outcome(config_file: Path | None, data_dir: Path | None, task_id: str, result: str) -> None:
    """Record what the validator made of a task (feeds the godminer policy's P(win)/P(fail))."""
    store, _ = _open_store(config_file, data_dir)
    try:
        store.record_outcome(task_id, result, time.time())
    except KeyError as exc:
        raise click.ClickException(f"no job {task_id}") from exc
    click.echo(f"recorded {result} for {task_id}")


@main.group()
def config() -> None:
    """Configuration."""


@config.command("show")
@settings_options
@click.option("--dev", is_flag=True)
def config_show(config_file: Path | None, data_dir: Path | None, dev: bool) -> None:
    """Print the resolved configuration with secrets redacted."""
    click.echo(dump_yaml(build_settings(config_file, data_dir, dev=dev).redacted()), nl=False)


def _load_request(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read the request {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise click.ClickException(f"{path} must hold one start-training payload (a JSON object)")
    return data


def _spec(request_file: Path, run_dir: Path, hours: float | None, method: str | None, rslora: bool = False,
          dora: bool = False) -> Any:
    from godminer.engine.fetch import FetchError
    from godminer.training.data import DataError
    from godminer.training.prepare import spec_from_request

    try:
        overrides: dict[str, Any] = {"use_rslora": rslora, "use_dora": dora}
        if method:
            overrides["method"] = method
        return spec_from_request(_load_request(request_file), run_dir, time.time(), hours=hours, overrides=overrides)
    except (DataError, FetchError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option("--request", "request_file", type=click.Path(path_type=Path, exists=True), required=True,
              help="A start-training payload (JSON); dataset may be a path or URL, model a directory or Hub id.")
@click.option("--hours", type=float, default=None, help="Override the budget (hours_to_complete).")
@click.option("--method", type=click.Choice(["full", "lora"]), default=None, help="Force the fine-tuning method.")
@click.option("--rslora", is_flag=True, help="Rank-stabilised LoRA scaling (alpha / sqrt(r)).")
@click.option("--dora", is_flag=True, help="Weight-decomposed LoRA (DoRA).")
@click.option("--gpus", type=int, default=None, help="Plan for this many GPUs instead of the visible ones.")
@click.option("--gpu-memory", type=float, default=80.0, show_default=True, help="GB per GPU with --gpus.")
@click.option("--axolotl", "axolotl_dir", type=click.Path(path_type=Path), default=None,
              help="Also export the plan as an axolotl YAML into this directory.")
def plan(request_file: Path, hours: float | None, method: str | None, rslora: bool, dora: bool, gpus: int | None,
         gpu_memory: float, axolotl_dir: Path | None) -> None:
    """Print the training plan for a request, with the reason for every value, without training."""
    import tempfile

    from godminer.training import axolotl
    from godminer.training.plan import Hardware
    from godminer.training.prepare import make_plan

    with tempfile.TemporaryDirectory() as tmp:
        spec = _spec(request_file, Path(tmp), hours, method, rslora, dora)
        hardware = Hardware(n_gpus=gpus, gpu_memory_gb=gpu_memory, bf16=True) if gpus else None
        training_plan = make_plan(spec, hardware)
        click.echo(training_plan.explain())
        if axolotl_dir is not None:
            data_file = axolotl_dir / Path(spec.dataset_path).name
            axolotl_dir.mkdir(parents=True, exist_ok=True)
            data_file.write_bytes(Path(spec.dataset_path).read_bytes())
            request = _load_request(request_file)
            command = axolotl.export(training_plan, request.get("task_id", "task"), spec.dataset_type, data_file,
                                     axolotl_dir)
            click.echo(f"\naxolotl config: {axolotl_dir / 'axolotl.yml'}\n{command}")


@main.command()
@click.option("--request", "request_file", type=click.Path(path_type=Path, exists=True), required=True,
              help="A start-training payload (JSON); dataset may be a path or URL, model a directory or Hub id.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Run directory; the trained model is written to OUT/model.")
@click.option("--hours", type=float, default=None, help="Override the budget (hours_to_complete).")
@click.option("--method", type=click.Choice(["full", "lora"]), default=None, help="Force the fine-tuning method.")
@click.option("--rslora", is_flag=True, help="Rank-stabilised LoRA scaling (alpha / sqrt(r)).")
@click.option("--dora", is_flag=True, help="Weight-decomposed LoRA (DoRA).")
@click.option("--gpus", type=int, default=1, show_default=True, help="Processes to launch (accelerate) for N GPUs.")
def train(request_file: Path, out_dir: Path, hours: float | None, method: str | None, rslora: bool, dora: bool,
          gpus: int) -> None:
    """Train one task from a start-training payload."""
    import subprocess
    import sys

    from godminer.executors.base import Launch, training_command

    spec = _spec(request_file, out_dir, hours, method, rslora, dora)
    spec.save()
    # Its own process, as under the miner: the wall-clock watchdog may end it at the deadline.
    code = subprocess.call(training_command(Launch("train", out_dir.resolve(), tuple(range(gpus))), sys.executable))
    result_file = out_dir / "result.json"
    result = json.loads(result_file.read_text()) if result_file.is_file() else {"status": "no result"}
    click.echo(json.dumps({k: v for k, v in result.items() if k != "traceback"}, indent=2))
    if code != 0:
        raise SystemExit(code)
    click.echo(f"model: {out_dir / 'model'}")


@main.command()
@click.option("--days", type=float, default=14.0, show_default=True, help="Days after our hotkey joins.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--policy", type=click.Choice(["godminer", "seed", "reference", "oracle"]), default="godminer",
              show_default=True)
@click.option("--gpus", type=int, default=4, show_default=True, help="GPUs of the simulated box (80 GB each).")
@click.option("--params", "params_file", type=click.Path(path_type=Path, exists=True), default=None,
              help="Simulation parameters (JSON, SimParams fields).")
@click.option("--calibrate-from", "store_dir", type=click.Path(path_type=Path), default=None,
              help="Fit our skill per task kind to the outcomes recorded in this miner's store.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
def simulate(days: float, seed: int, policy: str, gpus: int, params_file: Path | None, store_dir: Path | None,
             as_json: bool) -> None:
    """Simulate days of the subnet with this miner's real policy and scheduler (seeded, reproducible)."""
    from godminer.scoring.calibration import calibrate
    from godminer.scoring.market import SimParams
    from godminer.scoring.simulator import Box
    from godminer.scoring.simulator import simulate as run_simulation

    params = SimParams.load(params_file) if params_file else SimParams()
    if store_dir is not None:
        store, _ = _open_store(None, store_dir)
        params = calibrate(params, store.outcomes())
    result = run_simulation(days=days, seed=seed, policy=policy, box=Box(gpus=gpus), params=params)
    if as_json:
        click.echo(result.to_json())
        return
    click.echo(f"{policy}: emission share {result.emission_share:.5f}, {result.wins} wins, {result.failures} failures, "
               f"{result.accepted} accepted, {result.declined} declined, GPU utilisation {result.gpu_utilisation:.0%}")


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("./var/demo"), show_default=True)
def demo(data_dir: Path) -> None:
    """Run the miner in dev mode against a built-in local validator and print what happens."""
    from godminer.devnet.demo import run_demo

    raise SystemExit(run_demo(data_dir))
