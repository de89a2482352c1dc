"""``ScriptedBackend``: the HTTP-surface test double for :class:`CompletionBackend`.

It answers every job with a fixed token script, deterministically, and can be told to
fail at chosen points. It exists to test the gateway's HTTP behaviour only; the
end-to-end tests with real workers use the real network client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import trio

from cocoon_p2p.client.types import (
    BackendError,
    CompletionRequest,
    CompletionResult,
    ModelListing,
    TextDelta,
    TokenPrices,
)
from cocoon_p2p.gateway import GatewayConfig, serve_gateway

WORKER = "ab" * 32
PRICE = TokenPrices(prompt_per_million=120_000, completion_per_million=300_000)
MODELS = (
    ModelListing(
        model="gemma3-270m",
        gguf_sha256="a5" * 32,
        offers=3,
        min_prices=TokenPrices(100_000, 200_000),
        max_prices=TokenPrices(150_000, 400_000),
        context_length=2048,
    ),
    ModelListing(
        model="org/tiny-random",
        gguf_sha256="0f" * 32,
        offers=1,
        min_prices=TokenPrices(1, 2),
        max_prices=TokenPrices(1, 2),
        context_length=128,
    ),
)
SCRIPT = ("Hello", ",", " world", "!")
#: Pinned so responses can be compared whole.
CREATED = 1_700_000_000


def prompt_tokens(request: CompletionRequest) -> int:
    """The double's tokenizer: whitespace-separated words."""
    if request.messages is not None:
        return sum(len(m.content.split()) for m in request.messages)
    return len((request.prompt or "").split())


def cost(prompt: int, completion: int, price: TokenPrices = PRICE) -> int:
    total = prompt * price.prompt_per_million + completion * price.completion_per_million
    return -(-total // 1_000_000)


class ScriptedStream:
    def __init__(self, backend: ScriptedBackend, request: CompletionRequest, job_id: str) -> None:
        self._backend = backend
        self._request = request
        self._job_id = job_id
        self._result: CompletionResult | None = None

    async def __aiter__(self) -> AsyncIterator[TextDelta]:
        backend, request = self._backend, self._request
        limit = request.max_tokens if request.max_tokens is not None else len(backend.script)
        sent: list[str] = []
        finish = "stop"
        for index, token in enumerate(backend.script):
            if backend.fail_after is not None and index == backend.fail_after[0]:
                raise backend.fail_after[1]
            if backend.block_after == index:
                try:
                    await trio.sleep_forever()
                finally:
                    backend.cancelled.set()
            if token in request.stop:
                break
            if len(sent) == limit:
                finish = "length"
                break
            await trio.lowlevel.checkpoint()
            sent.append(token)
            yield TextDelta(token)
        prompt = prompt_tokens(request)
        self._result = CompletionResult(
            text="".join(sent),
            finish_reason=finish,  # type: ignore[arg-type]
            prompt_tokens=prompt,
            completion_tokens=len(sent),
            cost_nanoton=cost(prompt, len(sent)),
            worker=WORKER,
            job_id=self._job_id,
            price=PRICE,
        )

    @property
    def result(self) -> CompletionResult:
        if self._result is None:
            raise RuntimeError("result read before the stream ended")
        return self._result


class ScriptedBackend:
    """Test double: fixed models and token script; failure knobs are plain attributes."""

    def __init__(self, models: tuple[ModelListing, ...] = MODELS, script: tuple[str, ...] = SCRIPT) -> None:
        self.models = list(models)
        self.script = list(script)
        self.requests: list[CompletionRequest] = []
        #: Raised by list_models.
        self.list_error: BackendError | None = None
        #: Raised when a job starts (the auction failed), before any token.
        self.fail_on_enter: BackendError | None = None
        #: (n, error): raised after n tokens were streamed.
        self.fail_after: tuple[int, BackendError] | None = None
        #: After this many tokens the job hangs until cancelled, then sets ``cancelled``.
        self.block_after: int | None = None
        self.cancelled = trio.Event()

    async def list_models(self) -> list[ModelListing]:
        await trio.lowlevel.checkpoint()
        if self.list_error is not None:
            raise self.list_error
        return list(self.models)

    @asynccontextmanager
    async def stream_completion(self, request: CompletionRequest) -> AsyncIterator[ScriptedStream]:
        self.requests.append(request)
        await trio.lowlevel.checkpoint()
        if self.fail_on_enter is not None:
            raise self.fail_on_enter
        yield ScriptedStream(self, request, job_id=f"job-{len(self.requests)}")


@asynccontextmanager
async def running_gateway(backend: ScriptedBackend, config: GatewayConfig | None = None) -> AsyncIterator[str]:
    """The real gateway under hypercorn on a free loopback port; yields its base URL (no /v1)."""
    config = config or GatewayConfig(wall_clock=lambda: float(CREATED))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(serve_gateway, backend, "127.0.0.1", 0, config=config))
        yield f"http://127.0.0.1:{port}"
        nursery.cancel_scope.cancel()
