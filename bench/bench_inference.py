"""Completion tokens/s: our engine vs llama-cpp-python called directly.

Same model file (the gemma 3 270M demo model), same prompt, greedy decoding,
same max_tokens, same thread count, in alternating rounds so machine noise hits
both alike. The engine's figure includes everything a worker pays for: the
worker thread, the trio memory channel per token, stop/UTF-8 handling. Run with
``python -m bench.bench_inference``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import trio

from cocoon_p2p.inference.engine import InferenceEngine, default_threads
from cocoon_p2p.inference.loader import new_llama
from cocoon_p2p.inference.models import ensure_default_model
from cocoon_p2p.inference.request import GenerationRequest

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def _direct_once(llm: Any, max_tokens: int) -> tuple[int, float, str]:
    start = time.perf_counter()
    out = llm.create_completion(PROMPT, max_tokens=max_tokens, temperature=0.0, repeat_penalty=1.0)
    elapsed = time.perf_counter() - start
    return out["usage"]["completion_tokens"], elapsed, out["choices"][0]["text"]


async def _engine_once(engine: InferenceEngine, max_tokens: int) -> tuple[int, float, str]:
    request = GenerationRequest(prompt=PROMPT, max_tokens=max_tokens, temperature=0.0)
    start = time.perf_counter()
    text, usage = await engine.complete(request)
    return usage.completion_tokens, time.perf_counter() - start, text


def run(max_tokens: int = 64, rounds: int = 3, model: Path | None = None) -> dict:
    """Measure both ways; returns best-of-rounds tokens/s and their ratio (engine / direct)."""
    path = model if model is not None else ensure_default_model()
    threads = default_threads()
    n_ctx = 512
    direct = new_llama(path, n_ctx=n_ctx, n_threads=threads)

    async def main() -> dict:
        engine = await InferenceEngine.load(path, n_ctx=n_ctx, n_threads=threads, progress=False)
        try:
            # Warm both (page faults, allocator) outside the timing.
            _direct_once(direct, 4)
            await _engine_once(engine, 4)
            best = {"engine": 0.0, "direct": 0.0}
            texts: dict[str, str] = {}
            tokens = 0
            for _ in range(rounds):
                for name in ("direct", "engine"):
                    if name == "direct":
                        n, dt, text = _direct_once(direct, max_tokens)
                    else:
                        n, dt, text = await _engine_once(engine, max_tokens)
                    best[name] = max(best[name], n / dt)
                    texts[name] = text
                    tokens = n
            return {
                "model_id": engine.model_id,
                "max_tokens": max_tokens,
                "completion_tokens": tokens,
                "n_threads": threads,
                "n_gpu_layers": engine.n_gpu_layers,
                "tokens_per_s_engine": best["engine"],
                "tokens_per_s_direct": best["direct"],
                "ratio": best["engine"] / best["direct"],
                "same_output": texts["engine"] == texts["direct"],
            }
        finally:
            await engine.aclose()

    try:
        return trio.run(main)
    finally:
        direct.close()


def main() -> None:
    r = run(max_tokens=int(os.environ.get("BENCH_MAX_TOKENS", "64")))
    print(
        f"{r['model_id']}, greedy, {r['completion_tokens']} completion tokens incl. prompt processing, "
        f"{r['n_threads']} threads, n_gpu_layers={r['n_gpu_layers']} (best of rounds)"
    )
    print(
        f"  tokens/s   engine {r['tokens_per_s_engine']:7.1f}   llama-cpp-python direct "
        f"{r['tokens_per_s_direct']:7.1f}   ratio {r['ratio']:.2f}x   same output: {r['same_output']}"
    )


if __name__ == "__main__":
    main()
