"""`cocoon-p2p offers MODEL` against a node's real admin interface."""

from __future__ import annotations

import json

import pytest
import trio

from cocoon_p2p.cli.main import main
from cocoon_p2p.cli.market_cmds import ton
from cocoon_p2p.errors import ConfigError
from cocoon_p2p.market import Prices, Reputation, offers_admin_command
from cocoon_p2p.node.admin import serve_admin
from tests.market.helpers import MODEL, WorkerSpec, market_network


async def test_offers_command_lists_prices_hardware_and_reputation(tmp_path, capsys) -> None:
    specs = [WorkerSpec(Prices(20_000_000, 60_000_000)), WorkerSpec(Prices(1_500_000_000, 3_000_000_000))]
    async with market_network(specs, transport="direct") as net:
        cheap, dear = net.workers
        reputation = Reputation(tmp_path, net.client_peer.dht.clock)
        reputation.record_success(cheap.peer_id, latency_ms=250, tokens_per_s=41)
        dht = net.client_peer.dht

        body = await offers_admin_command(dht, reputation, {"model": MODEL})
        assert [o["worker"] for o in body["offers"]] == [str(cheap.peer_id), str(dear.peer_id)]
        first = body["offers"][0]
        assert first["price_prompt"] == 20_000_000 and first["price_completion"] == 60_000_000
        assert first["gpus"] == [{"name": "NVIDIA H100", "vram_mb": 81559, "count": 1}]
        assert first["tokens_per_s"] == 40.0 and first["context"] == 2048 and first["wallet"] == "EQ-test-wallet"
        assert first["reputation"]["successes"] == 1 and body["offers"][1]["reputation"] is None
        json.dumps(body)  # the admin API answers JSON
        with pytest.raises(ConfigError):
            await offers_admin_command(dht, reputation, {})

        async def offers(args: dict[str, str]) -> dict:
            return await offers_admin_command(dht, reputation, args)

        async with trio.open_nursery() as nursery:
            await nursery.start(serve_admin, tmp_path, "127.0.0.1:0", {"offers": offers}, lambda: "")
            code = await trio.to_thread.run_sync(main, ["offers", MODEL, "--data-dir", str(tmp_path)])
            out = capsys.readouterr().out
            assert code == 0
            assert "0.02" in out and "0.06" in out and "1.5" in out and "NVIDIA H100" in out and "(2 offers" in out
            code = await trio.to_thread.run_sync(main, ["offers", "nobody-has-it", "--data-dir", str(tmp_path)])
            assert code == 0 and "no offers" in capsys.readouterr().out
            code = await trio.to_thread.run_sync(main, ["offers", MODEL, "--json", "--data-dir", str(tmp_path)])
            assert code == 0 and json.loads(capsys.readouterr().out)["model"] == MODEL
            nursery.cancel_scope.cancel()


def test_ton_formatting_never_uses_floats() -> None:
    assert ton(0) == "0" and ton(1) == "0.000000001" and ton(20_000_000) == "0.02" and ton(3 * 10**9) == "3"
    assert ton(2**64 - 1) == "18446744073.709551615"
