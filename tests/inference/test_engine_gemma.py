"""The real demo model (gemma 3 270M, base) against llama-cpp-python used directly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cocoon_p2p.inference import DEFAULT_MODEL_ID, DEFAULT_MODEL_SHA256, GenerationRequest, InferenceEngine
from cocoon_p2p.inference.loader import new_llama

PROMPT = "The capital of France is"
CHAT = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture(scope="module")
def direct(gemma_path: Path) -> Iterator[Any]:
    """A plain llama-cpp-python instance: the reference the engine must match."""
    llm = new_llama(gemma_path, n_ctx=512, n_threads=1)
    llm.chat_format = "gemma"
    yield llm
    llm.close()


async def test_identity_and_metadata(gemma: InferenceEngine) -> None:
    assert gemma.model_id == DEFAULT_MODEL_ID
    assert gemma.sha256 == DEFAULT_MODEL_SHA256
    assert gemma.chat_format == "gemma"
    info = gemma.info()
    assert info["model_id"] == DEFAULT_MODEL_ID and info["sha256"] == DEFAULT_MODEL_SHA256


async def test_plain_completion_matches_llama_cpp(gemma: InferenceEngine, direct: Any) -> None:
    text, usage = await gemma.complete(GenerationRequest(prompt=PROMPT, max_tokens=16, temperature=0.0))
    ref = direct.create_completion(PROMPT, max_tokens=16, temperature=0.0, repeat_penalty=1.0)
    assert text == ref["choices"][0]["text"]
    assert usage.prompt_tokens == ref["usage"]["prompt_tokens"]
    assert usage.completion_tokens == ref["usage"]["completion_tokens"]
    assert usage.finish_reason == ref["choices"][0]["finish_reason"]


async def test_chat_completion_matches_llama_cpp_gemma_format(gemma: InferenceEngine, direct: Any) -> None:
    text, usage = await gemma.complete(GenerationRequest(messages=CHAT, max_tokens=12, temperature=0.0))
    ref = direct.create_chat_completion(CHAT, max_tokens=12, temperature=0.0, repeat_penalty=1.0)
    assert text == ref["choices"][0]["message"]["content"]
    assert usage.prompt_tokens == ref["usage"]["prompt_tokens"] == gemma.count_chat_tokens(CHAT)
    assert usage.completion_tokens == ref["usage"]["completion_tokens"]


async def test_system_message_is_folded_into_first_user_turn(gemma: InferenceEngine) -> None:
    with_system = [{"role": "system", "content": "Be terse."}, *CHAT]
    folded = [{"role": "user", "content": "Be terse.\n\n" + CHAT[0]["content"]}]
    assert gemma.count_chat_tokens(with_system) == gemma.count_chat_tokens(folded)
    a = await gemma.complete(GenerationRequest(messages=with_system, max_tokens=8, temperature=0.0))
    b = await gemma.complete(GenerationRequest(messages=folded, max_tokens=8, temperature=0.0))
    assert a == b


async def test_multibyte_text_streams_intact(gemma: InferenceEngine, direct: Any) -> None:
    prompt = "Traduction en japonais : « bonjour » = 「"
    request = GenerationRequest(prompt=prompt, max_tokens=12, temperature=0.0)
    async with gemma.stream(request) as tokens:
        chunks = [c async for c in tokens]
    text = "".join(c.text for c in chunks)
    assert "\ufffd" not in text
    assert sum(c.tokens for c in chunks) == tokens.usage.completion_tokens
    ref = direct.create_completion(prompt, max_tokens=12, temperature=0.0, repeat_penalty=1.0)
    assert text == ref["choices"][0]["text"]


async def test_exact_token_counts(gemma: InferenceEngine, gemma_path: Path, reference_vocab: Any) -> None:
    ref = reference_vocab(gemma_path)
    for text in ["", "hello", "Héllo wörld — 日本語 🎉", "<start_of_turn>user\nhi<end_of_turn>\n"]:
        assert gemma.count_tokens(text) == len(ref.tokenize(text.encode(), add_bos=True, special=True))


async def test_greedy_repeats_exactly(gemma: InferenceEngine) -> None:
    request = GenerationRequest(prompt="Once upon a time", max_tokens=16, temperature=0.0)
    first = await gemma.complete(request)
    # A different job in between must not leak state (KV cache reuse) into the next one.
    await gemma.complete(GenerationRequest(prompt="Once upon a midnight dreary", max_tokens=4, temperature=0.0))
    assert await gemma.complete(request) == first
