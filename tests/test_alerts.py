"""Each alert rule driven over its threshold and back with an injected clock: one webhook delivery per
firing and one per resolution, both written to the store; and /metrics parses with Prometheus' parser."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from godminer.clock import ManualClock
from godminer.devnet.history import populate
from godminer.engine.inventory import StaticInventory
from godminer.engine.store import Store
from godminer.monitor.alerts import AlertManager, Observation, webhook_sender
from godminer.monitor.observer import Observer
from godminer.node import MinerNode, dev_overrides
from godminer.protocol.metagraph import Metagraph, Node
from godminer.settings import MonitorSettings, load_settings

LIMITS = MonitorSettings(webhook_url="https://hooks.example/T000", public_url="http://203.0.113.7:7999")
NOW = 1_800_000_000.0
QUIET = Observation(now=NOW)


class Hook:
    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []

    def __call__(self, url: str, payload: dict) -> None:
        self.posts.append((url, payload))


@pytest.fixture
def manager(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    hook = Hook()
    clock = ManualClock(NOW)
    yield AlertManager(store, LIMITS, clock, sender=hook), hook, clock
    store.close()


CASES = {
    "job_failures": replace(QUIET, recent_outcomes=("submitted",) * 18 + ("failed",) * 2),
    "gpu_utilisation": replace(QUIET, gpu_count=4, gpu_utilisation=tuple((NOW - s, 0.3) for s in range(0, 1900, 60))),
    "rank_drop": replace(QUIET, ranks=((NOW - 7200, 3), (NOW - 3600, 9), (NOW, 15))),
    "training_too_long": replace(QUIET, training_since=(("task-a", NOW - 8.5 * 3600),)),
    "publish_failure": replace(QUIET, publish_failures=2),
    "low_disk": replace(QUIET, free_disk_gb=12.0),
    "gpu_error": replace(QUIET, gpu_errors=((2, "3 uncorrected ECC errors"),)),
    "endpoint_unreachable": replace(QUIET, endpoint_error="ConnectTimeout: timed out"),
}
CLEAR = {
    "job_failures": replace(QUIET, recent_outcomes=("submitted",) * 19 + ("failed",)),  # exactly 5 %: not over
    "gpu_utilisation": replace(QUIET, gpu_count=4, gpu_utilisation=tuple((NOW - s, 0.8) for s in range(0, 1900, 60))),
    "rank_drop": replace(QUIET, ranks=((NOW - 7200, 3), (NOW, 13))),  # a drop of 10 is not more than 10
    "training_too_long": replace(QUIET, training_since=(("task-a", NOW - 7.9 * 3600),)),
    "publish_failure": QUIET,
    "low_disk": replace(QUIET, free_disk_gb=80.0),
    "gpu_error": QUIET,
    "endpoint_unreachable": QUIET,
}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_fires_once_and_resolves_once(manager, rule):
    alerts, hook, clock = manager
    assert alerts.check(QUIET) == []
    delivered = alerts.check(replace(CASES[rule], now=clock.now()))
    assert len(delivered) == 1 and delivered[0].startswith(f"FIRING {rule}")
    clock.advance(60)
    assert alerts.check(replace(CASES[rule], now=clock.now())) == []  # still firing: not repeated
    clock.advance(60)
    resolved = alerts.check(replace(CLEAR[rule], now=clock.now()))
    assert len(resolved) == 1 and resolved[0].startswith(f"RESOLVED {rule}")
    assert len(hook.posts) == 2
    url, payload = hook.posts[0]
    assert url == LIMITS.webhook_url and payload["content"] == payload["text"]  # Discord and Slack
    [row] = alerts.store.alerts()
    assert row["rule"] == rule and row["state"] == "resolved" and row["delivered"] == 2
    assert row["fired_at"] == NOW and row["resolved_at"] == NOW + 120


def test_alerts_are_keyed_per_job_and_per_gpu(manager):
    alerts, _hook, _clock = manager
    two_jobs = replace(QUIET, training_since=(("a", NOW - 9 * 3600), ("b", NOW - 10 * 3600)))
    assert len(alerts.check(two_jobs)) == 2
    assert len(alerts.check(replace(QUIET, training_since=(("b", NOW - 10 * 3600),)))) == 1  # a resolved
    assert [a["key"] for a in alerts.store.open_alerts()] == ["b"]


def test_gpu_utilisation_needs_a_full_window(manager):
    alerts, _hook, _clock = manager
    short = replace(QUIET, gpu_count=4, gpu_utilisation=((NOW - 60, 0.1), (NOW, 0.1)))
    assert alerts.check(short) == []


def test_no_webhook_still_records_and_a_dead_webhook_does_not_stop_monitoring(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")

    def broken(url: str, payload: dict) -> None:
        raise ConnectionError("webhook down")

    for limits, sender in ((MonitorSettings(), Hook()), (LIMITS, broken)):
        alerts = AlertManager(store, limits, ManualClock(NOW), sender=sender)
        assert alerts.check(CASES["low_disk"]) == []
        assert store.open_alerts()
        store.resolve_alert(store.open_alerts()[0]["id"], NOW)


def test_webhook_sender_retries_server_errors(monkeypatch):
    import httpx

    answers = [httpx.ConnectError("refused"), httpx.Response(503), httpx.Response(204)]
    calls: list[dict] = []

    def post(url, json, timeout):
        calls.append(json)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        answer.request = httpx.Request("POST", url)
        return answer

    monkeypatch.setattr(httpx, "post", post)
    sleeps: list[float] = []
    webhook_sender(sleep=sleeps.append)("https://hooks.example/x", {"content": "hi"})
    assert len(calls) == 3 and sleeps == [1.0, 2.0]


def test_observer_builds_the_observation(tmp_path):
    settings = load_settings(**dev_overrides(tmp_path / "var"), monitor={"public_url": "http://x:1"})
    store = Store(settings.db_url)
    inventory = StaticInventory.uniform(2, 80.0)
    inventory.set_reading(1, utilization=0.5, healthy=False, error="fell off the bus")
    metagraph = Metagraph([Node(hotkey="me", incentive=0.2), Node(hotkey="x", incentive=0.5)])
    clock = ManualClock(time.time())
    populate(store, settings.data_dir, clock.now(), jobs=12, running=2, curves=0)
    store.increment("publish_failures")
    observer = Observer(settings, store, inventory, metagraph, "me", clock, probe=lambda url: f"refused {url}",
                        disk_free_gb=lambda: 33.0)
    store.increment("publish_failures")
    obs = observer.observe()
    assert obs.gpu_count == 2 and obs.gpu_utilisation[-1][1] == 0.25 and obs.ranks[-1][1] == 2
    assert obs.gpu_errors == ((1, "fell off the bus"),) and obs.free_disk_gb == 33.0
    assert obs.publish_failures == 1 and obs.endpoint_error == "refused http://x:1"
    assert len(obs.training_since) == 2 and len(obs.recent_outcomes) == 10
    assert observer.observe().publish_failures == 0
    store.close()


def test_metrics_parse_and_carry_every_family(tmp_path):
    settings = load_settings(**dev_overrides(tmp_path / "var"), monitor={"operator_token": "s3cret"})
    inventory = StaticInventory.uniform(4, 80.0)
    inventory.set_reading(0, utilization=0.9, memory_used_gb=60.0)
    node = MinerNode(settings, inventory=inventory, background=False)
    populate(node.store, settings.data_dir, time.time(), jobs=30, running=3)
    node.store.increment("publish_failures")
    with TestClient(node.app()) as client:
        assert client.get("/metrics").status_code == 401  # a token is configured: it is required
        response = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    for name in ("godminer_offers", "godminer_jobs", "godminer_job_duration_seconds", "godminer_deadline_slack_seconds",
                 "godminer_gpu_utilization_ratio", "godminer_gpu_memory_used_bytes", "godminer_publish_failures",
                 "godminer_success_ratio"):
        assert name in families and families[name].samples, name
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("godminer_gpu_utilization_ratio", (("gpu", "0"),))] == 0.9
    assert samples[("godminer_publish_failures_total", ())] == 1.0
    assert any(name == "godminer_offers_total" and dict(labels)["decision"] == "declined" for name, labels in samples)
    assert any(name == "godminer_job_duration_seconds_bucket" for name, _ in samples)
    assert len([1 for name, _ in samples if name == "godminer_deadline_slack_seconds"]) == 3
    node.close()


def test_outcomes_recorded_through_the_api_feed_the_policy(tmp_path):
    settings = load_settings(**dev_overrides(tmp_path / "var"), monitor={"operator_token": "t"})
    node = MinerNode(settings, inventory=StaticInventory.uniform(4, 80.0), background=False)
    [task_id] = populate(node.store, settings.data_dir, time.time(), jobs=1, running=0, curves=0)
    headers = {"Authorization": "Bearer t"}
    with TestClient(node.app()) as client:
        assert client.post(f"/api/jobs/{task_id}/outcome", json={"result": "win"}, headers=headers).status_code == 200
        assert client.post(f"/api/jobs/{task_id}/outcome", json={"result": "great"}, headers=headers).status_code == 422
        assert client.post("/api/jobs/nope/outcome", json={"result": "win"}, headers=headers).status_code == 404
    assert [r.score for r in node.miner.history] == [3.0]
    node.close()
