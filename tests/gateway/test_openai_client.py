"""The gateway as the official ``openai`` package sees it (real hypercorn, loopback TCP).

The sync client runs in a worker thread so the trio loop keeps serving meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import openai
import pytest
import trio

from cocoon_p2p.client.types import NoBids, PaymentFailed, WorkerFailed

from .scripted_backend import CREATED, PRICE, WORKER, ScriptedBackend, cost, running_gateway

T = TypeVar("T")
USER = [{"role": "user", "content": "say hello please"}]


async def with_client(backend: ScriptedBackend, work: Callable[[openai.OpenAI], T]) -> T:
    async with running_gateway(backend) as url:
        # max_retries=0: the client would otherwise retry 5xx answers behind the test's back.
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        try:
            return await trio.to_thread.run_sync(work, client)
        finally:
            client.close()


def expected_cocoon(job_id: str, prompt: int, completion: int) -> dict[str, Any]:
    return {
        "worker": WORKER,
        "job_id": job_id,
        "cost_nanoton": cost(prompt, completion),
        "price": {
            "prompt_per_million": PRICE.prompt_per_million,
            "completion_per_million": PRICE.completion_per_million,
            "unit": "nanoTON per 1M tokens",
        },
    }


async def test_models_list_and_retrieve_carry_market_fields() -> None:
    def work(client: openai.OpenAI) -> tuple[list[Any], Any]:
        return list(client.models.list()), client.models.retrieve("org/tiny-random")

    models, tiny = await with_client(ScriptedBackend(), work)
    assert [m.id for m in models] == ["gemma3-270m", "org/tiny-random"]
    assert models[0].cocoon == {
        "gguf_sha256": "a5" * 32,
        "offers": 3,
        "context_length": 2048,
        "min_price": {"prompt_per_million": 100_000, "completion_per_million": 200_000},
        "max_price": {"prompt_per_million": 150_000, "completion_per_million": 400_000},
        "unit": "nanoTON per 1M tokens",
    }
    assert tiny.id == "org/tiny-random" and tiny.cocoon["context_length"] == 128


async def test_chat_completion_whole() -> None:
    backend = ScriptedBackend()

    def work(client: openai.OpenAI) -> Any:
        return client.chat.completions.create(
            model="gemma3-270m", messages=USER, max_tokens=50, temperature=0.5, top_p=0.9, seed=7, stop=["\n"]
        )

    out = await with_client(backend, work)
    assert out.object == "chat.completion" and out.model == "gemma3-270m" and out.created == CREATED
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].message.content == "Hello, world!"
    assert out.choices[0].finish_reason == "stop"
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.total_tokens) == (3, 4, 7)
    assert out.cocoon == expected_cocoon("job-1", 3, 4)
    sent = backend.requests[0]
    assert (sent.max_tokens, sent.temperature, sent.top_p, sent.seed, sent.stop) == (50, 0.5, 0.9, 7, ("\n",))
    assert sent.messages is not None and sent.messages[0].content == "say hello please"
    assert sent.prompt is None and sent.stream is False


async def test_chat_completion_streamed_ends_with_usage_and_cost() -> None:
    def work(client: openai.OpenAI) -> list[Any]:
        return list(client.chat.completions.create(model="gemma3-270m", messages=USER, stream=True))

    chunks = await with_client(ScriptedBackend(), work)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello, world!"
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (3, 4)
    assert last.cocoon == expected_cocoon("job-1", 3, 4)
    assert all(c.usage is None for c in chunks[:-1])


async def test_chat_stream_with_include_usage_sends_openai_usage_chunk() -> None:
    def work(client: openai.OpenAI) -> list[Any]:
        return list(
            client.chat.completions.create(
                model="gemma3-270m", messages=USER, stream=True, stream_options={"include_usage": True}
            )
        )

    chunks = await with_client(ScriptedBackend(), work)
    finish, last = chunks[-2], chunks[-1]
    assert finish.choices[0].finish_reason == "stop" and finish.usage is None
    assert last.choices == [] and last.usage.total_tokens == 7
    assert last.cocoon["cost_nanoton"] == cost(3, 4)


async def test_legacy_completion_whole_and_streamed() -> None:
    backend = ScriptedBackend()

    def work(client: openai.OpenAI) -> tuple[Any, list[Any]]:
        whole = client.completions.create(model="gemma3-270m", prompt="once upon a time", max_tokens=2)
        streamed = list(client.completions.create(model="gemma3-270m", prompt="once upon", stream=True))
        return whole, streamed

    whole, chunks = await with_client(backend, work)
    assert whole.object == "text_completion"
    assert whole.choices[0].text == "Hello," and whole.choices[0].finish_reason == "length"
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens) == (4, 2)
    assert whole.cocoon["job_id"] == "job-1"
    assert "".join(c.choices[0].text for c in chunks) == "Hello, world!"
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].usage.prompt_tokens == 2
    assert chunks[-1].cocoon["job_id"] == "job-2"
    assert backend.requests[0].prompt == "once upon a time" and backend.requests[0].messages is None
    assert backend.requests[1].stream is True


async def test_unknown_model_is_404_model_not_found() -> None:
    def work(client: openai.OpenAI) -> openai.NotFoundError:
        with pytest.raises(openai.NotFoundError) as caught:
            client.chat.completions.create(model="no-such-model", messages=USER)
        return caught.value

    error = await with_client(ScriptedBackend(), work)
    assert error.code == "model_not_found" and error.param == "model"


async def test_max_tokens_above_context_is_rejected_before_any_job() -> None:
    backend = ScriptedBackend()

    def work(client: openai.OpenAI) -> openai.BadRequestError:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="org/tiny-random", messages=USER, max_tokens=129)
        return caught.value

    error = await with_client(backend, work)
    assert error.code == "context_length_exceeded" and error.param == "max_tokens"
    assert backend.requests == []


@pytest.mark.parametrize(
    ("error", "status", "exc_type"),
    [
        (NoBids("no worker bid within 300 ms"), 503, openai.InternalServerError),
        (WorkerFailed("worker hung up"), 502, openai.InternalServerError),
        (PaymentFailed("channel top-up failed"), 402, openai.APIStatusError),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_backend_errors_before_first_token_keep_their_status(
    error: Exception, status: int, exc_type: type[openai.APIStatusError], stream: bool
) -> None:
    backend = ScriptedBackend()
    backend.fail_on_enter = error  # type: ignore[assignment]

    def work(client: openai.OpenAI) -> openai.APIStatusError:
        with pytest.raises(exc_type) as caught:
            result = client.chat.completions.create(model="gemma3-270m", messages=USER, stream=stream)
            list(result) if stream else None  # type: ignore[arg-type]
        return caught.value

    caught = await with_client(backend, work)
    assert caught.status_code == status
    assert caught.code == error.code  # type: ignore[attr-defined]
    assert caught.body["message"] == error.message  # type: ignore[attr-defined, index]


async def test_error_mid_stream_reaches_the_client_as_an_error() -> None:
    backend = ScriptedBackend()
    backend.fail_after = (2, WorkerFailed("worker stopped sending"))

    def work(client: openai.OpenAI) -> tuple[list[str], openai.APIError]:
        received: list[str] = []
        with pytest.raises(openai.APIError) as caught:
            for chunk in client.chat.completions.create(model="gemma3-270m", messages=USER, stream=True):
                received.append(chunk.choices[0].delta.content or "")
        return received, caught.value

    received, error = await with_client(backend, work)
    assert "".join(received) == "Hello,"
    assert error.code == "worker_failed" and "worker stopped sending" in error.message
