"""Spot checks catch a worker that serves another model under the advertised name."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from cocoon_p2p.client.types import ChatMessage, CompletionRequest
from cocoon_p2p.inference import write_tiny_gguf
from cocoon_p2p.node.config import ClientConfig, WorkerConfig
from tests.e2e.network import PeerSpec, peer_network

pytestmark = pytest.mark.slow


async def test_a_worker_passing_off_another_model_loses_reputation(tmp_path: Path) -> None:
    fake = tmp_path / "fake.gguf"
    write_tiny_gguf(fake, seed=3)
    specs = [
        PeerSpec("boot", ["bootstrap"]),
        # Cheapest, so it wins, but it serves a tiny random model as "gemma3-270m".
        PeerSpec(
            "liar", ["worker"], worker=WorkerConfig(models=[f"{fake}@gemma3-270m"], price_prompt=1, price_completion=1)
        ),
        PeerSpec("honest", ["worker"], worker=WorkerConfig(price_prompt=10_000_000, price_completion=30_000_000)),
        PeerSpec("client", ["client"], client=ClientConfig(spot_check_rate=1.0)),
    ]
    async with peer_network(tmp_path, specs) as net:
        client = net["client"].peer.client.client
        liar = net["liar"].peer.peer_id
        before = client.reputation.weight(liar)
        request = CompletionRequest(
            model="gemma3-270m", messages=(ChatMessage("user", "Say hello."),), max_tokens=8, temperature=0.0
        )
        with trio.fail_after(240):
            result = await client.complete(request)
        assert result.worker == str(liar)
        assert client.spot_checks == 1 and client.spot_check_failures == 1
        assert client.reputation.weight(liar) < before
        assert client.reputation.snapshot(liar)["spot_check_failures"] == 1
