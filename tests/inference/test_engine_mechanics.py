"""Engine mechanics on the tiny random model: streaming, counts, stops, determinism."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cocoon_p2p.inference import BadRequest, GenerationRequest, InferenceEngine
from cocoon_p2p.inference.engine import TokenStream
from tests.inference.conftest import loaded

PROMPT = "the cat is on the mat and"


def greedy(max_tokens: int = 24, **kw: Any) -> GenerationRequest:
    return GenerationRequest(prompt=PROMPT, max_tokens=max_tokens, temperature=0.0, **kw)


async def collect(engine: InferenceEngine, request: GenerationRequest) -> tuple[list[Any], TokenStream]:
    async with engine.stream(request) as tokens:
        chunks = [chunk async for chunk in tokens]
    return chunks, tokens


async def test_stream_concatenates_to_completion(tiny: InferenceEngine) -> None:
    chunks, tokens = await collect(tiny, greedy())
    text, usage = await tiny.complete(greedy())
    assert "".join(c.text for c in chunks) == text
    assert text  # the tiny model never emits EOS, so there is output
    assert tokens.usage == usage
    assert sum(c.tokens for c in chunks) == usage.completion_tokens
    assert all(c.tokens >= 1 for c in chunks)


async def test_exact_prompt_token_counts(tiny: InferenceEngine, tiny_path: Path, reference_vocab: Any) -> None:
    ref = reference_vocab(tiny_path)
    expected = len(ref.tokenize(PROMPT.encode(), add_bos=True, special=True))
    _, usage = await tiny.complete(greedy(4))
    assert usage.prompt_tokens == expected
    assert tiny.count_tokens(PROMPT) == expected
    assert tiny.count_tokens("") == 1  # just BOS


async def test_chat_token_count_matches_usage(tiny: InferenceEngine) -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the word is"}]
    _, usage = await tiny.complete(GenerationRequest(messages=messages, max_tokens=3, temperature=0.0))
    assert usage.prompt_tokens == tiny.count_chat_tokens(messages)
    assert usage.prompt_tokens > tiny.count_tokens("be brief the word is")  # template tokens counted


@pytest.mark.parametrize("max_tokens", [1, 7, 40])
async def test_max_tokens_respected(tiny: InferenceEngine, max_tokens: int) -> None:
    _, usage = await tiny.complete(greedy(max_tokens))
    assert usage.completion_tokens == max_tokens
    assert usage.finish_reason == "length"


async def test_context_limit_caps_generation(tiny_path: Path, cache_dir: Path) -> None:
    async with loaded(tiny_path, cache_dir, n_ctx=32, n_threads=1) as engine:
        prompt_tokens = engine.count_tokens(PROMPT)
        _, usage = await engine.complete(greedy(1000))
        assert usage.prompt_tokens + usage.completion_tokens == 32
        assert usage.completion_tokens == 32 - prompt_tokens
        assert usage.finish_reason == "length"
        with pytest.raises(BadRequest):
            await engine.complete(GenerationRequest(prompt=PROMPT * 20, max_tokens=1))


async def test_greedy_is_deterministic_across_engines(tiny: InferenceEngine, tiny_path: Path, cache_dir: Path) -> None:
    first = await tiny.complete(greedy(32))
    assert await tiny.complete(greedy(32)) == first
    async with loaded(tiny_path, cache_dir, n_threads=2) as other:
        assert await other.complete(greedy(32)) == first


async def test_seed_makes_sampling_repeatable(tiny: InferenceEngine) -> None:
    def sampled(seed: int) -> GenerationRequest:
        return GenerationRequest(prompt=PROMPT, max_tokens=24, temperature=1.0, top_p=1.0, seed=seed)

    a = await tiny.complete(sampled(7))
    assert await tiny.complete(sampled(7)) == a
    others = {(await tiny.complete(sampled(seed)))[0] for seed in (8, 9, 10)}
    assert others != {a[0]}


async def test_stop_sequence_cuts_output(tiny: InferenceEngine) -> None:
    full, full_usage = await tiny.complete(greedy(48))
    # A stop taken from the middle of the greedy output must cut exactly there.
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    assert len(stop) == 3
    cut = full.index(stop)
    chunks, tokens = await collect(tiny, greedy(48, stop=["\x00never", stop]))
    text = "".join(c.text for c in chunks)
    assert text == full[:cut]
    assert tokens.usage.finish_reason == "stop"
    assert tokens.usage.completion_tokens < full_usage.completion_tokens
    assert sum(c.tokens for c in chunks) == tokens.usage.completion_tokens


async def test_stop_sequence_that_never_matches_changes_nothing(tiny: InferenceEngine) -> None:
    full = await tiny.complete(greedy(24))
    assert await tiny.complete(greedy(24, stop=["\x00", "zzzzzzzzzz"])) == full


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"prompt": "x", "messages": [{"role": "user", "content": "x"}]},
        {"prompt": "x", "max_tokens": 0},
        {"prompt": "x", "max_tokens": True},
        {"prompt": "x", "temperature": -0.1},
        {"prompt": "x", "temperature": float("nan")},
        {"prompt": "x", "top_p": 0.0},
        {"prompt": "x", "top_p": 1.5},
        {"prompt": "x", "seed": -1},
        {"prompt": "x", "seed": 2**32},
        {"prompt": "x", "stop": [""]},
        {"prompt": "x", "stop": ["a"] * 17},
        {"prompt": "x", "stop": "a"},
        {"prompt": 5},
        {"prompt": "\ud800"},
        {"messages": []},
        {"messages": [{"role": "robot", "content": "x"}]},
        {"messages": [{"role": "user", "content": 3}]},
        {"messages": [{"role": "system", "content": "only a system message"}]},
        {"messages": ["hello"]},
    ],
)
async def test_bad_requests_raise_typed_error(tiny: InferenceEngine, kwargs: dict[str, Any]) -> None:
    with pytest.raises(BadRequest) as info:
        await tiny.complete(GenerationRequest(**kwargs))
    assert info.value.code == "bad_request"
    assert tiny.available == tiny.max_concurrent


@pytest.mark.parametrize(
    "data",
    [None, [], {"prompt": "x", "max_tokens": "5"}, {"messages": "hi"}, {"prompt": "x", "top_p": "1"}],
)
def test_from_dict_rejects_malformed(data: Any) -> None:
    with pytest.raises(BadRequest):
        GenerationRequest.from_dict(data)


def test_from_dict_accepts_wire_shapes() -> None:
    req = GenerationRequest.from_dict(
        {"prompt": "hi", "max_tokens": 5, "temperature": 0, "top_p": 1, "stop": "\n", "extra": 1, "seed": None}
    )
    assert req == GenerationRequest(prompt="hi", max_tokens=5, temperature=0.0, top_p=1.0, stop=["\n"])
    assert GenerationRequest.from_dict(req.to_dict()) == req
