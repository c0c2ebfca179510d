"""Every rule of protocol.md §1.7, with requests signed exactly as the validator signs them."""

from __future__ import annotations

import json

from conftest import make_offer
from substrateinterface import Keypair, KeypairType

from godminer.devnet.client import body_bytes
from godminer.protocol import signing
from godminer.protocol.metagraph import Node


def post_raw(http, path, body: bytes, headers: dict):
    return http.post(path, content=body, headers=headers)


def test_valid_signed_offer_is_answered_with_json(validator):
    response = validator.offer(make_offer())
    assert response.status_code == 200
    data = response.json()
    assert set(data) == {"message", "accepted"}
    assert data["accepted"] is True


def test_body_changed_by_one_byte_is_refused(http, validator):
    body = body_bytes(make_offer())
    headers = validator.headers(body)
    tampered = body.replace(b'"hours_to_complete": 4.0', b'"hours_to_complete": 5.0')
    assert tampered != body and len(tampered) == len(body)
    response = post_raw(http, "/task_offer/", tampered, headers)
    assert response.status_code == 401
    assert "invalid signature" in response.json()["detail"]


def test_compact_reserialised_body_is_refused(http, validator):
    payload = make_offer()
    headers = validator.headers(body_bytes(payload))
    compact = json.dumps(payload, separators=(",", ":")).encode()
    assert post_raw(http, "/task_offer/", compact, headers).status_code == 401


def test_reused_nonce_is_refused(http, validator):
    body = body_bytes(make_offer())
    headers = validator.headers(body)
    assert post_raw(http, "/task_offer/", body, headers).status_code == 200
    again = post_raw(http, "/task_offer/", body, headers)
    assert again.status_code == 401
    assert again.json()["detail"] == "Oi, that nonce is not valid!"


def test_nonce_200s_old_or_ahead_is_refused(http, validator, clock):
    now_ns = int(clock.now() * 1e9)
    for skew in (-200, 200):
        body = body_bytes(make_offer())
        nonce = signing.make_nonce(now_ns + skew * 10**9)
        response = post_raw(http, "/task_offer/", body, validator.headers(body, nonce=nonce))
        assert response.status_code == 401, skew
    # Within the window either side is fine.
    for skew in (-100, 100):
        body = body_bytes(make_offer())
        nonce = signing.make_nonce(now_ns + skew * 10**9)
        assert post_raw(http, "/task_offer/", body, validator.headers(body, nonce=nonce)).status_code == 200


def test_malformed_nonce_is_refused(http, validator):
    body = body_bytes(make_offer())
    for nonce in ("abc_def", "_x", "1" * 25 + "_abcdefghij"):
        assert post_raw(http, "/task_offer/", body, validator.headers(body, nonce=nonce)).status_code == 401


def test_wrong_miner_hotkey_is_refused(http, validator, alice):
    body = body_bytes(make_offer())
    headers = validator.headers(body, miner_hotkey=alice.ss58_address)
    response = post_raw(http, "/task_offer/", body, headers)
    assert response.status_code == 401
    assert response.json()["detail"] == "Oi, invalid miner hotkey - that's not me!"


def test_unknown_validator_is_403(http, validator):
    stranger = Keypair.create_from_uri("//Charlie")
    body = body_bytes(make_offer())
    headers = signing.signed_headers(stranger, validator.miner_hotkey, body)
    response = post_raw(http, "/task_offer/", body, headers)
    assert response.status_code == 403
    assert response.json()["detail"] == "Hotkey not found in metagraph"


def test_understaked_validator_is_403(http, node, validator):
    dave = Keypair.create_from_uri("//Dave")
    node.metagraph.replace([*node.metagraph.nodes(), Node(hotkey=dave.ss58_address, stake=999.0)], 0.0)
    body = body_bytes(make_offer())
    response = post_raw(http, "/task_offer/", body, signing.signed_headers(dave, validator.miner_hotkey, body))
    assert response.status_code == 403
    assert response.json()["detail"].startswith("Insufficient stake of 999.0")


def test_unknown_extra_field_is_accepted(validator):
    assert validator.offer(make_offer(new_validator_field={"x": 1})).status_code == 200


def test_int_and_float_hours_are_accepted(validator):
    for hours in (4, 4.0):
        response = validator.offer(make_offer(hours_to_complete=hours))
        assert response.status_code == 200
        assert response.json()["accepted"] is True


def test_missing_trailing_slash_is_not_redirected(http, validator):
    body = body_bytes(make_offer())
    response = http.post("/task_offer", content=body, headers=validator.headers(body), follow_redirects=False)
    assert response.status_code == 404
    assert "location" not in response.headers


def test_bytes_wrapped_signature_passes(http, validator, alice):
    body = body_bytes(make_offer())
    headers = validator.headers(body)
    message = signing.post_message(headers["nonce"], validator.miner_hotkey, body)
    headers["signature"] = "0x" + alice.sign(b"<Bytes>" + message.encode() + b"</Bytes>").hex()
    assert post_raw(http, "/task_offer/", body, headers).status_code == 200


def test_ed25519_key_is_refused(http, node, validator):
    ed = Keypair.create_from_seed("0x" + "11" * 32, crypto_type=KeypairType.ED25519)
    node.metagraph.replace([*node.metagraph.nodes(), Node(hotkey=ed.ss58_address, stake=50_000.0)], 0.0)
    body = body_bytes(make_offer())
    headers = signing.signed_headers(ed, validator.miner_hotkey, body)
    assert post_raw(http, "/task_offer/", body, headers).status_code == 401


def test_malformed_signature_header_is_401_never_500(http, validator):
    body = body_bytes(make_offer())
    good = validator.headers(body)
    for bad in (good["signature"][2:], "0xzz" + good["signature"][4:], "0x1234", "garbage", "0x" + "00" * 64):
        headers = validator.headers(body)
        headers["signature"] = bad
        assert post_raw(http, "/task_offer/", body, headers).status_code == 401, bad


def test_missing_headers_are_422(http, validator):
    body = body_bytes(make_offer())
    headers = validator.headers(body)
    del headers["signature"]
    response = post_raw(http, "/task_offer/", body, headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "signature"]


def test_get_is_signed_without_body(validator, http):
    response = validator.submission("no-such-task")
    assert response.status_code == 404
    headers = validator.headers(None)
    headers["signature"] = validator.headers(b"{}")["signature"]
    assert http.get("/get_latest_model_submission/x", headers=headers).status_code == 401


def test_auth_failure_comes_before_body_validation(http, validator):
    body = b'{"not": "an offer"}'
    headers = validator.headers(body)
    headers["signature"] = "0x" + "00" * 64
    assert post_raw(http, "/task_offer/", body, headers).status_code == 401
    assert post_raw(http, "/task_offer/", body, validator.headers(body)).status_code == 422


def test_nonce_memory_is_bounded():
    guard = signing.NonceGuard(window_ns=120 * 10**9)
    now = 10**18
    for i in range(1000):
        assert guard.check(f"{now}_{i:010d}", now) is None
    assert len(guard) == 1000
    later = now + 241 * 10**9
    assert guard.check(f"{later}_fresh00000", later) is None
    assert len(guard) == 1
    # A remembered nonce is refused while it could still pass the window.
    assert guard.check(f"{later}_fresh00000", later + 10**9) == "nonce already used"


def test_test_vector_messages():
    body = (
        b'{"ds_size": 100000, "model": "unsloth/Llama-3.2-3B-Instruct", "hours_to_complete": 4, '
        b'"task_id": "3f0c2a9e-5b7d-4e8a-9c1f-2d6b8e4a7c10", "task_type": "InstructTextTask", '
        b'"model_params_count": 3212749824}'
    )
    assert signing.body_hash(body) == "39dedd27760b8bed695a8d2beae4f3c0f2196653a19ffa0d5ba8072a93f1c6de"
    nonce, bob = "1751600000123456789_aB3dE5fG7h", "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
    digest = "39dedd27760b8bed695a8d2beae4f3c0f2196653a19ffa0d5ba8072a93f1c6de"
    assert signing.post_message(nonce, bob, body) == f"{nonce}:{bob}:{digest}"
    assert signing.get_message(nonce, bob) == f"{nonce}:{bob}"
