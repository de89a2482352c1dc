"""The official openai client against a gateway on a live network; failover when a worker dies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from openai import OpenAI

from cocoon_p2p.client.types import ChatMessage, CompletionRequest, WorkerFailed
from cocoon_p2p.node.config import WorkerConfig
from cocoon_p2p.wire import codec
from tests.e2e.network import PeerSpec, RunningPeer, peer_network

pytestmark = pytest.mark.slow

SECRET = "zebra-quartz-7731"
PUBLIC_METHODS = ("dht.", "gossip.", "market.")


def _specs() -> list[PeerSpec]:
    return [
        PeerSpec("boot", ["bootstrap"]),
        PeerSpec("w1", ["worker"], worker=WorkerConfig(price_prompt=10_000_000, price_completion=30_000_000)),
        PeerSpec("w2", ["worker"], worker=WorkerConfig(price_prompt=20_000_000, price_completion=40_000_000)),
        PeerSpec("client", ["client"]),
    ]


def _capture(net: dict[str, RunningPeer]) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    for running in net.values():
        running.peer.host.taps.append(lambda direction, conn, msg: seen.append(msg))
    return seen


def _leaks(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages outside job sessions that carry the prompt."""
    leaked = []
    for msg in messages:
        if SECRET.encode() not in codec.pack(msg):
            continue
        if msg.get("t") == "sopen" and msg.get("m") == "session.job":
            continue  # the job itself, sent to the winner over its Noise session
        if msg.get("t") == "sdata":
            continue  # token chunks of a job stream (a base model may echo its prompt)
        leaked.append(msg)
    return leaked


async def test_openai_client_through_the_gateway_streaming_and_not(tmp_path: Path) -> None:
    async with peer_network(tmp_path, _specs()) as net:
        messages = _capture(net)
        client_peer = net["client"].peer
        async with trio.open_nursery() as nursery:
            client_peer.config.gateway_listen = "127.0.0.1:0"
            await nursery.start(client_peer._serve_gateway)
            base = f"http://{client_peer.gateway_address}/v1"

            def use_openai() -> tuple[Any, str, list[Any]]:
                api = OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=120)
                reply = api.chat.completions.create(
                    model="gemma3-270m",
                    messages=[{"role": "user", "content": f"Remember the code {SECRET}. What is it?"}],
                    max_tokens=10,
                    temperature=0,
                )
                chunks = list(
                    api.chat.completions.create(
                        model="gemma3-270m",
                        messages=[{"role": "user", "content": f"Say {SECRET} twice."}],
                        max_tokens=10,
                        temperature=0,
                        stream=True,
                        stream_options={"include_usage": True},
                    )
                )
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                return reply, text, chunks

            with trio.fail_after(240):
                reply, streamed, chunks = await trio.to_thread.run_sync(use_openai)
            assert reply.choices[0].message.content
            assert reply.usage.completion_tokens > 0 and reply.usage.prompt_tokens > 0
            extra = reply.model_extra["cocoon"]
            assert extra["worker"] == str(net["w1"].peer.peer_id)
            assert extra["cost_nanoton"] > 0
            assert streamed and chunks[-1].usage is not None

            def bad_requests() -> list[tuple[int, dict]]:
                out = []
                with httpx.Client(base_url=base, timeout=60) as http:
                    for body in (
                        {"model": "nope", "messages": [{"role": "user", "content": "x"}]},
                        {"model": "gemma3-270m", "messages": []},
                        {"model": "gemma3-270m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10**9},
                        {"model": "gemma3-270m", "messages": "not a list"},
                    ):
                        r = http.post("/chat/completions", json=body)
                        out.append((r.status_code, r.json()))
                    r = http.post("/chat/completions", content=b"{broken", headers={"content-type": "application/json"})
                    out.append((r.status_code, r.json()))
                return out

            results = await trio.to_thread.run_sync(bad_requests)
            assert [status for status, _ in results] == [404, 400, 400, 400, 400]
            assert all("message" in body["error"] for _, body in results)
            assert reply.choices[0].message.content  # the gateway kept serving: a fresh request works
            again = await trio.to_thread.run_sync(
                lambda: OpenAI(base_url=base, api_key="unused", max_retries=0).completions.create(
                    model="gemma3-270m", prompt="One, two,", max_tokens=4, temperature=0
                )
            )
            assert again.choices[0].text
            nursery.cancel_scope.cancel()
        assert any(m.get("m", "").startswith("market.") for m in messages)
        assert _leaks(messages) == []


async def test_killing_the_worker_mid_stream_fails_over_then_errors_when_none_is_left(tmp_path: Path) -> None:
    async with peer_network(tmp_path, _specs()) as net:
        client = net["client"].peer.client.client
        request = CompletionRequest(
            model="gemma3-270m", messages=(ChatMessage("user", "Count from one to twenty."),), max_tokens=24,
            temperature=0.0,
        )  # fmt: skip
        with trio.fail_after(180):
            reference = await client.complete(request)

        def kill_after_chunks(victim: RunningPeer, count: int) -> None:
            sent = 0

            def tap(direction: str, conn: Any, msg: dict) -> None:
                nonlocal sent
                if direction == "out" and msg.get("t") == "sdata" and msg.get("d", {}).get("t") == "chunk":
                    sent += 1
                    if sent == count:
                        victim.kill()

            victim.peer.host.taps.append(tap)

        kill_after_chunks(net["w1"], 3)
        with trio.fail_after(180):
            result = await client.complete(request)
        assert result.worker == str(net["w2"].peer.peer_id)
        assert result.text == reference.text  # restart on the runner-up, the delivered prefix not repeated
        assert client.failovers == 1

        kill_after_chunks(net["w2"], 2)
        with trio.fail_after(180), pytest.raises(WorkerFailed) as info:
            await client.complete(request)
        assert "failed" in str(info.value)
