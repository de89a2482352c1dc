"""llama.cpp inference engine, token counting, hardware capability, throughput.

Request/result types, errors, capability and model helpers import without
llama_cpp; the engine (which loads the native library) is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cocoon_p2p.inference.capability import Capability, GpuInfo, detect_capability, parse_nvidia_smi
from cocoon_p2p.inference.errors import (
    ERROR_CODES,
    BadRequest,
    Cancelled,
    InferenceError,
    InternalError,
    ModelFileError,
    ModelNotServed,
    OverCapacity,
)
from cocoon_p2p.inference.models import (
    DEFAULT_CHAT_FORMAT,
    DEFAULT_MODEL_ID,
    DEFAULT_MODEL_SHA256,
    ensure_default_model,
    model_id_from_gguf,
    model_id_from_name,
    sha256_file,
)
from cocoon_p2p.inference.request import GenerationRequest, TokenChunk, Usage
from cocoon_p2p.inference.tiny_model import write_tiny_gguf

if TYPE_CHECKING:
    from cocoon_p2p.inference.engine import InferenceEngine, TokenStream
    from cocoon_p2p.inference.throughput import measure_throughput

_LAZY = {
    "InferenceEngine": "cocoon_p2p.inference.engine",
    "TokenStream": "cocoon_p2p.inference.engine",
    "measure_throughput": "cocoon_p2p.inference.throughput",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_CHAT_FORMAT",
    "DEFAULT_MODEL_ID",
    "DEFAULT_MODEL_SHA256",
    "ERROR_CODES",
    "BadRequest",
    "Cancelled",
    "Capability",
    "GenerationRequest",
    "GpuInfo",
    "InferenceEngine",
    "InferenceError",
    "InternalError",
    "ModelFileError",
    "ModelNotServed",
    "OverCapacity",
    "TokenChunk",
    "TokenStream",
    "Usage",
    "detect_capability",
    "ensure_default_model",
    "measure_throughput",
    "model_id_from_gguf",
    "model_id_from_name",
    "parse_nvidia_smi",
    "sha256_file",
    "write_tiny_gguf",
]
