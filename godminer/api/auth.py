"""Validator authentication for the miner routes, in fiber's order (protocol.md §1.7).

1. required headers present, else 422 (FastAPI's answer for a missing header);
2. stake blacklist: hotkey missing from the metagraph or under ``min_stake`` → 403;
3. nonce reused, malformed or outside the window → 401;
4. signature over ``nonce:miner_hotkey[:sha256(raw body)]`` invalid or malformed → 401;
5. ``miner-hotkey`` header is not this miner → 401.
The raw body bytes are hashed as received; nothing is re-serialised.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from godminer.protocol import signing
from godminer.protocol.metagraph import Metagraph


class HttpError(Exception):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


NONCE_INVALID = "Oi, that nonce is not valid!"
SIGNATURE_INVALID = "Oi, invalid signature, you're not who you said you were!"
MINER_INVALID = "Oi, invalid miner hotkey - that's not me!"
_REQUIRED = (signing.H_VALIDATOR, signing.H_MINER, signing.H_NONCE, signing.H_SIGNATURE)


class Authenticator:
    def __init__(
        self,
        metagraph: Metagraph,
        miner_hotkey: str,
        min_stake: float,
        nonces: signing.NonceGuard,
        now_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.metagraph = metagraph
        self.miner_hotkey = miner_hotkey
        self.min_stake = min_stake
        self.nonces = nonces
        self.now_ns = now_ns

    def check(self, headers: Mapping[str, str], body: bytes | None) -> str:
        """Authenticate a request (``body=None`` for GET); returns the validator hotkey or raises HttpError."""
        missing = [name for name in _REQUIRED if not headers.get(name)]
        if missing:
            raise HttpError(422, [
                {"type": "missing", "loc": ["header", name], "msg": "Field required"} for name in missing
            ])
        validator = headers[signing.H_VALIDATOR]
        node = self.metagraph.get(validator)
        if node is None:
            raise HttpError(403, "Hotkey not found in metagraph")
        if node.stake < self.min_stake:
            raise HttpError(403, f"Insufficient stake of {node.stake} ")
        nonce = headers[signing.H_NONCE]
        if self.nonces.check(nonce, self.now_ns()) is not None:
            raise HttpError(401, NONCE_INVALID)
        miner = headers[signing.H_MINER]
        message = signing.get_message(nonce, miner) if body is None else signing.post_message(nonce, miner, body)
        if not signing.verify_signature(validator, message, headers[signing.H_SIGNATURE]):
            raise HttpError(401, SIGNATURE_INVALID)
        if miner != self.miner_hotkey:
            raise HttpError(401, MINER_INVALID)
        return validator
