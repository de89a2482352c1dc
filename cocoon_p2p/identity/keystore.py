"""The node's data directory and its identity key file.

The key file holds the 32-byte ed25519 seed as hex. It is created with mode 0600
and refused when group or others can read it: a leaked key is a stolen identity
(and, for a worker, its reputation).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import ConfigError
from .keys import Identity

KEY_FILE_NAME = "identity.key"
DATA_DIR_ENV = "COCOON_P2P_HOME"


def default_data_dir() -> Path:
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cocoon-p2p"


def ensure_data_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def write_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 atomically (temp file + fsync + rename)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def save_identity(identity: Identity, data_dir: Path, *, overwrite: bool = False) -> Path:
    ensure_data_dir(data_dir)
    path = data_dir / KEY_FILE_NAME
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} already exists; pass --force to replace it (the old peer id is lost)")
    write_private_file(path, identity.seed.hex().encode() + b"\n")
    return path


def load_identity(data_dir: Path) -> Identity:
    path = data_dir / KEY_FILE_NAME
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"no identity at {path}; run `cocoon-p2p keygen` first") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path} is readable by others; run `chmod 600 {path}` and start again")
    try:
        seed = bytes.fromhex(path.read_text().strip())
        return Identity(seed)
    except ValueError:
        raise ConfigError(f"{path} is not a cocoon-p2p key (64 hex digits); restore it or run keygen --force") from None


def load_or_create_identity(data_dir: Path) -> Identity:
    if (data_dir / KEY_FILE_NAME).exists():
        return load_identity(data_dir)
    identity = Identity.generate()
    save_identity(identity, data_dir)
    return identity
