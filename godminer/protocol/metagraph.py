"""Who is on the subnet and with how much stake: from the chain (refreshed) or a snapshot file.

The snapshot uses fiber's ``nodes.json`` layout (``{hotkey: node}``); a list of nodes is accepted too.
The chain is read with the same runtime call fiber uses, ``SubnetInfoRuntimeApi.get_metagraph``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SS58_FORMAT = 42
NETWORK_ADDRESSES = {
    "finney": "wss://entrypoint-finney.opentensor.ai:443",
    "test": "wss://test.finney.opentensor.ai:443/",
    "local": "ws://127.0.0.1:9944",
}


@dataclass(frozen=True)
class Node:
    """One hotkey of the subnet (fiber's Node fields)."""

    hotkey: str
    coldkey: str = ""
    node_id: int = 0
    incentive: float = 0.0
    netuid: int = 0
    alpha_stake: float = 0.0
    tao_stake: float = 0.0
    stake: float = 0.0
    trust: float = 0.0
    vtrust: float = 0.0
    last_updated: float = 0.0
    ip: str = "0.0.0.0"
    ip_type: int = 4
    port: int = 0
    protocol: int = 4

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Node:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class Metagraph:
    """An in-memory map hotkey → Node, swapped atomically on refresh."""

    def __init__(self, nodes: Iterable[Node] = ()) -> None:
        self._nodes: dict[str, Node] = {n.hotkey: n for n in nodes}
        self.synced_at: float | None = None

    def get(self, hotkey: str) -> Node | None:
        return self._nodes.get(hotkey)

    def nodes(self) -> list[Node]:
        return list(self._nodes.values())

    def replace(self, nodes: Iterable[Node], synced_at: float) -> None:
        self._nodes = {n.hotkey: n for n in nodes}
        self.synced_at = synced_at

    def __len__(self) -> int:
        return len(self._nodes)

    def rank_of(self, hotkey: str) -> int | None:
        """1-based position by incentive among all nodes, or None if absent."""
        node = self._nodes.get(hotkey)
        if node is None:
            return None
        return 1 + sum(1 for n in self._nodes.values() if n.incentive > node.incentive)


def load_snapshot(path: Path) -> list[Node]:
    data = json.loads(Path(path).read_text())
    items = data.values() if isinstance(data, dict) else data
    return [Node.from_dict(item) for item in items]


def save_snapshot(path: Path, nodes: Iterable[Node]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({n.hotkey: asdict(n) for n in nodes}))
    os.replace(tmp, path)


def _ss58(address: Any) -> str:
    from scalecodec.utils.ss58 import ss58_encode

    if isinstance(address, str):
        return address
    if address and not isinstance(address[0], int):
        address = address[0]
    return ss58_encode(bytes(address).hex(), SS58_FORMAT)


def nodes_from_runtime_metagraph(metagraph: dict[str, Any]) -> list[Node]:
    """Convert the value of ``SubnetInfoRuntimeApi.get_metagraph`` into nodes, as fiber does."""
    nodes = []
    for uid in range(len(metagraph["hotkeys"])):
        axon = metagraph["axons"][uid]
        nodes.append(Node(
            hotkey=_ss58(metagraph["hotkeys"][uid]),
            coldkey=_ss58(metagraph["coldkeys"][uid]),
            node_id=uid,
            incentive=float(metagraph["incentives"][uid]),
            netuid=int(metagraph["netuid"]),
            alpha_stake=metagraph["alpha_stake"][uid] * 1e-9,
            tao_stake=metagraph["tao_stake"][uid] * 1e-9,
            stake=metagraph["total_stake"][uid] * 1e-9,
            vtrust=float(metagraph["consensus"][uid]),
            last_updated=float(metagraph["last_update"][uid]),
            ip=str(axon["ip"]),
            ip_type=int(axon["ip_type"]),
            port=int(axon["port"]),
            protocol=int(axon["protocol"]),
        ))
    return nodes


def fetch_chain_nodes(address: str, netuid: int) -> list[Node]:
    """Read the subnet's metagraph from a subtensor node (blocking network call)."""
    from async_substrate_interface.sync_substrate import SubstrateInterface

    substrate = SubstrateInterface(url=address, ss58_format=SS58_FORMAT)
    try:
        response = substrate.runtime_call("SubnetInfoRuntimeApi", "get_metagraph", [netuid])
        return nodes_from_runtime_metagraph(response.value)
    finally:
        substrate.close()


class MetagraphSync:
    """Refreshes a Metagraph periodically from a fetch function, in a daemon thread.

    A failed refresh keeps the previous nodes; each success is saved as the snapshot so that a
    restart without the chain still knows the validators.
    """

    def __init__(
        self,
        metagraph: Metagraph,
        fetch: Callable[[], list[Node]],
        interval_s: float,
        snapshot: Path | None,
        clock: Callable[[], float],
    ) -> None:
        self.metagraph = metagraph
        self.fetch = fetch
        self.interval_s = interval_s
        self.snapshot = snapshot
        self.clock = clock
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        try:
            nodes = self.fetch()
        except Exception as exc:  # network errors must never take the node down
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("metagraph refresh failed: %s", self.last_error)
            return False
        self.metagraph.replace(nodes, self.clock())
        self.last_error = None
        if self.snapshot is not None:
            save_snapshot(self.snapshot, nodes)
        log.info("metagraph refreshed: %d nodes", len(nodes))
        return True

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                self.refresh()
                self._stop.wait(self.interval_s)

        self._thread = threading.Thread(target=loop, name="metagraph-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
