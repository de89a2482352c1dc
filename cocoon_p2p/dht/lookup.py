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
from functools import partial

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
#: Receives a posted query's reply, or None when it failed.
ReplyFn = Callable[[QueryReply | None], None]
#: Withdraws a posted query; True when it is withdrawn because it timed out.
Abandon = Callable[[bool], None]
#: Sends a query now without waiting and returns how to withdraw it, or None when it cannot
#: (no open connection, no free call slot): the lookup then runs the QueryFn in a task.
#: The ReplyFn runs later, once, unless the query is withdrawn first.
PostFn = Callable[[Contact, ReplyFn], Abandon | None]


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
    abandon: Abandon | None = None  # set while a posted query is out
    deadline: float = 0.0


async def iterative_lookup(
    target: bytes,
    seeds: list[Contact],
    query: QueryFn,
    *,
    k: int = 20,
    alpha: int = 3,
    own_id: PeerId | None = None,
    stop_when: Callable[[list[Record]], bool] | None = None,
    post: PostFn | None = None,
    timeout: float = 3.0,
) -> LookupResult:
    """Find the k closest to ``target`` that answer, starting from ``seeds``.

    With ``post``, queries go out without a task each and their replies are taken in
    where they arrive; this task only keeps the ``timeout`` of each posted query.
    ``query`` serves the rest (a contact needing a new connection) with its own timeout.
    """
    lookup = _Lookup(target, query, k, alpha, own_id, stop_when, post, timeout)
    for seed in seeds:
        lookup.learn(seed, 0)
    return await lookup.run()


class _Lookup:
    """One lookup's state. A class rather than closures: nested functions that call each
    other form reference cycles, and a lookup's worth of them (its candidates included)
    was left for the cyclic GC, a sixth of a busy peer's CPU."""

    def __init__(
        self,
        target: bytes,
        query: QueryFn,
        k: int,
        alpha: int,
        own_id: PeerId | None,
        stop_when: Callable[[list[Record]], bool] | None,
        post: PostFn | None,
        timeout: float,
    ) -> None:
        self.target_int = int.from_bytes(target, "big")
        self.query, self.post, self.stop_when = query, post, stop_when
        self.k, self.alpha, self.timeout = k, alpha, timeout
        # Keyed by raw id bytes (cheaper to hash than PeerId) and kept sorted by distance as
        # contacts arrive, so each reply costs an insertion rather than a sort of everyone seen.
        self.known: set[bytes] = {own_id.raw} if own_id is not None else set()
        self.ranked: list[_Candidate] = []
        self.records: dict[tuple[bytes, bytes], Record] = {}
        self.posted: list[_Candidate] = []
        self.queries = self.failures = self.in_flight = self.stale_replies = 0
        self.best: int | None = None
        self.finished = trio.Event()
        self.nursery: trio.Nursery | None = None

    def learn(self, contact: Contact, depth: int) -> None:
        raw = contact.peer_id.raw
        if raw in self.known:
            return
        self.known.add(raw)
        cand = _Candidate(contact, depth, int.from_bytes(raw, "big") ^ self.target_int)
        insort(self.ranked, cand, key=_by_distance)

    def frontier(self) -> list[_Candidate]:
        front = []
        for cand in self.ranked:
            if cand.state != "failed":
                front.append(cand)
                if len(front) == self.k:
                    break
        return front

    def nearest_alive(self) -> int | None:
        return next((c.distance for c in self.ranked if c.state != "failed"), None)

    async def run(self) -> LookupResult:
        started = trio.current_time()
        self.best = self.nearest_alive()
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                try:
                    self.launch()
                    await self._keep_deadlines()
                finally:
                    # Ended (stop_when met) or cancelled: from here on a late reply sends
                    # nothing, not even while the nursery waits for its tasks to unwind.
                    self.finished.set()
                nursery.cancel_scope.cancel()
        finally:
            # Withdraw the posted queries still out.
            self.nursery = None
            for cand in self.posted:
                if cand.abandon is not None:
                    cand.abandon(False)
                    cand.abandon = None
        answered = [c for c in self.frontier() if c.state == "answered"]
        return LookupResult(
            closest=[c.contact for c in answered],
            records=list(self.records.values()),
            hops=answered[0].depth if answered else 0,
            queries=self.queries,
            failures=self.failures,
            elapsed=trio.current_time() - started,
        )

    async def _keep_deadlines(self) -> None:
        finished = self.finished
        while not finished.is_set():
            posted = self.posted = [c for c in self.posted if c.abandon is not None]
            with trio.move_on_at(min((c.deadline for c in posted), default=float("inf"))):
                await finished.wait()
            now = trio.current_time()
            for cand in posted:
                if cand.abandon is not None and cand.deadline <= now and not finished.is_set():
                    cand.abandon(True)
                    self.settle(cand, None)

    def launch(self) -> None:
        """Fill the window from the k closest not yet asked; finish when nothing is left."""
        # Kademlia's final phase: once α replies in a row brought nothing closer, ask all
        # of the k closest not yet asked at once instead of trickling through them α at a time.
        window = self.k if self.stale_replies >= self.alpha else self.alpha
        for cand in self.frontier():
            if self.in_flight >= window:
                break
            if cand.state == "new":
                cand.state = "waiting"
                self.in_flight += 1
                self.queries += 1
                self.send(cand)
        if self.in_flight == 0:
            self.finished.set()  # every one of the k closest has answered

    def send(self, cand: _Candidate) -> None:
        if self.post is not None:
            abandon = self.post(cand.contact, partial(self.settle, cand))
            if abandon is not None:
                cand.abandon, cand.deadline = abandon, trio.current_time() + self.timeout
                self.posted.append(cand)
                return
        assert self.nursery is not None
        self.nursery.start_soon(self.ask, cand)

    async def ask(self, cand: _Candidate) -> None:
        try:
            reply: QueryReply | None = await self.query(cand.contact)
        except Exception:
            reply = None
        self.settle(cand, reply)

    def settle(self, cand: _Candidate, reply: QueryReply | None) -> None:
        """Take in one query's outcome and send what the window now allows."""
        if self.finished.is_set() or cand.state != "waiting":
            return
        cand.abandon = None
        self.in_flight -= 1
        if reply is None:
            cand.state = "failed"
            self.failures += 1
        elif self.absorb(cand, reply):
            self.finished.set()
            return
        self.launch()

    def absorb(self, cand: _Candidate, reply: QueryReply) -> bool:
        """Take in one reply; True when ``stop_when`` is satisfied."""
        cand.state = "answered"
        for contact in reply.contacts:
            self.learn(contact, cand.depth + 1)
        closest_now = self.nearest_alive()
        if closest_now is not None and (self.best is None or closest_now < self.best):
            self.best, self.stale_replies = closest_now, 0
        else:
            self.stale_replies += 1
        records = self.records
        for record in reply.records:
            slot = (record.key, record.publisher)
            if slot not in records or records[slot].seq < record.seq:
                records[slot] = record
        return self.stop_when is not None and self.stop_when(list(records.values()))


def _by_distance(cand: _Candidate) -> int:
    return cand.distance
