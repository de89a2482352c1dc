"""The channel store: durable on return, shared commits, and no wedge when a writer is cancelled."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from cocoon_p2p.payments.store import ChannelStore


async def test_concurrent_writers_all_land(tmp_path: Path) -> None:
    store = ChannelStore(tmp_path / "s.db")

    async def writer(channel: int) -> None:
        for version in range(5):
            await store.put(channel, "payer", "open", {"v": version, "c": channel})

    async with trio.open_nursery() as nursery:
        for channel in range(1, 41):
            nursery.start_soon(writer, channel)
    store.close()

    reopened = ChannelStore(tmp_path / "s.db")
    assert reopened.channel_ids(role="payer") == list(range(1, 41))
    for channel in range(1, 41):
        assert reopened.load(channel) == ("payer", "open", {"v": 4, "c": channel})
    assert reopened.channel_ids(role="payee") == []
    reopened.close()


async def test_a_cancelled_writer_does_not_wedge_the_store(tmp_path: Path) -> None:
    store = ChannelStore(tmp_path / "s.db")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.put, 1, "payer", "open", {"who": "first"})
        await trio.testing.wait_all_tasks_blocked()  # the first commit is running in its thread
        with trio.CancelScope() as scope:
            scope.cancel()
            await store.put(2, "payee", "open", {"who": "cancelled"})  # queued, then cancelled while waiting
    # the batch the cancelled writer left behind is committed by the next writer
    with trio.fail_after(10):
        await store.put(3, "payee", "closed", {"who": "third"})
    assert store.channel_ids() == [1, 2, 3]
    assert store.channel_ids(status="closed") == [3]
    store.close()


async def test_in_memory_store_writes_inline() -> None:
    store = ChannelStore(":memory:")
    await store.put(7, "payee", "open", {"x": [1, 2]})
    assert store.load(7) == ("payee", "open", {"x": [1, 2]})
    assert store.load(8) is None
