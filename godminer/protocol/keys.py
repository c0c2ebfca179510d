"""The miner's own hotkey: from the bittensor wallet layout, or a dev URI such as ``//Bob``."""

from __future__ import annotations

import json
from pathlib import Path

from substrateinterface import Keypair

DEV_MINER_URI = "//Bob"
DEV_VALIDATOR_URI = "//Alice"
DEV_VALIDATOR_STAKE = 10_000.0


def hotkey_path(wallets_dir: Path, wallet_name: str, hotkey_name: str) -> Path:
    return Path(wallets_dir).expanduser() / wallet_name / "hotkeys" / hotkey_name


def load_hotkey(wallets_dir: Path, wallet_name: str, hotkey_name: str) -> Keypair:
    """Load ``<wallets_dir>/<wallet>/hotkeys/<hotkey>`` (JSON with ``secretSeed``) as an sr25519 keypair."""
    path = hotkey_path(wallets_dir, wallet_name, hotkey_name)
    if not path.is_file():
        raise FileNotFoundError(f"hotkey file not found: {path}")
    try:
        data = json.loads(path.read_text())
        seed = data["secretSeed"]
    except (ValueError, KeyError) as exc:
        raise ValueError(f"{path} is not a bittensor hotkey file (JSON with secretSeed)") from exc
    return Keypair.create_from_seed(seed)


def dev_keypair(uri: str) -> Keypair:
    return Keypair.create_from_uri(uri)
