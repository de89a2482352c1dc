"""Bounded storage of validated records, keyed by (key, publisher)."""

from __future__ import annotations

import random
from collections import defaultdict

from .records import Record, RecordRejected


class RecordStore:
    """Keeps at most ``per_key`` publishers per key and ``total`` records in all.

    A full key keeps a uniform random sample of the publishers that offered it a
    record (reservoir sampling: the n-th newcomer gets in with probability
    ``per_key / n``, in place of a random holder). Keeping the newest instead would
    make all k holders of a popular key show readers the same few recent publishers,
    and gossip mesh discovery would then string subscribers along in join order.
    Expired records always make room first. When the whole store is full, the
    record closest to expiry goes: it is the one the network will lose soonest.
    """

    def __init__(self, *, per_key: int = 64, total: int = 50_000, rng: random.Random | None = None) -> None:
        self.per_key = per_key
        self.total = total
        self._rng = rng or random.Random()
        self._offered: dict[bytes, int] = {}  # publishers that offered a full key a record, per key
        self._by_key: dict[bytes, dict[bytes, Record]] = defaultdict(dict)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def put(self, record: Record, now: float) -> bool:
        """Store a validated record; False when an equal or newer one is already held, or when a
        full key leaves this publisher out of its sample."""
        slot = self._by_key[record.key]
        current = slot.get(record.publisher)
        if current is not None:
            if record.seq < current.seq:
                raise RecordRejected(f"stale sequence number {record.seq} < {current.seq}")
            if record.seq == current.seq:
                return False
            slot[record.publisher] = record
            return True
        if len(slot) >= self.per_key and not self._make_room(record.key, slot, now):
            return False
        if self._count >= self.total:
            self._evict_global(now)
        slot[record.publisher] = record
        self._count += 1
        return True

    def get(self, key: bytes, now: float) -> list[Record]:
        slot = self._by_key.get(key)
        if not slot:
            return []
        return [r for r in slot.values() if r.expires > now]

    def latest_seq(self, key: bytes, publisher: bytes) -> int | None:
        slot = self._by_key.get(key)
        record = slot.get(publisher) if slot else None
        return record.seq if record else None

    def expire(self, now: float) -> int:
        dropped = 0
        for key in list(self._by_key):
            slot = self._by_key[key]
            for publisher in [p for p, r in slot.items() if r.expires <= now]:
                del slot[publisher]
                dropped += 1
            if not slot:
                del self._by_key[key]
                self._offered.pop(key, None)
        self._count -= dropped
        return dropped

    def _make_room(self, key: bytes, slot: dict[bytes, Record], now: float) -> bool:
        """Free a place in a full key for a newcomer, or decide (by chance) to leave it out."""
        expired = [p for p, r in slot.items() if r.expires <= now]
        if expired:
            victim = expired[0]
        else:
            offered = self._offered[key] = self._offered.get(key, self.per_key) + 1
            if self._rng.random() * offered >= self.per_key:
                return False
            victim = self._rng.choice(sorted(slot))
        del slot[victim]
        self._count -= 1
        return True

    def _evict_global(self, now: float) -> None:
        self.expire(now)
        if self._count < self.total:
            return
        key, publisher = min(
            ((k, p) for k, slot in self._by_key.items() for p in slot),
            key=lambda kp: self._by_key[kp[0]][kp[1]].expires,
        )
        del self._by_key[key][publisher]
        if not self._by_key[key]:
            del self._by_key[key]
        self._count -= 1
