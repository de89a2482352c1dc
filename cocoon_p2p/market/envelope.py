"""Signed envelopes, freshness windows and replay memory shared by every market message.

Wire form of a signed market message (docs/PROTOCOL.md, market section)::

    {"t": kind, "body": bin(msgpack map), "sig": bin(64)}

``sig`` is ed25519 over ``msgpack([DOMAIN + kind, body])`` by the key named in
the body. Signing the body *bytes* rather than re-encoding fields means a
verifier never has to reproduce the signer's map ordering, and fields a newer
peer adds are still covered by the signature.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from ..errors import CodecError
from ..identity import Identity, verify_signature
from ..net import WallClock
from ..wire import codec
from ..wire.codec import BYTES64, Field, Schema
from .errors import MessageRejected

DOMAIN = "cocoon-p2p-market/1/"
MAX_BODY = 4096

_ENVELOPE = Schema("market_envelope", t=Field(str, max_len=16), body=Field(bytes, max_len=MAX_BODY), sig=BYTES64)


def now_ms(clock: WallClock) -> int:
    return int(clock.now() * 1000)


def signed_bytes(kind: str, body: bytes) -> bytes:
    return codec.pack([DOMAIN + kind, body])


def seal(identity: Identity, kind: str, fields: dict[str, Any]) -> bytes:
    """Encode ``fields`` as the body of a ``kind`` message signed by ``identity``."""
    body = codec.pack(fields)
    return codec.pack({"t": kind, "body": body, "sig": identity.sign(signed_bytes(kind, body))})


def unseal(raw: Any, kind: str, schema: Schema, key_field: str, *, max_size: int = MAX_BODY + 256) -> dict[str, Any]:
    """Decode and verify a ``kind`` message; raises only :class:`MessageRejected`."""
    if not isinstance(raw, bytes):
        raise MessageRejected("malformed", f"a {kind} must be a byte string")
    try:
        env = _ENVELOPE.validate(codec.unpack(raw, max_size=max_size))
        if env["t"] != kind:
            raise CodecError(f"expected a {kind}, got {env['t']!r}")
        fields = schema.validate(codec.unpack(env["body"], max_size=MAX_BODY))
    except CodecError as exc:
        raise MessageRejected("malformed", str(exc)) from None
    if not verify_signature(fields[key_field], signed_bytes(kind, env["body"]), env["sig"]):
        raise MessageRejected("bad_signature", f"{kind} signature does not verify")
    return fields


@dataclass(frozen=True)
class Timing:
    """How far expiries may sit from our clock.

    ``max_ttl_ms`` caps how far in the future an expiry may be: replay memory only
    has to hold an entry until the message expires, so this cap is what keeps it
    bounded. ``skew_ms`` tolerates peers whose clocks run a little behind or ahead.
    """

    max_ttl_ms: int = 120_000
    skew_ms: int = 2_000


def check_expiry(kind: str, expires_ms: int, now: int, timing: Timing) -> None:
    if expires_ms + timing.skew_ms <= now:
        raise MessageRejected("expired", f"{kind} expired {(now - expires_ms) / 1000:.1f} s ago")
    if expires_ms > now + timing.max_ttl_ms + timing.skew_ms:
        raise MessageRejected("too_far_ahead", f"{kind} expiry is more than {timing.max_ttl_ms} ms away")


class ReplayGuard:
    """Remembers message keys until the message they came from has expired.

    Once a message is past its expiry the freshness check rejects it anyway, so the
    entry can go. When full of live entries it refuses new ones (fail closed): a
    replay must never slip through because memory ran out.
    """

    def __init__(self, *, max_entries: int = 200_000, skew_ms: int = 2_000) -> None:
        self.max_entries = max_entries
        self.skew_ms = skew_ms
        self._until: dict[Hashable, int] = {}
        self._heap: list[tuple[int, int, Hashable]] = []
        self._counter = 0  # heap tie-break: keys need not be orderable

    def __len__(self) -> int:
        return len(self._until)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._until

    def prune(self, now: int) -> None:
        while self._heap and self._heap[0][0] + self.skew_ms < now:
            until, _, key = heapq.heappop(self._heap)
            if self._until.get(key) == until:
                del self._until[key]

    def add_all(self, keys: list[Hashable], expires_ms: int, now: int) -> None:
        """Record every key, or none of them when one was seen before."""
        self.prune(now)
        for key in keys:
            if key in self._until:
                raise MessageRejected("replayed", "this message (or its job id / nonce) was already seen")
        if len(self._until) + len(keys) > self.max_entries:
            raise MessageRejected("replayed", "replay memory is full; refusing until entries expire")
        for key in keys:
            self._until[key] = expires_ms
            self._counter += 1
            heapq.heappush(self._heap, (expires_ms, self._counter, key))


class Inbox:
    """Freshness + replay checks for one kind of message at one receiver."""

    def __init__(self, kind: str, clock: WallClock, timing: Timing, *, max_entries: int = 200_000) -> None:
        self.kind = kind
        self.clock = clock
        self.timing = timing
        self.guard = ReplayGuard(max_entries=max_entries, skew_ms=timing.skew_ms)

    def check_fresh(self, expires_ms: int) -> None:
        check_expiry(self.kind, expires_ms, now_ms(self.clock), self.timing)

    def admit(self, keys: list[Hashable], expires_ms: int) -> None:
        """Raise ``MessageRejected`` (expired / too_far_ahead / replayed) or remember ``keys``."""
        now = now_ms(self.clock)
        check_expiry(self.kind, expires_ms, now, self.timing)
        self.guard.add_all(keys, expires_ms, now)
