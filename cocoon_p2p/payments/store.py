"""Durable channel records: sqlite in WAL mode with ``synchronous=FULL``, group-committed.

One row per channel holds a msgpack record the channel classes own. ``put`` returns only once the
row is on disk, which is what "persist before you sign / before you deliver" (DESIGN.md §10) rests
on. An fsync costs milliseconds, so concurrent ``put`` calls from many channels share one commit
(group commit): rows queued while a commit runs form the next batch, which one of its own writers
commits in a worker thread as soon as the previous one is done.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import trio

from .errors import PaymentError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS channels (
    channel_id BLOB PRIMARY KEY,
    role TEXT NOT NULL,
    status TEXT NOT NULL,
    record BLOB NOT NULL
)
"""
Row = tuple[bytes, str, str, bytes]


class StoreError(PaymentError):
    pass


@dataclass
class _Batch:
    rows: list[Row] = field(default_factory=list)
    turn: trio.Event = field(default_factory=trio.Event)  # set: one of this batch's writers may commit it
    claimed: bool = False
    done: trio.Event = field(default_factory=trio.Event)
    error: BaseException | None = None


def _key(channel_id: int) -> bytes:
    return channel_id.to_bytes(16, "big")


class ChannelStore:
    def __init__(self, path: Path | str, *, threaded: bool | None = None) -> None:
        """``path`` may be ``":memory:"`` (tests, simulations). ``threaded`` (default: on for files) runs
        commits in a worker thread; turn it off under trio's MockClock, which jumps while threads run."""
        self.path = str(path)
        self._threaded = self.path != ":memory:" if threaded is None else threaded
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db_lock = threading.Lock()
        with self._db_lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        self._pending: _Batch | None = None
        self._committing = False

    def close(self) -> None:
        with self._db_lock:
            self._db.close()

    # ---- reads ----

    def load(self, channel_id: int) -> tuple[str, str, dict[str, Any]] | None:
        """(role, status, record) of a channel, or None."""
        with self._db_lock:
            row = self._db.execute(
                "SELECT role, status, record FROM channels WHERE channel_id = ?", (_key(channel_id),)
            ).fetchone()
        if row is None:
            return None
        return row[0], row[1], msgpack.unpackb(row[2], raw=False)

    def channel_ids(self, *, role: str | None = None, status: str | None = None) -> list[int]:
        query, args = "SELECT channel_id FROM channels WHERE 1=1", []
        if role is not None:
            query, args = query + " AND role = ?", [*args, role]
        if status is not None:
            query, args = query + " AND status = ?", [*args, status]
        with self._db_lock:
            rows = self._db.execute(query, args).fetchall()
        return sorted(int.from_bytes(r[0], "big") for r in rows)

    # ---- writes ----

    async def put(self, channel_id: int, role: str, status: str, record: dict[str, Any]) -> None:
        """Write one channel's record; returns once it is durable (raises ``StoreError`` otherwise).

        If the caller is cancelled while waiting, its row may still be written: callers must treat a
        cancelled ``put`` as "maybe persisted" (the channel classes do).
        """
        row = (_key(channel_id), role, status, msgpack.packb(record, use_bin_type=True))
        if not self._threaded:  # a synchronous write: nothing can join a batch while it runs
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                self._write([row])
            except Exception as exc:
                raise StoreError(f"could not persist channel state: {exc}") from exc
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        if self._pending is None:
            self._pending = _Batch()
        batch = self._pending
        batch.rows.append(row)
        if not self._committing:
            self._committing = True
            batch.turn.set()
        await batch.turn.wait()
        if batch.claimed:
            await batch.done.wait()
        else:
            await self._commit(batch)
        if batch.error is not None:
            raise StoreError(f"could not persist channel state: {batch.error}") from batch.error

    async def _commit(self, batch: _Batch) -> None:
        # One of the batch's own writers commits it, then hands the turn to the batch that filled up
        # meanwhile: no caller keeps committing other channels' rows while its own channel waits.
        batch.claimed = True
        if self._pending is batch:
            self._pending = None
        with trio.CancelScope(shield=True):
            try:
                await trio.to_thread.run_sync(self._write, batch.rows)
            except Exception as exc:
                batch.error = exc
        batch.done.set()
        if self._pending is None:
            self._committing = False
        else:
            self._pending.turn.set()

    def _write(self, rows: list[Row]) -> None:
        with self._db_lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT OR REPLACE INTO channels VALUES (?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
