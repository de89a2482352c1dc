"""Request and result types of the inference engine.

``GenerationRequest.from_dict`` is the entry point for untrusted input (a
decoded wire message or an HTTP body): every problem becomes ``BadRequest``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from cocoon_p2p.inference.errors import BadRequest

ROLES = frozenset({"system", "user", "assistant"})
MAX_STOPS = 16
MAX_STOP_LEN = 256
MAX_SEED = 2**32 - 2  # llama.cpp reserves 0xFFFFFFFF for "pick a random seed"
MAX_PROMPT_CHARS = 1 << 20  # matches the 1 MiB application-message limit of the wire layer


@dataclass(frozen=True)
class TokenChunk:
    """A piece of completion text and how many generated tokens produced it.

    ``tokens`` can exceed 1 (a multi-byte character split across tokens, or text
    held back while it might be the start of a stop sequence) and the last chunk
    can have empty text; summed over a stream, ``tokens`` equals
    ``Usage.completion_tokens``.
    """

    text: str
    tokens: int


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    # "stop" (EOS or a stop sequence), "length" (max_tokens or context full),
    # "cancelled" (the consumer went away).
    finish_reason: str

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_tokens": self.total_tokens}


@dataclass(frozen=True)
class GenerationRequest:
    """One completion job: exactly one of ``messages`` (chat) or ``prompt`` (raw text).

    ``temperature == 0`` is greedy decoding, which is deterministic for a given
    model file and prompt (what spot-checks rely on). ``seed`` makes sampled
    output repeatable; None picks a fresh random seed.
    """

    messages: list[dict[str, str]] | None = None
    prompt: str | None = None
    max_tokens: int = 256
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int | None = None
    stop: list[str] = field(default_factory=list)

    def validate(self) -> None:
        """Raise ``BadRequest`` naming the first invalid field."""
        if (self.messages is None) == (self.prompt is None):
            raise BadRequest("exactly one of 'messages' or 'prompt' is required")
        if self.prompt is not None:
            if not isinstance(self.prompt, str):
                raise BadRequest("'prompt' must be a string")
            if len(self.prompt) > MAX_PROMPT_CHARS:
                raise BadRequest(f"'prompt' is longer than {MAX_PROMPT_CHARS} characters")
        if self.messages is not None:
            validate_messages(self.messages)
        _check_int("max_tokens", self.max_tokens, 1, 1 << 20)
        _check_float("temperature", self.temperature, 0.0, 2.0)
        _check_float("top_p", self.top_p, 0.0, 1.0)
        if self.top_p == 0.0:
            raise BadRequest("'top_p' must be > 0")
        if self.seed is not None:
            _check_int("seed", self.seed, 0, MAX_SEED)
        if not isinstance(self.stop, list) or len(self.stop) > MAX_STOPS:
            raise BadRequest(f"'stop' must be a list of at most {MAX_STOPS} strings")
        for s in self.stop:
            if not isinstance(s, str) or not 0 < len(s) <= MAX_STOP_LEN:
                raise BadRequest(f"each stop sequence must be a non-empty string of at most {MAX_STOP_LEN} chars")

    @classmethod
    def from_dict(cls, data: Any) -> GenerationRequest:
        """Build and validate a request from a decoded message (unknown keys are ignored)."""
        if not isinstance(data, dict):
            raise BadRequest("request must be a map")
        kwargs: dict[str, Any] = {}
        for key in ("messages", "prompt", "max_tokens", "temperature", "top_p", "seed"):
            if data.get(key) is not None:
                kwargs[key] = data[key]
        stop = data.get("stop")
        if isinstance(stop, str):
            stop = [stop]
        if stop is not None:
            kwargs["stop"] = stop
        if isinstance(kwargs.get("temperature"), int) and not isinstance(kwargs["temperature"], bool):
            kwargs["temperature"] = float(kwargs["temperature"])
        if isinstance(kwargs.get("top_p"), int) and not isinstance(kwargs["top_p"], bool):
            kwargs["top_p"] = float(kwargs["top_p"])
        req = cls(**kwargs)
        req.validate()
        return req

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        return {k: v for k, v in out.items() if v is not None}


def validate_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list")
    total = 0
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise BadRequest(f"messages[{i}] must be a map with 'role' and 'content'")
        role, content = msg.get("role"), msg.get("content")
        if role not in ROLES:
            raise BadRequest(f"messages[{i}].role must be one of {sorted(ROLES)}")
        if not isinstance(content, str):
            raise BadRequest(f"messages[{i}].content must be a string")
        total += len(content)
    if total > MAX_PROMPT_CHARS:
        raise BadRequest(f"'messages' hold more than {MAX_PROMPT_CHARS} characters")
    if not any(m["role"] == "user" for m in messages):
        raise BadRequest("'messages' need at least one 'user' message")


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    # bool is an int subclass; True as max_tokens is a client bug, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BadRequest(f"'{name}' must be an integer in [{lo}, {hi}]")


def _check_float(name: str, value: Any, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(f"'{name}' must be a finite number")
    if not lo <= value <= hi:
        raise BadRequest(f"'{name}' must be in [{lo}, {hi}]")
