"""A plausible miner history written into a store: for the dashboard test, its screenshot and benchmarks.

Jobs of every type and family move through the real state machine (so their events are the real
ones); a few have progress curves in their run directories, the rest have only their rows. Offers,
recorded outcomes and alerts are added so every panel of the dashboard has something to show.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from pathlib import Path

from godminer.engine.jobs import JobRecord, JobState
from godminer.engine.store import Store

KINDS = (("InstructTextTask", "instruct"), ("ChatTask", "chat"), ("DpoTask", "dpo"), ("GrpoTask", "grpo"))
MODELS = (("unsloth/Meta-Llama-3.1-8B-Instruct", 8.0), ("Qwen/Qwen2.5-7B-Instruct", 7.6),
          ("mistralai/Mistral-7B-Instruct-v0.3", 7.2), ("google/gemma-2-2b-it", 2.6),
          ("Qwen/Qwen2.5-1.5B-Instruct", 1.5), ("unsloth/Meta-Llama-3.1-70B-Instruct", 70.6))
PATH_TO = {
    JobState.SUBMITTED: (JobState.QUEUED, JobState.PREPARING, JobState.TRAINING, JobState.PUBLISHING,
                         JobState.SUBMITTED),
    JobState.FAILED: (JobState.QUEUED, JobState.PREPARING, JobState.TRAINING, JobState.FAILED),
    JobState.TRAINING: (JobState.QUEUED, JobState.PREPARING, JobState.TRAINING),
    JobState.PREPARING: (JobState.QUEUED, JobState.PREPARING),
}


def populate(store: Store, data_dir: Path, now: float, jobs: int = 40, running: int = 3, curves: int = 8,
             seed: int = 0) -> list[str]:
    """Write ``jobs`` jobs (``running`` of them training now on GPUs 0.., the rest over the past days)."""
    rng = random.Random(seed)
    task_ids = []
    for i in range(jobs):
        task_type, kind = rng.choice(KINDS)
        model, params = rng.choice(MODELS)
        hours = float(rng.randint(2, 8))
        if i < running:
            final, accepted = JobState.TRAINING, now - rng.uniform(0.2, 0.6) * hours * 3600
        else:
            final = rng.choices([JobState.SUBMITTED, JobState.FAILED], [0.93, 0.07])[0]
            accepted = now - rng.uniform(0.5, 7.0) * 86400
        task_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"godminer-history-{seed}-{i}"))
        _walk(store, task_id, task_type, kind, model, params, hours, accepted, final, gpu=i if i < running else
              rng.randrange(4), rng=rng)
        if i < curves:
            _curve(data_dir / "jobs" / task_id, accepted + 120, hours, rng, now if final is JobState.TRAINING else None)
        task_ids.append(task_id)
        store.record_offer(task_id=task_id, validator_hotkey="5Validator", task_type=task_type, kind=kind,
                           model=model, params_b=params, hours=hours, ds_size=100000, accepted=True,
                           reason="Yes. I can do it", policy="godminer", received_at=accepted, latency_us=60.0)
        if final is JobState.SUBMITTED and rng.random() < 0.6:
            store.record_outcome(task_id, rng.choices(["win", "valid", "fail"], [0.3, 0.67, 0.03])[0], now,
                                 created_at=accepted)
    for j in range(jobs // 2):
        task_type, kind = rng.choice(KINDS)
        model, params = rng.choice(MODELS)
        store.record_offer(task_id=str(uuid.uuid4()), validator_hotkey="5Validator", task_type=task_type, kind=kind,
                           model=model, params_b=params, hours=10.0, ds_size=100000, accepted=False,
                           reason=rng.choice(["cannot train the minimum 120 min before the deadline",
                                              "not worth the GPU time now",
                                              f"would make job {task_ids[j][:8]} miss its deadline"]),
                           policy="godminer", received_at=now - j * 3000.0, latency_us=45.0)
    store.flush()
    alert = store.fire_alert("low_disk", "", "41 GB free (minimum 50 GB)", 41.0, now - 3600)
    store.resolve_alert(alert, now - 1800)
    store.fire_alert("gpu_utilisation", "", "GPU utilisation 42% over the last 30 min (minimum 50%)", 0.42, now - 600)
    return task_ids


def _walk(store: Store, task_id: str, task_type: str, kind: str, model: str, params: float, hours: float,
          accepted: float, final: JobState, gpu: int, rng: random.Random) -> None:
    store.create_job(JobRecord(task_id=task_id, validator_hotkey="5Validator", task_type=task_type, kind=kind,
                               model=model, params_b=params, hours=hours, state=JobState.ACCEPTED,
                               accepted_at=accepted), accepted, "Yes. I can do it")
    received, t = accepted + 5, accepted + 5
    gpus = (gpu, (gpu + 1) % 4) if params > 35 else (gpu,)
    for state in PATH_TO[final]:
        extra: dict[str, object] = {}
        if state is JobState.QUEUED:
            extra = {"received_at": received, "termination_at": received + hours * 3600,
                     "expected_repo_name": task_id}
        if state is JobState.TRAINING:
            t += 300
            extra = {"gpu_ids": gpus, "started_at": t, "attempts": 1,
                     "plan": {"train_until": received + hours * 3600 - 900}}
        if state is JobState.PUBLISHING:
            t = received + hours * 3600 - rng.uniform(600, 1200)
            base = rng.uniform(1.2, 2.0)
            extra = {"dev_metric": base * rng.uniform(0.55, 0.85), "base_metric": base}
        if state is JobState.SUBMITTED:
            t += 120
            extra = {"repo": f"godminer/{task_id}", "model_hash": uuid.uuid4().hex * 2, "submitted_at": t}
        reason = "dataset download failed: 403 (URL expired)" if state is JobState.FAILED else ""
        store.transition(task_id, state, t, reason, **extra)
        t += 30


def _curve(run_dir: Path, start: float, hours: float, rng: random.Random, until: float | None) -> None:
    """Progress lines as a trainer writes them: falling loss, a dev evaluation now and then."""
    run_dir.mkdir(parents=True, exist_ok=True)
    end = until or start + hours * 3600 * 0.9
    steps = 600
    base = rng.uniform(1.4, 2.2)
    lines = [{"ts": start, "event": "baseline", "dev_metric": base}]
    best = base
    for step in range(1, steps + 1):
        ts = start + (end - start) * step / steps
        loss = base * (0.55 + 0.45 * math.exp(-step / 120)) + rng.gauss(0, 0.04)
        lines.append({"ts": ts, "event": "train", "step": step, "loss": loss, "lr": 1e-4, "tokens_per_s": 5200.0})
        if step % 60 == 0:
            dev = base * (0.6 + 0.4 * math.exp(-step / 150)) + rng.gauss(0, 0.01)
            lines.append({"ts": ts, "event": "eval", "step": step, "dev_metric": dev, "best": dev < best})
            best = min(best, dev)
    (run_dir / "progress.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    (run_dir / "miner.log").write_text(json.dumps({"ts": start, "level": "info", "msg": "job prepared"}) + "\n")
    (run_dir / "train.log").write_text(json.dumps({"ts": start, "level": "info", "msg": "training lora"}) + "\n")
