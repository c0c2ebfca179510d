"""Shared fixtures: a dev-mode miner on a temporary data dir, a manual clock, Alice as validator."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from godminer.clock import ManualClock
from godminer.devnet.client import ValidatorClient
from godminer.engine.inventory import StaticInventory
from godminer.node import MinerNode, dev_overrides
from godminer.protocol import keys
from godminer.settings import Settings, load_settings

os.environ["HF_HUB_OFFLINE"] = "1"  # hermetic: nothing may come from the Hub during tests
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_751_600_000.0)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(**dev_overrides(tmp_path / "var"))


@pytest.fixture
def node(settings: Settings, clock: ManualClock):
    n = MinerNode(settings, clock=clock, inventory=StaticInventory.uniform(4, 80.0), background=False)
    yield n
    n.close()


@pytest.fixture
def http(node: MinerNode):
    with TestClient(node.app()) as client:
        yield client


@pytest.fixture
def alice():
    return keys.dev_keypair(keys.DEV_VALIDATOR_URI)


@pytest.fixture
def validator(http, alice, node: MinerNode, clock: ManualClock) -> ValidatorClient:
    return ValidatorClient(http, alice, node.keypair.ss58_address, now_ns=lambda: int(clock.now() * 1e9))


def make_offer(**changes) -> dict:
    offer = {
        "ds_size": 100000, "model": "unsloth/Meta-Llama-3.1-8B-Instruct", "hours_to_complete": 4.0,
        "task_id": str(uuid.uuid4()), "task_type": "InstructTextTask", "model_params_count": 8030261248,
    }
    offer.update(changes)
    return offer


def make_instruct_request(task_id: str | None = None, **changes) -> dict:
    request = {
        "model": "unsloth/Meta-Llama-3.1-8B-Instruct", "task_id": task_id or str(uuid.uuid4()),
        "hours_to_complete": 4.0, "expected_repo_name": str(uuid.uuid4()),
        "dataset": "https://s3.example/bucket/7d3f9a0c1b2e4f56_train_data.json?X-Amz-Expires=604800",
        "dataset_type": {
            "system_prompt": "", "system_format": "{system}", "field_system": None, "field_instruction": "instruct",
            "field_input": "input", "field_output": "output", "format": None, "no_input_format": None, "field": None,
        },
        "file_format": "s3",
    }
    request.update(changes)
    return request
