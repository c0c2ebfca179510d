"""A day of offers against a fake 4 × H100 box, run in minutes: GPU utilisation, deadline hits, jobs/day.

The real node runs (store, offer policy, scheduler, lifecycle, fallback model, local publisher); only
training is replaced by the clock (SimulatedExecutor: a job "trains" until its planned stop) and the
clock runs SCALE times faster than real time. The day's tasks follow the validator's synthetic
stream of mid-2025 (scoring.md §4, §6(b)): one task per 5 minutes while fewer than 12 are in
flight, the era's type mix, hours from the row bins, 5 % big models. We assume every task is offered
to us (the heaviest load the box can see). Compared: godminer (all four GPUs, policy "godminer")
and the reference miner's rule (policy "reference": one job at a time, on one GPU).
Usage: python bench/lifecycle_day.py [--scale 600] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from godminer.devnet import datasets
from godminer.devnet.executors import SimulatedExecutor
from godminer.engine.inventory import StaticInventory
from godminer.engine.jobs import JobState
from godminer.engine.scheduler import Gpu, Reservation, utilisation
from godminer.node import MinerNode, dev_overrides
from godminer.protocol.payloads import MinerTaskOffer, TrainRequestText
from godminer.settings import load_settings
from godminer.training.tiny import build_model

DAY = 86400.0
HOURS = [3, 4, 5, 6, 7, 8, 9, 10]
HOURS_P = [.014, .069, .136, .136, .206, .206, .150, .083]
SIZES = [0.5, 1.5, 3.0, 7.6, 8.0]
BIG = [14.0, 32.0, 70.0]
MIX = [("InstructTextTask", 0.175), ("ChatTask", 0.175), ("ImageTask", 0.25), ("DpoTask", 0.15), ("GrpoTask", 0.25)]


class ScaledClock:
    """Simulated time running ``scale`` times faster than the real clock."""

    def __init__(self, scale: float, start: float) -> None:
        self.scale, self.start, self.real0 = scale, start, time.monotonic()

    def now(self) -> float:
        return self.start + (time.monotonic() - self.real0) * self.scale

    async def sleep(self, seconds: float) -> None:  # not used by the benchmark's threads
        raise NotImplementedError


@dataclass(frozen=True)
class Task:
    at: float
    task_type: str
    params_b: float
    hours: float
    model_name: str


def day_of_tasks(seed: int) -> list[Task]:
    """Creation times from the validator's loop: a task every 5 min while fewer than 12 are in flight."""
    rng = random.Random(seed)
    tasks, in_flight, t = [], [], 0.0
    while t < DAY:
        in_flight = [end for end in in_flight if end > t]
        if len(in_flight) < 12:
            task_type = rng.choices([m for m, _ in MIX], [w for _, w in MIX])[0]
            if task_type == "ImageTask":
                hours, params, name = float(rng.randint(1, 2)), 3.5, "stabilityai/stable-diffusion-xl-base-1.0"
            else:
                hours = float(rng.choices(HOURS, HOURS_P)[0])
                params = rng.choice(BIG) if rng.random() < 0.05 else rng.choice(SIZES)
                name = f"unsloth/Llama-3-{params:g}B" if rng.random() < 0.5 else f"Qwen/Qwen2.5-{params:g}B"
            tasks.append(Task(t, task_type, params, hours, name))
            in_flight.append(t + hours * 3600 + 3600)  # training, then about an hour to evaluate
        t += 300.0
    return tasks


def run(policy: str, gpus: int, tasks: list[Task], scale: float, model: Path, data: Path) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix=f"godminer-day-{policy}-"))
    start = time.time()
    clock = ScaledClock(scale, start)
    overrides = dev_overrides(workdir)
    overrides["policy"] = {"name": policy}
    overrides["gpus"] = {"inventory": "config", "count": gpus, "memory_gb": 80.0}
    settings = load_settings(**overrides)
    node = MinerNode(settings, clock=clock, inventory=StaticInventory.uniform(gpus, 80.0),
                     executor=SimulatedExecutor(clock), background=False, disk_free_gb=lambda: 20_000.0)
    stop = threading.Event()

    def ticker() -> None:
        while not stop.is_set():
            node.lifecycle.tick()
            time.sleep(0.02)

    thread = threading.Thread(target=ticker, daemon=True)
    thread.start()
    offered = accepted = 0
    declined: dict[str, int] = {}
    for task in tasks:
        while clock.now() < start + task.at:
            time.sleep(0.005)
        task_id = str(uuid.uuid4())
        offer = MinerTaskOffer(model=task.model_name, hours_to_complete=task.hours, task_id=task_id,
                               task_type=task.task_type, model_params_count=int(task.params_b * 1e9))
        offered += 1
        decision = node.miner.decide_offer(offer, "validator", "image" if task.task_type == "ImageTask" else "text")
        if not decision.accepted:
            declined[decision.code] = declined.get(decision.code, 0) + 1
            continue
        accepted += 1
        node.miner.start_training(TrainRequestText(
            model=str(model), task_id=task_id, hours_to_complete=task.hours, expected_repo_name=task_id,
            dataset=str(data), dataset_type=datasets.INSTRUCT_TYPE), "validator")
    end = start + DAY
    while clock.now() < end + 11 * 3600 and any(not j.finished for j in node.store.active()):
        time.sleep(0.05)  # let the day's last jobs finish
    stop.set()
    thread.join()
    jobs = [j for j in node.store.jobs(limit=10_000) if j.state is not JobState.EXPIRED]
    held = [Reservation(j.task_id, "local", j.gpu_ids, 0.0, j.started_at, j.plan["train_until"])
            for j in jobs if j.started_at and j.gpu_ids]
    box = [Gpu(i, 80.0) for i in range(4)]  # utilisation always of the same 4-GPU box
    on_time = [j for j in jobs if j.state is JobState.SUBMITTED and j.submitted_at <= j.termination_at]
    node.close()
    return {"offered": offered, "accepted": accepted, "submitted_on_time": len(on_time),
            "failed_or_late": len(jobs) - len(on_time), "deadline_hit_rate": len(on_time) / max(1, len(jobs)),
            "gpu_utilisation": utilisation(box, held, start, end), "jobs_per_day": len(on_time),
            "declined": declined}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=600.0, help="simulated seconds per real second")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="godminer-day-"))
    model = build_model(root / "tiny")
    data = root / "train.json"
    data.write_text(json.dumps(datasets.instruct_rows(20)))
    tasks = day_of_tasks(args.seed)
    print(f"{len(tasks)} tasks in the day (seed {args.seed}); a day runs in {DAY / args.scale / 60:.1f} min per miner")
    results = {}
    for name, policy, gpus in (("godminer (4 GPUs, expected gain)", "godminer", 4),
                               ("reference rule (one job at a time)", "reference", 1)):
        started = time.monotonic()
        results[name] = run(policy, gpus, tasks, args.scale, model, data)
        print(f"  {name}: done in {time.monotonic() - started:.0f} s", flush=True)
    keys = ["offered", "accepted", "jobs_per_day", "failed_or_late", "deadline_hit_rate", "gpu_utilisation"]
    print(f"\n{'miner':<36} " + " ".join(f"{k:>17}" for k in keys))
    for name, r in results.items():
        print(f"{name:<36} " + " ".join(f"{r[k]:>17.2f}" if isinstance(r[k], float) else f"{r[k]:>17}" for k in keys))
    for name, r in results.items():
        print(f"declined by {name}: {r['declined']}")


if __name__ == "__main__":
    main()
