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
