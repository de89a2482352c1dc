"""Bootstrap lists and the known-peers cache.

List format (bootstrap/README.md): one peer per line, ``<peer id hex> <host:port>``
or just ``<host:port>`` when the id is unknown; ``#`` starts a comment.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from ..errors import CodecError, ConfigError
from ..identity import PeerId
from ..identity.keystore import write_private_file
from ..net import split_address

log = logging.getLogger(__name__)

BootstrapEntry = tuple[PeerId | None, str]
PEER_CACHE_FILE = "known_peers.json"


def parse_bootstrap_text(text: str, source: str = "bootstrap list") -> list[BootstrapEntry]:
    entries: list[BootstrapEntry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        try:
            if len(parts) == 1:
                split_address(parts[0])
                entries.append((None, parts[0]))
            elif len(parts) == 2:
                split_address(parts[1])
                entries.append((PeerId.from_text(parts[0]), parts[1]))
            else:
                raise ConfigError("too many fields")
        except (ConfigError, CodecError) as exc:
            raise ConfigError(f"{source}:{number}: {exc} — write '<peer id> <host:port>' or '<host:port>'") from None
    return entries


def load_bootstrap_file(path: Path) -> list[BootstrapEntry]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read bootstrap list {path}: {exc.strerror}") from None
    return parse_bootstrap_text(text, str(path))


def format_bootstrap_line(peer_id: PeerId, address: str) -> str:
    return f"{peer_id} {address}"


def load_peer_cache(data_dir: Path) -> list[BootstrapEntry]:
    path = data_dir / PEER_CACHE_FILE
    try:
        items = json.loads(path.read_text())
        return [(PeerId.from_text(i["id"]), i["addr"]) for i in items if isinstance(i, dict)]
    except (OSError, ValueError, KeyError, TypeError, CodecError):
        return []


def save_peer_cache(data_dir: Path, entries: list[tuple[PeerId, str]], limit: int = 64) -> None:
    items = [{"id": str(pid), "addr": addr} for pid, addr in entries[:limit]]
    write_private_file(data_dir / PEER_CACHE_FILE, json.dumps(items, indent=1).encode())


async def join_with_backoff(
    join: Callable[[list[BootstrapEntry]], Awaitable[int]],
    entries: list[BootstrapEntry],
    *,
    attempts: int = 6,
    first_delay: float = 0.5,
    max_delay: float = 30.0,
) -> int:
    """Call ``await join(entries)`` until it yields a non-empty table, backing off between tries."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        known = await join(entries)
        if known:
            return known
        if attempt < attempts:
            log.warning("join attempt %d/%d reached no peer; retrying in %.1f s", attempt, attempts, delay)
            await trio.sleep(delay)
            delay = min(delay * 2, max_delay)
    return 0


def dedupe(entries: list[BootstrapEntry]) -> list[BootstrapEntry]:
    seen: set[str] = set()
    out = []
    for entry in entries:
        if entry[1] not in seen:
            seen.add(entry[1])
            out.append(entry)
    return out
