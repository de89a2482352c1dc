from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from cocoon_p2p.errors import CodecError, ConfigError
from cocoon_p2p.identity import (
    Identity,
    PeerId,
    load_identity,
    load_or_create_identity,
    save_identity,
    verify_signature,
)


def test_peer_id_is_sha256_of_public_key_and_prints_as_hex() -> None:
    identity = Identity.generate()
    assert identity.peer_id.raw == hashlib.sha256(identity.public_key).digest()
    assert PeerId.from_text(str(identity.peer_id)) == identity.peer_id
    assert len(str(identity.peer_id)) == 64
    with pytest.raises(CodecError):
        PeerId.from_text("zz")
    with pytest.raises(CodecError):
        PeerId(b"short")


def test_signatures_verify_and_bad_input_never_raises() -> None:
    identity = Identity.generate()
    sig = identity.sign(b"msg")
    assert verify_signature(identity.public_key, b"msg", sig)
    assert not verify_signature(identity.public_key, b"other", sig)
    assert not verify_signature(b"\x00" * 32, b"msg", sig)
    assert not verify_signature(b"x", b"msg", b"y")


def test_key_file_is_created_0600_and_reloads(tmp_path: Path) -> None:
    first = load_or_create_identity(tmp_path / "node")
    mode = stat.S_IMODE((tmp_path / "node" / "identity.key").stat().st_mode)
    assert mode == 0o600
    assert load_or_create_identity(tmp_path / "node").peer_id == first.peer_id


def test_readable_key_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    save_identity(Identity.generate(), tmp_path)
    path = tmp_path / "identity.key"
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"chmod 600"):
        load_identity(tmp_path)


def test_existing_key_is_not_overwritten_without_force(tmp_path: Path) -> None:
    save_identity(Identity.generate(), tmp_path)
    with pytest.raises(ConfigError, match="--force"):
        save_identity(Identity.generate(), tmp_path)
    (tmp_path / "identity.key").write_text("garbage")
    (tmp_path / "identity.key").chmod(0o600)
    with pytest.raises(ConfigError, match="not a cocoon-p2p key"):
        load_identity(tmp_path)
