"""Request authentication exactly as fiber 2.4.0 signs and checks it (protocol.md §1.3-§1.7).

POST message: ``f"{nonce}:{miner_hotkey}:{sha256(raw body).hexdigest()}"``; GET message:
``f"{nonce}:{miner_hotkey}"``. sr25519 over the UTF-8 message, or over the ``<Bytes>``-wrapped
message (polkadot-js). The nonce is ``"<time_ns>_<10 chars>"``; only the part before the first
``_`` is read, it must be within the window either side of now, and each nonce is used once.
Unlike fiber, nonces are forgotten once they can no longer pass the window, so memory is bounded.
"""

from __future__ import annotations

import hashlib
import heapq
import secrets
import string
import threading
import time
from functools import lru_cache

from substrateinterface import Keypair

NONCE_WINDOW_NS = 120_000_000_000
_MAX_NONCE_TS = 10**20
_NONCE_CHARS = string.ascii_letters + string.digits

# Header names (fiber/constants.py); HTTP headers are case-insensitive.
H_VALIDATOR = "validator-hotkey"
H_MINER = "miner-hotkey"
H_NONCE = "nonce"
H_SIGNATURE = "signature"


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def post_message(nonce: str, miner_hotkey: str, body: bytes) -> str:
    return f"{nonce}:{miner_hotkey}:{body_hash(body)}"


def get_message(nonce: str, miner_hotkey: str) -> str:
    return f"{nonce}:{miner_hotkey}"


def make_nonce(now_ns: int | None = None) -> str:
    """A nonce as fiber's validator client builds it."""
    ts = time.time_ns() if now_ns is None else now_ns
    return f"{ts}_{''.join(secrets.choice(_NONCE_CHARS) for _ in range(10))}"


def nonce_timestamp(nonce: str) -> int | None:
    """The nonce's time in ns, or None when fiber would reject it as unparsable or too large."""
    head = nonce.split("_", 1)[0]
    if not head.isdigit():
        return None
    value = int(head)
    return None if value > _MAX_NONCE_TS else value


@lru_cache(maxsize=4096)
def _public_keypair(ss58_address: str) -> Keypair:
    return Keypair(ss58_address=ss58_address)


def verify_signature(ss58_address: str, message: str, signature: str) -> bool:
    """True iff ``signature`` ("0x" + 128 hex) is an sr25519 signature of the message by the address.

    Never raises: malformed addresses or signatures are simply invalid (fiber can raise a 500 here).
    """
    if not signature.startswith("0x") or len(signature) != 130:
        return False
    try:
        sig = bytes.fromhex(signature[2:])
        return bool(_public_keypair(ss58_address).verify(message, sig))
    except Exception:
        return False


def sign(keypair: Keypair, message: str) -> str:
    return "0x" + keypair.sign(message).hex()


def signed_headers(keypair: Keypair, miner_hotkey: str, body: bytes | None, nonce: str | None = None) -> dict[str, str]:
    """The five headers fiber's validator client sends; ``body=None`` signs a GET."""
    nonce = nonce or make_nonce()
    message = get_message(nonce, miner_hotkey) if body is None else post_message(nonce, miner_hotkey, body)
    return {
        "Content-Type": "application/json",
        H_VALIDATOR: keypair.ss58_address,
        H_MINER: miner_hotkey,
        H_NONCE: nonce,
        H_SIGNATURE: sign(keypair, message),
    }


class NonceGuard:
    """Remembers used nonces until they fall out of the window; thread-safe.

    The check order is fiber's: reuse, parse, record, window. A nonce is therefore burned even
    when the request is then refused for its time or signature.
    """

    def __init__(self, window_ns: int = NONCE_WINDOW_NS) -> None:
        self.window_ns = window_ns
        self._seen: set[str] = set()
        self._expiry: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, nonce: str, now_ns: int) -> str | None:
        """None if the nonce is fresh and in the window, else the reason it is refused."""
        with self._lock:
            self._forget_expired(now_ns)
            if nonce in self._seen:
                return "nonce already used"
            ts = nonce_timestamp(nonce)
            if ts is None:
                return "nonce is malformed"
            self._seen.add(nonce)
            # After max(ts, now) + window the nonce can never pass the window check again.
            heapq.heappush(self._expiry, (max(ts, now_ns) + self.window_ns, nonce))
            if abs(now_ns - ts) > self.window_ns:
                return "nonce is outside the time window"
            return None

    def _forget_expired(self, now_ns: int) -> None:
        while self._expiry and self._expiry[0][0] < now_ns:
            _, nonce = heapq.heappop(self._expiry)
            self._seen.discard(nonce)
