"""Fixtures: a tiny random GGUF (fast mechanics) and the real gemma 270M demo model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from cocoon_p2p.inference.engine import InferenceEngine
from cocoon_p2p.inference.models import ensure_default_model
from cocoon_p2p.inference.tiny_model import write_tiny_gguf


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("models") / "tiny.gguf", seed=1)


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    # Shared user cache (COCOON_P2P_CACHE or ~/.cache/cocoon-p2p): assembled once.
    return ensure_default_model()


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def reference_vocab() -> Any:
    """Independent vocab-only llama.cpp instances, to check counts against."""
    from llama_cpp import Llama

    made: dict[Path, Any] = {}

    def get(path: Path) -> Any:
        if path not in made:
            made[path] = Llama(model_path=str(path), vocab_only=True, verbose=False)
        return made[path]

    return get


@asynccontextmanager
async def loaded(path: Path, cache_dir: Path, **kwargs: Any) -> AsyncIterator[InferenceEngine]:
    kwargs.setdefault("n_ctx", 512)
    kwargs.setdefault("progress", False)
    engine = await InferenceEngine.load(path, cache_dir=cache_dir, **kwargs)
    try:
        yield engine
    finally:
        await engine.aclose()


@pytest.fixture
async def tiny(tiny_path: Path, cache_dir: Path) -> AsyncIterator[InferenceEngine]:
    async with loaded(tiny_path, cache_dir, n_threads=1) as engine:
        yield engine


@pytest.fixture
async def gemma(gemma_path: Path, cache_dir: Path) -> AsyncIterator[InferenceEngine]:
    async with loaded(gemma_path, cache_dir, n_threads=1) as engine:
        yield engine
