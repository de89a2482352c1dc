"""The official asynchronous payment-channel contract code, fetched once from npm and cached.

The compiled code ships in the npm package tonweb 0.0.66 (``src/contract/payments/PaymentChannel.js``,
constant ``PAYMENT_CHANNEL_CODE_HEX``). We never vendor it: ``ensure_contract_code`` runs
``npm pack`` into the cache directory, reads that one file out of the tarball without unpacking
anything to disk, checks the code cell's hash and keeps the BOC. Later calls read the cached BOC
(and check the hash again, so a corrupted cache is refetched rather than trusted).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
from pathlib import Path

from pytoniq_core import Cell

from .errors import ContractCodeError

TONWEB_SPEC = "tonweb@0.0.66"
CODE_MEMBER = "package/src/contract/payments/PaymentChannel.js"
CODE_HASH = "41f5b77f02d4a96eb465197215ed00923720a6c731fa32934f9c0e80ffb85589"
BOC_NAME = f"payment-channel-{CODE_HASH[:16]}.boc"
CACHE_ENV = "COCOON_P2P_CACHE"
NPM_TIMEOUT_S = 300

_CONSTANT = re.compile(r"PAYMENT_CHANNEL_CODE_HEX\s*=\s*['\"]([0-9A-Fa-f]+)['\"]")
_loaded: dict[Path, Cell] = {}
_lock = threading.Lock()


def default_cache_dir() -> Path:
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else Path.home() / ".cache" / "cocoon-p2p"


def ensure_contract_code(cache_dir: Path | None = None) -> Cell:
    """The contract's code cell, hash-checked; the first call in a fresh cache needs npm and the registry."""
    root = (cache_dir or default_cache_dir()).expanduser()
    path = root / BOC_NAME
    with _lock:
        cell = _loaded.get(path)
        if cell is None:
            cell = _read_cached(path) or _fetch(root, path)
            _loaded[path] = cell
        return cell


def _read_cached(path: Path) -> Cell | None:
    try:
        cell = Cell.one_from_boc(path.read_bytes())
    except FileNotFoundError:
        return None
    except Exception:  # a torn or foreign file: fetch again
        return None
    return cell if cell.hash.hex() == CODE_HASH else None


def _fetch(root: Path, path: Path) -> Cell:
    npm = shutil.which("npm")
    if npm is None:
        raise ContractCodeError(
            f"npm is not on PATH: install Node.js/npm (needed once to fetch {TONWEB_SPEC}, the source of the "
            f"payment-channel contract code), or put the hash-checked BOC at {path}"
        )
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix="npm-") as tmp:
        try:
            done = subprocess.run(
                [npm, "pack", TONWEB_SPEC, "--ignore-scripts", "--pack-destination", tmp],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT_S,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ContractCodeError(f"`npm pack {TONWEB_SPEC}` failed to run: {exc}") from None
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or not tarballs:
            tail = (done.stderr or done.stdout).strip()[-800:]
            raise ContractCodeError(f"`npm pack {TONWEB_SPEC}` failed (exit {done.returncode}): {tail}")
        source = _read_member(tarballs[0])
    match = _CONSTANT.search(source)
    if match is None:
        raise ContractCodeError(f"PAYMENT_CHANNEL_CODE_HEX not found in {CODE_MEMBER} of {TONWEB_SPEC}")
    try:
        cell = Cell.one_from_boc(bytes.fromhex(match.group(1)))
    except Exception as exc:
        raise ContractCodeError(f"PAYMENT_CHANNEL_CODE_HEX is not a valid BOC: {exc}") from None
    if cell.hash.hex() != CODE_HASH:
        raise ContractCodeError(f"contract code hash {cell.hash.hex()} != expected {CODE_HASH}; refusing it")
    _write_atomically(path, cell.to_boc())
    return cell


def _read_member(tarball: Path) -> str:
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            member = tar.extractfile(CODE_MEMBER)
            if member is None:
                raise KeyError(CODE_MEMBER)
            return member.read().decode("utf-8")
    except (KeyError, tarfile.TarError, OSError, UnicodeDecodeError) as exc:
        raise ContractCodeError(f"{tarball.name} has no readable {CODE_MEMBER}: {exc}") from None


def _write_atomically(path: Path, data: bytes) -> None:
    # A unique temp name: two processes running setup at once must not truncate each other's file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
