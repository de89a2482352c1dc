"""The award rule over random bid sets (hypothesis)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon_p2p.identity import PeerId
from cocoon_p2p.market import Prices, clearing_prices, decide


@dataclass(frozen=True)
class Quote:
    worker_id: PeerId
    prices: Prices


def peer(n: int) -> PeerId:
    return PeerId(n.to_bytes(32, "big"))


# Small price ranges make exact ties common; big ones exercise the integer arithmetic.
price = st.one_of(st.integers(0, 5), st.integers(0, 10**12))
weights = st.one_of(st.just(1.0), st.sampled_from([0.25, 0.5, 1.0]), st.floats(1e-6, 1.0))


@st.composite
def markets(draw: st.DrawFn) -> tuple[list[Quote], dict[PeerId, float], Prices, int, int]:
    ids = draw(st.lists(st.integers(1, 10**6), min_size=0, max_size=12, unique=True))
    quotes = [Quote(peer(i), Prices(draw(price), draw(price))) for i in ids]
    weight = {q.worker_id: draw(weights) for q in quotes}
    max_prices = Prices(draw(price), draw(price))
    prompt_tokens = draw(st.integers(0, 100_000))
    completion_tokens = draw(st.integers(0 if prompt_tokens else 1, 100_000))
    return quotes, weight, max_prices, prompt_tokens, completion_tokens


def adjusted(q: Quote, w: float, p: int, c: int) -> Fraction:
    return Fraction(q.prices.prompt * p + q.prices.completion * c) / Fraction(w)


@settings(max_examples=600, deadline=None)
@given(markets())
def test_cheapest_adjusted_eligible_bid_wins_at_the_documented_second_price(market) -> None:
    quotes, weight, max_prices, p, c = market
    decision = decide(quotes, prompt_tokens=p, completion_tokens=c, max_prices=max_prices, weight=weight.__getitem__)
    eligible = [
        q for q in quotes if q.prices.prompt <= max_prices.prompt and q.prices.completion <= max_prices.completion
    ]
    if not eligible:
        assert decision is None
        return
    assert decision is not None
    # Ranked = exactly the eligible bids, in (adjusted cost, worker id) order; the rest were above max.
    expected = sorted(eligible, key=lambda q: (adjusted(q, weight[q.worker_id], p, c), q.worker_id.raw))
    assert [r.bid for r in decision.ranked] == expected
    assert set(decision.above_max) == set(quotes) - set(eligible)
    winner = decision.winner.bid
    best = min(adjusted(q, weight[q.worker_id], p, c) for q in eligible)
    assert adjusted(winner, weight[winner.worker_id], p, c) == best
    tied = [q for q in eligible if adjusted(q, weight[q.worker_id], p, c) == best]
    assert winner.worker_id == min(q.worker_id for q in tied)
    # Clearing prices: max prices for a lone bid, else the runner-up's, floored at the winner's, capped at max.
    clearing = decision.clearing
    if len(eligible) == 1:
        assert clearing == max_prices
    else:
        second = expected[1].prices
        assert clearing.prompt == min(max_prices.prompt, max(winner.prices.prompt, second.prompt))
        assert clearing.completion == min(max_prices.completion, max(winner.prices.completion, second.completion))
    assert winner.prices.within(clearing)
    assert clearing.within(max_prices)


@settings(max_examples=300, deadline=None)
@given(markets(), st.data())
def test_winner_cannot_change_its_payment_by_shading_its_bid(market, data) -> None:
    """With unit weights, a winner bidding lower (and still winning) is paid the same clearing prices."""
    quotes, _, max_prices, p, c = market
    decision = decide(quotes, prompt_tokens=p, completion_tokens=c, max_prices=max_prices)
    if decision is None or len(decision.ranked) < 2:
        return
    winner, second = decision.winner.bid, decision.ranked[1].bid
    if not second.prices.within(max_prices) or not winner.prices.within(second.prices):
        return  # the rule only promises price-independence while the runner-up is dearer on both kinds
    lower = Quote(
        winner.worker_id,
        Prices(data.draw(st.integers(0, winner.prices.prompt)), data.draw(st.integers(0, winner.prices.completion))),
    )
    shaded = [lower if q is winner else q for q in quotes]
    again = decide(shaded, prompt_tokens=p, completion_tokens=c, max_prices=max_prices)
    assert again is not None and again.winner.bid.worker_id == winner.worker_id
    assert again.clearing == decision.clearing == second.prices


def test_single_bid_pays_the_max_prices_and_bids_above_max_are_ineligible() -> None:
    cap = Prices(100, 300)
    lone = Quote(peer(1), Prices(10, 20))
    decision = decide([lone], prompt_tokens=1000, completion_tokens=100, max_prices=cap)
    assert decision is not None and decision.winner.bid is lone and decision.clearing == cap

    dear = [Quote(peer(2), Prices(101, 1)), Quote(peer(3), Prices(1, 301))]
    assert decide(dear, prompt_tokens=1000, completion_tokens=100, max_prices=cap) is None
    decision = decide([*dear, lone], prompt_tokens=1000, completion_tokens=100, max_prices=cap)
    assert decision is not None and decision.clearing == cap and set(decision.above_max) == set(dear)


def test_reputation_can_outweigh_price_and_ties_go_to_the_lowest_worker_id() -> None:
    cheap_unreliable = Quote(peer(1), Prices(10, 10))
    dear_reliable = Quote(peer(2), Prices(15, 15))
    weight = {peer(1): 0.5, peer(2): 1.0}
    decision = decide(
        [cheap_unreliable, dear_reliable],
        prompt_tokens=1,
        completion_tokens=1,
        max_prices=Prices(50, 50),
        weight=weight.__getitem__,
    )
    assert decision is not None
    assert decision.winner.bid is dear_reliable  # 30 / 1.0 < 20 / 0.5
    assert decision.clearing == Prices(15, 15)  # never below the winner's own bid

    a, b = Quote(peer(7), Prices(5, 5)), Quote(peer(3), Prices(5, 5))
    decision = decide([a, b], prompt_tokens=3, completion_tokens=3, max_prices=Prices(9, 9))
    assert decision is not None and decision.winner.bid is b and decision.clearing == Prices(5, 5)


def test_duplicate_bids_from_one_worker_count_once_and_weights_are_checked() -> None:
    first, again = Quote(peer(1), Prices(9, 9)), Quote(peer(1), Prices(1, 1))
    other = Quote(peer(2), Prices(5, 5))
    decision = decide([first, again, other], prompt_tokens=1, completion_tokens=1, max_prices=Prices(10, 10))
    assert decision is not None and [r.bid for r in decision.ranked] == [other, first]
    for bad in (0.0, -1.0, 1.5, float("nan")):
        with pytest.raises(ValueError):
            decide([other], prompt_tokens=1, completion_tokens=1, max_prices=Prices(10, 10), weight=lambda _, w=bad: w)
    assert clearing_prices(Prices(3, 4), None, Prices(8, 9)) == Prices(8, 9)
