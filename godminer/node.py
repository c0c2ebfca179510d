"""Assembles a running miner from its settings: store, keys, metagraph, engine, HTTP app, loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from substrateinterface import Keypair

from godminer.api.app import create_app
from godminer.api.auth import Authenticator
from godminer.api.operator_routes import operator_app
from godminer.api.validator_routes import validator_routes
from godminer.clock import Clock, SystemClock
from godminer.engine.inventory import Inventory, build_inventory
from godminer.engine.lifecycle import Lifecycle
from godminer.engine.miner import Miner
from godminer.engine.store import Store
from godminer.executors.base import Executor
from godminer.monitor.alerts import AlertManager
from godminer.monitor.observer import Observer
from godminer.protocol import keys
from godminer.protocol.metagraph import (
    NETWORK_ADDRESSES,
    Metagraph,
    MetagraphSync,
    Node,
    fetch_chain_nodes,
    load_snapshot,
    save_snapshot,
)
from godminer.protocol.signing import NonceGuard
from godminer.publish.base import Publisher
from godminer.settings import Settings

log = logging.getLogger(__name__)


def dev_overrides(data_dir: Path) -> dict[str, object]:
    """Settings of ``serve --dev``: offline, snapshot metagraph, local publisher, two declared GPUs.

    The declared GPUs are usually CPU slots on a development machine: time estimates use a CPU's
    throughput (0.05 TFLOP/s), so jobs are planned to train until their deadline margin.
    """
    return {
        "dev": True,
        "data_dir": data_dir,
        "node": {"metagraph_source": "snapshot", "metagraph_snapshot": data_dir / "dev-nodes.json"},
        "hub": {"publisher": "local", "namespace": "godminer-dev"},
        "gpus": {"inventory": "config", "count": 2, "memory_gb": 80.0, "tflops": 0.05},
    }


def write_dev_snapshot(path: Path) -> None:
    """A metagraph where //Alice is a validator with 10 000 stake and //Bob (the miner) has none."""
    alice = keys.dev_keypair(keys.DEV_VALIDATOR_URI).ss58_address
    bob = keys.dev_keypair(keys.DEV_MINER_URI).ss58_address
    save_snapshot(path, [
        Node(hotkey=alice, node_id=0, stake=keys.DEV_VALIDATOR_STAKE, vtrust=1.0, netuid=56),
        Node(hotkey=bob, node_id=1, stake=0.0, netuid=56, ip="127.0.0.1", port=7999),
    ])


def build_executor(settings: Settings) -> Executor:
    kind = settings.executor.kind
    if kind == "docker":
        from godminer.executors.docker import DockerExecutor

        return DockerExecutor.from_settings(settings)
    if kind == "ray":
        from godminer.executors.ray import RayExecutor

        return RayExecutor.from_settings(settings)
    from godminer.executors.local import LocalExecutor

    return LocalExecutor()


def build_publisher(settings: Settings) -> Publisher:
    if settings.hub.publisher == "local":
        from godminer.publish.local import LocalPublisher

        assert settings.hub.local_dir is not None
        return LocalPublisher(settings.hub.local_dir, settings.hub.namespace or "local")
    from godminer.publish.hub import HubPublisher

    token = settings.hub.token.get_secret_value() if settings.hub.token else ""
    return HubPublisher.from_token(token, settings.hub.namespace)


def miner_keypair(settings: Settings) -> Keypair:
    if settings.dev:
        return keys.dev_keypair(keys.DEV_MINER_URI)
    return keys.load_hotkey(settings.node.wallets_dir, settings.node.wallet_name, settings.node.hotkey_name)


class MinerNode:
    """Everything one miner process runs."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock | None = None,
        keypair: Keypair | None = None,
        inventory: Inventory | None = None,
        metagraph: Metagraph | None = None,
        executor: Executor | None = None,
        publisher: Publisher | None = None,
        background: bool = True,
        disk_free_gb: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.background = background  # the lifecycle loop (off for API-only tests that tick by hand)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.keypair = keypair or miner_keypair(settings)
        self.store = Store(settings.db_url)
        self.inventory = inventory or build_inventory(settings.gpus)
        if inventory is None and settings.executor.kind == "ray":
            from godminer.executors.ray import RayInventory

            self.inventory = RayInventory.from_settings(settings)
        self.metagraph = metagraph or self._load_metagraph()
        self.sync: MetagraphSync | None = None
        self.miner = Miner(settings, self.store, self.clock, self.keypair.ss58_address, self.inventory,
                           disk_free_gb=disk_free_gb)
        self.auth = Authenticator(
            self.metagraph, self.keypair.ss58_address, settings.node.min_stake,
            NonceGuard(int(settings.node.nonce_window_s * 1e9)), now_ns=lambda: int(self.clock.now() * 1e9),
        )
        token = settings.hub.token.get_secret_value() if settings.hub.token else None
        self.lifecycle = Lifecycle(
            settings, self.store, self.clock, self.inventory, executor or build_executor(settings),
            publisher or build_publisher(settings), hub_token=token,
        )
        self.observer = Observer(settings, self.store, self.inventory, self.metagraph, self.keypair.ss58_address,
                                 self.clock, disk_free_gb=disk_free_gb)
        self.alerts = AlertManager(self.store, settings.monitor, self.clock)

    def _load_metagraph(self) -> Metagraph:
        snapshot = self.settings.node.metagraph_snapshot
        assert snapshot is not None
        if self.settings.dev and not snapshot.exists():
            write_dev_snapshot(snapshot)
        metagraph = Metagraph()
        if snapshot.exists():
            metagraph.replace(load_snapshot(snapshot), self.clock.now())
        elif self.settings.node.metagraph_source == "snapshot":
            raise FileNotFoundError(f"metagraph snapshot not found: {snapshot}")
        return metagraph

    def chain_address(self) -> str:
        node = self.settings.node
        return node.subtensor_address or NETWORK_ADDRESSES.get(node.subtensor_network, node.subtensor_network)

    def start_metagraph_sync(self) -> None:
        if self.settings.node.metagraph_source != "chain":
            return
        address, netuid = self.chain_address(), self.settings.node.netuid
        self.sync = MetagraphSync(
            self.metagraph, lambda: fetch_chain_nodes(address, netuid), self.settings.node.metagraph_refresh_s,
            self.settings.node.metagraph_snapshot, time.time,
        )
        self.sync.start()

    def app(self) -> Starlette:
        @asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            self.start_metagraph_sync()
            loops = [asyncio.create_task(self.run_lifecycle()), asyncio.create_task(self.run_monitor())] if (
                self.background) else []
            try:
                yield
            finally:
                for loop in loops:
                    loop.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await loop
                if self.sync is not None:
                    self.sync.stop()
                self.store.flush()

        routes = validator_routes(self.auth, self.miner, self.settings.tournament)
        operator = operator_app(self.settings, self.store, self.miner, self.inventory, self.metagraph, self.clock)
        return create_app(routes, operator, lifespan=lifespan)

    async def run_lifecycle(self) -> None:
        """Tick the lifecycle in a worker thread forever; an error is logged, never fatal."""
        while True:
            try:
                await asyncio.to_thread(self.lifecycle.tick)
            except Exception:
                log.exception("lifecycle tick failed")
            await asyncio.sleep(self.settings.executor.tick_s)

    async def run_monitor(self) -> None:
        """Observe and evaluate the alert rules every ``monitor.check_interval_s``; errors are logged."""
        while True:
            try:
                observation = await asyncio.to_thread(self.observer.observe)
                await asyncio.to_thread(self.alerts.check, observation)
            except Exception:
                log.exception("monitoring pass failed")
            await asyncio.sleep(self.settings.monitor.check_interval_s)

    def close(self) -> None:
        self.lifecycle.close(wait=False)
        self.store.close()
