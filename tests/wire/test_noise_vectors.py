"""Every XX vector in the cacophony file, byte for byte (DESIGN.md §4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cocoon_p2p.wire.noise import NoiseHandshake

# The repo is cloned with shared/ beside it: <root>/../shared.
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
VECTORS_FILE = SHARED / "vectors" / "noise" / "cacophony-25519-chachapoly.json"
HANDSHAKE_MESSAGES = 3  # XX: -> e / <- e, ee, s, es / -> s, se


def _load_xx() -> list[dict[str, Any]]:
    with VECTORS_FILE.open() as f:
        data = json.load(f)
    return [v for v in data["vectors"] if v["protocol_name"].split("_")[1].startswith("XX")]


def _skip_reason(vector: dict[str, Any]) -> str | None:
    pattern = vector["protocol_name"].split("_")[1]
    if "psk" in pattern:
        return f"{pattern}: psk modifiers are not implemented (the wire uses plain XX)"
    if pattern != "XX":
        return f"{pattern}: deferred/fallback XX variants are not implemented (the wire uses plain XX)"
    return None


XX_VECTORS = _load_xx()
RUNNABLE = [v for v in XX_VECTORS if _skip_reason(v) is None]
SKIPPED = [v for v in XX_VECTORS if _skip_reason(v) is not None]


def _params() -> list[Any]:
    out = []
    for v in XX_VECTORS:
        reason = _skip_reason(v)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        out.append(pytest.param(v, id=v["protocol_name"], marks=marks))
    return out


def test_vector_inventory() -> None:
    # Plain XX must run for both hashes; only psk/deferred variants may be skipped.
    names = {v["protocol_name"] for v in RUNNABLE}
    assert names == {"Noise_XX_25519_ChaChaPoly_SHA256", "Noise_XX_25519_ChaChaPoly_BLAKE2b"}
    assert len(RUNNABLE) > 0
    assert len(RUNNABLE) + len(SKIPPED) == len(XX_VECTORS)
    print(f"XX vectors: {len(RUNNABLE)} run, {len(SKIPPED)} skipped ({', '.join(v['protocol_name'] for v in SKIPPED)})")


@pytest.mark.parametrize("vector", _params())
def test_xx_vector(vector: dict[str, Any]) -> None:
    h = bytes.fromhex
    hash_name = vector["protocol_name"].split("_")[-1]
    init = NoiseHandshake(
        True,
        h(vector["init_prologue"]),
        h(vector["init_static"]),
        ephemeral_private=h(vector["init_ephemeral"]),
        hash_name=hash_name,
    )
    resp = NoiseHandshake(
        False,
        h(vector["resp_prologue"]),
        h(vector["resp_static"]),
        ephemeral_private=h(vector["resp_ephemeral"]),
        hash_name=hash_name,
    )
    messages = vector["messages"]
    assert len(messages) > HANDSHAKE_MESSAGES

    for i, msg in enumerate(messages[:HANDSHAKE_MESSAGES]):
        sender, receiver = (init, resp) if i % 2 == 0 else (resp, init)
        assert not sender.complete and not receiver.complete
        ciphertext = sender.write_message(h(msg["payload"]))
        assert ciphertext.hex() == msg["ciphertext"], f"handshake message {i}"
        assert receiver.read_message(ciphertext) == h(msg["payload"])

    assert init.complete and resp.complete
    assert init.handshake_hash.hex() == vector["handshake_hash"]
    assert resp.handshake_hash.hex() == vector["handshake_hash"]
    assert init.remote_static == resp.static_public
    assert resp.remote_static == init.static_public

    init_send, init_recv = init.split()
    resp_send, resp_recv = resp.split()
    for i, msg in enumerate(messages[HANDSHAKE_MESSAGES:], start=HANDSHAKE_MESSAGES):
        # Transport messages keep alternating: the responder speaks first after XX's third message.
        send, recv = (init_send, resp_recv) if i % 2 == 0 else (resp_send, init_recv)
        ciphertext = send.encrypt_with_ad(b"", h(msg["payload"]))
        assert ciphertext.hex() == msg["ciphertext"], f"transport message {i}"
        assert recv.decrypt_with_ad(b"", ciphertext) == h(msg["payload"])
