"""Real `cocoon-p2p node` processes started from the CLI find each other."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cocoon_p2p.node.devnet import Devnet

pytestmark = pytest.mark.slow


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cocoon_p2p.cli.main", *args], capture_output=True, text=True, timeout=60
    )


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_three_nodes_from_the_cli_find_each_other(tmp_path: Path) -> None:
    net = Devnet(tmp_path)
    for i, port in enumerate(free_ports(3)):
        net.add_peer(f"peer-{i}", ["bootstrap"], port=port)
    net.start()
    try:
        net.wait_ready(timeout=60)
        expected = {str(p.identity.peer_id) for p in net.peers[1:]}
        deadline = time.monotonic() + 30
        listed: set[str] = set()
        while time.monotonic() < deadline:
            result = _cli("peers", "--json", "--data-dir", str(net.peers[0].data_dir))
            assert result.returncode == 0, result.stderr
            listed = {p["id"] for p in json.loads(result.stdout)["peers"]}
            if expected <= listed:
                break
            time.sleep(0.5)
        assert expected <= listed
        status = json.loads(_cli("status", "--json", "--data-dir", str(net.peers[2].data_dir)).stdout)
        assert status["peer_id"] == str(net.peers[2].identity.peer_id)
        assert status["routing_table"] >= 2
        found = json.loads(
            _cli("dht", "find", str(net.peers[1].identity.peer_id), "--data-dir", str(net.peers[2].data_dir)).stdout
        )
        assert found["addresses"] == [net.peers[1].listen]
    finally:
        net.stop()
    for peer in net.peers:
        assert peer.process is not None and peer.process.returncode == 0, peer.log_path.read_text()[-2000:]
        assert "stopped cleanly" in peer.log_path.read_text()
    assert _cli("status", "--data-dir", str(net.peers[0].data_dir)).returncode == 2


def test_cli_mistakes_print_one_line(tmp_path: Path) -> None:
    result = _cli("id", "--data-dir", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "keygen" in result.stderr
    bad = tmp_path / "bootstrap.txt"
    bad.write_text("not-an-address\n")
    result = _cli("node", "--data-dir", str(tmp_path / "n"), "--bootstrap", str(bad), "--listen", "127.0.0.1:0")
    assert result.returncode == 2
    assert "bootstrap.txt:1" in result.stderr and len(result.stderr.strip().splitlines()) == 1
