"""The gateway's HTTP surface driven with raw httpx: bad bodies, errors, SSE framing, metrics."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio

from cocoon_p2p.client.types import NoBids, Unavailable, WorkerFailed
from cocoon_p2p.gateway import GatewayConfig

from .scripted_backend import CREATED, ScriptedBackend, cost, running_gateway

CHAT = "/v1/chat/completions"
GOOD_CHAT: dict[str, Any] = {"model": "gemma3-270m", "messages": [{"role": "user", "content": "hi"}]}


def assert_openai_error(
    response: httpx.Response, status: int, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    return error


def sse_events(text: str) -> list[tuple[str | None, str]]:
    """(event name, data) per SSE event of a whole body."""
    events = []
    for block in text.split("\n\n"):
        if not block:
            continue
        name = None
        data = []
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        events.append((name, "\n".join(data)))
    return events


async def test_malformed_json_is_400_invalid_json() -> None:
    async with running_gateway(ScriptedBackend()) as url, httpx.AsyncClient(base_url=url) as http:
        for body in [
            b"{bad",
            b"",
            b"\xff\xfe\x00garbage",
            b'{"model": NaN}',
            b"[" * 100_000,
            b'{"seed": ' + b"9" * 5000 + b"}",
        ]:
            assert_openai_error(await http.post(CHAT, content=body), 400, "invalid_json")
        for body in [b"[]", b'"text"', b"42", b"null"]:
            assert_openai_error(await http.post("/v1/completions", content=body), 400, "invalid_json")


def chat(**changes: Any) -> dict[str, Any]:
    return {**GOOD_CHAT, **changes}


def completion(**changes: Any) -> dict[str, Any]:
    return {"model": "gemma3-270m", "prompt": "hi", **changes}


BAD_CHAT = [
    (chat(model=5), "model"),
    (chat(model=""), "model"),
    ({"messages": GOOD_CHAT["messages"]}, "model"),
    (chat(messages="hi"), "messages"),
    (chat(messages=[]), "messages"),
    (chat(messages=None), "messages"),
    (chat(messages=["hi"]), "messages[0]"),
    (chat(messages=[{"role": "robot", "content": "x"}]), "messages[0].role"),
    (chat(messages=[{"role": "tool", "content": "x", "tool_call_id": None}]), "messages[0].role"),
    (chat(messages=[{"role": "user", "content": 5}]), "messages[0].content"),
    (chat(messages=[{"role": "user"}]), "messages[0].content"),
    (chat(messages=[{"role": "user", "content": "x", "mood": "happy"}]), "messages[0].mood"),
    (
        chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
        "messages[0].content[0]",
    ),
    (chat(messages=[{"role": "assistant", "content": "x", "tool_calls": [{}]}]), "messages[0].tool_calls"),
    (chat(max_tokens="10"), "max_tokens"),
    (chat(max_tokens=1.5), "max_tokens"),
    (chat(max_tokens=True), "max_tokens"),
    (chat(max_tokens=0), "max_tokens"),
    (chat(max_tokens=-5), "max_tokens"),
    (chat(max_tokens=10**30), "max_tokens"),
    (chat(max_completion_tokens=20_000), "max_completion_tokens"),
    (chat(temperature="hot"), "temperature"),
    (chat(temperature=True), "temperature"),
    (chat(temperature=2.5), "temperature"),
    (chat(temperature=10**400), "temperature"),
    (chat(top_p=1.5), "top_p"),
    (chat(seed=1.5), "seed"),
    (chat(seed=2**64), "seed"),
    (chat(stop=[1]), "stop"),
    (chat(stop=["a", "b", "c", "d", "e"]), "stop"),
    (chat(stop=[""]), "stop"),
    (chat(stream="yes"), "stream"),
    (chat(stream_options={"include_usage": True}), "stream_options"),
    (chat(stream=True, stream_options={"include_usage": "yes"}), "stream_options.include_usage"),
    (chat(stream=True, stream_options=[]), "stream_options"),
    (chat(n=2), "n"),
    (chat(n=True), "n"),
    (chat(logprobs=True), "logprobs"),
    (chat(tools=[{"type": "function", "function": {"name": "f"}}]), "tools"),
    (chat(response_format={"type": "json_object"}), "response_format"),
    (chat(user=5), "user"),
    (chat(prompt="hi"), "prompt"),
    (chat(frobnicate=1), "frobnicate"),
]
BAD_COMPLETION = [
    (completion(prompt=None), "prompt"),
    (completion(prompt=5), "prompt"),
    (completion(prompt=[1, 2, 3]), "prompt"),
    (completion(prompt=["a", "b"]), "prompt"),
    (completion(prompt=[]), "prompt"),
    (completion(echo=True), "echo"),
    (completion(best_of=3), "best_of"),
    (completion(messages=GOOD_CHAT["messages"]), "messages"),
    (completion(max_completion_tokens=5), "max_completion_tokens"),
]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [(CHAT, b, p) for b, p in BAD_CHAT] + [("/v1/completions", b, p) for b, p in BAD_COMPLETION],
)
async def test_invalid_bodies_are_400_naming_the_field(path: str, body: dict[str, Any], param: str) -> None:
    backend = ScriptedBackend()
    async with running_gateway(backend) as url, httpx.AsyncClient(base_url=url) as http:
        assert_openai_error(await http.post(path, json=body), 400, param=param)
    assert backend.requests == []


async def test_neutral_values_nulls_and_text_parts_are_accepted() -> None:
    backend = ScriptedBackend()
    body = chat(
        messages=[
            {"role": "developer", "content": "be brief", "name": "ops"},
            {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
            {"role": "assistant", "content": "ok", "tool_calls": None},
        ],
        n=1,
        presence_penalty=0,
        frequency_penalty=0.0,
        logprobs=False,
        tools=None,
        tool_choice="none",
        response_format={"type": "text"},
        temperature=None,
        seed=None,
        stop="END",
        user="me",
        max_tokens=None,
        stream=False,
        stream_options=None,
    )
    async with running_gateway(backend) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.post(CHAT, json=body)
    assert response.status_code == 200, response.text
    sent = backend.requests[0]
    assert sent.messages is not None
    assert [(m.role, m.content) for m in sent.messages] == [
        ("system", "be brief"),
        ("user", "one\ntwo"),
        ("assistant", "ok"),
    ]
    assert sent.stop == ("END",) and sent.temperature is None and sent.seed is None


async def test_missing_max_tokens_gets_the_default_capped_by_context() -> None:
    backend = ScriptedBackend()
    config = GatewayConfig(default_max_tokens=300, wall_clock=lambda: float(CREATED))
    async with running_gateway(backend, config) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.post(CHAT, json=GOOD_CHAT)).status_code == 200
        assert (await http.post(CHAT, json=chat(model="org/tiny-random"))).status_code == 200
        assert (await http.post(CHAT, json=chat(max_completion_tokens=9, max_tokens=7))).status_code == 200
    assert [r.max_tokens for r in backend.requests] == [300, 128, 9]


async def test_oversized_body_is_413() -> None:
    config = GatewayConfig(max_body_bytes=1000)
    async with running_gateway(ScriptedBackend(), config) as url, httpx.AsyncClient(base_url=url) as http:
        big = chat(messages=[{"role": "user", "content": "x" * 2000}])
        assert_openai_error(await http.post(CHAT, json=big), 413, "request_too_large")

        async def chunked() -> Any:  # no content-length: the limit must hold while reading
            yield b'{"model": "gemma3-270m", "messages": [{"role": "user", "content": "'
            for _ in range(20):
                yield b"x" * 100
            yield b'"}]}'

        assert_openai_error(await http.post(CHAT, content=chunked()), 413, "request_too_large")
        assert (await http.post(CHAT, json=GOOD_CHAT)).status_code == 200


async def test_unknown_paths_and_methods_answer_in_openai_shape() -> None:
    async with running_gateway(ScriptedBackend()) as url, httpx.AsyncClient(base_url=url) as http:
        assert_openai_error(await http.get("/v1/engines"), 404, "not_found")
        assert_openai_error(await http.get("/v1/models/nope"), 404, "model_not_found")
        response = await http.get(CHAT)
        assert_openai_error(response, 405, "method_not_allowed")
        assert response.headers["allow"] == "POST"
        assert (await http.get("/health")).json() == {"status": "ok"}


async def test_backend_failures_map_to_their_status() -> None:
    backend = ScriptedBackend()
    async with running_gateway(backend) as url, httpx.AsyncClient(base_url=url) as http:
        backend.list_error = Unavailable("not connected to any peer yet")
        assert_openai_error(await http.get("/v1/models"), 503, "unavailable")
        assert_openai_error(await http.post(CHAT, json=GOOD_CHAT), 503, "unavailable")
        backend.list_error = None
        backend.fail_on_enter = NoBids("nobody bid")
        error = assert_openai_error(await http.post(CHAT, json=chat(stream=True)), 503, "no_bids")
        assert error["type"] == "server_error"


async def test_sse_framing_and_error_event_mid_stream() -> None:
    backend = ScriptedBackend()
    async with running_gateway(backend) as url, httpx.AsyncClient(base_url=url) as http:
        ok = await http.post("/v1/completions", json=completion(stream=True))
        assert ok.headers["content-type"].startswith("text/event-stream")
        events = sse_events(ok.text)
        assert events[-1] == (None, "[DONE]")
        chunks = [json.loads(data) for _, data in events[:-1]]
        assert all(c["object"] == "text_completion" and c["created"] == CREATED for c in chunks)
        assert chunks[-1]["usage"] == {"prompt_tokens": 1, "completion_tokens": 4, "total_tokens": 5}

        backend.fail_after = (1, WorkerFailed("worker vanished"))
        broken = await http.post(CHAT, json=chat(stream=True))
    assert broken.status_code == 200
    events = sse_events(broken.text)
    assert (None, "[DONE]") not in events
    name, data = events[-1]
    assert name == "error"
    assert json.loads(data)["error"]["code"] == "worker_failed"
    contents = [json.loads(d)["choices"][0]["delta"].get("content") for _, d in events[:-1]]
    assert contents == ["", "Hello"]


async def test_client_disconnect_cancels_the_job() -> None:
    backend = ScriptedBackend()
    backend.block_after = 1
    async with running_gateway(backend) as url:
        async with httpx.AsyncClient(base_url=url) as http, http.stream("POST", CHAT, json=chat(stream=True)) as r:
            async for line in r.aiter_lines():
                if '"Hello"' in line:
                    break
        # Guards against hanging forever, not timing assertions.
        with trio.fail_after(30):
            await backend.cancelled.wait()
        async with httpx.AsyncClient(base_url=url) as http:
            with trio.fail_after(30):
                while "cocoon_gateway_in_flight 0" not in (await http.get("/metrics")).text:
                    await trio.sleep(0.01)
    assert backend.requests[0].stream


async def test_metrics_count_requests_tokens_and_cost() -> None:
    backend = ScriptedBackend()
    async with running_gateway(backend) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.post(CHAT, json=GOOD_CHAT)).status_code == 200
        assert (await http.post(CHAT, json=chat(stream=True))).status_code == 200
        assert (await http.post(CHAT, json=chat(max_tokens=0))).status_code == 400
        backend.fail_on_enter = NoBids()
        assert (await http.post(CHAT, json=GOOD_CHAT)).status_code == 503
        response = await http.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    lines = set(response.text.splitlines())
    for expected in [
        'cocoon_gateway_requests_total{method="POST",path="/v1/chat/completions",status="200"} 2',
        'cocoon_gateway_requests_total{method="POST",path="/v1/chat/completions",status="400"} 1',
        'cocoon_gateway_requests_total{method="POST",path="/v1/chat/completions",status="503"} 1',
        'cocoon_gateway_backend_errors_total{code="no_bids"} 1',
        "cocoon_gateway_jobs_total 2",
        'cocoon_gateway_tokens_total{kind="prompt"} 2',
        'cocoon_gateway_tokens_total{kind="completion"} 8',
        f"cocoon_gateway_cost_nanoton_total {2 * cost(1, 4)}",
    ]:
        assert expected in lines
