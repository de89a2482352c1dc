"""How the job protocol pays: one payer per job on the client, one payee on the worker.

The TON payment channels (``cocoon_p2p.payments``) implement these; ``LedgerPayer``/
``LedgerPayee`` count the same amounts without a chain, for networks that run without
payments (``--chain`` unset). They are labelled as such in status output and logs.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..errors import CocoonError
from ..identity import PeerId


class PaymentError(CocoonError):
    code = "payment_rejected"


class SessionPayer(Protocol):
    async def begin(self) -> dict[str, Any]:
        """Terms to send with the job (channel id, addresses); {} when unpaid."""
        ...

    async def pay(self, owed_total: int) -> dict[str, Any]:
        """Sign (after persisting) a state paying ``owed_total`` in all; returns it for the wire."""
        ...

    async def finish(self) -> None: ...


class SessionPayee(Protocol):
    async def begin(self, terms: dict[str, Any] | None) -> None: ...

    @property
    def paid(self) -> int: ...

    async def accept(self, state: dict[str, Any], delivered_value: int, credit: int) -> None:
        """Take a payment (counted in ``paid``); raise PaymentError when it is not acceptable."""
        ...

    async def release(self, delivered_value: int, credit: int) -> None:
        """Called before a chunk goes out (and after the final payment): durably record the latest
        payment with the value delivered once the chunk is out (``delivered_value``, cumulative);
        raise PaymentError when that payment is invalid or leaves more than ``credit`` of what was
        delivered before this chunk unpaid."""
        ...

    def end(self) -> None:
        """The job is over (finished or not)."""
        ...


class PaymentsFactory(Protocol):
    async def payer_for(self, worker: PeerId, offer_wallet: str, budget: int) -> SessionPayer: ...

    async def payee_for(self, client: PeerId) -> SessionPayee: ...


class LedgerPayer:
    """Unpaid mode: states are plain cumulative amounts (no signature, no chain)."""

    def __init__(self) -> None:
        self.paid = 0

    async def begin(self) -> dict[str, Any]:
        return {"mode": "ledger"}

    async def pay(self, owed_total: int) -> dict[str, Any]:
        self.paid = max(self.paid, owed_total)
        return {"mode": "ledger", "total": self.paid}

    async def finish(self) -> None:
        return None


class LedgerPayee:
    def __init__(self) -> None:
        self._paid = 0

    async def begin(self, terms: dict[str, Any] | None) -> None:
        return None

    @property
    def paid(self) -> int:
        return self._paid

    async def accept(self, state: dict[str, Any], delivered_value: int, credit: int) -> None:
        total = state.get("total")
        if not isinstance(total, int) or isinstance(total, bool) or total < self._paid:
            raise PaymentError("ledger payments are cumulative non-decreasing integers")
        if total > delivered_value:
            raise PaymentError("payment exceeds the value delivered")
        self._paid = total

    async def release(self, delivered_value: int, credit: int) -> None:
        return None

    def end(self) -> None:
        return None


class LedgerPayments:
    async def payer_for(self, worker: PeerId, offer_wallet: str, budget: int) -> SessionPayer:
        return LedgerPayer()

    async def payee_for(self, client: PeerId) -> SessionPayee:
        return LedgerPayee()
