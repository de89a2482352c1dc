"""Worker offers: signed, expiring, published in the DHT under each model's key (DESIGN.md §7).

An offer is a signed envelope (kind ``offer``) carried as the value of a
``provider`` record. The record's publisher must be the offer's worker key and its
key the ``model_key`` of one of the offered models. The market replaces the DHT's
permissive provider validator with :func:`validate_offer_record`, so every peer
that runs :func:`install_offer_validator` refuses bad offers on store and drops
them from lookup replies.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

from ..dht import PROVIDER_RECORD, Dht, Record, RecordRejected, model_key
from ..dht.records import CLOCK_SKEW, MAX_TTL
from ..errors import CodecError
from ..identity import Identity, PeerId
from ..net import WallClock
from ..wire.codec import BYTES32, U32, U64, Field, Schema
from .envelope import seal, unseal
from .errors import MessageRejected
from .messages import MAX_ADDRESS, MAX_MODEL_ID, Prices

OFFER = "offer"
#: An offer must leave room for the record around it inside the DHT's 4 KiB limit.
MAX_OFFER_BYTES = 3584
MAX_ATTESTATION = 2048
MAX_MODELS = 16
MAX_GPU_KINDS = 16
MAX_WALLET = 96

_MODEL = Schema(
    "offer_model",
    id=Field(str, max_len=MAX_MODEL_ID),
    sha256=BYTES32,
    context=Field(int, min_value=1, max_value=(1 << 32) - 1),
    tokens_per_s=Field((int, float), min_value=0, max_value=1_000_000),
)
_GPU = Schema(
    "offer_gpu",
    model=Field(str, max_len=128),
    vram_mb=U32,
    count=Field(int, min_value=1, max_value=1024),
)
_CPU = Schema("offer_cpu", model=Field(str, max_len=128), cores=U32, ram_mb=U32)
_OFFER = Schema(
    "offer",
    worker=BYTES32,
    addrs=Field(list, max_len=8),
    wallet=Field(str, max_len=MAX_WALLET),
    gpus=Field(list, max_len=MAX_GPU_KINDS),
    cpu=Field(dict, optional=True),
    models=Field(list, max_len=MAX_MODELS),
    prompt=U64,
    completion=U64,
    max_jobs=Field(int, min_value=1, max_value=1_000_000),
    started_at=U64,
    uptime_target_bp=Field(int, min_value=0, max_value=10_000),
    attestation=Field(bytes, optional=True, max_len=MAX_ATTESTATION),
    expires=U64,
)


@dataclass(frozen=True)
class ModelInfo:
    name: str  # the model id clients ask for
    sha256: str  # hex digest of the GGUF file
    context: int
    tokens_per_s: float

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.name,
            "sha256": bytes.fromhex(self.sha256),
            "context": self.context,
            "tokens_per_s": float(self.tokens_per_s),
        }


@dataclass(frozen=True)
class GpuInfo:
    name: str
    vram_mb: int
    count: int


@dataclass(frozen=True)
class CpuInfo:
    model: str
    cores: int
    ram_mb: int


def hardware_from_dict(info: dict[str, Any] | None) -> tuple[tuple[GpuInfo, ...], CpuInfo | None]:
    """GPUs and CPU from a plain dict.

    Accepts ``Capability.to_dict()`` (gpus with ``vram_mib``, one entry per card,
    ``cpu_model``/``cpu_cores``/``ram_mib``) or the offer's own shape (gpus with
    ``vram_mb`` and ``count``, ``cpu`` = {model, cores, ram_mb}). Identical cards are
    grouped into one entry with a count, which keeps the offer small.
    """
    if not info:
        return (), None
    counts: dict[tuple[str, int], int] = {}
    for gpu in info.get("gpus") or []:
        name = str(gpu.get("name", gpu.get("model", "")))[:128]
        vram = int(gpu.get("vram_mb", gpu.get("vram_mib", 0)) or 0)
        counts[(name, vram)] = counts.get((name, vram), 0) + int(gpu.get("count", 1) or 1)
    gpus = tuple(GpuInfo(n, v, c) for (n, v), c in counts.items())
    cpu_info = info.get("cpu")
    if isinstance(cpu_info, dict):
        cpu = CpuInfo(
            str(cpu_info.get("model", ""))[:128], int(cpu_info.get("cores", 0)), int(cpu_info.get("ram_mb", 0))
        )
    elif "cpu_model" in info or "cpu_cores" in info:
        cpu = CpuInfo(str(info.get("cpu_model", ""))[:128], int(info.get("cpu_cores", 0)), int(info.get("ram_mib", 0)))
    else:
        cpu = None
    return gpus, cpu


@dataclass(frozen=True)
class Offer:
    worker_key: bytes
    addrs: tuple[str, ...]
    wallet: str
    gpus: tuple[GpuInfo, ...]
    cpu: CpuInfo | None
    models: tuple[ModelInfo, ...]
    prices: Prices
    max_jobs: int
    started_at: int  # Unix seconds the worker came up
    uptime_target_bp: int  # operator's stated uptime target, basis points (9900 = 99%)
    attestation: bytes | None
    expires: int  # Unix seconds
    raw: bytes = field(repr=False, compare=False)

    @property
    def worker_id(self) -> PeerId:
        return PeerId.from_public_key(self.worker_key)

    @property
    def ref(self) -> bytes:
        """What a bid names as its offer: SHA-256 of the signed offer."""
        return hashlib.sha256(self.raw).digest()

    def model(self, model_id: str) -> ModelInfo | None:
        return next((m for m in self.models if m.name == model_id), None)

    @classmethod
    def create(
        cls,
        identity: Identity,
        *,
        addrs: list[str],
        models: list[ModelInfo],
        prices: Prices,
        max_jobs: int,
        started_at: int,
        expires: int,
        wallet: str = "",
        hardware: dict[str, Any] | None = None,
        uptime_target_bp: int = 9900,
        attestation: bytes | None = None,
    ) -> Offer:
        gpus, cpu = hardware_from_dict(hardware)
        fields: dict[str, Any] = {
            "worker": identity.public_key,
            "addrs": list(addrs),
            "wallet": wallet,
            "gpus": [{"model": g.name, "vram_mb": g.vram_mb, "count": g.count} for g in gpus],
            "cpu": None if cpu is None else {"model": cpu.model, "cores": cpu.cores, "ram_mb": cpu.ram_mb},
            "models": [m.to_wire() for m in models],
            "prompt": prices.prompt,
            "completion": prices.completion,
            "max_jobs": max_jobs,
            "started_at": started_at,
            "uptime_target_bp": uptime_target_bp,
            "attestation": attestation,
            "expires": expires,
        }
        raw = seal(identity, OFFER, fields)
        if len(raw) > MAX_OFFER_BYTES:
            raise ValueError(f"offer is {len(raw)} bytes; the limit is {MAX_OFFER_BYTES} (fewer models or GPUs?)")
        try:
            return cls.decode(raw)
        except MessageRejected as exc:
            raise ValueError(f"invalid offer: {exc}") from None

    @classmethod
    def decode(cls, raw: Any) -> Offer:
        """Shape and signature checks (not expiry); raises ``MessageRejected``."""
        if isinstance(raw, bytes) and len(raw) > MAX_OFFER_BYTES:
            raise MessageRejected("malformed", f"offer larger than {MAX_OFFER_BYTES} bytes")
        f = unseal(raw, OFFER, _OFFER, "worker", max_size=MAX_OFFER_BYTES)
        try:
            return cls._from_fields(f, raw)
        except (CodecError, ValueError) as exc:
            raise MessageRejected("malformed", str(exc)) from None

    @classmethod
    def _from_fields(cls, f: dict[str, Any], raw: bytes) -> Offer:
        addrs = tuple(f["addrs"])
        if not addrs or not all(isinstance(a, str) and 0 < len(a) <= MAX_ADDRESS for a in addrs):
            raise CodecError(f"an offer lists 1-8 addresses of at most {MAX_ADDRESS} characters")
        models = []
        for item in f["models"]:
            m = _MODEL.validate(item)
            if not m["id"] or not math.isfinite(m["tokens_per_s"]):
                raise CodecError("an offered model needs a name and a finite tokens/s")
            models.append(ModelInfo(m["id"], m["sha256"].hex(), m["context"], float(m["tokens_per_s"])))
        if not models or len({m.name for m in models}) != len(models):
            raise CodecError("an offer lists 1-16 distinct models")
        gpus = tuple(GpuInfo(g["model"], g["vram_mb"], g["count"]) for g in map(_GPU.validate, f["gpus"]))
        cpu = CpuInfo(**_CPU.validate(f["cpu"])) if f["cpu"] is not None else None
        if f["started_at"] > f["expires"]:
            raise CodecError("an offer cannot start after it expires")
        return cls(
            f["worker"],
            addrs,
            f["wallet"],
            gpus,
            cpu,
            tuple(models),
            Prices(f["prompt"], f["completion"]),
            f["max_jobs"],
            f["started_at"],
            f["uptime_target_bp"],
            f["attestation"],
            f["expires"],
            raw,
        )


def check_offer_fresh(offer: Offer, now: float, *, max_ttl: int = MAX_TTL) -> None:
    if offer.expires <= now:
        raise MessageRejected("expired", "offer has expired")
    if offer.expires > now + max_ttl + CLOCK_SKEW:
        raise MessageRejected("too_far_ahead", f"offer expiry is more than {max_ttl} s away")


def offer_from_record(record: Record, now: float) -> Offer:
    """The offer a provider record carries, fully checked; raises ``RecordRejected``."""
    if record.type != PROVIDER_RECORD:
        raise RecordRejected(f"not a provider record: {record.type!r}")
    try:
        offer = Offer.decode(record.value)
        check_offer_fresh(offer, now)
    except MessageRejected as exc:
        raise RecordRejected(f"bad offer: {exc}") from None
    if offer.worker_key != record.publisher:
        raise RecordRejected("an offer must be published by its own worker")
    if record.key not in {model_key(m.name) for m in offer.models}:
        raise RecordRejected("an offer must be stored under the key of a model it offers")
    return offer


def install_offer_validator(dht: Dht) -> None:
    """Make ``dht`` refuse provider records that are not valid, unexpired offers (every peer should)."""
    clock: WallClock = dht.clock

    def validate_offer_record(record: Record) -> None:
        offer_from_record(record, clock.now())

    dht.validator.register(PROVIDER_RECORD, validate_offer_record)


async def publish_offer(dht: Dht, offer: Offer) -> int:
    """Publish ``offer`` under every offered model's key; returns the smallest store count."""
    if offer.worker_key != dht.identity.public_key:
        raise ValueError("a peer can only publish its own offer")
    counts = [await dht.publish(PROVIDER_RECORD, model_key(m.name), offer.raw) for m in offer.models]
    return min(counts)


async def withdraw_offer(dht: Dht, offer: Offer) -> None:
    """Stop republishing; the records lapse at their expiry."""
    for m in offer.models:
        await dht.unpublish(PROVIDER_RECORD, model_key(m.name))


async def find_offers(dht: Dht, model_id: str) -> list[Offer]:
    """Verified, unexpired offers for ``model_id``, one per worker (the latest-expiring), cheapest first."""
    result = await dht.get_records(model_key(model_id))
    now = dht.clock.now()
    best: dict[bytes, Offer] = {}
    for record in result.records:
        try:
            offer = offer_from_record(record, now)
        except RecordRejected:
            continue
        if offer.model(model_id) is None:
            continue
        current = best.get(offer.worker_key)
        if current is None or offer.expires > current.expires:
            best[offer.worker_key] = offer
    return sorted(best.values(), key=lambda o: (o.prices.completion, o.prices.prompt, o.worker_key))
