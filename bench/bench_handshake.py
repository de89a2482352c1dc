"""Noise XX handshakes per second and transport throughput, ours vs ``noiseprotocol``.

Both implementations run both ends in this process, with the same static keys
(a node reuses its per-process static key for every handshake) and the same
payload sizes, in alternating rounds so machine noise hits both alike. Run with
``python -m bench.bench_handshake``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from noise.connection import Keypair, NoiseConnection

from cocoon_p2p.wire.noise import NoiseHandshake

PROLOGUE = b"cocoon-p2p/1"
NAME = b"Noise_XX_25519_ChaChaPoly_SHA256"
# Roughly what secure.py puts in messages 2 and 3: an identity key plus a signature, msgpacked.
IDENTITY_PAYLOAD = os.urandom(110)
FRAME = 65519  # largest transport plaintext (65535 minus the tag)


def _ours_handshake(init_key: bytes, resp_key: bytes) -> None:
    init = NoiseHandshake(True, PROLOGUE, init_key)
    resp = NoiseHandshake(False, PROLOGUE, resp_key)
    resp.read_message(init.write_message())
    init.read_message(resp.write_message(IDENTITY_PAYLOAD))
    resp.read_message(init.write_message(IDENTITY_PAYLOAD))
    init.split()
    resp.split()


def _their_conn(initiator: bool, key: bytes) -> NoiseConnection:
    conn = NoiseConnection.from_name(NAME)
    if initiator:
        conn.set_as_initiator()
    else:
        conn.set_as_responder()
    conn.set_keypair_from_private_bytes(Keypair.STATIC, key)
    conn.set_prologue(PROLOGUE)
    conn.start_handshake()
    return conn


def _their_handshake(init_key: bytes, resp_key: bytes) -> None:
    init = _their_conn(True, init_key)
    resp = _their_conn(False, resp_key)
    resp.read_message(init.write_message())
    init.read_message(resp.write_message(IDENTITY_PAYLOAD))
    resp.read_message(init.write_message(IDENTITY_PAYLOAD))
    if not (init.handshake_finished and resp.handshake_finished):
        raise RuntimeError("noiseprotocol handshake did not finish")


def _rate(fn: Callable[[], None], count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        fn()
    return count / (time.perf_counter() - start)


def _best_rates(fns: dict[str, Callable[[], None]], count: int, rounds: int) -> dict[str, float]:
    best = dict.fromkeys(fns, 0.0)
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = max(best[name], _rate(fn, count))
    return best


def _transport_pairs() -> tuple[tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]], ...]:
    init = NoiseHandshake(True, PROLOGUE)
    resp = NoiseHandshake(False, PROLOGUE)
    resp.read_message(init.write_message())
    init.read_message(resp.write_message())
    resp.read_message(init.write_message())
    (send, _), (_, recv) = init.split(), resp.split()

    t_init, t_resp = _their_conn(True, os.urandom(32)), _their_conn(False, os.urandom(32))
    t_resp.read_message(t_init.write_message())
    t_init.read_message(t_resp.write_message())
    t_resp.read_message(t_init.write_message())

    def ours_enc(data: bytes) -> bytes:
        return send.encrypt_with_ad(b"", data)

    def ours_dec(data: bytes) -> bytes:
        return recv.decrypt_with_ad(b"", data)

    return (ours_enc, ours_dec), (t_init.encrypt, t_resp.decrypt)


def run(handshakes: int = 300, rounds: int = 5, frames: int = 200) -> dict:
    """Measure everything once; returns the figures the report prints."""
    init_key, resp_key = os.urandom(32), os.urandom(32)
    fns = {
        "ours": lambda: _ours_handshake(init_key, resp_key),
        "noiseprotocol": lambda: _their_handshake(init_key, resp_key),
    }
    for fn in fns.values():  # warm caches and imports outside the timing
        fn()
    hs = _best_rates(fns, handshakes, rounds)

    (ours_enc, ours_dec), (their_enc, their_dec) = _transport_pairs()
    frame = os.urandom(FRAME)
    small = os.urandom(64)

    def ours_big() -> None:
        ours_dec(ours_enc(frame))

    def theirs_big() -> None:
        their_dec(their_enc(frame))

    def ours_small() -> None:
        ours_dec(ours_enc(small))

    def theirs_small() -> None:
        their_dec(their_enc(small))

    big = _best_rates({"ours": ours_big, "noiseprotocol": theirs_big}, frames, rounds)
    tiny = _best_rates({"ours": ours_small, "noiseprotocol": theirs_small}, frames * 20, rounds)
    mib = FRAME / (1 << 20)
    return {
        "handshakes_per_s_ours": hs["ours"],
        "handshakes_per_s_noiseprotocol": hs["noiseprotocol"],
        "handshake_ratio": hs["ours"] / hs["noiseprotocol"],
        "transport_65519_mib_per_s_ours": big["ours"] * mib,
        "transport_65519_mib_per_s_noiseprotocol": big["noiseprotocol"] * mib,
        "transport_65519_ratio": big["ours"] / big["noiseprotocol"],
        "transport_64b_frames_per_s_ours": tiny["ours"],
        "transport_64b_frames_per_s_noiseprotocol": tiny["noiseprotocol"],
        "transport_64b_ratio": tiny["ours"] / tiny["noiseprotocol"],
    }


def main() -> None:
    r = run()
    print("Noise_XX_25519_ChaChaPoly_SHA256, both ends in one process (best of rounds)")
    print(
        f"  handshakes/s      ours {r['handshakes_per_s_ours']:9.0f}   noiseprotocol "
        f"{r['handshakes_per_s_noiseprotocol']:9.0f}   ratio {r['handshake_ratio']:.2f}x"
    )
    print(
        f"  65519-B frames    ours {r['transport_65519_mib_per_s_ours']:7.1f} MiB/s  noiseprotocol "
        f"{r['transport_65519_mib_per_s_noiseprotocol']:7.1f} MiB/s  ratio {r['transport_65519_ratio']:.2f}x"
        "  (encrypt+decrypt)"
    )
    print(
        f"  64-B frames       ours {r['transport_64b_frames_per_s_ours']:9.0f}/s noiseprotocol "
        f"{r['transport_64b_frames_per_s_noiseprotocol']:9.0f}/s ratio {r['transport_64b_ratio']:.2f}x"
        "  (encrypt+decrypt)"
    )


if __name__ == "__main__":
    main()
