"""Mesh upkeep (mixed into :class:`Gossip`): joining, DHT discovery, fanout, heartbeat.

Everything here is synchronous except the DHT lookups, which run as tasks in the
gossip nursery; at most one lookup per topic is in flight, because under load
piling more lookups on only slows all of them down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import trio

from ..errors import CocoonError
from ..identity import PeerId
from . import discovery
from .mesh import maintain_mesh, pick

if TYPE_CHECKING:
    from .service import Gossip

log = logging.getLogger(__name__)


class UpkeepMixin:
    # --- joining and discovery -------------------------------------------------
    def _join(self: Gossip, topic: str) -> None:
        mesh = self.mesh[topic] = set()
        # Like gossipsub's join: peers we already publish to are the first mesh members.
        for pid in pick(self.fanout.pop(topic, set()), self.config.d, self.rng):
            if self.scores.meshable(pid):
                mesh.add(pid)
                self._graft(pid, topic)
        self._fanout_used.pop(topic, None)
        self._broadcast({"subs": [[topic, True]]})

        async def announce_and_discover() -> None:
            self._discovering.add(topic)  # no heartbeat lookup until this first one is done
            try:
                await discovery.announce(self.dht, topic)
            except (CocoonError, trio.TooSlowError, OSError) as exc:
                log.info("announcing topic %r failed: %s", topic, exc)
            finally:
                self._discovering.discard(topic)
            await self._discover(topic)

        self._spawn(announce_and_discover)

    async def _discover(self: Gossip, topic: str) -> None:
        if topic in self._discovering:
            return  # one lookup per topic at a time: under load, piling more on only slows them all
        self._discovering.add(topic)
        self.metrics.inc("discoveries")
        try:
            found = await discovery.find_subscribers(self.dht, topic, enough=self.config.discovery_enough)
        except (CocoonError, trio.TooSlowError, OSError) as exc:
            log.info("finding subscribers of %r failed: %s", topic, exc)
            return
        finally:
            self._discovering.discard(topic)
            self._last_discovery[topic] = trio.current_time()
        for sub in found:
            state = self._learn(sub.peer_id, sub.address)
            if state is not None:
                state.topics.add(topic)
        if topic in self.mesh:
            self._maintain(topic, trio.current_time())

    def _may_discover(self: Gossip, topic: str, now: float) -> bool:
        if topic in self._discovering:
            return False
        last = self._last_discovery.get(topic)
        return last is None or now - last >= self.config.discovery_interval

    async def _publish_targets(self: Gossip, topic: str) -> set[PeerId]:
        now = trio.current_time()
        if topic not in self.mesh:
            self._fanout_used[topic] = now
            known = self._subscribers_of(topic, self.scores.publishable)
            if len(known) < self.config.d and self._may_discover(topic, now):
                await self._discover(topic)
            self._top_up_fanout(topic)
        targets = set(self.mesh.get(topic) or self.fanout.get(topic) or ())
        known = self._subscribers_of(topic, self.scores.publishable)
        if self.config.flood_publish:
            # Only over connections we already have: dialling dozens of peers per message would
            # cost more round trips than the mesh needs to carry it the same distance.
            targets |= {pid for pid in known if self._connected(pid)}
        if not targets:
            targets = set(pick(known, self.config.d, self.rng))
        return targets

    def _subscribers_of(self: Gossip, topic: str, ok: Callable[[PeerId], bool]) -> set[PeerId]:
        """Known subscribers that ``ok`` accepts: where publications may go (backoff is about meshes only)."""
        return {pid for pid, state in self.peers.items() if topic in state.topics and ok(pid)}

    def _mesh_candidates(self: Gossip, topic: str, now: float) -> Iterator[PeerId]:
        """Subscribers we may graft now; lazy, so the scan runs only when a mesh must grow."""
        for pid, state in self.peers.items():
            if topic in state.topics and not state.in_backoff(topic, now) and self.scores.meshable(pid):
                yield pid

    # --- heartbeat -------------------------------------------------------------
    async def _heartbeat_loop(self: Gossip) -> None:
        # A random phase keeps thousands of peers from grafting in lock-step.
        await trio.sleep(self.rng.uniform(0, self.config.heartbeat_interval))
        while True:
            self.heartbeat()
            await trio.sleep(self.config.heartbeat_interval)

    def heartbeat(self: Gossip) -> None:
        """One round of upkeep; the loop calls it, and tests may call it directly."""
        now = trio.current_time()
        self.heartbeats += 1
        elapsed = self.config.heartbeat_interval if self._last_heartbeat is None else now - self._last_heartbeat
        self._last_heartbeat = now
        self.scores.decay(elapsed)
        for cache in (self.seen, self.rejected, self.requested):
            cache.expire(now)
        for topic in list(self.mesh):
            self._maintain(topic, now)
        self._maintain_fanout(now)
        self._emit_gossip()
        self.mcache.shift()
        idle = []
        for pid, state in self.peers.items():
            state.ihaves_this_heartbeat = 0
            state.has.expire(now)
            if state.backoff:
                state.backoff = {t: until for t, until in state.backoff.items() if until > now}
            if not state.topics and not state.pending and self.host.connection_for(pid) is None:
                idle.append(pid)
        for pid in idle:  # gone and of no use to any topic: without this, every caller ever seen stays
            self._forget(pid)

    def _maintain(self: Gossip, topic: str, now: float) -> None:
        mesh = self.mesh[topic]
        mesh.difference_update([pid for pid in mesh if pid not in self.peers])
        change = maintain_mesh(mesh, self._mesh_candidates(topic, now), self.scores.score, self.config, self.rng)
        for pid in change.prune:
            mesh.discard(pid)
            # Only a peer pruned for lack of room, not for its score, is told about others.
            self._prune(pid, topic, backoff=self.config.prune_backoff, px=self.scores.meshable(pid))
        for pid in change.graft:
            mesh.add(pid)
            self._graft(pid, topic)
        if len(mesh) < self.config.d_lo and self._may_discover(topic, now):
            self._discovering.add(topic)

            async def rediscover() -> None:
                self._discovering.discard(topic)
                await self._discover(topic)

            self._spawn(rediscover)

    def _top_up_fanout(self: Gossip, topic: str) -> None:
        fan = self.fanout.setdefault(topic, set())
        known = self._subscribers_of(topic, self.scores.publishable)
        fan.intersection_update(known)
        if len(fan) < self.config.d:
            fan.update(pick(known - fan, self.config.d - len(fan), self.rng))

    def _maintain_fanout(self: Gossip, now: float) -> None:
        for topic in list(self.fanout):
            if now - self._fanout_used.get(topic, now) > self.config.fanout_ttl:
                del self.fanout[topic]
                self._fanout_used.pop(topic, None)
            else:
                self._top_up_fanout(topic)

    def _emit_gossip(self: Gossip) -> None:
        for topic in self.mcache.topics():
            if topic not in self.mesh and topic not in self.fanout:
                continue
            ids = self.mcache.gossip_ids(topic)[-self.config.max_ihave_length :]
            if not ids:
                continue
            near = self.mesh.get(topic, set()) | self.fanout.get(topic, set())
            others = {
                pid
                for pid, state in self.peers.items()
                if topic in state.topics and pid not in near and self.scores.gossipable(pid) and self._connected(pid)
            }
            for pid in pick(others, self.config.d_lazy, self.rng):
                if self._send(pid, {"ihave": [[topic, ids]]}):
                    self.metrics.inc("ihave_sent")
