"""Assembles a running miner from its settings: store, keys, metagraph, engine, HTTP app, loops."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from substrateinterface import Keypair

from godminer.api.app import create_app
from godminer.api.auth import Authenticator
from godminer.api.validator_routes import validator_routes
from godminer.clock import Clock, SystemClock
from godminer.engine.inventory import Inventory, build_inventory
from godminer.engine.miner import Miner
from godminer.engine.store import Store
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
from godminer.settings import Settings

log = logging.getLogger(__name__)


def dev_overrides(data_dir: Path) -> dict[str, object]:
    """Settings of ``serve --dev``: offline, snapshot metagraph, local publisher, two declared GPUs."""
    return {
        "dev": True,
        "data_dir": data_dir,
        "node": {"metagraph_source": "snapshot", "metagraph_snapshot": data_dir / "dev-nodes.json"},
        "hub": {"publisher": "local", "namespace": "godminer-dev"},
        "gpus": {"inventory": "config", "count": 2, "memory_gb": 80.0},
    }


def write_dev_snapshot(path: Path) -> None:
    """A metagraph where //Alice is a validator with 10 000 stake and //Bob (the miner) has none."""
    alice = keys.dev_keypair(keys.DEV_VALIDATOR_URI).ss58_address
    bob = keys.dev_keypair(keys.DEV_MINER_URI).ss58_address
    save_snapshot(path, [
        Node(hotkey=alice, node_id=0, stake=keys.DEV_VALIDATOR_STAKE, vtrust=1.0, netuid=56),
        Node(hotkey=bob, node_id=1, stake=0.0, netuid=56, ip="127.0.0.1", port=7999),
    ])


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
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.keypair = keypair or miner_keypair(settings)
        self.store = Store(settings.db_url)
        self.inventory = inventory or build_inventory(settings.gpus)
        self.metagraph = metagraph or self._load_metagraph()
        self.sync: MetagraphSync | None = None
        self.miner = Miner(settings, self.store, self.clock, self.keypair.ss58_address, self.inventory)
        self.auth = Authenticator(
            self.metagraph, self.keypair.ss58_address, settings.node.min_stake,
            NonceGuard(int(settings.node.nonce_window_s * 1e9)), now_ns=lambda: int(self.clock.now() * 1e9),
        )

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
            try:
                yield
            finally:
                if self.sync is not None:
                    self.sync.stop()
                self.store.flush()

        routes = validator_routes(self.auth, self.miner, self.settings.tournament)
        return create_app(routes, lifespan=lifespan)

    def close(self) -> None:
        self.store.close()
