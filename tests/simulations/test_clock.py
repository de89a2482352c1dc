"""simulations.clock: alarms beside the MockClock wake parked tasks at their virtual time."""

from __future__ import annotations

import math

import pytest
import trio

from simulations import clock
from simulations.clock import Sleeper, park_until, sim_clock


def _run(main):  # type: ignore[no-untyped-def]
    return trio.run(main, clock=sim_clock())


def test_alarms_and_trio_deadlines_interleave_in_virtual_time_order() -> None:
    woke: list[tuple[str, float]] = []

    async def alarm(name: str, when: float) -> None:
        await park_until(when, Sleeper())
        woke.append((name, trio.current_time()))

    async def deadline(name: str, when: float) -> None:
        await trio.sleep_until(when)
        woke.append((name, trio.current_time()))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(alarm, "alarm 5", 5.0)
            nursery.start_soon(deadline, "sleep 3", 3.0)
            nursery.start_soon(alarm, "alarm 1.5", 1.5)
            nursery.start_soon(deadline, "sleep 5", 5.0)
            nursery.start_soon(clock.sleep, 7.25)

    _run(main)
    assert woke[:2] == [("alarm 1.5", 1.5), ("sleep 3", 3.0)]
    assert sorted(woke[2:]) == [("alarm 5", 5.0), ("sleep 5", 5.0)]  # same instant, either order


def test_an_early_wake_up_leaves_no_stale_alarm_behind() -> None:
    async def main() -> list[float]:
        times = []
        sleeper = Sleeper()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_wake_at, 2.0, sleeper)
            await park_until(10.0, sleeper)  # woken by wake() at 2, long before its alarm
            times.append(trio.current_time())
            # Parked again without an alarm: the old one at 10 must not wake this wait.
            again = Sleeper()
            nursery.start_soon(_wake_at, 30.0, again)
            await park_until(math.inf, again)
            times.append(trio.current_time())
        return times

    assert _run(main) == [2.0, 30.0]


async def _wake_at(when: float, sleeper: Sleeper) -> None:
    await trio.sleep_until(when)
    sleeper.wake()


def test_a_parked_task_can_be_cancelled() -> None:
    async def main() -> tuple[bool, float]:
        with trio.move_on_after(4.0) as scope:
            await park_until(100.0, Sleeper())
        await clock.sleep(1.0)
        return scope.cancelled_caught, trio.current_time()

    assert _run(main) == (True, 5.0)


@pytest.mark.trio
async def test_without_alarms_the_clock_still_gets_timed_wake_ups(autojump_clock) -> None:
    # Under another clock (here pytest-trio's MockClock) park_until falls back to a cancel scope.
    await park_until(3.0, Sleeper())
    assert trio.current_time() == 3.0
    await clock.sleep(0.5)
    assert trio.current_time() == 3.5
