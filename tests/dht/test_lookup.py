"""The lookup engine on its own: posted queries (sent without a task each), their timeouts,
and queries withdrawn when the lookup ends early."""

from __future__ import annotations

import os

import pytest
import trio
import trio.testing

from cocoon_p2p.dht import Contact
from cocoon_p2p.dht.lookup import Abandon, QueryReply, ReplyFn, iterative_lookup
from cocoon_p2p.dht.records import Record
from cocoon_p2p.identity import PeerId


def _contacts(n: int) -> list[Contact]:
    return [Contact(PeerId(os.urandom(32)), f"127.0.0.1:{7000 + i}") for i in range(n)]


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_posted_queries_that_never_answer_time_out_and_the_lookup_moves_on(autojump_clock) -> None:
    peers = _contacts(12)
    target = os.urandom(32)
    by_distance = sorted(peers, key=lambda c: c.peer_id.as_int ^ int.from_bytes(target, "big"))
    silent = {c.peer_id for c in by_distance[:4]}  # the nearest: a lookup must ask them all
    withdrawn: list[tuple[PeerId, bool]] = []

    async def query(contact: Contact) -> QueryReply:
        raise AssertionError("every query here can be posted")

    def post(contact: Contact, on_done: ReplyFn) -> Abandon:
        if contact.peer_id not in silent:
            trio.lowlevel.current_trio_token().run_sync_soon(on_done, QueryReply(peers))
        return lambda timed_out: withdrawn.append((contact.peer_id, timed_out))

    started = trio.current_time()
    result = await iterative_lookup(target, peers, query, k=8, alpha=3, post=post, timeout=3.0)
    assert trio.current_time() - started >= 3.0  # it waited for the silent ones' deadline
    assert {p for p, timed_out in withdrawn} == silent and all(t for _, t in withdrawn)
    assert result.failures == 4
    assert len(result.closest) == 8 and not silent & {c.peer_id for c in result.closest}


async def test_queries_still_out_when_stop_when_is_met_are_withdrawn(autojump_clock) -> None:
    peers = _contacts(10)
    record = Record(type="peer", key=b"k" * 32, publisher=b"p" * 32, seq=1, expires=10**10, value=b"v", sig=b"")
    withdrawn: list[bool] = []
    late: list[ReplyFn] = []

    async def query(contact: Contact) -> QueryReply:
        await trio.sleep_forever()
        raise AssertionError

    def post(contact: Contact, on_done: ReplyFn) -> Abandon:
        if not late:  # the first one asked holds the record; the others stay silent
            trio.lowlevel.current_trio_token().run_sync_soon(on_done, QueryReply([], [record]))
        late.append(on_done)
        return withdrawn.append

    result = await iterative_lookup(b"k" * 32, peers, query, k=8, alpha=3, post=post, stop_when=lambda recs: bool(recs))
    assert result.records == [record]
    assert withdrawn == [False, False]  # the other two of the first α, not as timeouts
    for on_done in late[1:]:
        on_done(QueryReply(peers))  # a reply racing the withdrawal changes nothing
    assert result.queries == 3


async def test_contacts_that_cannot_be_posted_are_asked_in_tasks(autojump_clock) -> None:
    peers = _contacts(6)
    asked: list[PeerId] = []

    async def query(contact: Contact) -> QueryReply:
        asked.append(contact.peer_id)
        await trio.sleep(0.1)
        return QueryReply(peers)

    def post(contact: Contact, on_done: ReplyFn) -> Abandon | None:
        return None  # e.g. no open connection yet

    result = await iterative_lookup(os.urandom(32), peers, query, k=4, alpha=2, post=post)
    assert len(asked) == result.queries >= 4 and len(result.closest) == 4


async def test_a_cancelled_lookup_withdraws_its_queries_and_a_late_reply_sends_nothing(autojump_clock) -> None:
    peers = _contacts(10)
    posted: list[ReplyFn] = []
    withdrawn: list[bool] = []

    async def query(contact: Contact) -> QueryReply:
        raise AssertionError("every query here can be posted")

    def post(contact: Contact, on_done: ReplyFn) -> Abandon:
        posted.append(on_done)
        return withdrawn.append

    with trio.move_on_after(1.0):
        await iterative_lookup(os.urandom(32), peers, query, k=8, alpha=3, post=post, timeout=3.0)
    assert len(posted) == 3 and withdrawn == [False, False, False]
    posted[0](QueryReply(peers))  # a reply that raced the cancellation
    assert len(posted) == 3  # no new query went out


async def test_a_reply_arriving_while_a_cancelled_lookup_unwinds_sends_nothing(autojump_clock) -> None:
    peers = _contacts(10)
    posted: list[ReplyFn] = []
    asked: list[Contact] = []

    async def query(contact: Contact) -> QueryReply:
        asked.append(contact)
        try:
            await trio.sleep_forever()
        finally:
            # A posted query's reply lands while the lookup's nursery waits for this task.
            with trio.CancelScope(shield=True):
                await trio.sleep(0.5)
            posted[0](QueryReply(peers))
        raise AssertionError

    def post(contact: Contact, on_done: ReplyFn) -> Abandon | None:
        if posted:
            return None  # only the first can be posted; the others need a task
        posted.append(on_done)
        return lambda timed_out: None

    with trio.move_on_after(1.0):
        await iterative_lookup(os.urandom(32), peers, query, k=8, alpha=3, post=post, timeout=3.0)
    assert len(asked) == 2  # the late reply started no new query
