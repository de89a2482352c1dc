"""XOR metric helpers over 256-bit ids (DESIGN.md §5)."""

from __future__ import annotations

import hashlib

from ..identity import PeerId

ID_BITS = 256


def distance(a: bytes, b: bytes) -> int:
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


def common_prefix_length(a: bytes, b: bytes) -> int:
    d = distance(a, b)
    return ID_BITS - d.bit_length()


def bucket_index(own: bytes, other: bytes) -> int:
    """Bucket ``i`` holds ids at distance in [2^i, 2^(i+1)); 255 is the far half."""
    d = distance(own, other)
    if d == 0:
        raise ValueError("an id has no bucket relative to itself")
    return d.bit_length() - 1


def model_key(model_id: str) -> bytes:
    """The DHT key under which offers for ``model_id`` are published."""
    return hashlib.sha256(b"cocoon-p2p/model/" + model_id.encode()).digest()


def peer_key(peer_id: PeerId) -> bytes:
    return peer_id.raw
