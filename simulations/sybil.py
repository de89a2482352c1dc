"""Misbehaving peers for the attacks scenario, built by subclassing/wrapping production code.

``SybilDht`` is the production ``Dht`` with its inbound ``find_node`` /
``find_value`` / ``store`` handlers replaced; pings are answered honestly, so a
Sybil stays in honest routing tables. Modes:

- ``others``: colluding eclipse — every reply lists the k Sybils closest to the
  target (the Sybils share their list), no records; stores are accepted and dropped;
- ``random``: replies list k contacts with random ids at addresses where nothing
  listens, no records; stores dropped;
- ``close``: like ``random`` but the fake ids are forged next to the target, so
  lookups spend their slots (and ``query_timeout``) on contacts that never answer;
- ``drop``: find and store requests are never answered (the caller times out).

``blackhole_gossip`` wraps a peer's ``gossip.rpc`` handler so that the messages in
every batch are dropped before the gossip layer sees them, while subscriptions and
GRAFT/PRUNE/IHAVE still work: a mesh member that forwards nothing.
"""

from __future__ import annotations

import heapq
import random
from typing import Any

import trio

from cocoon_p2p.dht import Dht
from cocoon_p2p.errors import RemoteError
from cocoon_p2p.identity import PeerId
from cocoon_p2p.rpc import CallContext

SYBIL_MODES = ("others", "random", "close", "drop")


class SybilDht(Dht):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mode = "others"
        self.colluders: list[tuple[int, bytes, str]] = []  # (id as int, raw id, address) of every Sybil
        self.dead_addresses: list[str] = []
        self.fake_rng = random.Random(0)

    def configure(
        self, mode: str, colluders: list[tuple[int, bytes, str]], dead: list[str], rng: random.Random
    ) -> None:
        if mode not in SYBIL_MODES:
            raise ValueError(f"sybil mode is one of {', '.join(SYBIL_MODES)}")
        self.mode, self.colluders, self.dead_addresses, self.fake_rng = mode, colluders, dead, rng
        if mode == "drop":
            # Inline handlers run in the connection's reader; a handler that never answers must not block it.
            for method in ("dht.find_node", "dht.find_value", "dht.store"):
                self.host.router.inline.discard(method)

    def _target(self, params: dict[str, Any]) -> bytes:
        target = params.get("target") if isinstance(params, dict) else None
        if not isinstance(target, bytes) or len(target) != 32:
            raise RemoteError("bad_request", "target must be 32 bytes")
        return target

    def _fake_nodes(self, target: bytes, requester: PeerId) -> list[dict[str, Any]]:
        k = self.config.k
        if self.mode == "others":
            key = int.from_bytes(target, "big")
            near = heapq.nsmallest(k + 1, self.colluders, key=lambda c: c[0] ^ key)
            return [{"id": raw, "addr": addr} for _, raw, addr in near if raw != requester.raw][:k]
        rng, nodes = self.fake_rng, []
        for _ in range(k):
            if self.mode == "close":
                fake = int.from_bytes(target, "big") ^ rng.getrandbits(200)
            else:
                fake = rng.getrandbits(256)
            nodes.append({"id": fake.to_bytes(32, "big"), "addr": rng.choice(self.dead_addresses)})
        return nodes

    async def _on_find_node(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        if self.mode == "drop":
            await trio.sleep_forever()
        target = self._target(params)
        self._observe(ctx, params)
        return {"nodes": self._fake_nodes(target, ctx.peer_id)}

    async def _on_find_value(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        if self.mode == "drop":
            await trio.sleep_forever()
        target = self._target(params)
        self._observe(ctx, params)
        return {"nodes": self._fake_nodes(target, ctx.peer_id), "records": []}

    async def _on_store(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        if self.mode == "drop":
            await trio.sleep_forever()
        return {}  # "stored"


def blackhole_gossip(host: Any, dropped: list[int]) -> None:
    """Drop every message arriving in ``gossip.rpc`` batches; control traffic passes."""
    from cocoon_p2p.gossip import RPC_METHOD

    handlers = host.router.unary_handlers
    inner = handlers[RPC_METHOD]

    async def swallow(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        if isinstance(params, dict) and params.get("msgs"):
            msgs = params["msgs"]
            dropped[0] += len(msgs) if isinstance(msgs, list) else 1
            params = {key: value for key, value in params.items() if key != "msgs"}
        return await inner(ctx, params)

    handlers[RPC_METHOD] = swallow
