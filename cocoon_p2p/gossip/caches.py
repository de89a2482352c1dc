"""The seen-cache (dedup) and the message cache that answers IWANT."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class SeenCache:
    """Message ids remembered for ``ttl`` seconds of trio time, at most ``max_entries``.

    Entries go in with the current time and one fixed TTL, so insertion order is
    expiry order and an ordered dict expires from the front in O(expired).
    """

    def __init__(self, ttl: float, *, max_entries: int = 1_000_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._expiry: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def __contains__(self, msg_id: bytes) -> bool:
        return msg_id in self._expiry

    def add(self, msg_id: bytes, now: float) -> bool:
        """Remember ``msg_id``; False when it was already known (not refreshed: a replay must not extend it)."""
        if msg_id in self._expiry:
            return False
        self._expiry[msg_id] = now + self.ttl
        while len(self._expiry) > self.max_entries:
            self._expiry.popitem(last=False)
        return True

    def expire(self, now: float) -> int:
        dropped = 0
        while self._expiry:
            msg_id, deadline = next(iter(self._expiry.items()))
            if deadline > now:
                break
            del self._expiry[msg_id]
            dropped += 1
        return dropped


class MessageCache:
    """Recent messages by heartbeat window: ``gossip`` windows advertised, ``length`` kept."""

    def __init__(self, length: int, gossip: int) -> None:
        self.length = length
        self.gossip = gossip
        self._windows: list[list[tuple[bytes, str]]] = [[]]
        self._messages: dict[bytes, dict[str, Any]] = {}
        self._served: dict[bytes, dict[Any, int]] = {}

    def __contains__(self, msg_id: bytes) -> bool:
        return msg_id in self._messages

    def put(self, msg_id: bytes, topic: str, wire: dict[str, Any]) -> None:
        if msg_id in self._messages:
            return
        self._messages[msg_id] = wire
        self._windows[0].append((msg_id, topic))

    def get(self, msg_id: bytes) -> dict[str, Any] | None:
        return self._messages.get(msg_id)

    def serve(self, msg_id: bytes, peer: Any, limit: int) -> dict[str, Any] | None:
        """The message for an IWANT, unless this peer already asked ``limit`` times."""
        wire = self._messages.get(msg_id)
        if wire is None:
            return None
        counts = self._served.setdefault(msg_id, {})
        if counts.get(peer, 0) >= limit:
            return None
        counts[peer] = counts.get(peer, 0) + 1
        return wire

    def gossip_ids(self, topic: str) -> list[bytes]:
        return [mid for window in self._windows[: self.gossip] for mid, t in window if t == topic]

    def topics(self) -> set[str]:
        return {t for window in self._windows[: self.gossip] for _, t in window}

    def shift(self) -> None:
        """Start a new heartbeat window, forgetting the oldest."""
        self._windows.insert(0, [])
        while len(self._windows) > self.length:
            for msg_id, _ in self._windows.pop():
                self._messages.pop(msg_id, None)
                self._served.pop(msg_id, None)
