"""RFQ, Bid and Award: the signed messages of one auction (DESIGN.md §7).

Each is a signed envelope (``envelope.py``) whose body a Schema validates. Decoding
checks shape and signature only; freshness and replay are the receiver's
``Inbox`` (they need a clock and memory). ``ref`` is the SHA-256 of the exact
signed bytes, which is how an award names the bid it accepts.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

from ..identity import Identity, PeerId
from ..wire.codec import BYTES32, U32, U64, Field, Schema
from .envelope import seal, unseal
from .errors import MessageRejected

RFQ = "rfq"
BID = "bid"
AWARD = "award"
JOB_ID_BYTES = 16
NONCE_BYTES = 16
MAX_MODEL_ID = 128
MAX_ADDRESS = 64
TOKENS_PER_PRICE_UNIT = 1_000_000  # prices are nanoTON per 1M tokens

_JOB_ID = Field(bytes, exact_len=JOB_ID_BYTES)
_ADDR = Field(str, max_len=MAX_ADDRESS)
_MODEL = Field(str, max_len=MAX_MODEL_ID)


@dataclass(frozen=True, order=True)
class Prices:
    """nanoTON per 1M prompt tokens and per 1M completion tokens; integers, never floats."""

    prompt: int
    completion: int

    def __post_init__(self) -> None:
        for value in (self.prompt, self.completion):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 64:
                raise ValueError("prices are integer nanoTON in [0, 2^64)")

    def scaled_cost(self, prompt_tokens: int, completion_tokens: int) -> int:
        """Job cost times 1e6 (exact): what the award rule ranks by."""
        return prompt_tokens * self.prompt + completion_tokens * self.completion

    def cost(self, prompt_tokens: int, completion_tokens: int) -> int:
        """Estimated job cost in nanoTON, rounded up."""
        return -(-self.scaled_cost(prompt_tokens, completion_tokens) // TOKENS_PER_PRICE_UNIT)

    def within(self, cap: Prices) -> bool:
        return self.prompt <= cap.prompt and self.completion <= cap.completion


def _ref(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


def _decode(raw: Any, kind: str, schema: Schema, key_field: str) -> dict[str, Any]:
    return unseal(raw, kind, schema, key_field)


# --- RFQ ------------------------------------------------------------------------------
_RFQ = Schema(
    "rfq",
    job=_JOB_ID,
    model=_MODEL,
    prompt_tokens=U32,
    completion_tokens=U32,
    max_prompt=U64,
    max_completion=U64,
    window_ms=Field(int, min_value=1, max_value=60_000),
    client=BYTES32,
    addr=_ADDR,
    expires_ms=U64,
    nonce=Field(bytes, exact_len=NONCE_BYTES),
)


@dataclass(frozen=True)
class Rfq:
    job_id: bytes
    model: str
    prompt_tokens: int
    completion_tokens: int
    max_prices: Prices
    bid_window_ms: int
    client_key: bytes
    client_addr: str
    expires_ms: int
    nonce: bytes
    raw: bytes = field(repr=False, compare=False)

    @property
    def client_id(self) -> PeerId:
        return PeerId.from_public_key(self.client_key)

    @property
    def ref(self) -> bytes:
        return _ref(self.raw)

    @classmethod
    def create(
        cls,
        identity: Identity,
        *,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        max_prices: Prices,
        bid_window_ms: int,
        client_addr: str,
        expires_ms: int,
        rng: random.Random,
    ) -> Rfq:
        fields = {
            "job": rng.randbytes(JOB_ID_BYTES),
            "model": model,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "max_prompt": max_prices.prompt,
            "max_completion": max_prices.completion,
            "window_ms": bid_window_ms,
            "client": identity.public_key,
            "addr": client_addr,
            "expires_ms": expires_ms,
            "nonce": rng.randbytes(NONCE_BYTES),
        }
        _RFQ.validate(fields)  # refuse to sign what no peer would accept
        return cls.decode(seal(identity, RFQ, fields))

    @classmethod
    def decode(cls, raw: Any) -> Rfq:
        f = _decode(raw, RFQ, _RFQ, "client")
        if not f["model"]:
            raise MessageRejected("malformed", "rfq names no model")
        if f["prompt_tokens"] + f["completion_tokens"] == 0:
            raise MessageRejected("malformed", "rfq estimates zero tokens")
        return cls(
            f["job"],
            f["model"],
            f["prompt_tokens"],
            f["completion_tokens"],
            Prices(f["max_prompt"], f["max_completion"]),
            f["window_ms"],
            f["client"],
            f["addr"],
            f["expires_ms"],
            f["nonce"],
            raw,
        )


# --- Bid ------------------------------------------------------------------------------
_BID = Schema(
    "bid",
    job=_JOB_ID,
    worker=BYTES32,
    prompt=U64,
    completion=U64,
    load=U32,
    capacity=Field(int, min_value=1, max_value=(1 << 32) - 1),
    latency_ms=U32,
    offer=BYTES32,
    addr=_ADDR,
    expires_ms=U64,
)


@dataclass(frozen=True)
class Bid:
    job_id: bytes
    worker_key: bytes
    prices: Prices
    load: int
    capacity: int
    latency_ms: int
    offer_ref: bytes
    worker_addr: str
    expires_ms: int
    raw: bytes = field(repr=False, compare=False)

    @property
    def worker_id(self) -> PeerId:
        return PeerId.from_public_key(self.worker_key)

    @property
    def ref(self) -> bytes:
        return _ref(self.raw)

    @classmethod
    def create(
        cls,
        identity: Identity,
        *,
        job_id: bytes,
        prices: Prices,
        load: int,
        capacity: int,
        latency_ms: int,
        offer_ref: bytes,
        worker_addr: str,
        expires_ms: int,
    ) -> Bid:
        fields = {
            "job": job_id,
            "worker": identity.public_key,
            "prompt": prices.prompt,
            "completion": prices.completion,
            "load": load,
            "capacity": capacity,
            "latency_ms": latency_ms,
            "offer": offer_ref,
            "addr": worker_addr,
            "expires_ms": expires_ms,
        }
        _BID.validate(fields)
        return cls.decode(seal(identity, BID, fields))

    @classmethod
    def decode(cls, raw: Any) -> Bid:
        f = _decode(raw, BID, _BID, "worker")
        return cls(
            f["job"],
            f["worker"],
            Prices(f["prompt"], f["completion"]),
            f["load"],
            f["capacity"],
            f["latency_ms"],
            f["offer"],
            f["addr"],
            f["expires_ms"],
            raw,
        )


# --- Award ----------------------------------------------------------------------------
_AWARD = Schema(
    "award",
    job=_JOB_ID,
    client=BYTES32,
    winner=BYTES32,
    bid=BYTES32,
    model=_MODEL,
    prompt=U64,
    completion=U64,
    prompt_tokens=U32,
    completion_tokens=U32,
    expires_ms=U64,
)


@dataclass(frozen=True)
class Award:
    """The client's signed promise: this worker won ``job_id`` at these clearing prices.

    ``prompt_tokens``/``completion_tokens`` repeat the RFQ's estimates so the session
    layer can hold the job request to them; ``expires_ms`` is when the job must have
    started.
    """

    job_id: bytes
    client_key: bytes
    winner: PeerId
    bid_ref: bytes
    model: str
    prices: Prices
    prompt_tokens: int
    completion_tokens: int
    expires_ms: int
    raw: bytes = field(repr=False, compare=False)

    @property
    def client_id(self) -> PeerId:
        return PeerId.from_public_key(self.client_key)

    @property
    def ref(self) -> bytes:
        return _ref(self.raw)

    @classmethod
    def create(cls, identity: Identity, *, rfq: Rfq, bid: Bid, prices: Prices, expires_ms: int) -> Award:
        fields = {
            "job": rfq.job_id,
            "client": identity.public_key,
            "winner": bid.worker_id.raw,
            "bid": bid.ref,
            "model": rfq.model,
            "prompt": prices.prompt,
            "completion": prices.completion,
            "prompt_tokens": rfq.prompt_tokens,
            "completion_tokens": rfq.completion_tokens,
            "expires_ms": expires_ms,
        }
        _AWARD.validate(fields)
        return cls.decode(seal(identity, AWARD, fields))

    @classmethod
    def decode(cls, raw: Any) -> Award:
        f = _decode(raw, AWARD, _AWARD, "client")
        return cls(
            f["job"],
            f["client"],
            PeerId(f["winner"]),
            f["bid"],
            f["model"],
            Prices(f["prompt"], f["completion"]),
            f["prompt_tokens"],
            f["completion_tokens"],
            f["expires_ms"],
            raw,
        )
