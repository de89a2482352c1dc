"""Node configuration: defaults < TOML file < environment < command-line flags.

The config file is ``<data dir>/config.toml`` unless ``--config`` names another.
Environment variables are ``COCOON_P2P_<KEY>`` (for example COCOON_P2P_LISTEN).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..identity import default_data_dir

ROLES = ("bootstrap", "worker", "client")


@dataclass
class WorkerConfig:
    models: list[str] = field(default_factory=list)  # GGUF paths; "default" = the demo gemma model
    price_prompt: int = 20_000_000  # nanoTON per 1M prompt tokens
    price_completion: int = 60_000_000  # nanoTON per 1M completion tokens
    pricing: str = "fixed"  # fixed | load
    max_concurrent: int = 1
    n_ctx: int = 2048
    uptime_target: float = 0.99


@dataclass
class ClientConfig:
    models: list[str] = field(default_factory=lambda: ["gemma3-270m"])  # what the gateway lists
    max_price_prompt: int = 100_000_000
    max_price_completion: int = 300_000_000
    bid_window: float = 0.25
    spot_check_rate: float = 0.0


@dataclass
class PaymentsConfig:
    """TON payment channels (used when ``chain`` is set); amounts in nanoTON, times in seconds."""

    deposit_multiple: int = 20  # a new channel holds this many times the awarded job's budget...
    min_deposit: int = 100_000_000  # ...and at least this much (0.1 TON)
    idle_close_s: float = 300.0  # the client closes a channel nobody used for this long
    payee_idle_close_s: float = 86_400.0  # the worker closes one with unclaimed earnings after this (0: never)
    close_on_shutdown: bool = True  # the client closes its idle channels when the node stops
    watch_interval_s: float = 30.0  # how often each channel is checked on chain
    close_grace_s: float = 30.0  # after co-signing a close, submit it ourselves if still open after this
    open_timeout_s: float = 600.0  # the worker forgets a channel never opened on chain after this
    quarantine_s: int = 3600  # challenge window of the channels this client opens
    conditional_close_s: int = 600
    misbehavior_fine: int = 10_000_000
    min_quarantine_s: int = 600  # the worker refuses channels it would have less time than this to defend
    min_force_claim: int = 100_000_000  # the worker force-closes an unreachable client's channel only above this
    faucet_amount: int = 10_000_000_000  # devnet: what to ask the chain's faucet for...
    faucet_below: int = 1_000_000_000  # ...when the wallet holds less than this at start
    persist_slack: float = 0.5  # worker: share of the credit received payments may stay unpersisted (0: none)
    measure_cpu: bool = False  # count the CPU time of payment handling (exported in /metrics)


@dataclass
class NodeConfig:
    data_dir: Path = field(default_factory=default_data_dir)
    listen: str = "127.0.0.1:7400"
    advertise: str | None = None
    bootstrap: Path | None = None
    roles: list[str] = field(default_factory=lambda: ["bootstrap"])
    admin_listen: str = "127.0.0.1:0"
    log_level: str = "info"
    chain: str | None = None  # address of a `cocoon-p2p chain` service; None = unpaid ledger mode
    gateway_listen: str | None = None  # client role: serve the OpenAI-compatible API here (loopback)
    rfq_transport: str = "gossip"  # gossip (RFQ on the model topic) | direct (RPC to offering workers)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    payments: PaymentsConfig = field(default_factory=PaymentsConfig)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["data_dir"] = str(self.data_dir)
        out["bootstrap"] = str(self.bootstrap) if self.bootstrap else None
        return out


def _coerce(name: str, value: Any, current: Any) -> Any:
    if isinstance(current, bool):
        if isinstance(value, str):
            return value.lower() in ("1", "true", "yes", "on")
        return bool(value)
    if isinstance(current, int) and not isinstance(current, bool):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if isinstance(current, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if isinstance(current, list):
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{name} must be a list")
        return value
    if name in ("data_dir", "bootstrap"):
        return Path(value).expanduser() if value else None
    return value


def _apply(target: Any, values: dict[str, Any], prefix: str = "") -> None:
    known = {f.name: f for f in fields(target)}
    for key, value in values.items():
        key = key.replace("-", "_")
        if key not in known:
            raise ConfigError(f"unknown setting {prefix}{key!r}; see `cocoon-p2p node --help` for the list")
        current = getattr(target, key)
        if hasattr(current, "__dataclass_fields__"):
            if not isinstance(value, dict):
                raise ConfigError(f"[{prefix}{key}] must be a table")
            _apply(current, value, f"{prefix}{key}.")
        elif value is not None:
            setattr(target, key, _coerce(prefix + key, value, current))


def load_config(
    *, config_file: Path | None = None, data_dir: Path | None = None, overrides: dict[str, Any] | None = None
) -> NodeConfig:
    config = NodeConfig()
    if data_dir is not None:
        config.data_dir = data_dir
    env_dir = os.environ.get("COCOON_P2P_DATA_DIR")
    if data_dir is None and env_dir:
        config.data_dir = Path(env_dir).expanduser()
    path = config_file or config.data_dir / "config.toml"
    if path.exists():
        try:
            _apply(config, tomllib.loads(path.read_text()))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    elif config_file is not None:
        raise ConfigError(f"config file {config_file} does not exist")
    env = {
        f.name: os.environ[f"COCOON_P2P_{f.name.upper()}"]
        for f in fields(NodeConfig)
        if f"COCOON_P2P_{f.name.upper()}" in os.environ and f.name != "data_dir"
    }
    _apply(config, env)
    if data_dir is not None:
        config.data_dir = data_dir
    _apply(config, overrides or {})
    bad = [r for r in config.roles if r not in ROLES]
    if bad:
        raise ConfigError(f"unknown role {bad[0]!r}; roles are {', '.join(ROLES)}")
    return config
