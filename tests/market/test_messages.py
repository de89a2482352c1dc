"""Signed market messages: round trips, forgeries, expiry and replay (no network)."""

from __future__ import annotations

import random

import pytest

from cocoon_p2p.identity import Identity
from cocoon_p2p.market import Award, Bid, MessageRejected, Prices, Rfq, Timing
from cocoon_p2p.market.envelope import Inbox, now_ms, seal
from cocoon_p2p.wire import codec
from tests.market.helpers import ManualClock

CLIENT = Identity(b"c" * 32)
WORKER = Identity(b"w" * 32)
MALLORY = Identity(b"m" * 32)


def make_rfq(clock: ManualClock, rng: random.Random, *, ttl_ms: int = 10_000, identity: Identity = CLIENT) -> Rfq:
    return Rfq.create(
        identity,
        model="gemma3-270m",
        prompt_tokens=500,
        completion_tokens=200,
        max_prices=Prices(100, 300),
        bid_window_ms=250,
        client_addr="127.0.0.1:7400",
        expires_ms=now_ms(clock) + ttl_ms,
        rng=rng,
    )


def make_bid(rfq: Rfq, *, identity: Identity = WORKER) -> Bid:
    return Bid.create(
        identity,
        job_id=rfq.job_id,
        prices=Prices(50, 150),
        load=1,
        capacity=4,
        latency_ms=120,
        offer_ref=b"o" * 32,
        worker_addr="127.0.0.1:7401",
        expires_ms=rfq.expires_ms,
    )


def tamper(raw: bytes, **changes: object) -> bytes:
    """Re-encode ``raw`` with body fields changed but the original signature kept."""
    env = codec.unpack(raw)
    body = codec.unpack(env["body"])
    body.update(changes)
    return codec.pack({**env, "body": codec.pack(body)})


def reason(exc: pytest.ExceptionInfo[MessageRejected]) -> str:
    return exc.value.reason


def test_round_trips_keep_every_field_and_never_carry_a_prompt() -> None:
    clock, rng = ManualClock(), random.Random(1)
    rfq = make_rfq(clock, rng)
    again = Rfq.decode(rfq.raw)
    assert again == rfq and again.client_id == CLIENT.peer_id and len(rfq.job_id) == 16
    assert set(codec.unpack(codec.unpack(rfq.raw)["body"])) == {
        "job",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "max_prompt",
        "max_completion",
        "window_ms",
        "client",
        "addr",
        "expires_ms",
        "nonce",
    }
    bid = make_bid(rfq)
    assert Bid.decode(bid.raw) == bid and bid.worker_id == WORKER.peer_id
    award = Award.create(CLIENT, rfq=rfq, bid=bid, prices=Prices(60, 160), expires_ms=rfq.expires_ms)
    decoded = Award.decode(award.raw)
    assert decoded == award and decoded.winner == WORKER.peer_id and decoded.bid_ref == bid.ref
    assert (decoded.prompt_tokens, decoded.completion_tokens, decoded.model) == (500, 200, "gemma3-270m")


def test_forged_and_malformed_messages_are_rejected_with_typed_errors() -> None:
    clock, rng = ManualClock(), random.Random(2)
    rfq = make_rfq(clock, rng)
    bid = make_bid(rfq)
    award = Award.create(CLIENT, rfq=rfq, bid=bid, prices=Prices(60, 160), expires_ms=rfq.expires_ms)
    # A body changed after signing (cheaper max price, another winner, a lower bid).
    for decode, raw, change in (
        (Rfq.decode, rfq.raw, {"max_prompt": 1}),
        (Bid.decode, bid.raw, {"prompt": 1}),
        (Award.decode, award.raw, {"winner": MALLORY.peer_id.raw}),
    ):
        with pytest.raises(MessageRejected) as info:
            decode(tamper(raw, **change))
        assert reason(info) == "bad_signature"
    # Mallory signs a message that names someone else's key.
    forged = seal(MALLORY, "bid", {**codec.unpack(codec.unpack(bid.raw)["body"]), "worker": WORKER.public_key})
    with pytest.raises(MessageRejected) as info:
        Bid.decode(forged)
    assert reason(info) == "bad_signature"
    # Wrong kind, garbage, wrong types, missing fields, oversize: all "malformed", never KeyError/TypeError.
    body = codec.unpack(codec.unpack(rfq.raw)["body"])
    for raw in (
        bid.raw,
        b"\x00garbage",
        "not bytes",
        codec.pack([1, 2]),
        seal(CLIENT, "rfq", {k: v for k, v in body.items() if k != "nonce"}),
        seal(CLIENT, "rfq", {**body, "prompt_tokens": "many"}),
        seal(CLIENT, "rfq", {**body, "job": b"short"}),
        seal(CLIENT, "rfq", {**body, "prompt_tokens": 0, "completion_tokens": 0}),
        seal(CLIENT, "rfq", {**body, "model": "x" * 129}),
        b"\x01" * 10_000,
    ):
        with pytest.raises(MessageRejected) as info:
            Rfq.decode(raw)
        assert reason(info) == "malformed"
    with pytest.raises(ValueError):
        Prices(-1, 0)


def test_inbox_rejects_expired_far_future_and_replayed_messages() -> None:
    clock, rng = ManualClock(), random.Random(3)
    inbox = Inbox("rfq", clock, Timing(max_ttl_ms=60_000, skew_ms=1_000))
    rfq = make_rfq(clock, rng)
    keys = [("job", rfq.job_id), ("nonce", rfq.nonce)]
    inbox.admit(keys, rfq.expires_ms)
    with pytest.raises(MessageRejected) as info:
        inbox.admit(keys, rfq.expires_ms)
    assert reason(info) == "replayed"
    # A new job id with a reused nonce is a replay too, and rejecting it records nothing.
    with pytest.raises(MessageRejected) as info:
        inbox.admit([("job", b"n" * 16), ("nonce", rfq.nonce)], rfq.expires_ms)
    assert reason(info) == "replayed"
    inbox.admit([("job", b"n" * 16), ("nonce", b"m" * 16)], rfq.expires_ms)

    stale = make_rfq(clock, rng, ttl_ms=-5_000)
    with pytest.raises(MessageRejected) as info:
        inbox.admit([("job", stale.job_id)], stale.expires_ms)
    assert reason(info) == "expired"
    far = make_rfq(clock, rng, ttl_ms=3_600_000)
    with pytest.raises(MessageRejected) as info:
        inbox.admit([("job", far.job_id)], far.expires_ms)
    assert reason(info) == "too_far_ahead"

    # Past expiry the memory is freed, and the old message is refused as expired instead.
    clock.t += 20
    with pytest.raises(MessageRejected) as info:
        inbox.admit(keys, rfq.expires_ms)
    assert reason(info) == "expired"
    inbox.guard.prune(now_ms(clock))
    assert len(inbox.guard) == 0


def test_replay_memory_fails_closed_when_full() -> None:
    clock = ManualClock()
    inbox = Inbox("bid", clock, Timing(), max_entries=2)
    inbox.admit(["a", "b"], now_ms(clock) + 5_000)
    with pytest.raises(MessageRejected) as info:
        inbox.admit(["c"], now_ms(clock) + 5_000)
    assert reason(info) == "replayed"
    clock.t += 60
    inbox.admit(["c"], now_ms(clock) + 5_000)
    assert "c" in inbox.guard and "a" not in inbox.guard
