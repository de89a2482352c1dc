"""Counters that tests, benches and simulations read off a Gossip object."""

from __future__ import annotations

from collections import Counter

#: Counter names used by the router, per topic and in total:
#: published, received (every copy that arrived, duplicates included), delivered,
#: duplicates, forwarded (copies sent on), invalid, invalid.<reason>, ignored_graylisted,
#: rate_limited, unsubscribed (arrived for a topic we do not follow), delivery_dropped
#: (the application's channel was full), iwant_served.
#: Totals only: rpc_sent, rpc_failed, queue_dropped, ihave_sent, iwant_sent,
#: graft_sent, prune_sent, graft_received, prune_received, discoveries.


class GossipMetrics:
    def __init__(self) -> None:
        self.totals: Counter[str] = Counter()
        self.by_topic: dict[str, Counter[str]] = {}

    def inc(self, name: str, topic: str | None = None, n: int = 1) -> None:
        self.totals[name] += n
        if topic is not None:
            counter = self.by_topic.get(topic)
            if counter is None:
                counter = self.by_topic[topic] = Counter()
            counter[name] += n

    def get(self, name: str, topic: str | None = None) -> int:
        if topic is None:
            return self.totals[name]
        counter = self.by_topic.get(topic)
        return counter[name] if counter is not None else 0

    def snapshot(self) -> dict[str, int]:
        return dict(self.totals)

    def __getattr__(self, name: str) -> int:
        # ``metrics.duplicates`` reads a total; unknown names are zero, not errors.
        if name.startswith("_") or name in ("totals", "by_topic"):
            raise AttributeError(name)
        return self.totals[name]
