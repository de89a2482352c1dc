"""gossipsub-like pub/sub over the RPC layer (DESIGN.md §6).

One RPC method, ``gossip.rpc``, carries a batch: subscription changes, signed
messages and control (GRAFT, PRUNE, IHAVE, IWANT). Each subscribed topic keeps a
mesh of about ``d`` peers that receive every message in full; a heartbeat keeps
the mesh between ``d_lo`` and ``d_hi`` and advertises recent message ids to a few
peers outside it, who fetch what they missed. Subscribers announce themselves in
the DHT under ``topic_key(topic)``, which is where mesh and fanout candidates come
from; peers also learn each other's subscriptions from the batches they exchange.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ..dht import Dht
from ..identity import PeerId
from ..net import WallClock, split_address
from ..rpc import Host
from . import discovery
from .caches import MessageCache, SeenCache
from .config import GossipConfig
from .inbound import InboundMixin
from .mesh import pick
from .message import GossipMessage, MessageCodec, MessageRejected, sign_message
from .metrics import GossipMetrics
from .peers import RPC_METHOD, OutboundHook, Outbox, PeerState
from .score import Scoreboard
from .upkeep import UpkeepMixin

log = logging.getLogger(__name__)

#: A topic validator: False or an exception rejects the message (and penalises its sender).
Validator = Callable[[GossipMessage], bool]


class Gossip(InboundMixin, UpkeepMixin):
    def __init__(
        self,
        host: Host,
        dht: Dht,
        clock: WallClock,
        rng: random.Random,
        config: GossipConfig | None = None,
    ) -> None:
        self.host = host
        self.dht = dht
        self.clock = clock
        self.rng = rng
        self.config = config = config or GossipConfig()
        self.peer_id = host.peer_id
        self.metrics = GossipMetrics()
        self.scores = Scoreboard(config.score)
        self.codec = MessageCodec(
            max_size=host.limits.max_gossip,
            max_topic_len=config.max_topic_len,
            max_age=config.max_message_age,
            max_skew=config.max_clock_skew,
        )
        self.seen = SeenCache(config.seen_ttl)
        self.rejected = SeenCache(config.seen_ttl)
        self.requested = SeenCache(config.heartbeat_interval * config.history_gossip)
        self.mcache = MessageCache(config.history_length, config.history_gossip)
        self.peers: dict[PeerId, PeerState] = {}
        self.mesh: dict[str, set[PeerId]] = {}  # one entry per subscribed topic
        self.fanout: dict[str, set[PeerId]] = {}
        self.heartbeats = 0
        self._fanout_used: dict[str, float] = {}
        self._subscribers: dict[str, list[trio.MemorySendChannel[GossipMessage]]] = {}
        self._validators: dict[str, list[Validator]] = {}
        self._last_discovery: dict[str, float] = {}
        self._discovering: set[str] = set()
        self._seqno = 0
        self._last_heartbeat: float | None = None
        self._nursery: trio.Nursery | None = None
        self._deferred: list[Callable[[], Awaitable[None]]] = []
        self.outbox = Outbox(host, config, self.metrics, hello=self._hello, on_dead=self._forget)
        discovery.register_topic_records(dht.validator)
        host.router.unary(RPC_METHOD, self._on_rpc)

    # --- lifecycle -------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._heartbeat_loop)
            for state in self.peers.values():
                if state.pending:
                    self.outbox.ensure_sender(state, nursery)
            for job in self._deferred:
                nursery.start_soon(job)
            self._deferred.clear()
            task_status.started()

    def _spawn(self, job: Callable[[], Awaitable[None]]) -> None:
        if self._nursery is None:
            self._deferred.append(job)
        else:
            self._nursery.start_soon(job)

    @property
    def on_outbound(self) -> list[OutboundHook]:
        """Callbacks ``(peer_id, batch)`` run for every batch before it is sent."""
        return self.outbox.hooks

    @property
    def pending_sends(self) -> int:
        """Batches queued or in flight to any peer (0 means we have nothing left to say)."""
        return sum(state.pending for state in self.peers.values())

    # --- public API ------------------------------------------------------------
    def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[GossipMessage]:
        """Follow ``topic``: join its mesh, announce it in the DHT, and receive its messages.

        Each call returns its own channel; closing every channel of a topic
        unsubscribes. Our own publications on the topic are delivered too.
        """
        self._check_topic(topic)
        send, receive = trio.open_memory_channel[GossipMessage](self.config.subscription_buffer)
        self._subscribers.setdefault(topic, []).append(send)
        if topic not in self.mesh:
            self._join(topic)
        return receive

    def unsubscribe(self, topic: str) -> None:
        for send in self._subscribers.pop(topic, []):
            send.close()
        mesh = self.mesh.pop(topic, None)
        if mesh is None:
            return
        for pid in mesh:
            self._prune(pid, topic, backoff=self.config.prune_backoff)
        self._broadcast({"subs": [[topic, False]]})

        async def withdraw() -> None:
            await discovery.withdraw(self.dht, topic)

        self._spawn(withdraw)

    def add_validator(self, topic: str, fn: Validator) -> None:
        """Run ``fn`` on every message of ``topic`` before delivery and before forwarding."""
        self._validators.setdefault(topic, []).append(fn)

    async def publish(self, topic: str, data: bytes) -> bytes:
        """Sign and send ``data`` on ``topic``; returns the message id.

        Raises ``MessageRejected`` when the message is too large or a local
        validator refuses it. Works without a subscription (through fanout peers).
        """
        self._check_topic(topic)
        if not isinstance(data, bytes):
            raise TypeError("gossip data is bytes")
        if len(data) > self.host.limits.max_gossip:
            raise MessageRejected("oversized", f"{len(data)} bytes")
        now_ms = int(self.clock.now() * 1000)
        self._seqno = max(self._seqno + 1, now_ms)
        wire = sign_message(self.host.identity, topic, data, seqno=self._seqno, ts_ms=now_ms)
        decoded = self.codec.decode(wire)
        msg = decoded.to_message(None)
        self._run_validators(msg)
        now = trio.current_time()
        self.seen.add(decoded.msg_id, now)
        self.mcache.put(decoded.msg_id, topic, decoded.wire)
        self.metrics.inc("published", topic)
        if topic in self.mesh:
            self._deliver(topic, msg)
        targets = await self._publish_targets(topic)
        self._forward(topic, decoded.msg_id, decoded.relayed(), targets=targets, exclude=set())
        return decoded.msg_id

    def mesh_peers(self, topic: str) -> set[PeerId]:
        return set(self.mesh.get(topic, ()))

    def known_subscribers(self, topic: str) -> set[PeerId]:
        return {pid for pid, state in self.peers.items() if topic in state.topics}

    # --- helpers shared with the inbound handlers --------------------------------
    def _check_topic(self, topic: str) -> None:
        if not isinstance(topic, str) or not 0 < len(topic) <= self.config.max_topic_len:
            raise ValueError(f"a topic is a non-empty string of at most {self.config.max_topic_len} characters")

    def _run_validators(self, msg: GossipMessage) -> None:
        for fn in self._validators.get(msg.topic, ()):
            try:
                ok = fn(msg)
            except Exception as exc:
                raise MessageRejected("validator", f"{type(exc).__name__}: {exc}") from None
            if not ok:
                raise MessageRejected("validator")

    def _learn(self, pid: PeerId, address: str | None) -> PeerState | None:
        if pid == self.peer_id:
            return None
        state = self.peers.get(pid)
        if state is None:
            state = self.peers[pid] = PeerState(pid, address, self.config)
        elif address is not None:
            state.address = address
        return state

    def _forget(self, pid: PeerId) -> None:
        """A peer stopped answering: drop its state (its score stays)."""
        state = self.peers.pop(pid, None)
        if state is not None:
            state.close()
        self._drop_from_meshes(pid, notify=False)

    def _drop_from_meshes(self, pid: PeerId, *, notify: bool) -> None:
        for topic, mesh in self.mesh.items():
            if pid in mesh:
                mesh.discard(pid)
                if notify:
                    self._prune(pid, topic, backoff=self.config.prune_backoff)
        for fan in self.fanout.values():
            fan.discard(pid)

    def _send(self, pid: PeerId, item: dict[str, Any]) -> bool:
        state = self.peers.get(pid)
        if state is None or self.scores.graylisted(pid):
            return False
        if not state.enqueue(item):
            self.metrics.inc("queue_dropped")
            return False
        self.outbox.ensure_sender(state, self._nursery)
        return True

    def _broadcast(self, item: dict[str, Any]) -> None:
        """To every peer that already has our subscription list (the others get it in full)."""
        for pid, state in self.peers.items():
            if state.hello_conn is not None:
                self._send(pid, item)

    def _hello(self) -> dict[str, Any]:
        _, port = split_address(self.dht.my_address) if self.dht.my_address else ("", 0)
        return {"hello": True, "subs": [[topic, True] for topic in self.mesh], "port": port}

    def _prune(self, pid: PeerId, topic: str, *, backoff: float, px: bool = False) -> None:
        """Tell ``pid`` it left our mesh; with ``px``, name other subscribers it could graft instead.

        Peer exchange matters because the DHT mostly returns recent subscribers: without it a
        mesh links peers that joined at about the same time and its diameter grows with the swarm.
        """
        state = self.peers.get(pid)
        if state is not None and backoff > 0:
            state.backoff[topic] = trio.current_time() + backoff
        entry: list[Any] = [topic, backoff]
        if px:
            others = [
                p for p in self._subscribers_of(topic, self.scores.meshable) if p != pid and self.peers[p].address
            ]
            entry.append([[p.raw, self.peers[p].address] for p in pick(others, self.config.prune_peers, self.rng)])
        if self._send(pid, {"prune": [entry]}):
            self.metrics.inc("prune_sent")

    def _connected(self, pid: PeerId) -> bool:
        return self.host.connection_for(pid) is not None

    def _graft(self, pid: PeerId, topic: str) -> None:
        if self._send(pid, {"graft": [topic]}):
            self.metrics.inc("graft_sent")

    def _deliver(self, topic: str, msg: GossipMessage) -> None:
        senders = self._subscribers.get(topic, [])
        for send in list(senders):
            try:
                send.send_nowait(msg)
            except trio.WouldBlock:
                self.metrics.inc("delivery_dropped", topic)
                continue
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                senders.remove(send)
                continue
            self.metrics.inc("delivered", topic)
        if not senders and topic in self.mesh:
            self.unsubscribe(topic)  # the application closed every channel

    def _forward(
        self,
        topic: str,
        msg_id: bytes,
        wire: dict[str, Any],
        *,
        exclude: set[PeerId],
        targets: set[PeerId] | None = None,
    ) -> None:
        item = {"msgs": [wire], "ids": [msg_id]}
        for pid in sorted(targets if targets is not None else self.mesh.get(topic, ()), key=lambda p: p.raw):
            if pid not in exclude:
                self._send(pid, item)
