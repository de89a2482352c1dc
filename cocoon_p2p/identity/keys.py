"""Ed25519 identities and the peer ids derived from them (DESIGN.md §4-§5)."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
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
    # The id as an integer, for XOR distances: computed once, since routing and lookups
    # take it many times per contact. Not part of equality, hashing or repr.
    _int: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != PEER_ID_BYTES:
            raise CodecError("a peer id is exactly 32 bytes")
        object.__setattr__(self, "_int", int.from_bytes(self.raw, "big"))

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
        return self._int

    @property
    def short(self) -> str:
        return self.raw.hex()[:12]

    def __str__(self) -> str:
        return self.raw.hex()

    def __repr__(self) -> str:
        return f"PeerId({self.short}…)"

    def __lt__(self, other: PeerId) -> bool:
        return self.raw < other.raw


#: Triples that verified, when a simulator turned remembering on (``remember_verified``);
#: None in production, where every signature is checked every time.
_verified: set[tuple[bytes, bytes, bytes]] | None = None


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid ed25519 signature; never raises on bad input."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    triple = (public_key, message, signature)
    if _verified is not None and triple in _verified:
        return True
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False
    if _verified is not None:
        if len(_verified) >= _VERIFIED_MAX:
            _verified.clear()  # a bound, not an LRU: what is forgotten is just checked again
        _verified.add(triple)
    return True


_VERIFIED_MAX = 200_000


@contextlib.contextmanager
def remember_verified() -> Iterator[None]:
    """Within the block, a (key, message, signature) triple that verified once is not re-checked.

    For simulations only, where thousands of peers share one process: every Noise
    handshake re-verifies the same identity signature (its payload binds the identity
    to the process's static key), and each DHT record is verified by every peer that
    stores or fetches it. Verification is a pure function of the triple, so answers are
    unchanged; only the repeated ed25519 work is skipped. Failures are never remembered.
    """
    global _verified
    saved, _verified = _verified, set()
    try:
        yield
    finally:
        _verified = saved


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
