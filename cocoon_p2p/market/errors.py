"""Errors the market layer raises on purpose."""

from __future__ import annotations

from ..errors import CocoonError, ProtocolError


class MessageRejected(ProtocolError):
    """A market message (offer, RFQ, bid, award) failed a check.

    ``reason`` is a stable code, also used as the RPC error code when a handler
    refuses the message: malformed, bad_signature, expired, too_far_ahead,
    replayed, wrong_sender, wrong_model, unknown_job, auction_closed, not_winner,
    bid_mismatch, bad_price, over_capacity.
    """

    code = "rejected"

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class MarketError(CocoonError):
    """Base of the market's own failures (not protocol violations by a peer)."""


class AuctionFailed(MarketError):
    """No worker could be awarded the job; the subclass says why."""

    def __init__(self, model: str, attempts: int, message: str) -> None:
        super().__init__(f"model {model!r}: {message} (after {attempts} attempt{'s' if attempts != 1 else ''})")
        self.model = model
        self.attempts = attempts


class NoOffers(AuctionFailed):
    """Nobody publishes an offer for the model in the DHT."""

    def __init__(self, model: str, attempts: int) -> None:
        super().__init__(model, attempts, "no worker offers this model in the DHT")


class AllAboveMaxPrice(AuctionFailed):
    """Workers exist, but every bid (or offer) asks more than the client's max prices."""

    def __init__(self, model: str, attempts: int, cheapest: tuple[int, int] | None) -> None:
        hint = ""
        if cheapest is not None:
            hint = f"; the cheapest asks {cheapest[0]} / {cheapest[1]} nanoTON per 1M prompt / completion tokens"
        super().__init__(model, attempts, f"every worker asks more than the max prices{hint}")
        self.cheapest = cheapest


class NoBids(AuctionFailed):
    """Offers within the max prices exist, but no worker bid in the window (busy or unreachable)."""

    def __init__(self, model: str, attempts: int, offers: int) -> None:
        detail = f"{offers} offer(s) in the DHT but no bid arrived within the bid window (busy or unreachable)"
        super().__init__(model, attempts, detail)
        self.offers = offers


class AwardFailed(AuctionFailed):
    """Bids arrived, but every eligible bidder refused or missed the award."""

    def __init__(self, model: str, attempts: int, reasons: list[str]) -> None:
        super().__init__(model, attempts, "no bidder accepted the award: " + "; ".join(reasons[:5]))
        self.reasons = reasons
