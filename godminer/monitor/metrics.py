"""``/metrics`` in the Prometheus text format, read from the store and the GPUs at scrape time.

A custom collector (no process-global metric objects): counters come from durable store counts,
so they survive restarts; GPU figures come from NVML when the inventory has it.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from godminer.clock import Clock
from godminer.engine.inventory import Inventory
from godminer.engine.store import Store
from godminer.sizing import model_family

DURATION_BUCKETS = (600.0, 1800.0, 3600.0, 2 * 3600.0, 4 * 3600.0, 6 * 3600.0, 8 * 3600.0, 10 * 3600.0,
                    12 * 3600.0, float("inf"))


class MinerCollector(Collector):
    def __init__(self, store: Store, inventory: Inventory, clock: Clock) -> None:
        self.store = store
        self.inventory = inventory
        self.clock = clock

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        offers = CounterMetricFamily("godminer_offers", "Offers answered, by task type and decision.",
                                     labels=["task_type", "decision"])
        for task_type, accepted, n in self.store.offer_counts():
            offers.add_metric([task_type, "accepted" if accepted else "declined"], n)
        yield offers

        jobs = GaugeMetricFamily("godminer_jobs", "Jobs in each state.", labels=["state"])
        for state, n in sorted(self.store.state_counts().items()):
            jobs.add_metric([state], n)
        yield jobs

        yield from self._durations()

        now = self.clock.now()
        slack = GaugeMetricFamily("godminer_deadline_slack_seconds", "Seconds left before each active job's "
                                  "termination_at.", labels=["task_id"])
        for job in self.store.active():
            if job.termination_at is not None:
                slack.add_metric([job.task_id], job.termination_at - now)
        yield slack

        utilisation = GaugeMetricFamily("godminer_gpu_utilization_ratio", "GPU utilisation (0-1).", labels=["gpu"])
        memory = GaugeMetricFamily("godminer_gpu_memory_used_bytes", "GPU memory in use.", labels=["gpu"])
        healthy = GaugeMetricFamily("godminer_gpu_healthy", "1 if the GPU is healthy.", labels=["gpu"])
        for reading in self.inventory.status():
            utilisation.add_metric([str(reading.index)], reading.utilization)
            memory.add_metric([str(reading.index)], reading.memory_used_gb * 2**30)
            healthy.add_metric([str(reading.index)], 1.0 if reading.healthy else 0.0)
        yield from (utilisation, memory, healthy)

        yield CounterMetricFamily("godminer_publish_failures", "Failed publication attempts.",
                                  value=self.store.counter("publish_failures"))

        ratio = GaugeMetricFamily("godminer_success_ratio", "Submitted / (submitted + failed), by task type and "
                                  "model family.", labels=["task_type", "model_family"])
        totals: dict[tuple[str, str], list[int]] = {}
        for kind, model, state, n in self.store.finished_counts():
            row = totals.setdefault((kind, model_family(model)), [0, 0])
            row[0 if state == "submitted" else 1] += n
        for (kind, family), (ok, failed) in sorted(totals.items()):
            ratio.add_metric([kind, family], ok / (ok + failed))
        yield ratio

    def _durations(self) -> Iterator[HistogramMetricFamily]:
        by_type: dict[str, list[float]] = {}
        for task_type, seconds in self.store.durations():
            by_type.setdefault(task_type, []).append(seconds)
        family = HistogramMetricFamily("godminer_job_duration_seconds", "From start-training to submission.",
                                       labels=["task_type"])
        for task_type, values in sorted(by_type.items()):
            buckets = [(str(bound) if bound != float("inf") else "+Inf", sum(1 for v in values if v <= bound))
                       for bound in DURATION_BUCKETS]
            family.add_metric([task_type], buckets, sum(values))
        yield family


def registry_for(collector: MinerCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
