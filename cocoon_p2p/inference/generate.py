"""The blocking generation loop that runs in a worker thread.

Kept free of trio: it talks to the event loop only through the ``emit``
callback, and stops when ``stop`` is set or ``emit`` raises.
"""

from __future__ import annotations

import codecs
import ctypes
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import llama_cpp

from cocoon_p2p.inference.request import TokenChunk, Usage


class StopMatcher:
    """Incremental stop-sequence search that never emits text a stop might still claim."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Add generated text; returns (text safe to emit, whether a stop matched).

        On a match the returned text is everything before the earliest stop and the
        rest is discarded.
        """
        self._pending += text
        if not self._stops:
            out, self._pending = self._pending, ""
            return out, False
        hits = [i for i in (self._pending.find(s) for s in self._stops) if i >= 0]
        if hits:
            out = self._pending[: min(hits)]
            self._pending = ""
            return out, True
        hold = self._longest_partial_suffix()
        cut = len(self._pending) - hold
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out

    def _longest_partial_suffix(self) -> int:
        # A suffix of pending that is a proper prefix of some stop may complete later.
        best = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(self._pending)), best, -1):
                if self._pending.endswith(stop[:n]):
                    best = n
                    break
        return best


def token_piece(llm: Any, token: int) -> bytes:
    """The bytes a generated token stands for (control tokens render as nothing).

    llama-cpp-python's own detokenize uses a fixed 32-byte buffer, which some large
    vocabularies overflow; grow the buffer instead.
    """
    size = 64
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_token_to_piece(llm._model.vocab, llama_cpp.llama_token(token), buf, size, 0, False)
        if n >= 0:
            return buf.raw[:n]
        size = -n


def is_end_of_generation(llm: Any, token: int) -> bool:
    # EOS and also turn-end tokens such as gemma's <end_of_turn>.
    return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, token))


@dataclass(eq=False)  # identity semantics: jobs live in a set
class Job:
    prompt_tokens: list[int]
    max_tokens: int  # already capped to what fits in the context
    temperature: float
    top_p: float
    seed: int
    stops: list[str]
    stop: threading.Event = field(default_factory=threading.Event)


class StopGeneration(Exception):
    """Raised by ``emit`` when the consumer is gone."""


def run_generation(llm: Any, job: Job, emit: Callable[[TokenChunk], None]) -> Usage:
    """Generate for ``job`` on ``llm`` (which the caller owns exclusively), emitting chunks."""
    # A fresh KV cache per job: reusing a cached prefix would make greedy output
    # depend on the previous job (batching changes float rounding), which would
    # break spot-check comparisons between workers.
    llm.reset()
    llm.set_seed(job.seed)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    matcher = StopMatcher(job.stops)
    completion = 0
    unsent_tokens = 0
    finish = "length"
    stopped_by_text = False
    if job.max_tokens <= 0 or job.stop.is_set():
        return Usage(len(job.prompt_tokens), 0, "length" if job.max_tokens <= 0 else "cancelled")
    gen = llm.generate(
        job.prompt_tokens,
        temp=job.temperature,
        top_p=job.top_p,
        # OpenAI semantics: temperature and top_p are the only sampling knobs.
        top_k=0,
        min_p=0.0,
        typical_p=1.0,
        repeat_penalty=1.0,
        reset=True,
    )
    try:
        for token in gen:
            if job.stop.is_set():
                finish = "cancelled"
                break
            if is_end_of_generation(llm, token):
                finish = "stop"
                break
            completion += 1
            unsent_tokens += 1
            text, stopped_by_text = matcher.feed(decoder.decode(token_piece(llm, token)))
            if text or (stopped_by_text and unsent_tokens):
                emit(TokenChunk(text, unsent_tokens))
                unsent_tokens = 0
            if stopped_by_text:
                finish = "stop"
                break
            if completion >= job.max_tokens:
                break
    except StopGeneration:
        return Usage(len(job.prompt_tokens), completion, "cancelled")
    finally:
        gen.close()
    if finish == "cancelled":
        return Usage(len(job.prompt_tokens), completion, finish)
    # Text held back for a stop that never completed, and bytes of a character the
    # model never finished, are real output.
    tail = "" if stopped_by_text else matcher.flush() + decoder.decode(b"", final=True)
    if tail or unsent_tokens:
        try:
            emit(TokenChunk(tail, unsent_tokens))
        except StopGeneration:
            return Usage(len(job.prompt_tokens), completion, "cancelled")
    return Usage(len(job.prompt_tokens), completion, finish)
