"""Alerts: the plan's four rules and four more, evaluated on an observation, deduplicated and delivered.

Rules are pure functions of an ``Observation`` and the thresholds (``MonitorSettings``): job failures
over 5 %, GPU utilisation under 50 %, a rank drop of more than 10 positions, a job training for more
than 8 hours, publish failures, low disk, a GPU error, and the endpoint the validator uses being
unreachable. ``AlertManager`` keeps one alert per (rule, key): it fires once when a condition starts,
resolves once when it clears, writes both to the store and the log, and posts each to the webhook
(Discord- and Slack-compatible JSON: ``content`` and ``text``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from godminer.clock import Clock
from godminer.engine.store import Store
from godminer.settings import MonitorSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Observation:
    now: float
    recent_outcomes: tuple[str, ...] = ()  # states of the most recent finished jobs
    gpu_utilisation: tuple[tuple[float, float], ...] = ()  # (time, mean utilisation) samples
    gpu_count: int = 0
    ranks: tuple[tuple[float, int], ...] = ()  # (time, rank) samples
    training_since: tuple[tuple[str, float], ...] = ()  # (task id, started training at)
    publish_failures: int = 0  # failed publication attempts since the last observation
    free_disk_gb: float = float("inf")
    gpu_errors: tuple[tuple[int, str], ...] = ()
    endpoint_error: str | None = None  # None when reachable (or not configured)


@dataclass(frozen=True)
class Condition:
    rule: str
    key: str
    message: str
    value: float | None = None


def failure_ratio(obs: Observation, limits: MonitorSettings) -> list[Condition]:
    window = obs.recent_outcomes[-limits.failure_window_jobs:]
    if not window:
        return []
    ratio = sum(1 for s in window if s == "failed") / len(window)
    if ratio <= limits.failure_ratio:
        return []
    return [Condition("job_failures", "", f"{ratio:.0%} of the last {len(window)} jobs failed "
                                          f"(limit {limits.failure_ratio:.0%})", ratio)]


def gpu_utilisation(obs: Observation, limits: MonitorSettings) -> list[Condition]:
    window = [u for t, u in obs.gpu_utilisation if t >= obs.now - limits.gpu_util_window_s]
    span = obs.now - min((t for t, _ in obs.gpu_utilisation), default=obs.now)
    if not obs.gpu_count or not window or span < limits.gpu_util_window_s * 0.9:
        return []  # judge a full window only
    mean = sum(window) / len(window)
    if mean >= limits.gpu_util_min:
        return []
    minutes = limits.gpu_util_window_s / 60
    message = f"GPU utilisation {mean:.0%} over the last {minutes:.0f} min (minimum {limits.gpu_util_min:.0%})"
    return [Condition("gpu_utilisation", "", message, mean)]


def rank_drop(obs: Observation, limits: MonitorSettings) -> list[Condition]:
    recent = [(t, r) for t, r in obs.ranks if t >= obs.now - 86400.0]
    if len(recent) < 2:
        return []
    best, now_rank = min(r for _, r in recent), recent[-1][1]
    if now_rank - best <= limits.rank_drop:
        return []
    return [Condition("rank_drop", "", f"rank fell from {best} to {now_rank} within a day", float(now_rank - best))]


def long_training(obs: Observation, limits: MonitorSettings) -> list[Condition]:
    limit = limits.training_hours_max * 3600.0
    return [Condition("training_too_long", task_id, f"job {task_id} has been training for "
                                                     f"{(obs.now - since) / 3600:.1f} h", (obs.now - since) / 3600)
            for task_id, since in obs.training_since if obs.now - since > limit]


def publish_failures(obs: Observation, limits: MonitorSettings) -> list[Condition]:
    if not obs.publish_failures:
        return []
    return [Condition("publish_failure", "", f"{obs.publish_failures} publication attempt(s) failed",
                      float(obs.publish_failures))]


def low_disk(obs: Observation, limits: MonitorSettings) -> list[Condition]:
    if obs.free_disk_gb >= limits.disk_free_gb_min:
        return []
    return [Condition("low_disk", "", f"{obs.free_disk_gb:.0f} GB free (minimum {limits.disk_free_gb_min:.0f} GB)",
                      obs.free_disk_gb)]


def gpu_error(obs: Observation, limits: MonitorSettings) -> list[Condition]:
    return [Condition("gpu_error", str(index), f"GPU {index}: {error}") for index, error in obs.gpu_errors]


def endpoint_unreachable(obs: Observation, limits: MonitorSettings) -> list[Condition]:
    if obs.endpoint_error is None:
        return []
    return [Condition("endpoint_unreachable", "", f"the validators cannot reach {limits.public_url}: "
                                                  f"{obs.endpoint_error}")]


RULES: tuple[Callable[[Observation, MonitorSettings], list[Condition]], ...] = (
    failure_ratio, gpu_utilisation, rank_drop, long_training, publish_failures, low_disk, gpu_error,
    endpoint_unreachable,
)


def evaluate(obs: Observation, limits: MonitorSettings) -> list[Condition]:
    return [condition for rule in RULES for condition in rule(obs, limits)]


Sender = Callable[[str, dict[str, Any]], None]


def webhook_sender(timeout_s: float = 10.0, retries: int = 3, sleep: Callable[[float], None] = time.sleep) -> Sender:
    """POST the JSON to the webhook, retrying network errors and 5xx answers."""

    def send(url: str, payload: dict[str, Any]) -> None:
        for attempt in range(retries):
            last = attempt == retries - 1
            try:
                response = httpx.post(url, json=payload, timeout=timeout_s)
            except httpx.HTTPError:
                if last:
                    raise
            else:
                if response.status_code < 500:
                    response.raise_for_status()  # a 4xx is final: the URL or the payload is wrong
                    return
                if last:
                    raise RuntimeError(f"webhook answered {response.status_code} {retries} times")
            sleep(2.0**attempt)

    return send


@dataclass
class AlertManager:
    store: Store
    limits: MonitorSettings
    clock: Clock
    sender: Sender = field(default_factory=webhook_sender)

    def check(self, obs: Observation) -> list[str]:
        """Fire new conditions, resolve cleared ones; returns the messages delivered."""
        now = self.clock.now()
        current = {(c.rule, c.key): c for c in evaluate(obs, self.limits)}
        open_alerts = {(a["rule"], a["key"]): a for a in self.store.open_alerts()}
        delivered = []
        for key, condition in current.items():
            if key not in open_alerts:
                alert_id = self.store.fire_alert(condition.rule, condition.key, condition.message, condition.value, now)
                delivered += self._deliver(alert_id, f"FIRING {condition.rule}: {condition.message}")
        for key, alert in open_alerts.items():
            if key not in current:
                self.store.resolve_alert(alert["id"], now)
                delivered += self._deliver(alert["id"], f"RESOLVED {alert['rule']}: {alert['message']}")
        return delivered

    def _deliver(self, alert_id: int, message: str) -> list[str]:
        log.warning("alert %s", message)
        if not self.limits.webhook_url:
            return []
        try:
            self.sender(self.limits.webhook_url, {"content": message, "text": message, "username": "godminer"})
        except Exception as exc:  # an unreachable webhook must not stop monitoring
            log.error("could not deliver alert %d: %s", alert_id, exc)
            return []
        self.store.mark_alert_delivered(alert_id)
        return [message]

