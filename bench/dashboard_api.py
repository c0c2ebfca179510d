"""The dashboard's JSON API with 10 000 jobs in the store: latency per endpoint over real HTTP on loopback.

Usage: python bench/dashboard_api.py [--jobs 10000] [--calls 30]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from godminer.devnet.history import populate
from godminer.devnet.server import ServerThread
from godminer.engine.inventory import StaticInventory
from godminer.node import MinerNode, dev_overrides
from godminer.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="godminer-dash-"))
    settings = load_settings(**dev_overrides(root), monitor={"operator_token": "bench"})
    node = MinerNode(settings, inventory=StaticInventory.uniform(4, 80.0), background=False)
    started = time.monotonic()
    ids = populate(node.store, settings.data_dir, time.time(), jobs=args.jobs, running=4, curves=20)
    node.miner.refresh_history()
    print(f"store: {args.jobs} jobs, {len(node.store.offers(limit=100_000))} offers "
          f"(written in {time.monotonic() - started:.0f} s)")
    paths = ["/api/summary", "/api/jobs?limit=100", "/api/jobs?limit=100&offset=5000", "/api/jobs?state=failed",
             f"/api/jobs/{ids[0]}", f"/api/jobs/{ids[0]}/logs", "/api/gpus", "/api/success", "/api/offers?limit=100",
             "/api/standing", "/api/alerts", "/metrics"]
    headers = {"Authorization": "Bearer bench"}
    print(f"{'endpoint':<40} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'bytes':>9}")
    with ServerThread(node.app()) as server, httpx.Client(base_url=server.url, headers=headers) as http:
        for path in paths:
            http.get(path).raise_for_status()  # warm up
            times, size = [], 0
            for _ in range(args.calls):
                t0 = time.perf_counter()
                response = http.get(path)
                times.append((time.perf_counter() - t0) * 1000)
                size = len(response.content)
            times.sort()
            p95 = times[int(0.95 * (len(times) - 1))]
            print(f"{path[:40]:<40} {statistics.median(times):>8.1f} {p95:>8.1f} {times[-1]:>8.1f} {size:>9}")
    node.close()


if __name__ == "__main__":
    main()
