"""Iterative lookups with a sliding window of α queries in flight (DESIGN.md §5).

Unlike lock-step rounds, a new query leaves the moment any query returns, so one
slow peer delays one slot, not the whole round. The lookup ends when the k
closest contacts seen so far have all answered (or failed and been replaced);
once replies stop bringing closer contacts, the rest of the k closest are asked
together, as the Kademlia paper prescribes.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from ..identity import PeerId
from .records import Record
from .routing import Contact


@dataclass
class QueryReply:
    contacts: list[Contact]
    records: list[Record] = field(default_factory=list)


#: Asks one contact about the target; raises on failure or timeout.
QueryFn = Callable[[Contact], Awaitable[QueryReply]]


@dataclass
class LookupResult:
    closest: list[Contact]  # the k closest that answered, nearest first
    records: list[Record]
    hops: int  # depth at which the nearest answering contact was learned
    queries: int
    failures: int
    elapsed: float


@dataclass
class _Candidate:
    contact: Contact
    depth: int
    distance: int
    state: str = "new"  # new | waiting | answered | failed


async def iterative_lookup(
    target: bytes,
    seeds: list[Contact],
    query: QueryFn,
    *,
    k: int = 20,
    alpha: int = 3,
    own_id: PeerId | None = None,
    stop_when: Callable[[list[Record]], bool] | None = None,
) -> LookupResult:
    started = trio.current_time()
    target_int = int.from_bytes(target, "big")
    # Keyed by raw id bytes (cheaper to hash than PeerId) and kept sorted by distance as
    # contacts arrive, so each reply costs an insertion rather than a sort of everyone seen.
    known: set[bytes] = {own_id.raw} if own_id is not None else set()
    ranked: list[_Candidate] = []
    records: dict[tuple[bytes, bytes], Record] = {}
    queries = failures = 0

    def learn(contact: Contact, depth: int) -> None:
        raw = contact.peer_id.raw
        if raw in known:
            return
        known.add(raw)
        cand = _Candidate(contact, depth, int.from_bytes(raw, "big") ^ target_int)
        insort(ranked, cand, key=_by_distance)

    def frontier() -> list[_Candidate]:
        front = []
        for cand in ranked:
            if cand.state != "failed":
                front.append(cand)
                if len(front) == k:
                    break
        return front

    for seed in seeds:
        learn(seed, 0)

    send, receive = trio.open_memory_channel[tuple[_Candidate, QueryReply | None]](alpha * 2)

    async def ask(cand: _Candidate) -> None:
        try:
            reply: QueryReply | None = await query(cand.contact)
        except Exception:
            reply = None
        await send.send((cand, reply))

    def nearest_alive() -> int | None:
        return next((c.distance for c in ranked if c.state != "failed"), None)

    done = False
    best = nearest_alive()
    stale_replies = 0
    async with trio.open_nursery() as nursery:
        in_flight = 0
        while True:
            front = frontier()
            # Kademlia's final phase: once α replies in a row brought nothing closer, ask all
            # of the k closest not yet asked at once instead of trickling through them α at a time.
            window = k if stale_replies >= alpha else alpha
            for cand in front:
                if in_flight >= window:
                    break
                if cand.state == "new":
                    cand.state = "waiting"
                    in_flight += 1
                    queries += 1
                    nursery.start_soon(ask, cand)
            if in_flight == 0:
                break  # every one of the k closest has answered
            cand, reply = await receive.receive()
            in_flight -= 1
            if reply is None:
                cand.state = "failed"
                failures += 1
                continue
            cand.state = "answered"
            for contact in reply.contacts:
                learn(contact, cand.depth + 1)
            closest_now = nearest_alive()
            if closest_now is not None and (best is None or closest_now < best):
                best, stale_replies = closest_now, 0
            else:
                stale_replies += 1
            for record in reply.records:
                slot = (record.key, record.publisher)
                if slot not in records or records[slot].seq < record.seq:
                    records[slot] = record
            if stop_when is not None and stop_when(list(records.values())):
                done = True
                break
        if done:
            nursery.cancel_scope.cancel()

    answered = [c for c in frontier() if c.state == "answered"]
    hops = answered[0].depth if answered else 0
    return LookupResult(
        closest=[c.contact for c in answered],
        records=list(records.values()),
        hops=hops,
        queries=queries,
        failures=failures,
        elapsed=trio.current_time() - started,
    )


def _by_distance(cand: _Candidate) -> int:
    return cand.distance
