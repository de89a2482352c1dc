"""A timing model of inference: the one stand-in the simulator allows (DESIGN.md §11).

``TimedEngine`` has the interface the session layer uses from
``cocoon_p2p.inference.engine.InferenceEngine`` — ``stream(request)`` is an async
context manager yielding a token stream with ``prompt_tokens``, async iteration
over ``TokenChunk`` and ``usage`` once exhausted — but produces no text worth
reading. Its timing follows the worker's advertised tokens/s on the virtual clock:

- prompt evaluation takes ``prompt_tokens / (tokens_per_s * prompt_speedup)``
  (the factor the market's latency estimate assumes, ``worker.PROMPT_SPEEDUP``);
- then a chunk of ``chunk_tokens`` tokens is ready every ``chunk_tokens / tokens_per_s``
  seconds, on a fixed schedule from the start, like a generator thread that keeps
  going while the consumer is busy;
- every job runs at the advertised rate however many run at once (each of the
  worker's ``max_jobs`` slots is one full-speed stream), and the completion is
  exactly ``max_tokens`` long (finish reason ``length``).

Prompt tokens are counted as whitespace-separated words, so a scenario controls
them by the prompt it sends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import trio

from cocoon_p2p.inference.request import GenerationRequest, TokenChunk, Usage

PROMPT_SPEEDUP = 8  # cocoon_p2p.market.worker.PROMPT_SPEEDUP: prompt evaluation vs generation speed


class TimedTokenStream:
    def __init__(self, prompt_tokens: int, completion_tokens: int, schedule: list[float], chunk_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens
        self._completion = completion_tokens
        self._schedule = schedule
        self._chunk = chunk_tokens
        self._sent = 0
        self._usage: Usage | None = None

    def __aiter__(self) -> TimedTokenStream:
        return self

    async def __anext__(self) -> TokenChunk:
        if self._sent >= self._completion:
            self._usage = Usage(self.prompt_tokens, self._completion, "length")
            raise StopAsyncIteration
        await trio.sleep_until(self._schedule[self._sent // self._chunk])
        tokens = min(self._chunk, self._completion - self._sent)
        self._sent += tokens
        return TokenChunk("x" * tokens, tokens)

    @property
    def usage(self) -> Usage:
        if self._usage is None:
            raise RuntimeError("usage is only known once the stream is exhausted")
        return self._usage


class TimedEngine:
    """Serves ``model_id`` at ``tokens_per_s`` per job on the virtual clock."""

    def __init__(
        self,
        model_id: str,
        tokens_per_s: float,
        *,
        chunk_tokens: int = 8,
        prompt_speedup: float = PROMPT_SPEEDUP,
    ) -> None:
        if tokens_per_s <= 0 or chunk_tokens < 1:
            raise ValueError("tokens_per_s must be positive and chunk_tokens at least 1")
        self.model_id = model_id
        self.tokens_per_s = tokens_per_s
        self.chunk_tokens = chunk_tokens
        self.prompt_speedup = prompt_speedup
        self.running = 0
        self.jobs = 0

    @staticmethod
    def count_prompt_tokens(request: GenerationRequest) -> int:
        text = request.prompt if request.prompt is not None else " ".join(m["content"] for m in request.messages or [])
        return len(text.split())

    def stream(
        self, request: GenerationRequest, *, wait: bool | None = None
    ) -> AbstractAsyncContextManager[TimedTokenStream]:
        return self._stream(request)

    @asynccontextmanager
    async def _stream(self, request: GenerationRequest) -> AsyncIterator[TimedTokenStream]:
        prompt = self.count_prompt_tokens(request)
        start = trio.current_time() + prompt / (self.tokens_per_s * self.prompt_speedup)
        step = self.chunk_tokens / self.tokens_per_s
        chunks = -(-request.max_tokens // self.chunk_tokens)
        schedule = [start + (n + 1) * step for n in range(chunks)]
        self.running += 1
        self.jobs += 1
        try:
            yield TimedTokenStream(prompt, request.max_tokens, schedule, self.chunk_tokens)
        finally:
            self.running -= 1
