"""The DHT as a service on a Host: RPC handlers, lookups, publishing, joining.

RPC methods (docs/PROTOCOL.md §5): ``dht.ping``, ``dht.find_node``,
``dht.find_value``, ``dht.store``. Every request carries the caller's listening
port; its address is the connection's observed host with that port, and its id is
the Noise-authenticated one — never taken from the message body.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

import trio

from ..errors import CocoonError, RemoteError
from ..identity import Identity, PeerId
from ..net import WallClock, join_address, split_address
from ..rpc import CallContext, Host
from . import upkeep
from .lookup import Abandon, LookupResult, QueryReply, ReplyFn, iterative_lookup
from .messages import FIND, STORE, ContactDecoder, encode_contacts
from .records import (
    PEER_RECORD,
    Record,
    RecordRejected,
    RecordValidator,
    peer_record_addresses,
    peer_record_value,
    sign_record,
)
from .routing import Contact, RoutingTable
from .store import RecordStore

log = logging.getLogger(__name__)


#: How many recent lookups put_record may reuse, and for how long.
_RECENT_LOOKUPS = 8
_RECENT_LOOKUP_S = 30.0


@dataclass
class DhtConfig:
    k: int = 20
    alpha: int = 3
    query_timeout: float = 3.0
    refresh_interval: float = 600.0
    republish_margin: float = 3600.0
    record_ttl: int = 24 * 3600
    per_subnet: int | None = 2
    #: Ping-before-evict only questions a bucket's oldest contact not heard from this long
    #: (BEP 5's 15 minutes); a fresher one keeps its slot and the newcomer waits in the
    #: replacement cache, taking the slot when a query to a member fails.
    evict_ping_after: float = 900.0


class Dht:
    def __init__(
        self,
        host: Host,
        clock: WallClock,
        *,
        config: DhtConfig | None = None,
        rng: random.Random | None = None,
        advertise: str | None = None,
    ) -> None:
        self.host = host
        self.identity: Identity = host.identity
        self.clock = clock
        self.config = config or DhtConfig()
        self.rng = rng or random.Random()
        self.advertise = advertise
        self.table = RoutingTable(host.peer_id, k=self.config.k, per_subnet=self.config.per_subnet)
        self.store = RecordStore(rng=self.rng)
        self.validator = RecordValidator(max_size=host.limits.max_record)
        self.published: dict[tuple[str, bytes], Record] = {}
        self.rpcs_sent = 0
        self._nursery: trio.Nursery | None = None
        self._evict_pings: set[PeerId] = set()
        self._contacts = ContactDecoder()
        self._header_for: tuple[str | None, dict[str, Any]] = (None, {})
        # The last few complete node lookups (target -> (when, closest)): a record published
        # right after a lookup of its key (a join's own-id lookup, then its peer record) is
        # stored on the peers that lookup found instead of looking them up again.
        self._recent: dict[bytes, tuple[float, list[Contact]]] = {}
        router = host.router
        # Table and store reads never wait, so they run inline in the connection's reader. All
        # four are one-shot queries: a connection that carried only these closes sooner when idle.
        router.unary("dht.ping", self._on_ping, inline=True, brief=True)
        router.unary("dht.find_node", self._on_find_node, inline=True, brief=True)
        router.unary("dht.find_value", self._on_find_value, inline=True, brief=True)
        router.unary("dht.store", self._on_store, brief=True)

    # --- background upkeep -------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(upkeep.refresh_loop, self)
            nursery.start_soon(upkeep.republish_loop, self)
            task_status.started()

    @property
    def my_address(self) -> str:
        return self.advertise or self.host.listen_address or ""

    def _header(self) -> dict[str, Any]:
        address = self.my_address
        if self._header_for[0] != address:
            _, port = split_address(address)
            self._header_for = (address, {"port": port})
        return self._header_for[1]

    # --- inbound RPCs ------------------------------------------------------
    def _observe(self, ctx: CallContext, params: dict[str, Any]) -> None:
        port = params.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port <= 65535:
            return  # a client-only peer that does not listen is not routable
        host, _ = split_address(ctx.remote_address)
        self._saw(Contact(ctx.peer_id, join_address(host, port)))

    def _saw(self, contact: Contact) -> None:
        now = trio.current_time()
        lrs = self.table.add(contact, now)
        if lrs is None or self._nursery is None or now - lrs.last_seen < self.config.evict_ping_after:
            return
        # One ping per oldest contact at a time: every stranger that lands in a full bucket
        # names the same oldest contact, and a ping each would multiply the traffic.
        if lrs.peer_id not in self._evict_pings:
            self._evict_pings.add(lrs.peer_id)
            self._nursery.start_soon(self._ping_before_evict, lrs)

    async def _ping_before_evict(self, oldest: Contact) -> None:
        try:
            alive = await self.ping(oldest)
        finally:
            self._evict_pings.discard(oldest.peer_id)
        if alive:
            self.table.add(oldest, trio.current_time())
        else:
            self.table.remove(oldest.peer_id, trio.current_time())

    async def _on_ping(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        self._observe(ctx, params)
        return {}

    async def _on_find_node(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        req = FIND.validate(params)
        self._observe(ctx, req)
        return {"nodes": self._nodes_near(req["target"], ctx.peer_id)}

    async def _on_find_value(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        req = FIND.validate(params)
        self._observe(ctx, req)
        records = self.store.get(req["target"], self.clock.now())
        return {"nodes": self._nodes_near(req["target"], ctx.peer_id), "records": [r.to_wire() for r in records]}

    async def _on_store(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        req = STORE.validate(params)
        self._observe(ctx, req)
        try:
            record = Record.from_wire(req["record"])
            self.accept_record(record)
        except RecordRejected as exc:
            raise RemoteError("record_rejected", str(exc)) from None
        return {}

    def _nodes_near(self, target: bytes, requester: PeerId) -> list[dict[str, Any]]:
        return encode_contacts(self.table.closest(target, exclude=requester))

    def accept_record(self, record: Record) -> bool:
        now = self.clock.now()
        self.validator.validate(record, now)
        return self.store.put(record, now)

    # --- outbound RPCs -----------------------------------------------------
    async def _call(self, contact: Contact, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.rpcs_sent += 1
        with trio.fail_after(self.config.query_timeout):
            conn = await self.host.connect(contact.address, expected=contact.peer_id)
            return await conn.call(method, {**params, **self._header()})

    async def ping(self, contact: Contact) -> bool:
        try:
            await self._call(contact, "dht.ping", {})
        except (CocoonError, trio.TooSlowError, OSError):
            return False
        return True

    async def _query(self, contact: Contact, method: str, target: bytes) -> QueryReply:
        try:
            reply = await self._call(contact, method, {"target": target})
            return self._take_reply(contact, target, reply)
        except BaseException as exc:
            if isinstance(exc, (CocoonError, trio.TooSlowError, OSError)):
                self.table.record_failure(contact.peer_id, trio.current_time())
            raise

    def _post_query(self, contact: Contact, method: str, target: bytes, on_done: ReplyFn) -> Abandon | None:
        """Send a lookup query on a pooled connection without waiting (see lookup.PostFn)."""
        conn = self.host.connection_for(contact.peer_id)
        if conn is None:
            return None

        def on_reply(result: Any) -> None:
            if not isinstance(result, BaseException):
                try:
                    on_done(self._take_reply(contact, target, result))
                    return
                except CocoonError:
                    pass
            self.table.record_failure(contact.peer_id, trio.current_time())
            on_done(None)

        try:
            call_id = conn.request_nowait(method, {"target": target, **self._header()}, on_reply)
        except CocoonError:
            return None  # the connection just closed: the waiting path dials afresh
        if call_id is None:
            return None
        self.rpcs_sent += 1

        def abandon(timed_out: bool) -> None:
            conn.abandon(call_id)
            if timed_out:
                self.table.record_failure(contact.peer_id, trio.current_time())

        return abandon

    def _take_reply(self, contact: Contact, target: bytes, reply: dict[str, Any]) -> QueryReply:
        contacts = self._contacts.decode(reply)
        self._saw(Contact(contact.peer_id, contact.address))
        records = []
        now = self.clock.now()
        for raw in reply.get("records") or []:
            try:
                record = Record.from_wire(raw)
                if record.key == target:
                    self.validator.validate(record, now)
                    records.append(record)
            except CocoonError:
                continue  # a bad record from one peer must not spoil the lookup
        return QueryReply(contacts, records)

    async def lookup_nodes(self, target: bytes) -> LookupResult:
        async def query(contact: Contact) -> QueryReply:
            return await self._query(contact, "dht.find_node", target)

        def post(contact: Contact, on_done: ReplyFn) -> Abandon | None:
            return self._post_query(contact, "dht.find_node", target, on_done)

        result = await iterative_lookup(
            target,
            self.table.closest(target),
            query,
            k=self.config.k,
            alpha=self.config.alpha,
            own_id=self.host.peer_id,
            post=post,
            timeout=self.config.query_timeout,
        )
        self._looked_up(target, result, complete=True)
        if len(result.closest) >= self.config.k or not result.failures:
            self._recent.pop(target, None)
            self._recent[target] = (trio.current_time(), result.closest)
            while len(self._recent) > _RECENT_LOOKUPS:
                del self._recent[next(iter(self._recent))]
        return result

    def _looked_up(self, target: bytes, result: LookupResult, *, complete: bool) -> None:
        """Count a finished lookup as a refresh of the buckets it covered (RoutingTable.mark_looked_up)."""
        if not result.closest:
            return  # nobody answered: nothing was learned about the range
        k = self.config.k
        kth = None
        if complete and len(result.closest) >= k:
            kth = int.from_bytes(result.closest[k - 1].peer_id.raw, "big") ^ int.from_bytes(target, "big")
        self.table.mark_looked_up(target, kth, trio.current_time())

    async def get_records(self, key: bytes, *, enough: int | None = None) -> LookupResult:
        """Records under ``key`` from the network (and our own store), newest per publisher."""

        async def query(contact: Contact) -> QueryReply:
            return await self._query(contact, "dht.find_value", key)

        def post(contact: Contact, on_done: ReplyFn) -> Abandon | None:
            return self._post_query(contact, "dht.find_value", key, on_done)

        stop = (lambda recs: len(recs) >= enough) if enough else None
        result = await iterative_lookup(
            key,
            self.table.closest(key),
            query,
            k=self.config.k,
            alpha=self.config.alpha,
            own_id=self.host.peer_id,
            stop_when=stop,
            post=post,
            timeout=self.config.query_timeout,
        )
        # A lookup stopped early by ``enough`` did not ask all of the k closest: no coverage claim.
        self._looked_up(key, result, complete=stop is None)
        merged = {(r.key, r.publisher): r for r in result.records}
        for local in self.store.get(key, self.clock.now()):
            slot = (local.key, local.publisher)
            if slot not in merged or merged[slot].seq < local.seq:
                merged[slot] = local
        result.records = list(merged.values())
        return result

    async def put_record(self, record: Record) -> int:
        """Store ``record`` on the k closest peers to its key; returns how many accepted it."""
        self.accept_record(record)
        self.published[(record.type, record.key)] = record
        recent = self._recent.get(record.key)
        if recent is not None and trio.current_time() - recent[0] <= _RECENT_LOOKUP_S:
            closest = recent[1]
        else:
            closest = (await self.lookup_nodes(record.key)).closest
        accepted = 0

        async def store_on(contact: Contact) -> None:
            nonlocal accepted
            try:
                await self._call(contact, "dht.store", {"record": record.to_wire()})
                accepted += 1
            except (CocoonError, trio.TooSlowError, OSError) as exc:
                log.debug("store on %s failed: %s", contact.peer_id.short, exc)

        async with trio.open_nursery() as nursery:
            for contact in closest:
                nursery.start_soon(store_on, contact)
        return accepted

    async def publish(self, type_: str, key: bytes, value: bytes) -> int:
        """Sign and store our own record; it is re-signed and republished before it expires."""
        now = self.clock.now()
        previous = self.published.get((type_, key))
        seq = max(int(now * 1000), previous.seq + 1 if previous else 0)
        record = sign_record(self.identity, type_, key, value, seq=seq, expires=int(now) + self.config.record_ttl)
        return await self.put_record(record)

    async def unpublish(self, type_: str, key: bytes) -> None:
        """Stop republishing; the record lapses at its expiry."""
        self.published.pop((type_, key), None)

    async def publish_self(self) -> int:
        return await self.publish(PEER_RECORD, self.host.peer_id.raw, peer_record_value([self.my_address]))

    async def find_peer(self, peer_id: PeerId) -> list[str]:
        known = self.table.get(peer_id)
        if known is not None:
            return [known.address]
        result = await self.get_records(peer_id.raw, enough=1)
        for record in result.records:
            if record.publisher_id == peer_id:
                return peer_record_addresses(record)
        return [c.address for c in result.closest if c.peer_id == peer_id]

    # --- joining and upkeep ------------------------------------------------
    async def bootstrap(self, entries: list[tuple[PeerId | None, str]]) -> int:
        """Contact bootstrap entries, then look up our own id; returns contacts known."""

        async def contact(expected: PeerId | None, address: str) -> None:
            try:
                with trio.fail_after(self.config.query_timeout):
                    conn = await self.host.connect(address, expected=expected)
                    await conn.call("dht.ping", dict(self._header()))
                self._saw(Contact(conn.peer_id, address))
            except (CocoonError, trio.TooSlowError, OSError) as exc:
                log.info("bootstrap peer %s unreachable: %s", address, exc)

        async with trio.open_nursery() as nursery:
            for expected, address in entries:
                nursery.start_soon(contact, expected, address)
        if len(self.table):
            await self.lookup_nodes(self.host.peer_id.raw)
        return len(self.table)

    async def refresh_stale_buckets(self) -> None:
        await upkeep.refresh_stale_buckets(self)
