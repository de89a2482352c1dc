"""The ``offers`` admin command: what the DHT holds for a model, with our reputation view."""

from __future__ import annotations

from typing import Any

from ..dht import Dht
from ..errors import ConfigError
from .messages import MAX_MODEL_ID
from .offer import Offer, find_offers
from .reputation import Reputation


def offer_summary(offer: Offer, model_id: str, reputation: Reputation | None, now: float) -> dict[str, Any]:
    """A JSON-able view of one offer (prices are integer nanoTON per 1M tokens)."""
    model = offer.model(model_id)
    return {
        "worker": str(offer.worker_id),
        "addresses": list(offer.addrs),
        "wallet": offer.wallet,
        "price_prompt": offer.prices.prompt,
        "price_completion": offer.prices.completion,
        "gpus": [{"name": g.name, "vram_mb": g.vram_mb, "count": g.count} for g in offer.gpus],
        "cpu": None if offer.cpu is None else {"model": offer.cpu.model, "cores": offer.cpu.cores,
                                               "ram_mb": offer.cpu.ram_mb},
        "model_sha256": model.sha256 if model else None,
        "context": model.context if model else None,
        "tokens_per_s": model.tokens_per_s if model else None,
        "max_jobs": offer.max_jobs,
        "uptime_s": max(0, int(now) - offer.started_at),
        "uptime_target": offer.uptime_target_bp / 10_000,
        "attested": offer.attestation is not None,
        "expires": offer.expires,
        "reputation": reputation.snapshot(offer.worker_id) if reputation is not None else None,
    }


async def offers_admin_command(dht: Dht, reputation: Reputation | None, args: dict[str, str]) -> dict[str, Any]:
    """``GET /v1/offers?model=ID`` -> ``{"model": ID, "offers": [offer_summary, ...]}``, cheapest first."""
    model = (args.get("model") or "").strip()
    if not model or len(model) > MAX_MODEL_ID:
        raise ConfigError(f"give a model id of 1-{MAX_MODEL_ID} characters, e.g. `cocoon-p2p offers gemma3-270m`")
    offers = await find_offers(dht, model)
    now = dht.clock.now()
    return {"model": model, "offers": [offer_summary(o, model, reputation, now) for o in offers]}
