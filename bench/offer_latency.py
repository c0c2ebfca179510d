"""Signed offers answered per second, and p50/p99 latency, with 16 concurrent clients on loopback.

The miner runs as `godminer serve --dev` in its own process; the client is a minimal keep-alive
HTTP/1.1 client on asyncio (so that the client's own overhead stays small on a 2-core machine).
Every request is signed exactly as the validator signs (fresh nonce, sha256 of the exact body).

Two measurements:
* closed loop: 16 clients send back to back (saturation: throughput, and latency = queueing);
* open loop: 16 clients together send Poisson arrivals at fixed rates; latency is counted from each
  request's scheduled time, so a slow answer is not hidden by the client waiting for it.
Usage: python bench/offer_latency.py [--requests 8000] [--clients 16] [--rates 250,1000,2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from godminer.devnet.server import free_port
from godminer.engine.jobs import JobRecord, JobState
from godminer.engine.store import Store
from godminer.protocol import keys, signing

TYPES = [("InstructTextTask", 8.0, 4.0), ("DpoTask", 7.6, 6.0), ("GrpoTask", 1.5, 3.0), ("ChatTask", 3.2, 9.0)]


def build_request(alice, miner: str, port: int, i: int) -> bytes:
    task_type, params_b, hours = TYPES[i % len(TYPES)]
    body = json.dumps({"ds_size": 100000, "model": f"org/model-{params_b}B", "hours_to_complete": hours,
                       "task_id": str(uuid.uuid4()), "task_type": task_type,
                       "model_params_count": int(params_b * 1e9)}).encode()
    h = signing.signed_headers(alice, miner, body)
    head = (f"POST /task_offer/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nvalidator-hotkey: {h['validator-hotkey']}\r\n"
            f"miner-hotkey: {h['miner-hotkey']}\r\nnonce: {h['nonce']}\r\nsignature: {h['signature']}\r\n\r\n")
    return head.encode() + body


SUBMITTED_TASK = "3f0c2a9e-5b7d-4e8a-9c1f-2d6b8e4a7c10"


def seed_submission(data_dir: Path) -> None:
    """A job already submitted, so the submission route has something to answer."""
    store = Store(f"sqlite:///{data_dir / 'godminer.db'}")
    store.create_job(JobRecord(task_id=SUBMITTED_TASK, validator_hotkey="v", task_type="InstructTextTask",
                               kind="instruct", model="m", params_b=8.0, hours=4.0, state=JobState.SUBMITTED,
                               repo="ns/9a2f6c1e-0d4b-4f7e-8a33-5c1b2e7d9f40", model_hash="ab" * 32), time.time())
    store.close()


def build_get(alice, miner: str, port: int) -> bytes:
    h = signing.signed_headers(alice, miner, None)
    return (f"GET /get_latest_model_submission/{SUBMITTED_TASK} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"validator-hotkey: {h['validator-hotkey']}\r\nminer-hotkey: {h['miner-hotkey']}\r\n"
            f"nonce: {h['nonce']}\r\nsignature: {h['signature']}\r\n\r\n").encode()


def content_length(head: bytes) -> int:
    return next(int(x.split(b":")[1]) for x in head.split(b"\r\n") if x.lower().startswith(b"content-length"))


async def worker(port: int, requests: asyncio.Queue, latencies: list[float], statuses: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while True:
        try:
            raw = requests.get_nowait()
        except asyncio.QueueEmpty:
            break
        t0 = time.perf_counter()
        writer.write(raw)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = content_length(head)
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - t0)
        statuses[status] = statuses.get(status, 0) + 1
    writer.close()


async def open_loop(
    port: int, raws: list[bytes], clients: int, rate: float, seed: int = 0
) -> tuple[list[float], list[float]]:
    """Each client sends its share at Poisson times; latency from the actual and the scheduled send time."""
    import random

    rng = random.Random(seed)
    per_client = [raws[i::clients] for i in range(clients)]
    latencies: list[float] = []
    from_schedule: list[float] = []
    start = time.perf_counter() + 0.2

    async def client(mine: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        t = start
        for raw in mine:
            t += rng.expovariate(rate / clients)
            delay = t - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.perf_counter()
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            length = content_length(head)
            await reader.readexactly(length)
            done = time.perf_counter()
            latencies.append(done - sent)
            from_schedule.append(done - t)
        writer.close()

    await asyncio.gather(*(client(m) for m in per_client))
    return latencies, from_schedule


async def run(port: int, batches: list[list[bytes]], clients: int) -> tuple[list[float], dict[int, int], float]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    for batch in batches:
        queue: asyncio.Queue = asyncio.Queue()
        for raw in batch:
            queue.put_nowait(raw)
        await asyncio.gather(*(worker(port, queue, latencies, statuses) for _ in range(clients)))
    return latencies, statuses, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=8000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rates", default="250,1000,2000", help="open-loop offers/s, comma separated")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r]
    data_dir = Path(tempfile.mkdtemp(prefix="godminer-bench-"))
    seed_submission(data_dir)
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    server = subprocess.Popen(
        [sys.executable, "-m", "godminer", "serve", "--dev", "--data-dir", str(data_dir), "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        for _ in range(300):
            try:
                httpx.get(f"http://127.0.0.1:{port}/nope", timeout=0.5)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        alice = keys.dev_keypair(keys.DEV_VALIDATOR_URI)
        miner = keys.dev_keypair(keys.DEV_MINER_URI).ss58_address
        # Sign in batches just before sending, so every nonce is fresh (±120 s window).
        warm = [[build_request(alice, miner, port, i) for i in range(500)]]
        asyncio.run(run(port, warm, args.clients))
        batch_size = 2000
        batches = [[build_request(alice, miner, port, b * batch_size + i) for i in range(batch_size)]
                   for b in range(max(1, args.requests // batch_size))]
        latencies, statuses, elapsed = asyncio.run(run(port, batches, args.clients))
        sequential, statuses_get, _ = asyncio.run(run(port, [[build_get(alice, miner, port) for _ in range(500)]], 1))
        gets = [[build_get(alice, miner, port) for _ in range(2000)]]
        concurrent, _, get_elapsed = asyncio.run(run(port, gets, args.clients))
        open_results = []
        for rate in rates:
            n = int(min(4000, rate * 4))
            raws = [build_request(alice, miner, port, i) for i in range(n)]
            sent, scheduled = asyncio.run(open_loop(port, raws, args.clients, rate))
            open_results.append((rate, sorted(x * 1000 for x in sent), sorted(x * 1000 for x in scheduled)))
    finally:
        server.terminate()
        server.wait(timeout=30)
    lat_ms = sorted(x * 1000 for x in latencies)
    q = statistics.quantiles(lat_ms, n=100)
    print(f"offers: {len(lat_ms)} signed requests, {args.clients} concurrent clients, statuses {statuses}")
    print(f"throughput: {len(lat_ms) / elapsed:.0f} offers/s (send time only; signing excluded)")
    print(f"closed-loop latency at the client: p50 {q[49]:.2f} ms  p99 {q[98]:.2f} ms  max {lat_ms[-1]:.2f} ms")
    seq = statistics.quantiles(sorted(x * 1000 for x in sequential), n=100)
    con = statistics.quantiles(sorted(x * 1000 for x in concurrent), n=100)
    print(f"submission route (statuses {statuses_get}): one client p50 {seq[49]:.2f} ms p99 {seq[98]:.2f} ms; "
          f"{args.clients} clients {len(concurrent) / get_elapsed:.0f}/s p50 {con[49]:.2f} ms p99 {con[98]:.2f} ms")
    for rate, lat, sched in open_results:
        oq, sq = statistics.quantiles(lat, n=100), statistics.quantiles(sched, n=100)
        print(f"open loop at {rate:.0f} offers/s ({len(lat)} offers): p50 {oq[49]:.2f} ms  p99 {oq[98]:.2f} ms  "
              f"max {lat[-1]:.2f} ms  (from the scheduled time, client lag included: p50 {sq[49]:.2f} "
              f"p99 {sq[98]:.2f})")
    db = sqlite3.connect(data_dir / "godminer.db")
    decide_us = sorted(r[0] for r in db.execute("select latency_us from offers"))
    if len(decide_us) > 100:
        dq = statistics.quantiles(decide_us, n=100)
        accepted = db.execute("select sum(accepted), count(*) from offers").fetchone()
        print(f"decision inside the miner (policy + audit row queued): p50 {dq[49]:.0f} us  p99 {dq[98]:.0f} us")
        print(f"accepted {accepted[0]} of {accepted[1]} (the box fills up, then declines)")


if __name__ == "__main__":
    main()
