"""Model files: demo model assembly, hashing, ids, the tiny GGUF writer."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cocoon_p2p.inference.models import (
    DEFAULT_MODEL_SHA256,
    cached_sha256,
    chat_format_for,
    ensure_default_model,
    model_id_from_gguf,
    model_id_from_name,
    read_gguf_metadata,
    sha256_file,
)
from cocoon_p2p.inference.tiny_model import TINY_MODEL_NAME, write_tiny_gguf


@pytest.mark.parametrize(
    ("name", "model_id"),
    [
        ("gemma-3-270m-q4_k_m.gguf", "gemma3-270m"),
        ("Gemma 3 270M", "gemma3-270m"),
        ("Llama-3.2-1B-Instruct-Q8_0.gguf", "llama3.2-1b-instruct"),
        ("mistral-7b-instruct-v0.2.Q4_K_M.gguf", "mistral-7b-instruct-v0.2"),
        ("Qwen2.5-0.5B-Instruct-F16.gguf", "qwen2.5-0.5b-instruct"),
        ("/some/dir/phi-3-mini-4k-instruct-IQ4_XS.gguf", "phi3-mini-4k-instruct"),
    ],
)
def test_model_id_from_name(name: str, model_id: str) -> None:
    assert model_id_from_name(name) == model_id


def test_sha256_file(tmp_path: Path) -> None:
    data = b"x" * 3_000_000
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_file(path, progress=True) == hashlib.sha256(data).hexdigest()


def test_cached_sha256_notices_changes(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"one")
    assert cached_sha256(path, tmp_path / "cache") == hashlib.sha256(b"one").hexdigest()
    path.write_bytes(b"three")  # new size (and mtime): a new key
    assert cached_sha256(path, tmp_path / "cache") == hashlib.sha256(b"three").hexdigest()


def test_tiny_gguf_is_deterministic(tmp_path: Path) -> None:
    a = write_tiny_gguf(tmp_path / "a.gguf", seed=3)
    b = write_tiny_gguf(tmp_path / "b.gguf", seed=3)
    c = write_tiny_gguf(tmp_path / "c.gguf", seed=4)
    assert sha256_file(a) == sha256_file(b) != sha256_file(c)
    assert model_id_from_gguf(a) == TINY_MODEL_NAME
    assert read_gguf_metadata(a, ("general.architecture", "llama.block_count")) == {
        "general.architecture": "llama",
        "llama.block_count": 2,
    }
    assert chat_format_for(a) == "chatml"


def test_default_model_assembles_and_verifies(tmp_path: Path) -> None:
    path = ensure_default_model(cache_dir=tmp_path)
    assert path.parent == tmp_path / "models"
    assert sha256_file(path) == DEFAULT_MODEL_SHA256
    assert ensure_default_model(tmp_path) == path  # second call reuses the file
    assert model_id_from_gguf(path) == "gemma3-270m"
    assert chat_format_for(path) == "gemma"
    # A corrupted copy is rebuilt, not served.
    with path.open("r+b") as fh:
        fh.seek(1000)
        fh.write(b"corrupt")
    assert sha256_file(ensure_default_model(tmp_path)) == DEFAULT_MODEL_SHA256


def test_env_var_sets_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cocoon_p2p.inference.models import resolve_cache_dir

    monkeypatch.setenv("COCOON_P2P_CACHE", str(tmp_path / "c"))
    assert resolve_cache_dir() == tmp_path / "c"
    assert (tmp_path / "c").is_dir()
