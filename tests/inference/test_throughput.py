"""Throughput measurement and its per-sha256 cache."""

from __future__ import annotations

import json
from pathlib import Path

from cocoon_p2p.inference import InferenceEngine
from cocoon_p2p.inference.throughput import CACHE_FILE, cached_throughput, measure_throughput


async def test_measures_and_caches(tiny: InferenceEngine, tmp_path: Path) -> None:
    assert cached_throughput(tiny, tmp_path) is None
    rate = await measure_throughput(tiny, tmp_path, max_tokens=16)
    assert rate > 0
    entry = json.loads((tmp_path / CACHE_FILE).read_text())[tiny.sha256]
    assert entry["model_id"] == tiny.model_id
    assert entry["tokens_per_s"] == round(rate, 3)
    # Cached: the same figure comes back without generating (the slot stays free).
    assert await measure_throughput(tiny, tmp_path) == round(rate, 3)
    assert tiny.available == tiny.max_concurrent
    assert await measure_throughput(tiny, tmp_path, max_tokens=8, force=True) > 0


async def test_other_settings_invalidate_the_cache(tiny: InferenceEngine, tmp_path: Path) -> None:
    await measure_throughput(tiny, tmp_path, max_tokens=8)
    data = json.loads((tmp_path / CACHE_FILE).read_text())
    data[tiny.sha256]["settings"]["n_threads"] += 1
    (tmp_path / CACHE_FILE).write_text(json.dumps(data))
    assert cached_throughput(tiny, tmp_path) is None
