"""`godminer demo`: the miner in dev mode, a local validator sending it signed offers, a printed table."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from godminer.devnet.client import ValidatorClient
from godminer.devnet.server import ServerThread
from godminer.node import MinerNode, dev_overrides
from godminer.protocol import keys
from godminer.settings import load_settings

OFFERS = [
    ("InstructTextTask", "unsloth/Meta-Llama-3.1-8B-Instruct", 8_030_261_248, 4.0),
    ("DpoTask", "Qwen/Qwen2.5-7B-Instruct", 7_615_616_512, 6.0),
    ("GrpoTask", "Qwen/Qwen2.5-1.5B-Instruct", 1_543_714_304, 3.0),
    ("ChatTask", "unsloth/Llama-3.2-3B-Instruct", 3_212_749_824, 7.5),
    ("InstructTextTask", "unsloth/Meta-Llama-3.1-70B-Instruct", 70_553_706_496, 8.0),
    ("ImageTask", "stabilityai/stable-diffusion-xl-base-1.0", None, 2.0),
]


def run_demo(data_dir: Path) -> int:
    settings = load_settings(**dev_overrides(data_dir))
    node = MinerNode(settings)
    alice = keys.dev_keypair(keys.DEV_VALIDATOR_URI)
    with ServerThread(node.app()) as server, httpx.Client(base_url=server.url) as http:
        validator = ValidatorClient(http, alice, node.keypair.ss58_address)
        print(f"miner {node.keypair.ss58_address} on {server.url}; validator {alice.ss58_address}")
        print(f"{'task type':<17} {'model':<40} {'hours':>5}  decision")
        for task_type, model, params, hours in OFFERS:
            task_id = str(uuid.uuid4())
            offer = {"ds_size": 100000, "model": model, "hours_to_complete": hours, "task_id": task_id,
                     "task_type": task_type, "model_params_count": params}
            answer = validator.offer(offer).json()
            verdict = "ACCEPT" if answer["accepted"] else "decline"
            print(f"{task_type:<17} {model[:40]:<40} {hours:>5g}  {verdict}: {answer['message']}")
    node.close()
    return 0
