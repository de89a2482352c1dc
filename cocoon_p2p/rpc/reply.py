"""One-shot reply slots: one wakes its waiting task directly, one runs a callback.

A memory channel per call costs a scheduler round trip more than this; on the RPC
hot path that is a visible share of the round-trip time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import outcome
import trio

log = logging.getLogger(__name__)


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


class CallbackReply:
    """A reply slot for :meth:`Connection.request_nowait`: runs a callback instead of waking a task.

    The callback runs once, in the connection's read loop (or where the connection shuts
    down), with the result map or the exception; it must not block or raise.
    """

    __slots__ = ("_done", "_on_reply", "_release")

    def __init__(self, on_reply: Callable[[Any], None], release: Callable[[], None]) -> None:
        self._done = False
        self._on_reply = on_reply
        self._release = release  # gives back the connection's call slot

    def set(self, value: Any) -> None:
        if self.drop():
            try:
                self._on_reply(value)
            except Exception:
                log.exception("reply callback failed")

    def drop(self) -> bool:
        """Forget the call without running the callback; True the first time."""
        if self._done:
            return False
        self._done = True
        self._release()
        return True
