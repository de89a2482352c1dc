"""Types shared by the network client library and its entry points (gateway, CLI).

The gateway and the CLI code against :class:`CompletionBackend` only, so they can be
written and tested before the network client exists, and any backend (the real P2P
client, a test double) plugs in unchanged. Everything here is a plain dataclass with
no dependency beyond the standard library.

Money is integer nanoTON everywhere; prices are quoted per 1,000,000 tokens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ..errors import CocoonError

#: Roles a chat message may carry; OpenAI's "developer" is folded into "system" by the gateway.
Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class TokenPrices:
    """nanoTON per 1M prompt tokens and per 1M completion tokens."""

    prompt_per_million: int
    completion_per_million: int


@dataclass(frozen=True)
class CompletionRequest:
    """One inference job. Exactly one of ``messages`` (chat) or ``prompt`` (raw text) is set.

    ``max_tokens`` bounds the completion and is what the RFQ quotes against; ``None``
    lets the client library apply its own default. ``stream`` only records what the
    caller asked for: backends always stream, callers that want one answer collect it.
    """

    model: str
    messages: tuple[ChatMessage, ...] | None = None
    prompt: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("CompletionRequest needs exactly one of messages or prompt")
        if self.messages is not None and not self.messages:
            raise ValueError("CompletionRequest.messages must not be empty")
        if self.max_tokens is not None and self.max_tokens <= 0:
            raise ValueError("CompletionRequest.max_tokens must be positive")

    @property
    def is_chat(self) -> bool:
        return self.messages is not None


@dataclass(frozen=True)
class ModelListing:
    """What the market offers for one model, aggregated over the live offers.

    ``context_length`` is the largest any offer advertises: a request that does not fit
    it cannot be served by anyone; the backend still picks an offer that fits.
    """

    model: str
    gguf_sha256: str
    offers: int
    min_prices: TokenPrices
    max_prices: TokenPrices
    context_length: int


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class CompletionResult:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    cost_nanoton: int
    worker: str
    """Hex peer id of the worker that served the job."""
    job_id: str
    price: TokenPrices
    """Clearing prices the job was paid at (second price of the auction)."""
    payments: dict[str, Any] | None = None
    """How it was paid (payment channel id, contract, deposit, paid on the channel); None when unpaid."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class CompletionStream(Protocol):
    """Async-iterate for :class:`TextDelta`; after the iteration ends, ``result`` holds the outcome.

    Reading ``result`` before the iteration has ended raises ``RuntimeError``. Errors
    while streaming are raised from the iteration as :class:`BackendError`.
    """

    def __aiter__(self) -> AsyncIterator[TextDelta]: ...

    @property
    def result(self) -> CompletionResult: ...


class CompletionBackend(Protocol):
    async def list_models(self) -> list[ModelListing]:
        """Models with at least one live offer. The gateway calls this on every request
        (to check the model and its context length): answer from a cache."""
        ...

    def stream_completion(self, request: CompletionRequest) -> AbstractAsyncContextManager[CompletionStream]:
        """Run one job: entering runs the auction and opens the session (raising
        :class:`BackendError` if that fails), the stream yields tokens, leaving settles
        payment and closes the session. Cancelling the caller abandons the job."""
        ...


# --- errors -----------------------------------------------------------------------

#: The HTTP status each stable error code maps to; unknown codes map to 500.
HTTP_STATUS_BY_CODE: dict[str, int] = {
    "bad_request": 400,
    "payment_failed": 402,
    "model_not_found": 404,
    "rate_limited": 429,
    "internal_error": 500,
    "worker_failed": 502,
    "no_bids": 503,
    "unavailable": 503,
    "timeout": 504,
}


class BackendError(CocoonError):
    """A job or listing failed; ``code`` is stable, ``http_status`` is what an HTTP
    front end should answer, ``param`` names the offending request field if any."""

    code: str = "internal_error"

    def __init__(
        self,
        code: str | None = None,
        message: str = "",
        http_status: int | None = None,
        *,
        param: str | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        self.message = message or self.code.replace("_", " ")
        self.http_status = http_status if http_status is not None else HTTP_STATUS_BY_CODE.get(self.code, 500)
        self.param = param
        super().__init__(f"{self.code}: {self.message}")


class _CodedError(BackendError):
    # Subclasses fix the code, so they are raised as ``NoBids("why")``.
    def __init__(self, message: str = "", *, param: str | None = None) -> None:
        super().__init__(None, message, param=param)


class BadRequest(_CodedError):
    """The request cannot be served as asked (e.g. the prompt does not fit the context)."""

    code = "bad_request"


class PaymentFailed(_CodedError):
    """Opening, funding or paying through the payment channel failed."""

    code = "payment_failed"


class ModelNotFound(_CodedError):
    code = "model_not_found"


class RateLimited(_CodedError):
    code = "rate_limited"


class WorkerFailed(_CodedError):
    """The awarded worker broke off, misbehaved or sent an invalid stream."""

    code = "worker_failed"


class NoBids(_CodedError):
    """No worker answered the auction within the bid window (or all above max price)."""

    code = "no_bids"


class Unavailable(_CodedError):
    """The client peer is not connected to the network yet, or is shutting down."""

    code = "unavailable"


class BackendTimeout(_CodedError):
    code = "timeout"
