"""What a peer does besides routing: sell inference (worker) or buy it (client)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import trio

from ..client.backend import ClientSettings, CocoonClient
from ..inference import detect_capability, ensure_default_model
from ..market import (
    ClientMarket,
    ModelInfo,
    Prices,
    PricingPolicy,
    Reputation,
    RfqTransport,
    WorkerMarket,
    WorkerMarketConfig,
    offers_admin_command,
)
from ..session.payment_seam import PaymentsFactory
from ..session.worker import WorkerSession
from .config import NodeConfig

log = logging.getLogger(__name__)


def cache_dir(config: NodeConfig) -> Path:
    return config.data_dir / "cache"


class WorkerRole:
    """Loads the models, publishes the offer, bids, and serves awarded jobs."""

    def __init__(self, peer: Any, transport: RfqTransport, payments: PaymentsFactory) -> None:
        self.peer = peer
        self.transport = transport
        self.payments = payments
        self.engines: dict[str, Any] = {}
        self.market: WorkerMarket | None = None
        self.session: WorkerSession | None = None

    async def _load_engines(self) -> list[ModelInfo]:
        from ..inference import InferenceEngine
        from ..inference.throughput import measure_throughput

        cfg = self.peer.config.worker
        infos = []
        for spec in cfg.models or ["default"]:
            # "PATH@MODEL_ID" serves a file under a chosen id; otherwise the id comes from the GGUF.
            location, _, model_id = spec.partition("@")
            path = ensure_default_model(progress=True) if location == "default" else Path(location).expanduser()
            log.info("loading %s", path)
            engine = await InferenceEngine.load(
                path,
                model_id=model_id or None,
                n_ctx=cfg.n_ctx,
                max_concurrent=cfg.max_concurrent,
                cache_dir=cache_dir(self.peer.config),
            )
            tps = await measure_throughput(engine, cache_dir(self.peer.config))
            log.info("serving %s (sha256 %s…, %.1f tokens/s)", engine.model_id, engine.sha256[:12], tps)
            self.engines[engine.model_id] = engine
            infos.append(ModelInfo(engine.model_id, engine.sha256, engine.n_ctx, tps))
        return infos

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        peer = self.peer
        cfg = peer.config.worker
        models = await self._load_engines()
        self.session = WorkerSession(peer.host, self.engines, self._take_award, self.payments)
        self.market = WorkerMarket(
            peer.host,
            peer.dht,
            peer.clock,
            self.transport,
            models=models,
            prices=Prices(cfg.price_prompt, cfg.price_completion),
            max_jobs=cfg.max_concurrent,
            load=self.session.load,
            hardware=detect_capability().to_dict(),
            wallet=getattr(self.payments, "wallet_address", ""),
            uptime_target_bp=round(cfg.uptime_target * 10_000),
            addresses=[peer.dht.my_address],
            config=WorkerMarketConfig(pricing=PricingPolicy(mode=cfg.pricing)),
        )
        try:
            async with trio.open_nursery() as nursery:
                await peer.joined.wait()
                await nursery.start(self.market.run)
                log.info(
                    "worker ready: %s at %d/%d nanoTON per 1M prompt/completion tokens",
                    ", ".join(self.engines), cfg.price_prompt, cfg.price_completion,
                )  # fmt: skip
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):
                for engine in self.engines.values():
                    await engine.aclose()

    def _take_award(self, job_id: bytes, client: Any) -> Any:
        return self.market.take_award(job_id, client) if self.market else None

    def status(self) -> dict[str, Any]:
        stats = self.session.stats if self.session else None
        return {
            "models": list(self.engines),
            "jobs_running": stats.running if stats else 0,
            "jobs_finished": stats.jobs_finished if stats else 0,
            "tokens_served": stats.tokens_served if stats else 0,
            "earned_nanoton": stats.earned if stats else 0,
        }


class ClientRole:
    def __init__(self, peer: Any, transport: RfqTransport, payments: PaymentsFactory) -> None:
        cfg = peer.config.client
        self.peer = peer
        self.reputation = Reputation(peer.config.data_dir, peer.clock)
        self.market = ClientMarket(
            peer.host,
            peer.dht,
            peer.clock,
            transport,
            rng=peer.rng,
            weight=self.reputation.weight,
            address=peer.dht.my_address or None,
        )
        settings = ClientSettings(
            models=list(cfg.models),
            max_prices=Prices(cfg.max_price_prompt, cfg.max_price_completion),
            bid_window=cfg.bid_window,
            spot_check_rate=cfg.spot_check_rate,
        )
        self.client = CocoonClient(peer.host, peer.dht, self.market, self.reputation, payments, settings, rng=peer.rng)

    async def offers(self, args: dict[str, str]) -> dict[str, Any]:
        return await offers_admin_command(self.peer.dht, self.reputation, args)

    def status(self) -> dict[str, Any]:
        return {
            "jobs_done": self.client.jobs_done,
            "failovers": self.client.failovers,
            "spent_nanoton": self.client.spent,
        }
