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


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("./var/demo"), show_default=True)
def demo(data_dir: Path) -> None:
    """Run the miner in dev mode against a built-in local validator and print what happens."""
    from godminer.devnet.demo import run_demo

    raise SystemExit(run_demo(data_dir))
