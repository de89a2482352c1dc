"""Errors the payments layer raises on purpose."""

from __future__ import annotations

from ..errors import CocoonError


class PaymentError(CocoonError):
    """Base of every payments error."""


class ContractCodeError(PaymentError):
    """The payment-channel contract code could not be obtained or failed its hash check."""


class PaymentRejected(PaymentError):
    """A payee refused a signed state; ``reason`` is a stable short code for logs and the wire."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.message = message


class ChannelStateError(PaymentError):
    """The local channel cannot do that now (closed, exhausted, over the deposit, ...)."""


class ChainError(PaymentError):
    """The chain backend failed or refused a message."""


class ChainActionFailed(ChainError):
    """An on-chain channel action did not take effect; ``exit_code`` is the contract's, when known."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message if exit_code is None else f"{message} (exit code {exit_code})")
        self.exit_code = exit_code


class NotSupported(ChainError):
    """The backend cannot do that (a faucet or a clock jump on a real network)."""
