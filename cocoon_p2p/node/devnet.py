"""A local devnet: N `cocoon-p2p node` processes on loopback that bootstrap from peer 0."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..identity import Identity, load_or_create_identity
from ..identity.keystore import ensure_data_dir
from ..node.admin import ADDR_FILE
from .bootstrap import format_bootstrap_line

log = logging.getLogger(__name__)


@dataclass
class DevnetPeer:
    name: str
    data_dir: Path
    listen: str
    identity: Identity
    roles: list[str]
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "node.log"


class Devnet:
    def __init__(self, root: Path, *, base_port: int = 7400, host: str = "127.0.0.1") -> None:
        self.root = ensure_data_dir(root)
        self.base_port = base_port
        self.host = host
        self.peers: list[DevnetPeer] = []
        self.bootstrap_file = self.root / "bootstrap.txt"

    def add_peer(
        self, name: str, roles: list[str], extra_args: list[str] | None = None, *, port: int | None = None
    ) -> DevnetPeer:
        data_dir = ensure_data_dir(self.root / name)
        for stale in (ADDR_FILE, "known_peers.json"):
            (data_dir / stale).unlink(missing_ok=True)
        listen = f"{self.host}:{port if port is not None else self.base_port + len(self.peers)}"
        peer = DevnetPeer(name, data_dir, listen, load_or_create_identity(data_dir), roles, extra_args or [])
        self.peers.append(peer)
        return peer

    def write_bootstrap(self) -> None:
        first = self.peers[0]
        self.bootstrap_file.write_text(
            "# cocoon-p2p devnet bootstrap list\n" + format_bootstrap_line(first.identity.peer_id, first.listen) + "\n"
        )

    @property
    def pid_file(self) -> Path:
        return self.root / "pids"

    def start(self, *, detach: bool = False) -> None:
        """Start every peer; ``detach`` lets them outlive this process (stop them with :func:`stop_detached`)."""
        self.write_bootstrap()
        for peer in self.peers:
            cmd = [
                sys.executable, "-m", "cocoon_p2p.cli.main", "node",
                "--data-dir", str(peer.data_dir),
                "--listen", peer.listen,
                "--bootstrap", str(self.bootstrap_file),
                "--role", ",".join(peer.roles),
                *peer.extra_args,
            ]  # fmt: skip
            log_file = peer.log_path.open("ab")
            peer.process = subprocess.Popen(
                cmd, stdout=log_file, stderr=subprocess.STDOUT, env=os.environ.copy(), start_new_session=detach
            )
            log.info("started %s (%s) pid %d on %s", peer.name, ",".join(peer.roles), peer.process.pid, peer.listen)

        self.pid_file.write_text("".join(f"{p.process.pid} {p.name}\n" for p in self.peers if p.process))

    def wait_ready(self, timeout: float = 600.0) -> None:
        """Wait until every peer's admin interface is up (workers load their model first)."""
        deadline = time.monotonic() + timeout
        for peer in self.peers:
            while not (peer.data_dir / ADDR_FILE).exists():
                if peer.process is not None and peer.process.poll() is not None:
                    raise RuntimeError(f"{peer.name} exited; see {peer.log_path}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{peer.name} did not come up; see {peer.log_path}")
                time.sleep(0.1)

    def stop(self, timeout: float = 15.0) -> None:
        for peer in self.peers:
            if peer.process is not None and peer.process.poll() is None:
                peer.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for peer in self.peers:
            if peer.process is None:
                continue
            try:
                peer.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM; killing it", peer.name)
                peer.process.kill()
                peer.process.wait()


def stop_detached(root: Path, timeout: float = 20.0) -> list[str]:
    """SIGTERM every peer a detached devnet under ``root`` started; returns the names stopped."""
    pid_file = root / "pids"
    if not pid_file.exists():
        return []
    entries = [line.split(maxsplit=1) for line in pid_file.read_text().splitlines() if line.strip()]
    stopped = []
    for pid_text, name in entries:
        try:
            os.kill(int(pid_text), signal.SIGTERM)
            stopped.append(name)
        except (ProcessLookupError, ValueError):
            continue
    deadline = time.monotonic() + timeout
    for pid_text, name in entries:
        while time.monotonic() < deadline:
            try:
                os.kill(int(pid_text), 0)
            except (ProcessLookupError, ValueError):
                break
            time.sleep(0.1)
        else:
            try:
                os.kill(int(pid_text), signal.SIGKILL)
                log.warning("%s ignored SIGTERM; killed it", name)
            except (ProcessLookupError, ValueError):
                pass
    pid_file.unlink(missing_ok=True)
    return stopped
