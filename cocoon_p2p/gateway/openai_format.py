"""Builds OpenAI's response and chunk objects from backend results.

What the market adds (worker, cost, clearing price, job id; offer counts and price
ranges for models) goes in an extra ``cocoon`` field: OpenAI clients keep unknown
fields (the Python client exposes them as attributes), and ignore them otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..client.types import CompletionResult, ModelListing, TokenPrices


@dataclass(frozen=True)
class ResponseShape:
    """What every object of one response shares."""

    id: str
    created: int
    model: str
    chat: bool

    @classmethod
    def new(cls, model: str, chat: bool, created: float) -> ResponseShape:
        prefix = "chatcmpl-" if chat else "cmpl-"
        return cls(id=prefix + os.urandom(12).hex(), created=int(created), model=model, chat=chat)

    @property
    def chunk_object(self) -> str:
        # OpenAI names legacy completion chunks like whole legacy completions.
        return "chat.completion.chunk" if self.chat else "text_completion"


def prices(price: TokenPrices) -> dict[str, int]:
    return {"prompt_per_million": price.prompt_per_million, "completion_per_million": price.completion_per_million}


def usage(result: CompletionResult) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.total_tokens,
    }


def cocoon_extra(result: CompletionResult) -> dict[str, Any]:
    return {
        "worker": result.worker,
        "job_id": result.job_id,
        "cost_nanoton": result.cost_nanoton,
        "price": {**prices(result.price), "unit": "nanoTON per 1M tokens"},
        **({"payments": result.payments} if result.payments else {}),
    }


def full_response(shape: ResponseShape, result: CompletionResult) -> dict[str, Any]:
    if shape.chat:
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": result.text, "refusal": None},
            "logprobs": None,
            "finish_reason": result.finish_reason,
        }
    else:
        choice = {"index": 0, "text": result.text, "logprobs": None, "finish_reason": result.finish_reason}
    return {
        **_head(shape, "chat.completion" if shape.chat else "text_completion"),
        "choices": [choice],
        "usage": usage(result),
        "cocoon": cocoon_extra(result),
    }


def role_chunk(shape: ResponseShape) -> dict[str, Any]:
    """Chat streams open with the assistant role and empty content, as OpenAI's do."""
    return _chunk(shape, {"role": "assistant", "content": ""}, None)


def text_chunk(shape: ResponseShape, text: str) -> dict[str, Any]:
    return _chunk(shape, {"content": text} if shape.chat else text, None)


def finish_chunk(shape: ResponseShape, result: CompletionResult, *, final: bool) -> dict[str, Any]:
    """The chunk carrying finish_reason. When it is the last chunk (``final``) it also
    carries usage and the market fields, so clients that did not ask for a usage chunk
    still learn what they paid."""
    chunk = _chunk(shape, {} if shape.chat else "", result.finish_reason)
    if final:
        chunk["usage"] = usage(result)
        chunk["cocoon"] = cocoon_extra(result)
    return chunk


def usage_chunk(shape: ResponseShape, result: CompletionResult) -> dict[str, Any]:
    """The extra last chunk of ``stream_options.include_usage``: no choices, just usage."""
    return {**_head(shape, shape.chunk_object), "choices": [], "usage": usage(result), "cocoon": cocoon_extra(result)}


def model_object(listing: ModelListing) -> dict[str, Any]:
    return {
        "id": listing.model,
        "object": "model",
        "created": 0,  # offers come and go; a model has no single creation time in the market
        "owned_by": "cocoon-p2p",
        "cocoon": {
            "gguf_sha256": listing.gguf_sha256,
            "offers": listing.offers,
            "context_length": listing.context_length,
            "min_price": prices(listing.min_prices),
            "max_price": prices(listing.max_prices),
            "unit": "nanoTON per 1M tokens",
        },
    }


def _head(shape: ResponseShape, obj: str) -> dict[str, Any]:
    return {"id": shape.id, "object": obj, "created": shape.created, "model": shape.model, "system_fingerprint": None}


def _chunk(shape: ResponseShape, delta: dict[str, Any] | str, finish_reason: str | None) -> dict[str, Any]:
    if shape.chat:
        choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    else:
        choice = {"index": 0, "text": delta, "logprobs": None, "finish_reason": finish_reason}
    return {**_head(shape, shape.chunk_object), "choices": [choice], "usage": None}
