"""A swarm of protocol peers on one World: Host + Dht per peer, joins, churn, warm starts.

Every protocol scenario (dht, gossip, market, attacks) builds its peers the same
way, so the bookkeeping lives here: identities and addresses per peer index, the
set of peers online now, one peer *session* per online interval (a fresh
``Host`` + ``Dht`` with the same identity; leaving crashes the endpoint, as a
process exit would), and churn schedules.

Two ways to join (the ``join`` knob):

- ``protocol``: each peer bootstraps through peer 0 and a random online peer
  (``Dht.bootstrap``) and publishes its peer record (``Dht.publish_self``), as a
  real node does;
- ``warm``: the swarm starts *converged*. Every routing table is filled from the
  simulator's ground truth (``warm_tables``): bucket ``i`` of peer ``x`` gets up
  to k peers drawn uniformly from the ids at XOR distance [2^i, 2^(i+1)) of ``x``,
  which is what a long-running Kademlia table holds. Each peer record is signed
  and handed to the k peers closest to its key. Only the *initial* population is
  placed this way; peers that return after churn join through the protocol.
  This skips the join cost (for 10,000 peers, ~10^6 RPCs and Noise handshakes),
  so the run measures the lookups, not the bootstrap.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import random
from bisect import bisect_left, insort
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from cocoon_p2p.dht import PEER_RECORD, Contact, Dht, DhtConfig, sign_record
from cocoon_p2p.dht.records import peer_record_value
from cocoon_p2p.identity import Identity, PeerId
from cocoon_p2p.rpc import Host
from cocoon_p2p.wire.limits import DEFAULT_LIMITS, Limits

from .churn import ChurnModel, parse_distribution
from .harness import Knob, Progress, Seeds, World, simulate

PORT = 7400
ID_BITS = 256

#: Knobs shared by the scenarios built on a Swarm (each may override a default).
SWARM_KNOBS: dict[str, Knob] = {
    "join": Knob("protocol", "protocol: peers bootstrap through the DHT; warm: start converged (tables from truth)"),
    "k": Knob(20, "Kademlia k (bucket size, lookup width)"),
    "alpha": Knob(3, "lookup queries in flight"),
    "query_timeout": Knob(3.0, "seconds before one DHT query counts as failed"),
    "churn": Knob("none", "session-time distribution, e.g. weibull:600:0.5, exp:600, pareto:600:2; none = no churn"),
    "downtime": Knob("exp:300", "offline-time distribution between sessions (with --churn)"),
    "refresh_s": Knob(
        DhtConfig.refresh_interval,
        "a bucket with no lookup or news from its contacts this long is refreshed by a lookup into it",
    ),
    "evict_ping_after_s": Knob(
        900.0,
        "ping-before-evict questions a full bucket's oldest contact only when it has been silent this long "
        "(production: 900, BEP 5's rule; 0 = always ping, the Kademlia paper's)",
    ),
}


@dataclass
class Peer:
    """One online session of peer ``index``: what a scenario talks to."""

    index: int
    session: int
    host: Host
    dht: Dht
    nursery: trio.Nursery
    extra: dict[str, Any] = field(default_factory=dict)


#: Called inside a fresh session before it joins (build layers on top of host/dht, start their tasks).
Build = Callable[[Peer], Awaitable[None]]
#: Called once the peer has joined (subscribe, publish offers...).
Ready = Callable[[Peer], Awaitable[None]]


class Swarm:
    def __init__(
        self,
        world: World,
        nodes: int,
        *,
        dht_config: DhtConfig,
        prefix: str,
        limits: Limits = DEFAULT_LIMITS,
        build: Build | None = None,
        ready: Ready | None = None,
        make_dht: Callable[[int, Host, random.Random], Dht] | None = None,
    ) -> None:
        self.world = world
        self.nodes = nodes
        self.dht_config = dht_config
        self.prefix = prefix
        self.limits = limits
        self.build = build
        self.ready = ready
        self.make_dht = make_dht
        self.ips = [world.ip(i) for i in range(nodes)]
        self.addresses = [f"{ip}:{PORT}" for ip in self.ips]
        self.identities: list[Identity] = [world.identity(i) for i in range(nodes)]
        self.ids: list[PeerId] = [identity.peer_id for identity in self.identities]
        self.id_ints = [pid.as_int for pid in self.ids]
        # Peer indices sorted by id, for ground-truth queries (see ``closest``).
        self._by_id = sorted(range(nodes), key=self.id_ints.__getitem__)
        self._sorted_ids = [self.id_ints[j] for j in self._by_id]
        self.online: dict[int, Peer] = {}
        self._online_sorted: list[int] = []  # the keys of ``online``, kept sorted for ``join``
        self.sessions = [0] * nodes
        self.everyone_online = trio.Event()

    # --- sessions -------------------------------------------------------------------
    async def session(self, i: int, *, join: bool) -> None:
        """Run peer ``i`` until cancelled (a crash: every socket closes with it)."""
        index = self.sessions[i]
        self.sessions[i] += 1
        endpoint = self.world.network.endpoint(self.ips[i])
        host = Host(self.identities[i], endpoint, listen=self.addresses[i], limits=self.limits)
        rng = self.world.seeds.rng(f"{self.prefix}/peer/{i}/{index}")
        if self.make_dht is not None:
            dht = self.make_dht(i, host, rng)
        else:
            dht = Dht(host, self.world.wall, config=self.dht_config, rng=rng)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(host.run)
                await nursery.start(dht.run)
                peer = Peer(i, index, host, dht, nursery)
                if self.build is not None:
                    await self.build(peer)
                self.online[i] = peer
                insort(self._online_sorted, i)
                if len(self.online) == self.nodes:
                    self.everyone_online.set()
                if join:
                    await self.join(peer)
                    if self.ready is not None:
                        await self.ready(peer)
                await trio.sleep_forever()
        finally:
            if self.online.pop(i, None) is not None:
                del self._online_sorted[bisect_left(self._online_sorted, i)]
            endpoint.crash()  # whatever the cancelled tasks left open goes with the process

    async def join(self, peer: Peer) -> None:
        i = peer.index
        if i != 0:
            # Bootstrap through peer 0 and one random peer already online.
            pick = self.world.seeds.rng(f"{self.prefix}/boot/{i}/{peer.session}")
            other = self._random_online_other(pick, i)
            entries = [0] + ([other] if other is not None else [])
            await peer.dht.bootstrap([(self.ids[j], self.addresses[j]) for j in entries])
        await peer.dht.publish_self()

    def _random_online_other(self, rng: random.Random, i: int) -> int | None:
        """``sorted(online - {0, i})[rng.randrange(count)]`` without building that list per join."""
        live = self._online_sorted
        skip = [x for x in (0, i) if x in self.online]  # ascending: i != 0 here
        count = len(live) - len(skip)
        if count <= 0:
            return None
        rank = rng.randrange(count)
        for x in skip:  # step over the excluded peers at or before the rank
            if bisect_left(live, x) <= rank:
                rank += 1
        return live[rank]

    async def life(self, i: int, join_at: float, later: list[tuple[float, float]], *, join: bool) -> None:
        """Peer ``i``: first session from ``join_at`` (until the end of ``later[0]``), then the rest of ``later``."""
        await trio.sleep_until(join_at)
        with trio.move_on_at(later[0][1] if later else math.inf):
            await self.session(i, join=join)
        for start, end in later[1:]:
            await trio.sleep_until(start)
            with trio.move_on_at(end):
                await self.session(i, join=True)

    # --- warm start -----------------------------------------------------------------
    def warm_up(self, rng: random.Random, now: float) -> None:
        """Converged routing tables and peer records for every peer online now (see module doc)."""
        live = sorted(self.online)
        members = set(live)
        warm_tables({i: self.online[i].dht for i in live}, self.ids, self.addresses, rng, now)
        wall = self.world.wall.now()
        ttl = self.dht_config.record_ttl
        for i in live:
            dht = self.online[i].dht
            record = sign_record(
                self.identities[i],
                PEER_RECORD,
                self.ids[i].raw,
                peer_record_value([self.addresses[i]]),
                seq=int(wall * 1000),
                expires=int(wall) + ttl,
            )
            dht.store.put(record, wall)
            dht.published[(PEER_RECORD, record.key)] = record
            for j in self.closest(self.id_ints[i], members, self.dht_config.k, exclude=i):
                self.online[j].dht.store.put(record, wall)

    def closest(self, key: int, among: Collection[int], count: int, *, exclude: int | None = None) -> list[int]:
        """Ground truth: the ``count`` peers of ``among`` XOR-closest to ``key``.

        Exact, without scanning everyone: the ids within XOR distance 2^b of ``key``
        are those sharing its top 256 - b bits, one contiguous run of the sorted ids,
        and every id outside that run is farther than every id inside it. So the
        answer lies in the smallest such run holding ``count`` eligible peers.
        (A scan per call made the warm start of 10,000 peers quadratic.)
        """
        ids = self.id_ints
        members = among if isinstance(among, (set, frozenset, dict)) else set(among)
        wanted = len(members) - (exclude in members)
        if count <= 0 or wanted <= 0:
            return []
        # Start where a run should hold about 2 * count of ``nodes`` uniform ids.
        bits = max(0, ID_BITS - max(0, (self.nodes // (2 * count)).bit_length() - 1))
        while True:
            prefix = key >> bits
            lo = bisect_left(self._sorted_ids, prefix << bits)
            hi = bisect_left(self._sorted_ids, (prefix + 1) << bits)
            run = [j for j in self._by_id[lo:hi] if j in members and j != exclude]
            if len(run) >= min(count, wanted) or bits >= ID_BITS:
                return heapq.nsmallest(count, run, key=lambda j: ids[j] ^ key)
            bits += 1

    async def start_ready(self) -> None:
        """Run ``ready`` for every peer online now, each in its own session's nursery."""
        if self.ready is None:
            return
        for i in sorted(self.online):
            peer = self.online[i]
            peer.nursery.start_soon(self.ready, peer)
        await trio.lowlevel.checkpoint()


def warm_tables(
    dhts: dict[int, Dht], ids: Sequence[PeerId], addresses: Sequence[str], rng: random.Random, now: float
) -> None:
    """Fill each routing table as a converged Kademlia network's would be.

    For peer ``x`` and bucket ``b``, the ids at XOR distance [2^b, 2^(b+1)) share
    x's top ``255 - b`` bits and differ in bit ``b``: one contiguous range of the
    sorted ids, found by bisection. Up to k of them are drawn uniformly and added
    through ``RoutingTable.add`` (so its per-/24 rule applies).
    """
    order = sorted(dhts, key=lambda j: ids[j].as_int)
    keys = [ids[j].as_int for j in order]
    for i in sorted(dhts):
        dht = dhts[i]
        x = ids[i].as_int
        k = dht.config.k
        for b in range(ID_BITS - 1, -1, -1):
            prefix = (x >> b) ^ 1
            lo = bisect_left(keys, prefix << b)
            hi = bisect_left(keys, (prefix + 1) << b)
            if hi <= lo:
                continue
            picks = range(lo, hi) if hi - lo <= k else sorted(rng.sample(range(lo, hi), k))
            for p in picks:
                j = order[p]
                dht.table.add(Contact(ids[j], addresses[j]), now)
        # A network that has run a while refreshed each bucket at some point of the last
        # interval: stamping them all "now" would make every peer refresh every bucket in
        # the same moment one interval later, a burst no running network sees.
        interval = dht.config.refresh_interval
        for bucket in dht.table.buckets.existing():
            bucket.last_changed = now - rng.uniform(0.0, interval)


def churn_schedules(
    params: dict[str, Any], seeds: Any, nodes: int, start: float, end: float, prefix: str, keep: Sequence[int] = (0,)
) -> list[list[tuple[float, float]]]:
    """Online intervals per peer from ``start`` on; [] = always online (no churn, or a kept peer)."""
    if params["churn"] == "none":
        return [[] for _ in range(nodes)]
    model = ChurnModel(parse_distribution(params["churn"]), parse_distribution(params["downtime"]))
    schedules: list[list[tuple[float, float]]] = []
    for i in range(nodes):
        if i in keep:
            schedules.append([])
            continue
        intervals = model.schedule(seeds.rng(f"{prefix}/churn/{i}"), end - start, start_online=True)
        schedules.append([(start + a, start + b) for a, b in intervals] or [(start, start)])
    return schedules


def dht_config(params: dict[str, Any]) -> DhtConfig:
    return DhtConfig(
        k=params["k"],
        alpha=params["alpha"],
        query_timeout=params["query_timeout"],
        refresh_interval=float(params.get("refresh_s", DhtConfig.refresh_interval)),
        evict_ping_after=float(params.get("evict_ping_after_s", DhtConfig.evict_ping_after)),
    )


@contextlib.contextmanager
def memoized_subnets() -> Iterator[None]:
    """Cache ``Contact.subnet`` per address for the duration of a run.

    The production property parses the address with ``ipaddress`` on every call,
    and the routing table calls it for every contact of a bucket on every insert:
    a third of the CPU of a warm 300-peer DHT run. The value depends on the address
    only, so caching it changes no result. (Proposed upstream: compute it once.)
    """
    original = Contact.subnet
    cache: dict[str, str | None] = {}
    compute = original.fget
    assert compute is not None

    def subnet(contact: Contact) -> str | None:
        address = contact.address
        try:
            return cache[address]
        except KeyError:
            value = cache[address] = compute(contact)
            return value

    Contact.subnet = property(subnet)  # type: ignore[assignment,method-assign]
    try:
        yield
    finally:
        Contact.subnet = original  # type: ignore[method-assign]


def simulate_swarm(main: Callable[[], Awaitable[Any]], *, seeds: Seeds, progress: Progress) -> Any:
    """``harness.simulate`` with the subnet cache in place."""
    with memoized_subnets():
        return simulate(main, seeds=seeds, progress=progress)
