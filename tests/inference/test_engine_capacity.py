"""Capacity, cancellation and shutdown, on the tiny random model.

No timing assertions: "the worker thread stopped" is shown by the slot being
free as soon as the stream block exits, by the token count staying small, and
by the same llama context producing correct output right after.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from cocoon_p2p.inference import Cancelled, GenerationRequest, InferenceEngine, ModelNotServed, OverCapacity
from tests.inference.conftest import loaded

LONG = GenerationRequest(prompt="the cat", max_tokens=400, temperature=0.0)
SHORT = GenerationRequest(prompt="the cat", max_tokens=16, temperature=0.0)


async def test_break_stops_generation_and_frees_the_slot(tiny: InferenceEngine) -> None:
    expected = await tiny.complete(SHORT)
    async with tiny.stream(LONG) as tokens:
        assert tiny.available == 0
        seen = 0
        async for chunk in tokens:
            seen += chunk.tokens
            if seen >= 3:
                break
    assert tiny.available == tiny.max_concurrent
    usage = tokens.usage
    assert usage.finish_reason == "cancelled"
    # Backpressure (8 buffered chunks) kept the thread from running ahead to 400.
    assert usage.completion_tokens < 40
    # The context is consistent again: the same slot reproduces the greedy output.
    assert await tiny.complete(SHORT) == expected


async def test_cancel_scope_stops_generation(tiny: InferenceEngine) -> None:
    with trio.CancelScope() as scope:
        async with tiny.stream(LONG) as tokens:
            async for _ in tokens:
                scope.cancel()
                await trio.sleep(0)  # the checkpoint that delivers the cancellation
    assert scope.cancelled_caught
    assert tiny.available == tiny.max_concurrent
    assert tokens.usage.finish_reason == "cancelled"
    assert tokens.usage.completion_tokens < 40


async def test_consumer_error_propagates_unwrapped(tiny: InferenceEngine) -> None:
    with pytest.raises(KeyError):
        async with tiny.stream(LONG) as tokens:
            async for _ in tokens:
                raise KeyError("consumer bug")
    assert tiny.available == tiny.max_concurrent


async def test_slow_consumer_loses_nothing(tiny: InferenceEngine) -> None:
    async with tiny.stream(LONG) as tokens:
        first = await tokens.__anext__()
        # Nobody reads for a while: the thread fills the channel buffer and waits.
        await trio.testing.wait_all_tasks_blocked()
        rest = 0
        async for chunk in tokens:
            rest += chunk.tokens
    assert first.tokens + rest == tokens.usage.completion_tokens == 400


async def test_over_capacity_is_immediate(tiny: InferenceEngine) -> None:
    async with tiny.stream(LONG) as tokens:
        await tokens.__anext__()
        with pytest.raises(OverCapacity) as info:
            async with tiny.stream(SHORT):
                pass
        assert info.value.code == "over_capacity"
    async with tiny.stream(SHORT):
        pass


async def test_wait_policy_queues_until_a_slot_frees(tiny: InferenceEngine) -> None:
    got_slot = trio.Event()
    results: list[tuple[str, object]] = []

    async def second() -> None:
        async with tiny.stream(SHORT, wait=True) as tokens:
            got_slot.set()
            text = "".join([c.text async for c in tokens])
        results.append((text, tokens.usage))

    async with trio.open_nursery() as nursery:
        async with tiny.stream(LONG) as tokens:
            await tokens.__anext__()
            nursery.start_soon(second)
            await trio.testing.wait_all_tasks_blocked()
            assert not got_slot.is_set()
        # Leaving the first stream hands its slot to the waiter.
    assert got_slot.is_set()
    assert results == [await tiny.complete(SHORT)]


async def test_concurrent_slots_are_independent(tiny_path: Path, cache_dir: Path) -> None:
    async with loaded(tiny_path, cache_dir, n_threads=1, max_concurrent=2) as engine:
        expected = await engine.complete(LONG)
        outputs: list[tuple[str, object]] = []

        async def run() -> None:
            outputs.append(await engine.complete(LONG))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            nursery.start_soon(run)
        assert outputs == [expected, expected]
        assert engine.available == 2


async def test_close_cancels_running_streams(tiny_path: Path, cache_dir: Path) -> None:
    engine = await InferenceEngine.load(tiny_path, cache_dir=cache_dir, n_ctx=512, n_threads=1, progress=False)
    streaming, resume = trio.Event(), trio.Event()

    async def consumer() -> None:
        with pytest.raises(Cancelled) as info:
            async with engine.stream(LONG) as tokens:
                async for _ in tokens:
                    streaming.set()
                    # Hold the generator back (backpressure) until close has begun, so
                    # the stream cannot simply finish first.
                    await resume.wait()
        assert info.value.code == "cancelled"

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        await streaming.wait()
        nursery.start_soon(engine.aclose)
        await trio.testing.wait_all_tasks_blocked()
        resume.set()
    assert engine.available == 0  # a closed engine offers no capacity
    with pytest.raises(ModelNotServed):
        await engine.complete(SHORT)
