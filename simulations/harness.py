"""Running a scenario on virtual time, deterministically (DESIGN.md §11).

Three things make a run repeat byte for byte:

- virtual time: ``trio.testing.MockClock(autojump_threshold=0)`` jumps to the next
  deadline (or alarm, see ``simulations.clock``) whenever every task is blocked, so
  results depend on simulated delays only, never on how fast the machine is;
- seeded randomness: every consumer takes its own ``random.Random`` from
  ``Seeds(master).rng(name)``, so adding a consumer does not shift the others;
- a seeded scheduler: trio deliberately shuffles the order of runnable tasks with
  an unseeded RNG. Its own test suite (and its Hypothesis plugin) pin that order by
  seeding ``trio._core._run._r``; ``simulate`` does the same for the run's duration.
  That is a private hook — if a trio upgrade moves it, the determinism test fails
  loudly rather than silently producing different CSVs.

Python's hash randomisation can still reorder iteration over sets of str/bytes in
protocol code; ``python -m simulations`` re-executes itself with PYTHONHASHSEED=0.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import math
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import trio
import trio.testing

from cocoon_p2p.identity import Identity
from cocoon_p2p.identity.keys import remember_verified
from cocoon_p2p.net import TrioWallClock

from .clock import sim_clock
from .latency import make_latency, quantize
from .network import SimEndpoint, SimNetwork

T = TypeVar("T")

#: Unix time the virtual clock's zero maps to (signed records need absolute time).
DEFAULT_EPOCH = 1_800_000_000.0


class Seeds:
    """A master seed and deterministic named substreams derived from it."""

    def __init__(self, master: int) -> None:
        self.master = master

    def digest(self, name: str) -> bytes:
        return hashlib.sha256(f"cocoon-sim:{self.master}:{name}".encode()).digest()

    def rng(self, name: str) -> random.Random:
        return random.Random(int.from_bytes(self.digest(name), "big"))

    def seed32(self, name: str) -> bytes:
        return self.digest(name)

    def identity(self, name: str | int) -> Identity:
        """Key material from the seed: fine for simulations, never for real peers."""
        return Identity(self.digest(f"identity:{name}"))


# --- progress ---------------------------------------------------------------------
class Progress(Protocol):
    def set_total(self, virtual_seconds: float | None) -> None: ...

    def update(self, virtual_now: float) -> None: ...

    def close(self) -> None: ...


class NullProgress:
    def set_total(self, virtual_seconds: float | None) -> None:
        pass

    def update(self, virtual_now: float) -> None:
        pass

    def close(self) -> None:
        pass


class TqdmProgress:
    """A tqdm bar whose unit is one virtual second."""

    def __init__(self, description: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(desc=description, unit="vs", unit_scale=True, dynamic_ncols=True, leave=True)
        self._shown = 0.0

    def set_total(self, virtual_seconds: float | None) -> None:
        self._bar.total = virtual_seconds
        self._bar.refresh()

    def update(self, virtual_now: float) -> None:
        step = virtual_now - self._shown
        if step > 0:
            self._bar.update(step)
            self._shown = virtual_now

    def close(self) -> None:
        self._bar.close()


# --- running ----------------------------------------------------------------------
@contextlib.contextmanager
def seeded_scheduler(seed: int) -> Iterator[None]:
    """Pin trio's task-order shuffling to ``seed`` for the duration of the block."""
    run_module: Any = trio._core._run
    saved_flag = run_module._ALLOW_DETERMINISTIC_SCHEDULING
    saved_state = run_module._r.getstate()
    run_module._ALLOW_DETERMINISTIC_SCHEDULING = True
    run_module._r.seed(seed)
    try:
        yield
    finally:
        run_module._ALLOW_DETERMINISTIC_SCHEDULING = saved_flag
        run_module._r.setstate(saved_state)


class SimulationStalled(RuntimeError):
    """The scenario did not finish within its virtual-time budget (usually a deadlock)."""


def simulate(
    main: Callable[[], Awaitable[T]],
    *,
    seeds: Seeds,
    progress: Progress | None = None,
    tick: float = 1.0,
    limit: float = 1e7,
) -> T:
    """Run ``main()`` under a MockClock with a seeded scheduler; returns its result.

    A ticker task reports virtual time to ``progress`` every ``tick`` virtual seconds
    or more.
    It runs whether or not a bar is shown, because an extra task changes the
    schedule, and results must not depend on whether someone watched them.
    ``limit`` (virtual seconds) turns a deadlock into an error instead of a hang.
    """
    bar = progress or NullProgress()
    result: list[T] = []

    async def ticker() -> None:
        # The step grows with virtual time (about 100 updates per tenfold), so a
        # run spanning days of quiet virtual time does not pay for a wakeup a second.
        while True:
            now = trio.current_time()
            bar.update(now)
            await trio.sleep(max(tick, quantize(now / 100.0)))

    async def root() -> None:
        # A system task is cancelled when the main task ends, and keeps the
        # scenario's own exceptions out of an ExceptionGroup.
        trio.lowlevel.spawn_system_task(ticker)
        _poll_os_rarely()
        with trio.move_on_after(limit) as scope:
            result.append(await main())
        if scope.cancelled_caught:
            raise SimulationStalled(f"scenario still running after {limit:g} virtual seconds")
        bar.update(trio.current_time())

    seed = int.from_bytes(seeds.digest("trio-scheduler")[:8], "big")
    # remember_verified: a signature triple that verified once is not re-checked (see there).
    with seeded_scheduler(seed), _relaxed_gc(), remember_verified():
        trio.run(root, clock=sim_clock())
    return result[0]


#: With the clock autojumping, trio asks the OS for I/O events (a zero-timeout epoll_wait)
#: before every batch of tasks: millions of times in a large run, about a tenth of its CPU.
#: A simulation owns no descriptors but trio's own wakeup socket (Ctrl-C, run_sync_soon),
#: so asking once every this many batches loses nothing but microseconds of Ctrl-C latency.
OS_POLL_EVERY = 64


def _poll_os_rarely(every: int = OS_POLL_EVERY) -> None:
    """Make the running trio loop skip most of its zero-timeout OS polls (see OS_POLL_EVERY).

    trio offers no public hook for this: the loop's I/O manager (an attrs slots class) gets a
    subclass with the same layout. Any other trio internals than expected: nothing changes.
    """
    runner = getattr(getattr(trio._core._run, "GLOBAL_RUN_CONTEXT", None), "runner", None)
    manager = getattr(runner, "io_manager", None)
    base = type(manager)
    if manager is None or not callable(getattr(base, "get_events", None)):
        return
    batches = itertools.count(1)
    nothing: list[Any] = []  # replaced by an empty value of whatever type the manager returns

    class RarelyPolled(base):  # type: ignore[misc, valid-type]
        __slots__ = ()

        def get_events(self, timeout: float) -> Any:
            if timeout == 0 and next(batches) % every and nothing:
                return nothing[0]
            events = base.get_events(self, timeout)
            if not nothing:
                nothing.append(type(events)())
            return events

    try:
        manager.__class__ = RarelyPolled
    except TypeError:
        return  # a layout that does not allow it: keep polling every batch


@contextlib.contextmanager
def _relaxed_gc() -> Iterator[None]:
    # Thousands of peers keep hundreds of thousands of objects alive, and the
    # default thresholds rescan them all every few hundred allocations; measured
    # about 1.5-2x faster at 2000 peers with rarer collections.
    saved = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*saved)


# --- the shared world ---------------------------------------------------------------
@dataclass(frozen=True)
class Knob:
    """A scenario parameter: default, help text, and how to parse it from the CLI."""

    default: Any
    help: str
    parse: Callable[[str], Any] | None = None

    def convert(self, text: str) -> Any:
        if self.parse is not None:
            return self.parse(text)
        if isinstance(self.default, bool):
            return text.lower() in ("1", "true", "yes", "on")
        return type(self.default)(text)


#: Knobs every scenario accepts: the network it runs on.
NETWORK_KNOBS: dict[str, Knob] = {
    "nodes": Knob(100, "number of simulated peers"),
    "latency": Knob("coords", "latency model: constant | coords (2-D plane) | regions (matrix)"),
    "one_way_ms": Knob(75.0, "one-way delay: the constant, or the largest across the plane for coords"),
    "access_ms": Knob(2.0, "regions: largest per-host last-mile delay added to the matrix"),
    "bandwidth_mbps": Knob(0.0, "per-host uplink in Mbit/s (0 = unlimited, no serialisation delay)"),
    "window_kib": Knob(1024, "per-direction stream window in KiB (bytes in flight + unread)"),
    "dial_failure": Knob(0.0, "probability that a dial's SYN is lost (the dial times out)"),
    "connect_timeout": Knob(10.0, "seconds before a dial that got no answer fails"),
}


def host_ip(index: int) -> str:
    """A distinct IPv4 address per peer, spread over /24s as a real swarm would be."""
    if not 0 <= index < 1 << 24:
        raise ValueError("peer index out of range")
    # Stride through the second and third octets so consecutive peers land in
    # different /24s (the DHT caps peers per /24 per bucket).
    return f"10.{index & 255}.{(index >> 8) & 255}.{(index >> 16) + 1}"


def build_network(params: dict[str, Any], seeds: Seeds) -> SimNetwork:
    latency = make_latency(params["latency"], one_way_ms=params["one_way_ms"], access_ms=params["access_ms"])
    mbps = params["bandwidth_mbps"]
    return SimNetwork(
        latency,
        rng=seeds.rng("network"),
        window=int(params["window_kib"]) * 1024,
        bandwidth=mbps * 1e6 / 8 if mbps > 0 else None,
        dial_failure=params["dial_failure"],
        connect_timeout=params["connect_timeout"],
    )


@dataclass
class World:
    """What a scenario builds peers from: network, seeds and an agreed wall clock.

    Later layers (DHT, gossip, market, payments) add their peers on top of this:
    ``world.endpoint(i)`` is the peer's ``Network``, ``world.identity(i)`` its key,
    ``world.wall`` the ``WallClock`` for signed-record expiry, ``world.rng(...)``
    the peer's randomness.
    """

    network: SimNetwork
    seeds: Seeds
    wall: TrioWallClock = field(default_factory=lambda: TrioWallClock(DEFAULT_EPOCH))

    @classmethod
    def from_params(cls, params: dict[str, Any], seeds: Seeds) -> World:
        return cls(build_network(params, seeds), seeds)

    def ip(self, index: int) -> str:
        return host_ip(index)

    def endpoint(self, index: int) -> SimEndpoint:
        return self.network.endpoint(host_ip(index))

    def identity(self, index: int) -> Identity:
        return self.seeds.identity(index)

    def rng(self, name: str) -> random.Random:
        return self.seeds.rng(name)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no data (so summaries never crash)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]
