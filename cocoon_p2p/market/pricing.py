"""How a worker turns its offer prices and current load into bid prices."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .messages import Prices

PRICING_MODES = ("fixed", "load")


@dataclass(frozen=True)
class PricingPolicy:
    """``fixed``: always bid the offer's prices.

    ``load``: ``price * (1 + surge * load / max_jobs)``, with ``surge`` in permille
    (1000 doubles the price when every slot is taken). Integer arithmetic, rounded
    down, so the bid at load 0 equals the offer.
    """

    mode: str = "fixed"
    surge_permille: int = 1000

    def __post_init__(self) -> None:
        if self.mode not in PRICING_MODES:
            raise ConfigError(f"pricing must be one of {', '.join(PRICING_MODES)}, not {self.mode!r}")
        if not isinstance(self.surge_permille, int) or self.surge_permille < 0:
            raise ConfigError("pricing surge must be a non-negative integer (permille)")

    def bid_prices(self, base: Prices, load: int, max_jobs: int) -> Prices:
        if self.mode == "fixed" or max_jobs <= 0:
            return base
        load = max(0, min(load, max_jobs))
        denominator = 1000 * max_jobs

        def scale(price: int) -> int:
            return min(price + price * self.surge_permille * load // denominator, (1 << 64) - 1)

        return Prices(scale(base.prompt), scale(base.completion))
