"""The data behind the dashboard and its JSON API, read from the store (fast with thousands of jobs).

Every function returns plain JSON-able data; pages are bounded (jobs are paginated, progress curves
are thinned to a few hundred points) so an answer stays small whatever the store holds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from godminer.engine.gain import GROUP_OF_KIND, group_quality
from godminer.engine.inventory import Inventory
from godminer.engine.jobs import JobRecord
from godminer.engine.policy import OwnResult
from godminer.engine.store import Store
from godminer.protocol.metagraph import Metagraph
from godminer.scoring import ERAS, PERIODS, sigmoid_linear
from godminer.settings import Settings
from godminer.sizing import model_family

MAX_POINTS = 400


def job_json(job: JobRecord, now: float) -> dict[str, Any]:
    return {
        "task_id": job.task_id, "task_type": job.task_type, "kind": job.kind, "model": job.model,
        "family": model_family(job.model), "params_b": round(job.params_b, 2), "hours": job.hours,
        "state": str(job.state), "reason": job.reason, "gpu_ids": list(job.gpu_ids), "box": job.box,
        "attempts": job.attempts, "accepted_at": job.accepted_at, "received_at": job.received_at,
        "termination_at": job.termination_at, "started_at": job.started_at, "finished_at": job.finished_at,
        "submitted_at": job.submitted_at, "updated_at": job.updated_at,
        "slack_s": (job.termination_at - now) if job.termination_at and not job.finished else None,
        "dev_metric": job.dev_metric, "base_metric": job.base_metric, "repo": job.repo,
        "model_hash": job.model_hash, "train_until": job.plan.get("train_until"),
    }


def jobs_page(store: Store, now: float, limit: int, offset: int, state: str | None) -> dict[str, Any]:
    total, jobs = store.jobs_page(limit, offset, state)
    return {"total": total, "offset": offset, "jobs": [job_json(j, now) for j in jobs]}


def summary(store: Store, now: float) -> dict[str, Any]:
    counts = store.state_counts()
    finished = sum(counts.get(s, 0) for s in ("submitted", "failed"))
    return {"now": now, "jobs": counts, "active": sum(n for s, n in counts.items() if s in
                                                      ("accepted", "queued", "preparing", "training", "publishing")),
            "success_ratio": counts.get("submitted", 0) / finished if finished else None,
            "open_alerts": store.open_alerts()}


def success_rates(store: Store) -> list[dict[str, Any]]:
    """Submitted and failed jobs by task type and model family."""
    table: dict[tuple[str, str], list[int]] = {}
    for kind, model, state, n in store.finished_counts():
        row = table.setdefault((kind, model_family(model)), [0, 0])
        row[0 if state == "submitted" else 1] += n
    return [{"kind": k, "family": f, "submitted": s, "failed": x, "ratio": s / (s + x)}
            for (k, f), (s, x) in sorted(table.items())]


def offers(store: Store, limit: int) -> dict[str, Any]:
    counts: dict[str, dict[str, int]] = {}
    for task_type, accepted, n in store.offer_counts():
        counts.setdefault(task_type, {"accepted": 0, "declined": 0})["accepted" if accepted else "declined"] += n
    return {"counts": counts, "recent": store.offers(limit=limit)}


def progress(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """A job's loss and dev-metric curves from its progress lines, thinned to at most MAX_POINTS each."""
    train: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    path = run_dir / "progress.jsonl"
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if item.get("event") == "train" and "loss" in item:
                train.append({k: item.get(k) for k in ("ts", "step", "loss", "lr", "tokens_per_s")})
            elif item.get("event") in ("eval", "baseline"):
                evals.append({"ts": item.get("ts"), "step": item.get("step", 0), "dev_metric": item.get("dev_metric"),
                              "best": item.get("best", False), "weights": item.get("weights", "raw")})
    return {"train": _thin(train), "eval": _thin(evals)}


def logs(run_dir: Path, tail: int) -> dict[str, str]:
    """The last lines of a job's three logs: the miner's lines about it, the trainer's, the process's output."""
    out = {}
    for name in ("miner.log", "train.log", "process.log"):
        path = run_dir / name
        lines = path.read_text(errors="replace").splitlines()[-tail:] if path.is_file() else []
        out[name.split(".")[0]] = "\n".join(lines)
    return out


def _thin(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(points) <= MAX_POINTS:
        return list(points)
    step = math.ceil(len(points) / MAX_POINTS)
    return [*points[::step][: MAX_POINTS - 1], points[-1]]


def gpu_timeline(store: Store, inventory: Inventory, now: float, window_s: float) -> dict[str, Any]:
    """Which job held which GPU when over the window, and each GPU's live reading."""
    since = now - window_s
    segments = []
    for job in store.started_since(since):
        end = job.finished_at or now
        if job.state == "training":
            end = now
        for gpu in job.gpu_ids:
            segments.append({"gpu": gpu, "box": job.box, "task_id": job.task_id, "kind": job.kind,
                             "start": max(job.started_at or since, since), "end": end, "state": str(job.state)})
    readings = [{"index": s.index, "name": s.name, "memory_gb": s.memory_gb, "memory_used_gb": s.memory_used_gb,
                 "utilization": s.utilization, "temperature_c": s.temperature_c, "healthy": s.healthy,
                 "error": s.error} for s in inventory.status()]
    return {"since": since, "now": now, "gpus": readings, "segments": segments}


def standing(metagraph: Metagraph, hotkey: str, history: Sequence[OwnResult], settings: Settings,
             now: float) -> dict[str, Any]:
    """Incentive and rank from the metagraph; per group, our q and n from our recorded outcomes against
    the configured leader estimate, and the real-time weight that implies (an estimate: the chain
    normalises against every other miner, whom only the validator sees)."""
    node = metagraph.get(hotkey)
    type_weights = ERAS["2025-07-21"].type_weights
    groups, weight = [], 0.0
    for group, type_weight in type_weights.items():
        mine = [r for r in history if GROUP_OF_KIND.get(r.kind) == group and r.score != 0]
        for days, period_weight in PERIODS:
            window = [r for r in mine if now - r.created_at < days * 86400]
            q = group_quality(sum(r.score * r.work for r in window), [r.score for r in window])
            leader = max(settings.policy.leader_q_per_day.get(group, 100.0) * days, q)
            n = sigmoid_linear(q / leader) if q > 0 else 0.0
            weight += period_weight * type_weight * n
            groups.append({"group": group, "days": days, "q": q, "leader_q": leader, "n": n,
                           "wins": sum(1 for r in window if r.score > 0),
                           "failures": sum(1 for r in window if r.score < 0)})
    return {"hotkey": hotkey, "registered": node is not None, "incentive": node.incentive if node else None,
            "rank": metagraph.rank_of(hotkey), "nodes": len(metagraph), "synced_at": metagraph.synced_at,
            "estimated_realtime_weight": weight, "groups": groups}
