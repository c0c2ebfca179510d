"""Metagraph refresh (chain values converted as fiber does, failures keep the last good nodes) and the
bittensor wallet layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from substrateinterface import Keypair

from godminer.clock import ManualClock
from godminer.protocol import keys
from godminer.protocol.metagraph import Metagraph, MetagraphSync, Node, load_snapshot, nodes_from_runtime_metagraph


def runtime_value(hotkeys: list[Keypair], stakes: list[int]) -> dict:
    """A value shaped like SubnetInfoRuntimeApi.get_metagraph's: raw account ids, rao, axon records."""
    n = len(hotkeys)
    return {
        "netuid": 56, "hotkeys": [list(k.public_key) for k in hotkeys],
        "coldkeys": [[list(k.public_key)] for k in hotkeys],
        "incentives": [0.1 * i for i in range(n)], "alpha_stake": stakes, "tao_stake": stakes, "total_stake": stakes,
        "consensus": [0.0] * n, "last_update": [100] * n,
        "axons": [{"ip": "1.2.3.4", "ip_type": 4, "port": 7999, "protocol": 4} for _ in range(n)],
    }


def test_runtime_metagraph_converts_like_fiber():
    alice, bob = keys.dev_keypair("//Alice"), keys.dev_keypair("//Bob")
    nodes = nodes_from_runtime_metagraph(runtime_value([alice, bob], [10_000 * 10**9, 5 * 10**9]))
    assert [n.hotkey for n in nodes] == [alice.ss58_address, bob.ss58_address]
    assert nodes[0].stake == pytest.approx(10_000.0) and nodes[1].stake == pytest.approx(5.0)
    assert nodes[1].node_id == 1 and nodes[1].port == 7999 and nodes[0].coldkey == alice.ss58_address


def test_refresh_replaces_nodes_saves_a_snapshot_and_survives_failures(tmp_path):
    metagraph = Metagraph([Node(hotkey="old", stake=1.0)])
    answers = [[Node(hotkey="v1", stake=5000.0)], ConnectionError("subtensor down")]

    def fetch() -> list[Node]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    clock = ManualClock(1000.0)
    sync = MetagraphSync(metagraph, fetch, 300.0, tmp_path / "nodes.json", clock.now)
    assert sync.refresh() and metagraph.get("v1").stake == 5000.0 and metagraph.get("old") is None
    assert metagraph.synced_at == 1000.0 and [n.hotkey for n in load_snapshot(tmp_path / "nodes.json")] == ["v1"]
    assert not sync.refresh() and "subtensor down" in sync.last_error
    assert metagraph.get("v1") is not None  # the last good nodes stay


def test_snapshot_accepts_fibers_layout_and_a_list(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"hk": {"hotkey": "hk", "stake": 2.0, "extra_field": 1}}))
    (tmp_path / "b.json").write_text(json.dumps([{"hotkey": "hk", "stake": 2.0}]))
    assert load_snapshot(tmp_path / "a.json") == load_snapshot(tmp_path / "b.json")


def test_rank_by_incentive():
    graph = Metagraph([Node(hotkey=h, incentive=i) for h, i in (("a", 0.5), ("b", 0.2), ("c", 0.9))])
    assert [graph.rank_of(h) for h in "abc"] == [2, 3, 1] and graph.rank_of("zzz") is None


def write_hotkey(wallets: Path, wallet: str, hotkey: str, seed_hex: str) -> Path:
    """A hotkey file as btcli writes it (JSON with secretSeed)."""
    path = keys.hotkey_path(wallets, wallet, hotkey)
    path.parent.mkdir(parents=True, exist_ok=True)
    address = Keypair.create_from_seed(seed_hex).ss58_address
    path.write_text(json.dumps({"secretSeed": seed_hex, "ss58Address": address}))
    return path


def test_wallet_layout(tmp_path):
    seed = "0x" + "ab" * 32
    path = write_hotkey(tmp_path, "miner", "hk1", seed)
    assert path == tmp_path / "miner" / "hotkeys" / "hk1"
    assert keys.load_hotkey(tmp_path, "miner", "hk1").ss58_address == Keypair.create_from_seed(seed).ss58_address
    with pytest.raises(FileNotFoundError):
        keys.load_hotkey(tmp_path, "miner", "missing")
    (tmp_path / "miner" / "hotkeys" / "bad").write_text("{}")
    with pytest.raises(ValueError, match="secretSeed"):
        keys.load_hotkey(tmp_path, "miner", "bad")
