"""A one-shot reply slot that wakes its waiting task directly.

A memory channel per call costs a scheduler round trip more than this; on the RPC
hot path that is a visible share of the round-trip time.
"""

from __future__ import annotations

from typing import Any

import outcome
import trio


class Reply:
    __slots__ = ("_done", "_task", "_value")

    def __init__(self) -> None:
        self._done = False
        self._value: Any = None
        self._task: trio.lowlevel.Task | None = None

    def set(self, value: Any) -> None:
        if self._done:
            return
        self._done = True
        self._value = value
        if self._task is not None:
            task, self._task = self._task, None
            trio.lowlevel.reschedule(task, outcome.Value(value))

    async def wait(self) -> Any:
        if self._done:
            await trio.lowlevel.checkpoint()
            return self._value
        self._task = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._task = None
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)
