"""A validator's HTTP client, signing exactly as fiber 2.4.0 does (for the demo, benchmarks and tests).

The body is ``json.dumps(payload).encode()`` with Python's default separators, hashed, signed and
sent as those exact bytes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
from substrateinterface import Keypair

from godminer.protocol import signing


def body_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


class ValidatorClient:
    def __init__(
        self,
        http: httpx.Client,
        keypair: Keypair,
        miner_hotkey: str,
        now_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.http = http
        self.keypair = keypair
        self.miner_hotkey = miner_hotkey
        self.now_ns = now_ns

    def headers(self, body: bytes | None, nonce: str | None = None, miner_hotkey: str | None = None) -> dict[str, str]:
        return signing.signed_headers(
            self.keypair, miner_hotkey or self.miner_hotkey, body, nonce or signing.make_nonce(self.now_ns())
        )

    def post(self, path: str, payload: dict[str, Any], timeout: float = 10.0) -> httpx.Response:
        body = body_bytes(payload)
        return self.http.post(path, content=body, headers=self.headers(body), timeout=timeout)

    def get(self, path: str, timeout: float = 10.0) -> httpx.Response:
        return self.http.get(path, headers=self.headers(None), timeout=timeout)

    def offer(self, offer: dict[str, Any]) -> httpx.Response:
        path = "/task_offer_image/" if offer.get("task_type") == "ImageTask" else "/task_offer/"
        return self.post(path, offer, timeout=3.0)

    def start_training(self, request: dict[str, Any]) -> httpx.Response:
        if "dataset_zip" in request:
            path = "/start_training_image/"
        elif "reward_functions" in request.get("dataset_type", {}):
            path = "/start_training_grpo/"
        else:
            path = "/start_training/"
        return self.post(path, request)

    def submission(self, task_id: str) -> httpx.Response:
        return self.get(f"/get_latest_model_submission/{task_id}")
