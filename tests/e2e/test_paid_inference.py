"""Join, find, bid, serve, pay: the whole path on loopback with a real GGUF model."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from cocoon_p2p.client.types import ChatMessage, CompletionRequest, ModelNotFound
from cocoon_p2p.node.config import WorkerConfig
from cocoon_p2p.session.protocol import job_cost
from tests.e2e.network import PeerSpec, peer_network

pytestmark = pytest.mark.slow

CHEAP = WorkerConfig(price_prompt=10_000_000, price_completion=30_000_000)
DEAR = WorkerConfig(price_prompt=20_000_000, price_completion=50_000_000)


async def test_auctioned_job_is_served_by_the_cheapest_worker_at_the_second_price(tmp_path: Path) -> None:
    specs = [
        PeerSpec("boot", ["bootstrap"]),
        PeerSpec("cheap", ["worker"], worker=CHEAP),
        PeerSpec("dear", ["worker"], worker=DEAR),
        PeerSpec("client", ["client"]),
    ]
    async with peer_network(tmp_path, specs) as net:
        client = net["client"].peer.client.client
        with trio.fail_after(120):
            listing = await client.list_models()
        assert [m.model for m in listing] == ["gemma3-270m"] and listing[0].offers == 2
        request = CompletionRequest(
            model="gemma3-270m",
            messages=(ChatMessage("user", "Name a colour."),),
            max_tokens=12,
            temperature=0.0,
        )
        with trio.fail_after(180):
            result = await client.complete(request)
        assert result.worker == str(net["cheap"].peer.peer_id)
        assert (result.price.prompt_per_million, result.price.completion_per_million) == (20_000_000, 50_000_000)
        assert result.text and 0 < result.completion_tokens <= 12
        assert result.cost_nanoton == job_cost(20_000_000, 50_000_000, result.prompt_tokens, result.completion_tokens)
        worker_stats = net["cheap"].peer.worker.session.stats
        with trio.fail_after(30):  # the worker books the job once the final payment arrived
            while worker_stats.jobs_finished < 1:
                await trio.sleep(0.05)
        assert worker_stats.jobs_finished == 1 and worker_stats.earned == result.cost_nanoton

        with pytest.raises(ModelNotFound):
            await client.complete(CompletionRequest(model="no-such-model", prompt="hi", max_tokens=4))


class _StingyPayer:
    """Acknowledges every chunk but never pays more than nothing."""

    async def begin(self) -> dict:
        return {"mode": "ledger"}

    async def pay(self, owed_total: int) -> dict:
        return {"mode": "ledger", "total": 0}

    async def finish(self) -> None:
        return None


async def test_worker_stops_streaming_when_payment_lags(tmp_path: Path) -> None:
    from cocoon_p2p.errors import RemoteError
    from cocoon_p2p.session.client import JobRun, JobTerms

    specs = [
        PeerSpec("boot", ["bootstrap"]),
        PeerSpec("worker", ["worker"], worker=CHEAP),
        PeerSpec("client", ["client"]),
    ]
    async with peer_network(tmp_path, specs) as net:
        worker = net["worker"].peer.worker
        worker.session.config.payment_timeout = 1.0
        market = net["client"].peer.client.market
        with trio.fail_after(120):
            outcome = await market.run_auction(
                "gemma3-270m", 10, 64, max_prices=net["client"].peer.client.client.settings.max_prices
            )
            conn = await net["client"].peer.host.connect(outcome.winner.worker_addr, expected=outcome.winner.worker_id)
            terms = JobTerms(
                outcome.award.job_id, outcome.award.raw,
                {"prompt": "Once upon a time", "max_tokens": 64, "temperature": 0.0},
                outcome.clearing.prompt, outcome.clearing.completion, 64,
            )  # fmt: skip
            job = JobRun(conn, terms, _StingyPayer())
            received = []
            with pytest.raises(RemoteError) as info:
                async for text in job.stream():
                    received.append(text)
        assert info.value.code == "payment_lagging"
        # Unpaid, the worker delivered at most the credit (16 tokens) plus one chunk.
        assert 0 < job.completion_tokens <= 17
        assert worker.session.stats.payment_stops == 1
