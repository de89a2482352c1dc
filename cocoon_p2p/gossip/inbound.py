"""Handling one ``gossip.rpc`` batch from a peer (mixed into :class:`Gossip`).

The handler never awaits: a batch is applied atomically with respect to the
other tasks, and anything we owe peers in return goes through their outbound
queues. The sender's identity is the Noise session's peer id, never a field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from ..errors import CodecError, ConfigError, RemoteError
from ..identity import PeerId
from ..net import join_address, split_address
from ..rpc import CallContext
from ..wire.codec import BYTES32, Field, Schema
from .message import MAX_HOPS, MessageRejected

if TYPE_CHECKING:
    from .service import Gossip

_BATCH = Schema(
    "gossip_rpc",
    hello=Field(bool, optional=True),
    port=Field(int, min_value=0, max_value=65535, optional=True),
    subs=Field(list, max_len=1024, optional=True),
    msgs=Field(list, max_len=4096, optional=True),
    ihave=Field(list, max_len=256, optional=True),
    iwant=Field(list, max_len=5000, optional=True),
    graft=Field(list, max_len=1024, optional=True),
    prune=Field(list, max_len=1024, optional=True),
)
_MAX_BACKOFF = 3600.0
# Rejections that stay rejections: remembering them spares the signature check on repeats.
_STICKY = frozenset({"bad_signature", "stale", "validator"})


def relayed(wire: dict[str, Any]) -> dict[str, Any]:
    return {**wire, "hops": min((wire.get("hops") or 0) + 1, MAX_HOPS)}


def _topic(value: Any, max_len: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= max_len:
        raise CodecError("a topic is a non-empty string")
    return value


class InboundMixin:
    async def _on_rpc(self: Gossip, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        pid = ctx.peer_id
        if self.scores.graylisted(pid):
            msgs = params.get("msgs")
            self.metrics.inc("ignored_graylisted", n=len(msgs) if isinstance(msgs, list) else 1)
            return {}
        try:
            batch = _BATCH.validate(params)
        except CodecError as exc:
            self.scores.misbehaved(pid)
            raise RemoteError("bad_request", str(exc)) from None
        state = self._learn(pid, self._address_of(ctx, batch["port"]))
        if state is None:
            return {}
        try:
            self._apply_subscriptions(pid, batch)
            for raw in batch["msgs"] or ():
                if self.scores.graylisted(pid):
                    self.metrics.inc("ignored_graylisted")
                    continue
                self._handle_message(pid, raw)
            for raw in batch["graft"] or ():
                self._handle_graft(pid, _topic(raw, self.config.max_topic_len))
            for raw in batch["prune"] or ():
                self._handle_prune(pid, raw)
            for raw in batch["ihave"] or ():
                self._handle_ihave(pid, raw)
            if batch["iwant"]:
                self._handle_iwant(pid, batch["iwant"])
        except CodecError as exc:
            self.scores.misbehaved(pid)
            raise RemoteError("bad_request", str(exc)) from None
        return {}

    def _address_of(self: Gossip, ctx: CallContext, port: int | None) -> str | None:
        if not port:
            return None
        try:
            host, _ = split_address(ctx.remote_address)
        except ConfigError:
            return None
        return join_address(host, port)

    # --- subscriptions -------------------------------------------------------
    def _apply_subscriptions(self: Gossip, pid: PeerId, batch: dict[str, Any]) -> None:
        state = self.peers[pid]
        changes: list[tuple[str, bool]] = []
        for item in batch["subs"] or ():
            if not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], bool):
                raise CodecError("a subscription is [topic, subscribed]")
            changes.append((_topic(item[0], self.config.max_topic_len), item[1]))
        if batch["hello"]:
            # A full list: whatever it leaves out, the peer does not follow (any more).
            state.topics = {topic for topic, on in changes if on}
            for topic, mesh in self.mesh.items():
                if topic not in state.topics:
                    mesh.discard(pid)
            if state.hello_conn is None or state.hello_conn is not self.host.connection_for(pid):
                # Tell it ours too, and re-graft where it is in our mesh: it may have restarted.
                grafts = [t for t, mesh in self.mesh.items() if pid in mesh]
                self._send(pid, {"graft": grafts} if grafts else {})
            return
        for topic, on in changes:
            if on:
                state.topics.add(topic)
            else:
                state.topics.discard(topic)
                if topic in self.mesh:
                    self.mesh[topic].discard(pid)

    # --- messages ------------------------------------------------------------
    def _handle_message(self: Gossip, pid: PeerId, raw: Any) -> None:
        now = trio.current_time()
        if not self.peers[pid].bucket.take(now):
            self.scores.excess(pid)
            self.metrics.inc("rate_limited")
            return
        try:
            decoded = self.codec.decode(raw)
        except MessageRejected as exc:
            self._reject(pid, None, exc)
            return
        self.peers[pid].has.add(decoded.msg_id, now)
        topic = decoded.topic
        followed = topic if topic in self.mesh else None  # per-topic counters only for our topics
        self.metrics.inc("received", followed)
        if decoded.msg_id in self.seen:
            self.metrics.inc("duplicates", followed)
            return
        if followed is None:
            self.metrics.inc("unsubscribed")
            return
        if decoded.msg_id in self.rejected:
            self._reject(pid, topic, MessageRejected("known_invalid"))
            return
        try:
            self.codec.check_fresh(decoded, self.clock.now())
            self.codec.check_signature(decoded)
            msg = decoded.to_message(pid)
            self._run_validators(msg)
        except MessageRejected as exc:
            if exc.reason in _STICKY:
                self.rejected.add(decoded.msg_id, now)
            self._reject(pid, topic, exc)
            return
        self.seen.add(decoded.msg_id, now)
        self.mcache.put(decoded.msg_id, topic, decoded.wire)
        self.scores.first_delivery(pid)
        self._deliver(topic, msg)
        self._forward(topic, decoded.msg_id, decoded.relayed(), exclude={pid, msg.origin})

    def _reject(self: Gossip, pid: PeerId, topic: str | None, exc: MessageRejected) -> None:
        self.metrics.inc("invalid", topic)
        self.metrics.inc(f"invalid.{exc.reason}", topic)
        self.scores.invalid(pid)
        if not self.scores.meshable(pid):
            self._drop_from_meshes(pid, notify=not self.scores.graylisted(pid))

    # --- control -------------------------------------------------------------
    def _handle_graft(self: Gossip, pid: PeerId, topic: str) -> None:
        self.metrics.inc("graft_received")
        state = self.peers[pid]
        mesh = self.mesh.get(topic)
        if mesh is None:
            # It believed a stale announcement (the DHT record outlives an unsubscribe): correct it.
            state.topics.discard(topic)
            self._prune(pid, topic, backoff=0.0)
            self._send(pid, {"subs": [[topic, False]]})
            return
        state.topics.add(topic)
        if pid in mesh:
            return
        # Accepted even beyond d_hi, as in gossipsub: the next heartbeat shrinks the mesh
        # back to d, and that shrinking is what keeps the average degree near d.
        if not self.scores.meshable(pid) or state.in_backoff(topic, trio.current_time()):
            self._prune(pid, topic, backoff=self.config.prune_backoff)
            return
        mesh.add(pid)

    def _handle_prune(self: Gossip, pid: PeerId, raw: Any) -> None:
        if not isinstance(raw, list) or len(raw) not in (2, 3) or type(raw[1]) not in (int, float):
            raise CodecError("a prune is [topic, backoff seconds, peers?]")
        topic = _topic(raw[0], self.config.max_topic_len)
        self.metrics.inc("prune_received")
        backoff = min(max(float(raw[1]), 0.0), _MAX_BACKOFF)
        if topic in self.mesh:
            self.mesh[topic].discard(pid)
        self.peers[pid].backoff[topic] = trio.current_time() + backoff
        if len(raw) == 3 and topic in self.mesh and self.scores.meshable(pid):
            self._accept_px(topic, raw[2])

    def _accept_px(self: Gossip, topic: str, offered: Any) -> None:
        """Candidates named in a PRUNE: hints only, each still has to answer a GRAFT under its own key."""
        if not isinstance(offered, list):
            raise CodecError("prune peers are [[peer id, address]]")
        for item in offered[: self.config.prune_peers]:
            if (
                not isinstance(item, list)
                or len(item) != 2
                or not isinstance(item[0], bytes)
                or not isinstance(item[1], str)
                or not 0 < len(item[1]) <= 64
            ):
                raise CodecError("prune peers are [[peer id, address]]")
            peer = PeerId(item[0])
            if peer == self.peer_id or (peer not in self.peers and len(self.peers) >= self.config.max_known_peers):
                continue
            known = peer in self.peers
            state = self._learn(peer, None)
            if state is not None:
                if not known or state.address is None:
                    state.address = item[1]  # never lets a stranger re-point a peer we already know
                state.topics.add(topic)

    def _handle_ihave(self: Gossip, pid: PeerId, raw: Any) -> None:
        if not isinstance(raw, list) or len(raw) != 2 or not isinstance(raw[1], list):
            raise CodecError("an ihave is [topic, [message ids]]")
        topic = _topic(raw[0], self.config.max_topic_len)
        state = self.peers[pid]
        state.ihaves_this_heartbeat += 1
        if (
            topic not in self.mesh
            or not self.scores.gossipable(pid)
            or state.ihaves_this_heartbeat > self.config.max_ihave_messages
        ):
            return
        now = trio.current_time()
        want = []
        for msg_id in raw[1][: self.config.max_ihave_length]:
            if not isinstance(msg_id, bytes) or len(msg_id) != BYTES32.exact_len:
                raise CodecError("a message id is 32 bytes")
            if msg_id in self.seen or msg_id in self.rejected or msg_id in self.requested:
                continue
            self.requested.add(msg_id, now)
            want.append(msg_id)
        if want:
            self.metrics.inc("iwant_sent")
            self._send(pid, {"iwant": want})

    def _handle_iwant(self: Gossip, pid: PeerId, requested: list[Any]) -> None:
        if not self.scores.gossipable(pid):
            return
        out: list[dict[str, Any]] = []
        ids: list[bytes] = []
        for msg_id in requested:
            if not isinstance(msg_id, bytes):
                raise CodecError("a message id is 32 bytes")
            wire = self.mcache.serve(msg_id, pid, self.config.max_iwant_serves)
            if wire is not None:
                out.append(relayed(wire))
                ids.append(msg_id)
                self.metrics.inc("iwant_served", wire["topic"])
        if out:
            self._send(pid, {"msgs": out, "ids": ids})
