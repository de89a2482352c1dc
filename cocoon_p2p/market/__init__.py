"""The market (DESIGN.md §7): offers in the DHT, RFQs, sealed bids, second-price awards, reputation."""

from .admin import offer_summary, offers_admin_command
from .auction import Decision, Ranked, clearing_prices, decide, rank
from .client import AuctionOutcome, ClientMarket, ClientMarketConfig
from .envelope import Timing
from .errors import AllAboveMaxPrice, AuctionFailed, AwardFailed, MarketError, MessageRejected, NoBids, NoOffers
from .messages import Award, Bid, Prices, Rfq
from .offer import (
    CpuInfo,
    GpuInfo,
    ModelInfo,
    Offer,
    find_offers,
    hardware_from_dict,
    install_offer_validator,
    publish_offer,
    withdraw_offer,
)
from .pricing import PricingPolicy
from .reputation import Reputation, ReputationConfig
from .transport import DirectRfqTransport, GossipRfqTransport, RfqTransport, rfq_topic
from .worker import WorkerMarket, WorkerMarketConfig

__all__ = [
    "AllAboveMaxPrice",
    "AuctionFailed",
    "AuctionOutcome",
    "Award",
    "AwardFailed",
    "Bid",
    "ClientMarket",
    "ClientMarketConfig",
    "CpuInfo",
    "Decision",
    "DirectRfqTransport",
    "GossipRfqTransport",
    "GpuInfo",
    "MarketError",
    "MessageRejected",
    "ModelInfo",
    "NoBids",
    "NoOffers",
    "Offer",
    "Prices",
    "PricingPolicy",
    "Ranked",
    "Reputation",
    "ReputationConfig",
    "Rfq",
    "RfqTransport",
    "Timing",
    "WorkerMarket",
    "WorkerMarketConfig",
    "clearing_prices",
    "decide",
    "find_offers",
    "hardware_from_dict",
    "install_offer_validator",
    "offer_summary",
    "offers_admin_command",
    "publish_offer",
    "rank",
    "rfq_topic",
    "withdraw_offer",
]
