"""Ed25519 identities and the peer ids derived from them (DESIGN.md §4-§5)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import total_ordering

import nacl.exceptions
import nacl.signing

from ..errors import CodecError

PEER_ID_BYTES = 32


@total_ordering
@dataclass(frozen=True, slots=True)
class PeerId:
    """SHA-256 of an ed25519 public key; 256 bits of XOR keyspace.

    Printable form: 64 lowercase hex digits. ``short`` is the first 12 for logs.
    """

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != PEER_ID_BYTES:
            raise CodecError("a peer id is exactly 32 bytes")

    @classmethod
    def from_public_key(cls, public_key: bytes) -> PeerId:
        return cls(hashlib.sha256(public_key).digest())

    @classmethod
    def from_text(cls, text: str) -> PeerId:
        try:
            raw = bytes.fromhex(text.strip())
        except ValueError:
            raise CodecError(f"peer id {text!r} is not hex") from None
        return cls(raw)

    @property
    def as_int(self) -> int:
        return int.from_bytes(self.raw, "big")

    @property
    def short(self) -> str:
        return self.raw.hex()[:12]

    def __str__(self) -> str:
        return self.raw.hex()

    def __repr__(self) -> str:
        return f"PeerId({self.short}…)"

    def __lt__(self, other: PeerId) -> bool:
        return self.raw < other.raw


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid ed25519 signature; never raises on bad input."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False
    return True


class Identity:
    """A node's long-term ed25519 key pair."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError("an ed25519 seed is 32 bytes")
        self._signing_key = nacl.signing.SigningKey(seed)
        self.public_key: bytes = bytes(self._signing_key.verify_key)
        self.peer_id = PeerId.from_public_key(self.public_key)

    @classmethod
    def generate(cls) -> Identity:
        return cls(os.urandom(32))

    @property
    def seed(self) -> bytes:
        return bytes(self._signing_key)

    def sign(self, message: bytes) -> bytes:
        return self._signing_key.sign(message).signature

    def __repr__(self) -> str:
        return f"Identity({self.peer_id.short}…)"
