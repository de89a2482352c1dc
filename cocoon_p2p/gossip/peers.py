"""Per-peer state and the outbound queue that keeps one slow peer from stalling the rest.

Everything we send to a peer goes through its bounded queue; one task per peer
drains it, merges whatever piled up into a single ``gossip.rpc`` batch and waits
for the reply before sending the next. A peer that reads slowly therefore holds
only its own queue, and once that is full further items for it are dropped
(gossip repairs the loss through IHAVE/IWANT).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from ..errors import CocoonError, RemoteError
from ..identity import PeerId
from ..rpc import Connection, Host
from ..rpc.ratelimit import TokenBucket
from .caches import SeenCache
from .config import GossipConfig
from .metrics import GossipMetrics

log = logging.getLogger(__name__)

RPC_METHOD = "gossip.rpc"
#: Observes every batch before it leaves: (destination, batch).
OutboundHook = Callable[[PeerId, dict[str, Any]], None]

_LIST_FIELDS = ("subs", "msgs", "ids", "ihave", "iwant", "graft", "prune")
_BUSY = frozenset({"rate_limited", "too_many_streams"})  # the peer is alive, just loaded


class PeerState:
    def __init__(self, peer_id: PeerId, address: str | None, config: GossipConfig) -> None:
        self.peer_id = peer_id
        self.address = address
        self.topics: set[str] = set()
        self.backoff: dict[str, float] = {}  # topic -> trio time before which we do not graft
        self.bucket = TokenBucket(config.msg_rate, config.msg_burst)
        self.ihaves_this_heartbeat = 0
        self.failures = 0
        self.hello_conn: Connection | None = None
        # Ids of messages this peer sent us lately: it has them, so queued copies for it are dropped.
        self.has = SeenCache(config.heartbeat_interval * config.history_gossip, max_entries=10_000)
        self.in_flight = False
        self.sender_started = False
        self._send, self._receive = trio.open_memory_channel[dict[str, Any]](config.queue_size)

    def __repr__(self) -> str:
        return f"PeerState({self.peer_id.short}, topics={sorted(self.topics)})"

    def enqueue(self, item: dict[str, Any]) -> bool:
        try:
            self._send.send_nowait(item)
        except (trio.WouldBlock, trio.ClosedResourceError):
            return False
        return True

    @property
    def pending(self) -> int:
        return self._receive.statistics().current_buffer_used + int(self.in_flight)

    def in_backoff(self, topic: str, now: float) -> bool:
        return self.backoff.get(topic, 0.0) > now

    def close(self) -> None:
        self._send.close()


def _item_size(item: dict[str, Any]) -> int:
    size = 0
    for msg in item.get("msgs", ()):
        size += len(msg["data"]) + len(msg["topic"]) + 160
    size += 40 * len(item.get("iwant", ()))
    size += sum(40 * len(ids) for _, ids in item.get("ihave", ()))
    return size + 64


def _merge(batch: dict[str, Any], item: dict[str, Any]) -> None:
    for name in _LIST_FIELDS:
        values = item.get(name)
        if values:
            batch.setdefault(name, []).extend(values)


class Outbox:
    """Drains peers' queues onto their connections; one task per peer, in the owner's nursery."""

    def __init__(
        self,
        host: Host,
        config: GossipConfig,
        metrics: GossipMetrics,
        *,
        hello: Callable[[], dict[str, Any]],
        on_dead: Callable[[PeerId], None],
    ) -> None:
        self.host = host
        self.config = config
        self.metrics = metrics
        self.hooks: list[OutboundHook] = []
        self._hello = hello
        self._on_dead = on_dead

    def ensure_sender(self, state: PeerState, nursery: trio.Nursery | None) -> None:
        if not state.sender_started and nursery is not None:
            state.sender_started = True
            nursery.start_soon(self._run, state)

    async def _run(self, state: PeerState) -> None:
        carry: dict[str, Any] | None = None
        budget = self.config.max_batch_bytes
        while True:
            if carry is None:
                try:
                    carry = await state._receive.receive()
                except trio.EndOfChannel:
                    return
            batch: dict[str, Any] = {}
            size = 0
            while carry is not None:
                item_size = _item_size(carry)
                if batch and size + item_size > budget:
                    break  # the carried item opens the next batch
                _merge(batch, carry)
                size += item_size
                try:
                    carry = state._receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    carry = None
            state.in_flight = True
            try:
                await self._transmit(state, batch)
            finally:
                state.in_flight = False

    async def _connection(self, state: PeerState) -> Connection:
        conn = self.host.connection_for(state.peer_id)
        if conn is not None:
            return conn
        if state.address is None:
            raise CocoonError("no connection and no known address")
        with trio.fail_after(self.config.connect_timeout):
            return await self.host.connect(state.address, expected=state.peer_id)

    def _drop_known(self, state: PeerState, batch: dict[str, Any]) -> None:
        """Leave out messages the peer sent us while they waited in its queue."""
        ids = batch.pop("ids", None)
        if not ids:
            return
        keep = [wire for wire, msg_id in zip(batch["msgs"], ids, strict=True) if msg_id not in state.has]
        skipped = len(batch["msgs"]) - len(keep)
        if skipped:
            self.metrics.inc("forward_skipped", n=skipped)
        if keep:
            batch["msgs"] = keep
        else:
            del batch["msgs"]
        for wire in keep:
            self.metrics.inc("forwarded", wire["topic"])

    async def _transmit(self, state: PeerState, batch: dict[str, Any]) -> None:
        self._drop_known(state, batch)
        if not batch and state.hello_conn is not None and state.hello_conn is self.host.connection_for(state.peer_id):
            return  # everything queued turned out to be known to the peer
        try:
            conn = await self._connection(state)
            if conn is not state.hello_conn:
                # First batch on this connection: our full subscription list replaces any deltas.
                batch.update(self._hello())
            elif not batch:
                return
            for hook in self.hooks:
                hook(state.peer_id, batch)
            self.metrics.inc("rpc_sent")
            await conn.call(RPC_METHOD, batch, timeout=self.config.rpc_timeout)
        except RemoteError as exc:
            self.metrics.inc("rpc_failed")
            if exc.code in _BUSY:
                return
            self._failed(state, exc)
        except (CocoonError, trio.TooSlowError, OSError) as exc:
            self.metrics.inc("rpc_failed")
            self._failed(state, exc)
        else:
            state.failures = 0
            state.hello_conn = conn

    def _failed(self, state: PeerState, exc: BaseException) -> None:
        state.failures += 1
        log.debug("gossip to %s failed (%d): %s", state.peer_id.short, state.failures, exc)
        if state.failures >= self.config.max_send_failures:
            self._on_dead(state.peer_id)
