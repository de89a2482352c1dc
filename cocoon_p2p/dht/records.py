"""Signed, typed, expiring DHT records (DESIGN.md §5).

A record is published under a 32-byte key by one publisher (an ed25519 key). The
signature covers every field, so a storing peer cannot alter it; the sequence
number lets a publisher replace its own record, and the newer one wins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import CodecError
from ..identity import Identity, PeerId, verify_signature
from ..wire import codec
from ..wire.codec import BYTES32, BYTES64, U64, Field, Schema

RECORD_DOMAIN = "cocoon-p2p-record/1"
PEER_RECORD = "peer"
PROVIDER_RECORD = "provider"
MAX_TTL = 48 * 3600
CLOCK_SKEW = 300

_SCHEMA = Schema(
    "record",
    type=Field(str, max_len=32),
    key=BYTES32,
    publisher=BYTES32,
    seq=U64,
    expires=U64,
    value=Field(bytes, max_len=1 << 20),
    sig=BYTES64,
)
_PEER_VALUE = Schema("peer_value", addrs=Field(list, max_len=8))


class RecordRejected(CodecError):
    """A record failed validation: bad signature, wrong key, expired, too large, stale."""

    code = "record_rejected"


@dataclass(frozen=True)
class Record:
    type: str
    key: bytes
    publisher: bytes  # ed25519 public key
    seq: int
    expires: int  # Unix seconds
    value: bytes
    sig: bytes

    @property
    def publisher_id(self) -> PeerId:
        return PeerId.from_public_key(self.publisher)

    def signed_bytes(self) -> bytes:
        return _signed_bytes(self.type, self.key, self.publisher, self.seq, self.expires, self.value)

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "key": self.key,
            "publisher": self.publisher,
            "seq": self.seq,
            "expires": self.expires,
            "value": self.value,
            "sig": self.sig,
        }

    @classmethod
    def from_wire(cls, msg: Any) -> Record:
        return cls(**_SCHEMA.validate(msg))

    def encoded_size(self) -> int:
        return len(codec.pack(self.to_wire()))


def _signed_bytes(type_: str, key: bytes, publisher: bytes, seq: int, expires: int, value: bytes) -> bytes:
    return codec.pack([RECORD_DOMAIN, type_, key, publisher, seq, expires, value])


def sign_record(identity: Identity, type_: str, key: bytes, value: bytes, *, seq: int, expires: int) -> Record:
    sig = identity.sign(_signed_bytes(type_, key, identity.public_key, seq, expires, value))
    return Record(type_, key, identity.public_key, seq, expires, value, sig)


def peer_record_value(addresses: list[str]) -> bytes:
    return codec.pack({"addrs": addresses})


def make_peer_record(identity: Identity, addresses: list[str], *, seq: int, expires: int) -> Record:
    return sign_record(
        identity, PEER_RECORD, identity.peer_id.raw, peer_record_value(addresses), seq=seq, expires=expires
    )


def peer_record_addresses(record: Record) -> list[str]:
    return [a for a in _PEER_VALUE.validate(codec.unpack(record.value))["addrs"] if isinstance(a, str)]


#: Type-specific check of a record whose signature already verified.
ValueValidator = Callable[[Record], None]


def _validate_peer(record: Record) -> None:
    if record.key != record.publisher_id.raw:
        raise RecordRejected("a peer record's key must be its publisher's peer id")
    addrs = _PEER_VALUE.validate(codec.unpack(record.value, max_size=4096))["addrs"]
    if not addrs or not all(isinstance(a, str) and 0 < len(a) <= 64 for a in addrs):
        raise RecordRejected("a peer record lists 1-8 addresses of at most 64 characters")


def _validate_provider(record: Record) -> None:
    pass  # the market layer registers a stricter validator for offers


class RecordValidator:
    """Checks a record before it is stored or returned: every peer runs the same rules."""

    def __init__(self, *, max_size: int = 4096, max_ttl: int = MAX_TTL) -> None:
        self.max_size = max_size
        self.max_ttl = max_ttl
        self.by_type: dict[str, ValueValidator] = {PEER_RECORD: _validate_peer, PROVIDER_RECORD: _validate_provider}

    def register(self, type_: str, validator: ValueValidator) -> None:
        self.by_type[type_] = validator

    def validate(self, record: Record, now: float) -> None:
        check = self.by_type.get(record.type)
        if check is None:
            raise RecordRejected(f"unknown record type {record.type!r}")
        if record.encoded_size() > self.max_size:
            raise RecordRejected(f"record larger than {self.max_size} bytes")
        if record.expires <= now:
            raise RecordRejected("record has expired")
        if record.expires > now + self.max_ttl + CLOCK_SKEW:
            raise RecordRejected(f"record expiry is more than {self.max_ttl} s away")
        if not verify_signature(record.publisher, record.signed_bytes(), record.sig):
            raise RecordRejected("record signature does not verify")
        check(record)
