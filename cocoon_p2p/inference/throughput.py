"""Measured decode speed (tokens/s) per served model, for offers.

Measured once with a short greedy run and cached by the model's sha256 (plus
the settings that change the figure), so a restarting worker does not spend
its first seconds re-measuring.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import trio

from cocoon_p2p.inference.engine import InferenceEngine
from cocoon_p2p.inference.request import GenerationRequest

CACHE_FILE = "throughput.json"
WARMUP_PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def _settings(engine: InferenceEngine) -> dict[str, Any]:
    return {"n_threads": engine.n_threads, "n_gpu_layers": engine.n_gpu_layers, "n_ctx": engine.n_ctx}


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def cached_throughput(engine: InferenceEngine, cache_dir: Path) -> float | None:
    """The cached figure for this model file and settings, if any."""
    entry = _load(Path(cache_dir) / CACHE_FILE).get(engine.sha256)
    if not isinstance(entry, dict) or entry.get("settings") != _settings(engine):
        return None
    value = entry.get("tokens_per_s")
    return float(value) if isinstance(value, int | float) and value > 0 else None


async def measure_throughput(
    engine: InferenceEngine, cache_dir: Path, *, max_tokens: int = 32, force: bool = False
) -> float:
    """Decode tokens/s of ``engine`` (from the cache unless ``force``).

    Uses one slot (waiting for it if busy). Wall-clock time on purpose: this is
    the hardware's speed, not protocol time.
    """
    cache_dir = Path(cache_dir)
    if not force:
        cached = cached_throughput(engine, cache_dir)
        if cached is not None:
            return cached
    # The first tokens pay for page faults and allocator warm-up; keep them out.
    await engine.complete(GenerationRequest(prompt=WARMUP_PROMPT, max_tokens=4, temperature=0.0), wait=True)
    request = GenerationRequest(prompt=WARMUP_PROMPT, max_tokens=max_tokens, temperature=0.0)
    first: float | None = None
    after_first = 0
    start = time.perf_counter()
    async with engine.stream(request, wait=True) as tokens:
        async for chunk in tokens:
            if first is None:
                first = time.perf_counter()  # excludes prompt processing
            else:
                after_first += chunk.tokens
    end = time.perf_counter()
    usage = tokens.usage
    if first is not None and after_first > 0 and end > first:
        rate = after_first / (end - first)
    else:
        rate = usage.completion_tokens / max(end - start, 1e-9)
    await trio.to_thread.run_sync(_store, cache_dir, engine, rate)
    return rate


def _store(cache_dir: Path, engine: InferenceEngine, rate: float) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / CACHE_FILE
    data = _load(path)
    data[engine.sha256] = {
        "model_id": engine.model_id,
        "tokens_per_s": round(rate, 3),
        "settings": _settings(engine),
        "measured_at": int(time.time()),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)
