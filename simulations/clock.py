"""Virtual time for simulations: trio's MockClock with autojump, plus cheap timed wake-ups.

A trio task that waits until a given time does so through a cancel scope's deadline:
when it passes, trio raises ``Cancelled`` into the task and unwinds it to the scope.
In a simulation every message delivery is such a wait (the receiver sleeps until the
bytes are due), so that machinery — registering the deadline, cancelling, building and
catching the exception — was a large share of a run's CPU. ``Alarms`` keep their own
list: when trio finds every task blocked it asks the clock to jump, and the clock
jumps to the earlier of trio's next deadline and its next alarm, then reschedules the
tasks whose alarms are due. Same virtual times, same order; no exception per wake-up.

``park_until`` falls back to a cancel scope under any other clock (pytest-trio's
``autojump_clock`` in the network tests), so the simulated streams work under both.
"""

from __future__ import annotations

import heapq
import itertools
import math

import trio
import trio.testing


class Sleeper:
    """One parked task, woken by whichever comes first: its alarm or :meth:`wake`."""

    __slots__ = ("task",)

    def __init__(self) -> None:
        self.task: trio.lowlevel.Task | None = trio.lowlevel.current_task()

    def wake(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    def _abort(self, _raise_cancel: object) -> trio.lowlevel.Abort:
        self.task = None
        return trio.lowlevel.Abort.SUCCEEDED


class Alarms:
    """Timed wake-ups kept beside a ``MockClock(autojump_threshold=0)`` (see the module doc).

    trio lets only its own MockClock autojump (the run loop asserts the class, and the class
    is final), by calling its ``_autojump()`` when every task is blocked: not public API
    (trio issue #1587). The alarms replace that method on their clock instance with one that
    jumps to the earlier of trio's next deadline and the next alarm, then wakes the due ones.
    """

    def __init__(self, clock: trio.testing.MockClock) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, Sleeper]] = []
        self._order = itertools.count()
        clock._autojump = self._autojump  # type: ignore[method-assign]
        clock.alarms = self  # type: ignore[attr-defined]

    def add(self, when: float, sleeper: Sleeper) -> None:
        heapq.heappush(self._heap, (when, next(self._order), sleeper))

    def _autojump(self) -> None:
        heap = self._heap
        while heap and heap[0][2].task is None:  # woken early or cancelled meanwhile
            heapq.heappop(heap)
        now = self.clock.current_time()
        jump = trio.lowlevel.current_statistics().seconds_to_next_deadline
        if heap:
            jump = min(jump, heap[0][0] - now)
        if 0 < jump < math.inf:
            self.clock.jump(jump)
            now = self.clock.current_time()
        while heap and heap[0][0] <= now:
            heapq.heappop(heap)[2].wake()


def sim_clock() -> trio.testing.MockClock:
    """The clock simulations run on: virtual time that jumps whenever every task is blocked, with alarms."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    Alarms(clock)
    return clock


async def park_until(when: float, sleeper: Sleeper) -> None:
    """Park the current task (``sleeper``'s) until virtual time ``when`` or ``sleeper.wake()``.

    ``when`` may be ``math.inf``: then only a wake-up ends the wait. Cancellable.
    """
    alarms: Alarms | None = getattr(trio.lowlevel.current_clock(), "alarms", None)
    if alarms is not None or when == math.inf:
        if when != math.inf:
            alarms.add(when, sleeper)  # type: ignore[union-attr]
        await trio.lowlevel.wait_task_rescheduled(sleeper._abort)
        return
    with trio.move_on_at(when):
        await trio.lowlevel.wait_task_rescheduled(sleeper._abort)


async def sleep(seconds: float) -> None:
    """``trio.sleep`` through an alarm (see the module doc)."""
    await park_until(trio.current_time() + seconds, Sleeper())
