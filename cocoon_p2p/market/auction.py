"""The award rule: reputation-adjusted lowest price wins, paid the second price.

Pure: no I/O, no clock, no randomness. Given the RFQ's token estimates and max
prices, the bids, and a reputation weight per worker:

1. **Eligible** bids ask at most the max price for *both* token kinds; one bid per
   worker (the first one given is kept).
2. **Scaled cost** ``c = prompt_tokens * bid.prompt + completion_tokens * bid.completion``
   (the job's estimated cost in nanoTON times 10^6, exact integer).
3. **Adjusted cost** ``c / w`` with ``w`` the worker's reputation weight in (0, 1],
   compared exactly (as fractions, no float rounding).
4. **Ranking**: ascending adjusted cost, ties broken by the worker's peer id bytes
   (ascending). The first is the winner; the rest are runners-up for failover.
5. **Clearing prices** (per token kind, independently):
   one eligible bid  -> the client's max prices;
   two or more      -> ``min(max_price, max(winner's price, runner-up's price))``,
   where the runner-up is the second-ranked bid. So the winner is never paid below
   its own bid nor above the client's max, and otherwise gets the runner-up's price.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Generic, Protocol, TypeVar

from ..identity import PeerId
from .messages import Prices


class Quote(Protocol):
    """What the rule needs from a bid (``messages.Bid`` satisfies it)."""

    @property
    def worker_id(self) -> PeerId: ...

    @property
    def prices(self) -> Prices: ...


Q = TypeVar("Q", bound=Quote)


@dataclass(frozen=True)
class Ranked(Generic[Q]):
    bid: Q
    weight: float
    scaled_cost: int
    adjusted: Fraction


@dataclass(frozen=True)
class Decision(Generic[Q]):
    winner: Ranked[Q]
    clearing: Prices
    ranked: tuple[Ranked[Q], ...]  # every eligible bid, best first (winner at index 0)
    above_max: tuple[Q, ...]  # bids refused for asking more than the max prices

    @property
    def runners_up(self) -> tuple[Ranked[Q], ...]:
        return self.ranked[1:]


def check_weight(weight: float) -> Fraction:
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not math.isfinite(weight):
        raise ValueError(f"reputation weight must be a finite number, got {weight!r}")
    if not 0 < weight <= 1:
        raise ValueError(f"reputation weight must be in (0, 1], got {weight!r}")
    return Fraction(weight)  # exact value of the float: ranking stays deterministic


def clearing_prices(winner: Prices, runner_up: Prices | None, max_prices: Prices) -> Prices:
    """Rule 5 on its own, for callers (and workers) that want to check a clearing price."""
    if runner_up is None:
        return max_prices
    return Prices(
        min(max_prices.prompt, max(winner.prompt, runner_up.prompt)),
        min(max_prices.completion, max(winner.completion, runner_up.completion)),
    )


def rank(
    bids: Sequence[Q],
    *,
    prompt_tokens: int,
    completion_tokens: int,
    max_prices: Prices,
    weight: Callable[[PeerId], float] = lambda _: 1.0,
) -> tuple[list[Ranked[Q]], list[Q]]:
    """Eligible bids in award order, and the bids above the max prices."""
    seen: set[PeerId] = set()
    eligible: list[Ranked[Q]] = []
    above: list[Q] = []
    for bid in bids:
        if bid.worker_id in seen:
            continue
        seen.add(bid.worker_id)
        if not bid.prices.within(max_prices):
            above.append(bid)
            continue
        w = weight(bid.worker_id)
        exact_w = check_weight(w)
        scaled = bid.prices.scaled_cost(prompt_tokens, completion_tokens)
        eligible.append(Ranked(bid, float(w), scaled, Fraction(scaled) / exact_w))
    eligible.sort(key=lambda r: (r.adjusted, r.bid.worker_id.raw))
    return eligible, above


def decide(
    bids: Sequence[Q],
    *,
    prompt_tokens: int,
    completion_tokens: int,
    max_prices: Prices,
    weight: Callable[[PeerId], float] = lambda _: 1.0,
) -> Decision[Q] | None:
    """Apply the award rule; None when no bid is eligible."""
    ranked, above = rank(
        bids, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, max_prices=max_prices, weight=weight
    )
    if not ranked:
        return None
    winner = ranked[0]
    runner_up = ranked[1].bid.prices if len(ranked) > 1 else None
    return Decision(winner, clearing_prices(winner.bid.prices, runner_up, max_prices), tuple(ranked), tuple(above))
