"""The inference engine: llama.cpp behind a trio-friendly streaming API.

Each concurrent job gets its own ``Llama`` instance (a llama.cpp context is not
thread-safe), driven by a dedicated worker thread that hands tokens to the event
loop through a memory channel. The channel gives backpressure: a consumer that
stops reading (a client whose payments lag) stalls generation within a few
tokens, and a consumer that leaves stops it at the next token.

Usage::

    engine = await InferenceEngine.load(path)
    async with engine.stream(GenerationRequest(prompt="Hi", max_tokens=16)) as tokens:
        async for chunk in tokens:
            ...  # chunk.text, chunk.tokens
    print(tokens.usage)
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import outcome
import trio

from cocoon_p2p.errors import ConfigError
from cocoon_p2p.inference.capability import gpu_offload_available, usable_cores
from cocoon_p2p.inference.chat import ChatFormatter
from cocoon_p2p.inference.errors import (
    BadRequest,
    Cancelled,
    InferenceError,
    InternalError,
    ModelFileError,
    ModelNotServed,
    OverCapacity,
)
from cocoon_p2p.inference.generate import Job, StopGeneration, run_generation
from cocoon_p2p.inference.loader import LoadProgress, new_llama
from cocoon_p2p.inference.models import cached_sha256, chat_format_for, model_id_from_gguf
from cocoon_p2p.inference.request import MAX_SEED, GenerationRequest, TokenChunk, Usage, validate_messages

log = logging.getLogger(__name__)

# Prompts longer than this are tokenized in a thread so a huge one cannot stall the loop.
_INLINE_TOKENIZE_CHARS = 16_384


class TokenStream:
    """Async iterator of ``TokenChunk``; ``usage`` is available once it is exhausted."""

    def __init__(self, receive: trio.MemoryReceiveChannel[TokenChunk], prompt_tokens: int) -> None:
        self._receive = receive
        self.prompt_tokens = prompt_tokens
        self._usage: Usage | None = None
        self._error: InferenceError | None = None

    def __aiter__(self) -> TokenStream:
        return self

    async def __anext__(self) -> TokenChunk:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            if self._error is not None:
                raise self._error from None
            raise StopAsyncIteration from None

    @property
    def usage(self) -> Usage:
        if self._usage is None:
            raise InternalError("usage is only known once the stream is exhausted")
        return self._usage


class InferenceEngine:
    """Serves one GGUF model; create with :meth:`load`."""

    def __init__(
        self,
        *,
        path: Path,
        model_id: str,
        sha256: str,
        llamas: list[Any],
        chat: ChatFormatter,
        n_ctx: int,
        n_threads: int,
        n_gpu_layers: int,
        wait_for_slot: bool,
        chunk_buffer: int,
    ) -> None:
        self.path = path
        self.model_id = model_id
        self.sha256 = sha256
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.n_gpu_layers = n_gpu_layers
        self.max_concurrent = len(llamas)
        self.chat_format = chat.name
        self.wait_for_slot = wait_for_slot
        self._chat = chat
        self._all = list(llamas)
        self._free = list(llamas)
        self._slots = trio.Semaphore(len(llamas))
        self._jobs: set[Job] = set()
        self._chunk_buffer = chunk_buffer
        self._closed = False
        # Threads tokenizing long prompts also use the llama objects; aclose waits for them.
        self._tokenizing = 0
        self._tokenizing_done: trio.Event | None = None

    @classmethod
    async def load(
        cls,
        path: Path | str,
        *,
        model_id: str | None = None,
        n_ctx: int = 2048,
        max_concurrent: int = 1,
        n_threads: int | None = None,
        n_gpu_layers: int | None = None,
        chat_format: str | None = "auto",
        wait_for_slot: bool = False,
        sha256: str | None = None,
        cache_dir: Path | None = None,
        chunk_buffer: int = 8,
        progress: bool = True,
    ) -> InferenceEngine:
        """Load ``path`` into ``max_concurrent`` llama.cpp contexts, in a worker thread.

        - ``model_id``: defaults to one derived from the GGUF metadata (``gemma3-270m``).
        - ``n_gpu_layers``: None offloads everything when llama.cpp has a GPU backend and a
          GPU is present, else runs on the CPU.
        - ``n_threads``: None splits the usable cores, less one, between the concurrent slots.
        - ``chat_format``: "auto" uses the GGUF's template, or llama.cpp's ``gemma`` format for
          template-less gemma models; None forces the GGUF template; else a format name.
        - ``wait_for_slot``: policy when every slot is busy: False raises ``OverCapacity``
          at once (a worker should not bid then), True queues FIFO. Per call overridable.
        - ``sha256``: skip hashing when the caller already knows it; else hashed (and cached
          by path/size/mtime in ``cache_dir``).
        - ``chunk_buffer``: chunks generated ahead of the consumer before backpressure stalls
          the model.
        """
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"model file not found: {path}")
        if max_concurrent < 1:
            raise ConfigError("max_concurrent must be >= 1")
        if n_ctx < 16:
            raise ConfigError("n_ctx must be >= 16")
        if chunk_buffer < 0:
            raise ConfigError("chunk_buffer must be >= 0")
        if sha256 is None:
            sha256 = await trio.to_thread.run_sync(partial(cached_sha256, path, cache_dir, progress=progress))
        if model_id is None:
            model_id = await trio.to_thread.run_sync(model_id_from_gguf, path)
        if chat_format == "auto":
            chat_format = await trio.to_thread.run_sync(chat_format_for, path)
        if n_gpu_layers is None:
            n_gpu_layers = -1 if await trio.to_thread.run_sync(gpu_offload_available) else 0
        threads = n_threads if n_threads is not None else default_threads(max_concurrent)
        log.info("loading %s (%s) x%d, n_ctx=%d, threads=%d, gpu_layers=%d",
                 model_id, path.name, max_concurrent, n_ctx, threads, n_gpu_layers)
        make = partial(new_llama, path, n_ctx=n_ctx, n_threads=threads, n_gpu_layers=n_gpu_layers)
        llamas: list[Any] = []
        try:
            with LoadProgress(f"loading {model_id}", max_concurrent, enabled=progress) as bar:
                for _ in range(max_concurrent):
                    llamas.append(await trio.to_thread.run_sync(make))
                    bar.advance()
            chat = ChatFormatter.for_llama(llamas[0], chat_format)
        except BaseException:
            for llm in llamas:
                llm.close()
            raise
        return cls(
            path=path, model_id=model_id, sha256=sha256, llamas=llamas, chat=chat, n_ctx=n_ctx,
            n_threads=threads, n_gpu_layers=n_gpu_layers, wait_for_slot=wait_for_slot, chunk_buffer=chunk_buffer,
        )

    # -- capacity -----------------------------------------------------------------

    @property
    def available(self) -> int:
        """Slots free right now (0 means a new job would be over capacity)."""
        return self._slots.value

    @property
    def running(self) -> int:
        return self.max_concurrent - self._slots.value

    def info(self) -> dict[str, Any]:
        """What an offer needs to say about this model (plain types)."""
        return {
            "model_id": self.model_id,
            "sha256": self.sha256,
            "n_ctx": self.n_ctx,
            "max_concurrent": self.max_concurrent,
            "chat_format": self.chat_format,
            "gpu": self.n_gpu_layers != 0,
        }

    # -- tokens ---------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """Prompt tokens a ``prompt=text`` request is billed for (BOS included)."""
        return len(self._tokenize(text, add_bos=True))

    def count_chat_tokens(self, messages: list[dict[str, str]]) -> int:
        """Prompt tokens a ``messages=...`` request is billed for (chat template included)."""
        validate_messages(messages)
        rendered = self._chat.render(messages)
        return len(self._tokenize(rendered.prompt, add_bos=rendered.add_bos))

    def _tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        if self._closed:  # the llama objects are freed: touching them would crash
            raise ModelNotServed(f"{self.model_id} is no longer served")
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BadRequest(f"text is not valid unicode: {exc}") from exc
        # Vocabulary lookups are read-only in llama.cpp, so any instance may tokenize
        # even while it generates in another thread.
        return self._all[0].tokenize(data, add_bos=add_bos, special=True)

    async def _prepare(self, request: GenerationRequest) -> Job:
        if not isinstance(request, GenerationRequest):
            raise BadRequest("expected a GenerationRequest")
        request.validate()
        stops = list(request.stop)
        if request.messages is not None:
            rendered = self._chat.render(request.messages)
            text, add_bos = rendered.prompt, rendered.add_bos
            stops += [s for s in rendered.stops if s not in stops]
        else:
            assert request.prompt is not None
            text, add_bos = request.prompt, True
        if len(text) > _INLINE_TOKENIZE_CHARS:
            self._tokenizing += 1
            try:
                tokens = await trio.to_thread.run_sync(partial(self._tokenize, text, add_bos=add_bos))
            finally:
                self._tokenizing -= 1
                if self._tokenizing == 0 and self._tokenizing_done is not None:
                    self._tokenizing_done.set()
        else:
            tokens = self._tokenize(text, add_bos=add_bos)
        if len(tokens) >= self.n_ctx:
            raise BadRequest(f"prompt is {len(tokens)} tokens; the context holds {self.n_ctx}")
        return Job(
            prompt_tokens=tokens,
            max_tokens=min(request.max_tokens, self.n_ctx - len(tokens)),
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed if request.seed is not None else secrets.randbelow(MAX_SEED + 1),
            stops=stops,
        )

    # -- generation -----------------------------------------------------------------

    def stream(
        self, request: GenerationRequest, *, wait: bool | None = None
    ) -> AbstractAsyncContextManager[TokenStream]:
        """Async context manager yielding a :class:`TokenStream` for ``request``.

        Raises ``BadRequest`` / ``OverCapacity`` / ``ModelNotServed`` on entry. Leaving the
        block early (break, error, cancellation) stops generation at the next token; the
        slot is free again when the block has exited.
        """
        return self._stream(request, wait)

    @asynccontextmanager
    async def _stream(self, request: GenerationRequest, wait: bool | None) -> AsyncIterator[TokenStream]:
        job = await self._prepare(request)
        llm = await self._acquire(self.wait_for_slot if wait is None else wait)
        send, receive = trio.open_memory_channel[TokenChunk](self._chunk_buffer)
        tokens = TokenStream(receive, len(job.prompt_tokens))
        done = trio.Event()
        trio_token = trio.lowlevel.current_trio_token()

        def emit(chunk: TokenChunk) -> None:  # worker thread
            if job.stop.is_set():
                raise StopGeneration
            try:
                trio.from_thread.run(send.send, chunk, trio_token=trio_token)
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.RunFinishedError, trio.Cancelled) as e:
                raise StopGeneration from e

        def finish(result: outcome.Outcome[Usage]) -> None:  # event loop
            if isinstance(result, outcome.Value):
                tokens._usage = result.value
                if result.value.finish_reason == "cancelled":
                    tokens._error = Cancelled("generation was stopped")
            else:
                log.error("generation failed", exc_info=result.error)
                tokens._error = InternalError(f"generation failed: {result.error!r}")
            send.close()
            done.set()

        def deliver(result: outcome.Outcome[Usage]) -> None:  # worker thread, after the job
            try:
                trio_token.run_sync_soon(finish, result)
            except trio.RunFinishedError:
                pass

        # A raw thread rather than trio.to_thread: to_thread needs a background task,
        # and a nursery here would wrap the consumer's own exceptions in groups.
        self._jobs.add(job)
        try:
            trio.lowlevel.start_thread_soon(partial(run_generation, llm, job, emit), deliver, name="llama-generate")
        except BaseException:
            self._jobs.discard(job)
            self._release(llm)
            raise
        try:
            yield tokens
        finally:
            job.stop.set()
            receive.close()
            # The thread still owns the llama context until it notices; it does at
            # the next token (or when its pending send fails), so this wait is short.
            with trio.CancelScope(shield=True):
                await done.wait()
            self._jobs.discard(job)
            self._release(llm)

    async def complete(self, request: GenerationRequest, *, wait: bool | None = None) -> tuple[str, Usage]:
        """Run ``request`` to the end; returns the completion text and its usage."""
        async with self.stream(request, wait=wait) as tokens:
            parts = [chunk.text async for chunk in tokens]
        return "".join(parts), tokens.usage

    async def _acquire(self, wait: bool) -> Any:
        if self._closed:
            raise ModelNotServed(f"{self.model_id} is no longer served")
        if wait:
            await self._slots.acquire()
        else:
            try:
                self._slots.acquire_nowait()
            except trio.WouldBlock:
                raise OverCapacity(f"all {self.max_concurrent} slots for {self.model_id} are busy") from None
        if self._closed:
            self._slots.release()
            raise ModelNotServed(f"{self.model_id} is no longer served")
        return self._free.pop()

    def _release(self, llm: Any) -> None:
        self._free.append(llm)
        self._slots.release()

    async def aclose(self) -> None:
        """Stop every job, wait for the worker threads, free the models."""
        if self._closed:
            return
        self._closed = True
        for job in list(self._jobs):
            job.stop.set()
        with trio.CancelScope(shield=True):
            for _ in range(self.max_concurrent):
                await self._slots.acquire()
            if self._tokenizing:
                self._tokenizing_done = trio.Event()
                await self._tokenizing_done.wait()
        for llm in self._all:
            llm.close()
        self._free.clear()


def default_threads(max_concurrent: int = 1) -> int:
    """llama.cpp threads per slot: the usable cores less one, split between the slots.

    The spare core is for the event loop and the network. ggml's threads meet at
    spinning barriers, so one preempted thread stalls the rest:
    two threads ran a 270M model 3-30x slower than one on a busy 2-core box.
    """
    return max(1, (usable_cores() - 1) // max_concurrent)
