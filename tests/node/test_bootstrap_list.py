from __future__ import annotations

from pathlib import Path

import pytest

from cocoon_p2p.errors import ConfigError
from cocoon_p2p.identity import Identity
from cocoon_p2p.node.bootstrap import load_bootstrap_file, load_peer_cache, parse_bootstrap_text, save_peer_cache

REPO = Path(__file__).resolve().parents[2]


def test_parses_ids_addresses_comments_and_ipv6() -> None:
    pid = Identity.generate().peer_id
    text = f"# comment\n\n{pid} 127.0.0.1:7400  # trailing\n[::1]:7401\n"
    assert parse_bootstrap_text(text) == [(pid, "127.0.0.1:7400"), (None, "[::1]:7401")]


@pytest.mark.parametrize("line", ["nothing", "abc 127.0.0.1:1", "127.0.0.1:99999", "a b c"])
def test_bad_lines_name_the_line_and_the_fix(line: str) -> None:
    with pytest.raises(ConfigError, match=r"list:2: .*write '<peer id> <host:port>'"):
        parse_bootstrap_text(f"# ok\n{line}\n", "list")


def test_shipped_list_parses() -> None:
    assert load_bootstrap_file(REPO / "bootstrap" / "bootstrap.txt") == []


def test_peer_cache_round_trips_and_tolerates_garbage(tmp_path: Path) -> None:
    pid = Identity.generate().peer_id
    save_peer_cache(tmp_path, [(pid, "127.0.0.1:9")])
    assert load_peer_cache(tmp_path) == [(pid, "127.0.0.1:9")]
    (tmp_path / "known_peers.json").write_text("{not json")
    assert load_peer_cache(tmp_path) == []
