"""Chain backends behind one interface (``base.ChainBackend``): embedded emulator, loopback service, liteservers."""

from .base import (
    CHANNEL_AWAITING_FINALIZATION,
    CHANNEL_CLOSURE_STARTED,
    CHANNEL_OPEN,
    CHANNEL_SETTLING_CONDITIONALS,
    CHANNEL_UNINITED,
    AccountInfo,
    ChainBackend,
    OnchainChannel,
    Receipt,
    TxOutcome,
    raw_address,
)
from .emulator import EmulatorChain
from .service import RemoteChain, run_emulator_service, serve_chain
from .wallet import Wallet

__all__ = [
    "CHANNEL_AWAITING_FINALIZATION",
    "CHANNEL_CLOSURE_STARTED",
    "CHANNEL_OPEN",
    "CHANNEL_SETTLING_CONDITIONALS",
    "CHANNEL_UNINITED",
    "AccountInfo",
    "ChainBackend",
    "EmulatorChain",
    "OnchainChannel",
    "Receipt",
    "RemoteChain",
    "TxOutcome",
    "Wallet",
    "raw_address",
    "run_emulator_service",
    "serve_chain",
]
