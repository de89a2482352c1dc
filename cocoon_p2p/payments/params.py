"""Channel parameters, signed states and close/commit terms: the values both parties agree on.

Roles are fixed (DESIGN.md §9): the client is party A and deposits; the worker is party B and
deposits 0. A payer's state is A's semichannel: seqno, cumulative ``sent`` and the B body it has
seen; a payee keeps the latest one it accepted, which is what it submits on chain if A vanishes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pytoniq_core import Address, Cell, StateInit

from ..identity import verify_signature
from . import cells
from .cells import ClosingConfig, SemiChannelBody
from .chain.base import raw_address

#: The contract stores committed seqnos as uint32 and a close uses the latest seqno + 1.
MAX_SEQNO = 2**32 - 2
#: Amounts are msgpack/sqlite integers: far above the 5e18 nanoTON that exist.
MAX_AMOUNT = 2**63 - 1
DEFAULT_EXCESS_FEE = 20_000_000  # 0.02 TON kept in the contract for the gas of external messages
DEFAULT_CLOSING = ClosingConfig(quarantine_duration=3600, misbehavior_fine=10_000_000, conditional_close_duration=600)


def random_channel_id(randbytes: Callable[[int], bytes] = os.urandom) -> int:
    return int.from_bytes(randbytes(16), "big")


@dataclass(frozen=True, slots=True)
class ChannelParams:
    channel_id: int
    key_a: bytes
    key_b: bytes
    address_a: str  # where A's payout goes (A's wallet)
    address_b: str  # where B's payout goes (B's wallet)
    deposit_a: int
    deposit_b: int = 0
    closing: ClosingConfig = field(default=DEFAULT_CLOSING)
    excess_fee: int = DEFAULT_EXCESS_FEE

    def __post_init__(self) -> None:
        if not 0 <= self.channel_id < 2**128:
            raise ValueError("a channel id is 128 bits")
        if len(self.key_a) != 32 or len(self.key_b) != 32:
            raise ValueError("channel keys are 32-byte ed25519 public keys")
        for name in ("deposit_a", "deposit_b", "excess_fee"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= MAX_AMOUNT:
                raise ValueError(f"{name} must be an int amount of nanoTON")
        if self.deposit_b != 0:
            raise ValueError("the worker (B) deposits 0 in this protocol")
        if self.max_sent_a <= 0:
            raise ValueError("deposit_a must exceed the misbehavior fine")
        if self.closing.quarantine_duration <= 0:
            raise ValueError("a zero quarantine makes challenges impossible")
        object.__setattr__(self, "address_a", raw_address(self.address_a))
        object.__setattr__(self, "address_b", raw_address(self.address_b))

    @property
    def max_sent_a(self) -> int:
        """The most A may ever send: finish_uncooperative_close fails (exit 5, funds stuck) when a
        fined ``sent_A`` exceeds ``balance_A + sent_B``, so the fine stays out of the spendable deposit."""
        return self.deposit_a - self.closing.misbehavior_fine

    def data_cell(self) -> Cell:
        return cells.channel_data_cell(
            key_a=self.key_a,
            key_b=self.key_b,
            channel_id=self.channel_id,
            closing=self.closing,
            excess_fee=self.excess_fee,
            address_a=Address(self.address_a),
            address_b=Address(self.address_b),
        )

    def state_init(self, code: Cell) -> StateInit:
        return cells.state_init(code, self.data_cell())

    def address(self, code: Cell) -> str:
        return raw_address(cells.address_of(self.state_init(code)))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["closing"] = list(asdict(self.closing).values())
        d["channel_id"] = self.channel_id.to_bytes(16, "big")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChannelParams:
        """Raises ValueError/TypeError/KeyError on anything malformed (the caller maps it to a rejection)."""
        return cls(
            channel_id=int.from_bytes(d["channel_id"], "big"),
            key_a=bytes(d["key_a"]),
            key_b=bytes(d["key_b"]),
            address_a=str(d["address_a"]),
            address_b=str(d["address_b"]),
            deposit_a=d["deposit_a"],
            deposit_b=d["deposit_b"],
            closing=ClosingConfig(*(int(x) for x in d["closing"])),
            excess_fee=d["excess_fee"],
        )


@dataclass(frozen=True, slots=True)
class SignedState:
    """A signed semichannel: ``signer`` party's seqno and cumulative ``sent`` (+ the other's body it saw)."""

    channel_id: int
    seqno: int
    sent: int
    counterparty: SemiChannelBody | None
    signature: bytes

    def state_cell(self) -> Cell:
        mine = SemiChannelBody(self.seqno, self.sent)
        return cells.semichannel_state(self.channel_id, mine, self.counterparty)

    def state_hash(self) -> bytes:
        """What is signed: the state cell's representation hash (computed without building the cell)."""
        return cells.semichannel_state_hash(self.channel_id, SemiChannelBody(self.seqno, self.sent), self.counterparty)

    def to_cell(self) -> Cell:
        return cells.signed_semichannel(self.signature, self.state_cell())

    def to_bytes(self) -> bytes:
        """The SignedSemiChannel BOC, as the contract and tonweb read it (about 170 bytes)."""
        return self.to_cell().to_boc()

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedState:
        """Parse a SignedSemiChannel BOC; raises ValueError when malformed (it does not check the signature)."""
        try:
            cell = Cell.one_from_boc(data)
        except Exception as exc:
            raise ValueError(f"not a BOC: {exc}") from None
        parsed = cells.parse_signed_semichannel(cell)
        state = cls(parsed.channel_id, parsed.mine.seqno, parsed.mine.sent, parsed.counterparty, parsed.signature)
        if state.state_hash() != parsed.state.hash:
            raise ValueError("semichannel carries conditionals or trailing data; this protocol signs none")
        return state

    def to_wire(self) -> dict[str, Any]:
        """A compact msgpack-ready form (what the session layer sends; the BOC costs ~20x more CPU)."""
        cp = None if self.counterparty is None else [self.counterparty.seqno, self.counterparty.sent]
        return {"cid": self.channel_id.to_bytes(16, "big"), "seqno": self.seqno, "sent": self.sent, "cp": cp,
                "sig": self.signature}  # fmt: skip

    @classmethod
    def from_wire(cls, d: Any) -> SignedState:
        """Inverse of ``to_wire``; raises ValueError on anything malformed (not checking the signature)."""
        try:
            cid, seqno, sent, cp, sig = d["cid"], d["seqno"], d["sent"], d["cp"], d["sig"]
            ok = isinstance(cid, bytes) and len(cid) == 16 and isinstance(sig, bytes) and len(sig) == 64
            numbers = [seqno, sent, *(cp if cp is not None else [])]
            if not ok or (cp is not None and len(cp) != 2) or not all(type(x) is int and x >= 0 for x in numbers):
                raise ValueError("bad field")
            if seqno >= 2**64 or sent > MAX_AMOUNT or (cp is not None and (cp[0] >= 2**64 or cp[1] > MAX_AMOUNT)):
                raise ValueError("field out of range")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed signed state: {exc}") from None
        body = None if cp is None else SemiChannelBody(cp[0], cp[1])
        return cls(int.from_bytes(cid, "big"), seqno, sent, body, sig)

    @classmethod
    def sign(
        cls, signer: cells.Signer, channel_id: int, seqno: int, sent: int, counterparty: SemiChannelBody | None
    ) -> SignedState:
        unsigned = cls(channel_id, seqno, sent, counterparty, cells.ZERO_SIGNATURE)
        return cls(channel_id, seqno, sent, counterparty, signer.sign(unsigned.state_hash()))

    def verify(self, public_key: bytes) -> bool:
        return verify_signature(public_key, self.state_hash(), self.signature)


@dataclass(frozen=True, slots=True)
class CloseTerms:
    """The final split both parties sign for a cooperative close."""

    channel_id: int
    balance_a: int
    balance_b: int
    seqno_a: int
    seqno_b: int

    def signed_part(self) -> Cell:
        return cells.close_signed_part(self.channel_id, self.balance_a, self.balance_b, self.seqno_a, self.seqno_b)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class CommitTerms:
    """Seqnos both parties commit on chain, so older states can no longer be used to close."""

    channel_id: int
    seqno_a: int
    seqno_b: int

    def signed_part(self) -> Cell:
        return cells.commit_signed_part(self.channel_id, self.seqno_a, self.seqno_b)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)
