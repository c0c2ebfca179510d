"""`godminer demo`: the whole job lifecycle on this machine in a few minutes, printed as one table.

The miner runs in dev mode (miner //Bob, validator //Alice, local executor, local publisher) with
four declared GPUs (on a CPU box they only bound concurrency); a local validator offers an
instruct, a chat, a DPO and a GRPO task on a tiny model built on the spot, plus two offers the
miner should decline, then checks and evaluates every submission as the validator would.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from godminer.devnet.server import ServerThread
from godminer.devnet.validator import DataServer, LocalValidator, Task
from godminer.engine.inventory import StaticInventory
from godminer.logs import setup_logging
from godminer.node import MinerNode, dev_overrides
from godminer.settings import load_settings

DEMO_HOURS = 0.05  # 180 s per task: the deadline guard, not the epochs, ends the runs
LOWER_IS_BETTER = {"instruct": True, "chat": True, "dpo": True, "grpo": False}


def _settings(data_dir: Path):  # noqa: ANN202 - Settings subclass
    overrides = dev_overrides(data_dir)
    overrides["estimates"] = {"safety_margin_s": 15.0}
    overrides["executor"] = {"tick_s": 0.5, "lease_s": 10.0}
    return load_settings(**overrides)


def run_demo(data_dir: Path) -> int:
    import datasets
    from transformers.utils import logging as hf_logging

    from godminer.training.tiny import build_model

    setup_logging("WARNING")
    logging.getLogger("godminer").setLevel(logging.WARNING)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    data_dir = _fresh(data_dir.resolve())
    started = time.time()
    print("building a tiny model and tokenizer (nothing is downloaded) ...", flush=True)
    model_dir = build_model(data_dir / "models" / "tiny-llama")
    settings = _settings(data_dir / "miner")
    node = MinerNode(settings, inventory=StaticInventory.uniform(4, 80.0, name="declared"))
    assert settings.hub.local_dir is not None
    published = settings.hub.local_dir
    with ServerThread(node.app()) as server, DataServer(data_dir / "bucket") as data:
        validator = LocalValidator(server.url, node.keypair.ss58_address, model_dir, 120_000, data_dir / "bucket")
        tasks = [validator.make_task(kind, rows, DEMO_HOURS, seed=i)
                 for i, (kind, rows) in enumerate([("instruct", 600), ("chat", 600), ("dpo", 400), ("grpo", 200)])]
        print(f"miner {node.keypair.ss58_address} at {server.url}; validator offers {len(tasks)} tasks", flush=True)
        for task in tasks:
            validator.offer(task)
            if task.accepted:
                validator.start_training(task, data)
        declined = _declined_offers(validator)
        _wait_for_submissions(validator, [t for t in tasks if t.accepted], published)
        print("evaluating every submission as the validator does ...", flush=True)
        for task in tasks:
            if task.repo and task.hash_check == "ok":
                validator.evaluate(task, published)
        validator.close()
    node.close()
    print(_table(tasks, declined))
    print(f"\ndemo finished in {time.time() - started:.0f} s; store and job folders in {settings.data_dir}")
    return 0 if all(_passed(t) for t in tasks) else 1


def _fresh(data_dir: Path) -> Path:
    """Start from an empty folder; only a folder an earlier demo made (it carries a marker) is removed."""
    marker = data_dir / ".godminer-demo"
    if data_dir.exists() and any(data_dir.iterdir()):
        if not marker.is_file():
            raise SystemExit(f"{data_dir} is not empty and was not made by the demo; choose another --data-dir")
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    marker.write_text("made by godminer demo; removed by the next demo\n")
    return data_dir


def _declined_offers(validator: LocalValidator) -> list[tuple[str, str, str]]:
    """Offers the miner should turn down: an image task (no image trainer) and a model too big for the box."""
    rows = []
    for task_type, model, params, hours in (
        ("ImageTask", "stabilityai/stable-diffusion-xl-base-1.0", None, 1.0),
        ("InstructTextTask", "meta-llama/Llama-3.1-405B-Instruct", 405_000_000_000, 10.0),
    ):
        answer = validator.client.offer({"ds_size": 20, "model": model, "hours_to_complete": hours,
                                         "task_id": f"demo-{len(rows)}-{int(time.time())}", "task_type": task_type,
                                         "model_params_count": params}).json()
        rows.append((task_type, "accepted" if answer["accepted"] else "declined", answer["message"]))
    return rows


def _wait_for_submissions(validator: LocalValidator, tasks: list[Task], published: Path) -> None:
    pending = list(tasks)
    deadline = time.time() + max(t.hours for t in tasks) * 3600 + 120
    while pending and time.time() < deadline:
        time.sleep(2.0)
        for task in list(pending):
            if validator.collect(task, published):
                pending.remove(task)
                print(f"  {task.kind:<8} submitted after {task.submitted_after_s:.0f} s: {task.repo}", flush=True)
    for task in pending:
        task.hash_check = "no submission"


def _improved(task: Task) -> bool:
    if task.metric is None or task.base_metric is None:
        return False
    return task.metric < task.base_metric if LOWER_IS_BETTER[task.kind] else task.metric > task.base_metric


def _passed(task: Task) -> bool:
    """Accepted, submitted, the validator's hash check passed and the model evaluated; the losses (deterministic
    for a given model) beat the base. GRPO's reward is sampled and its job gets a dozen steps of a shared CPU
    here, so it is reported, not required: tests/test_training.py checks that GRPO training raises it."""
    delivered = task.accepted and task.hash_check == "ok" and task.metric is not None
    return delivered and (task.kind == "grpo" or _improved(task))


def _table(tasks: list[Task], declined: list[tuple[str, str, str]]) -> str:
    header = f"{'task':<18} {'decision':<9} {'submitted':>9}  {'validator metric (base -> submitted)':<40} hash check"
    lines = ["", header, "-" * 92]
    for t in tasks:
        name = {"instruct": "test loss", "chat": "test loss", "dpo": "DPO loss", "grpo": "reward"}[t.kind]
        metric = (f"{name} {t.base_metric:.4f} -> {t.metric:.4f}" + (" (better)" if _improved(t) else " (NOT better)")
                  if t.metric is not None and t.base_metric is not None else "-")
        after = f"{t.submitted_after_s:.0f} s" if t.submitted_after_s is not None else "-"
        lines.append(f"{t.task_type:<18} {'accepted' if t.accepted else 'declined':<9} {after:>9}  {metric:<40} "
                     f"{t.hash_check}")
    for task_type, decision, message in declined:
        lines.append(f"{task_type:<18} {decision:<9} {'-':>9}  {message[:60]}")
    return "\n".join(lines)
