"""The client side of one job on one worker: send it, read tokens, pay as they arrive."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import trio

from ..errors import CocoonError, ConnectionClosed, RemoteError
from ..rpc import Connection
from . import protocol as p
from .payment_seam import SessionPayer


class WorkerStalled(CocoonError):
    """The worker sent nothing for ``stall_timeout`` seconds."""


class OverCharged(CocoonError):
    """The worker claimed more than the agreed prices allow for what it delivered."""


@dataclass
class JobUsage:
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    cost: int  # nanoTON, the final amount paid to this worker


@dataclass
class JobTerms:
    job_id: bytes
    award_raw: bytes
    request: dict[str, Any]
    prompt_price: int
    completion_price: int
    max_completion_tokens: int


class JobRun:
    """Iterate for text deltas; ``usage`` is set once the worker's final record arrived."""

    def __init__(self, conn: Connection, terms: JobTerms, payer: SessionPayer, *, stall_timeout: float = 30.0) -> None:
        self.conn = conn
        self.terms = terms
        self.payer = payer
        self.stall_timeout = stall_timeout
        self.usage: JobUsage | None = None
        self.paid = 0
        self.completion_tokens = 0
        self.first_token_at: float | None = None

    def _max_owed(self, completion_tokens: int, prompt_cap: int = 1 << 20) -> int:
        return p.job_cost(self.terms.prompt_price, self.terms.completion_price, prompt_cap, completion_tokens)

    async def stream(self) -> AsyncIterator[str]:
        try:
            terms = self.terms
            pay_terms = await self.payer.begin()
            params = {"job_id": terms.job_id, "award": terms.award_raw, "request": terms.request, "pay": pay_terms}
            async with self.conn.open_stream(p.JOB_METHOD, params) as stream:
                while True:
                    with trio.move_on_after(self.stall_timeout) as waited:
                        try:
                            msg = await stream.receive()
                        except trio.EndOfChannel:
                            raise ConnectionClosed("worker ended the job without a usage record") from None
                    if waited.cancelled_caught:
                        raise WorkerStalled(f"worker sent nothing for {self.stall_timeout:g} s")
                    kind = p.ENVELOPE.validate(msg)["t"]
                    if kind == "chunk":
                        chunk = p.CHUNK.validate(msg)
                        self.completion_tokens += chunk["tokens"]
                        self._check_claim(chunk["owed"])
                        if self.first_token_at is None:
                            self.first_token_at = trio.current_time()
                        if chunk["text"]:
                            yield chunk["text"]
                        await self._pay(stream, chunk["owed"])
                    elif kind == "usage":
                        usage = p.USAGE.validate(msg)
                        exact = p.job_cost(
                            terms.prompt_price, terms.completion_price, usage["prompt_tokens"],
                            usage["completion_tokens"],
                        )  # fmt: skip
                        if usage["owed"] != exact or usage["completion_tokens"] != self.completion_tokens:
                            raise OverCharged("the usage record does not match the prices and the tokens delivered")
                        await self._pay(stream, exact)
                        await stream.end()
                        await self._wait_for_end(stream)  # leaving earlier would cancel the worker's side
                        self.usage = JobUsage(
                            usage["prompt_tokens"], usage["completion_tokens"], usage["finish_reason"], self.paid
                        )
                        break
        finally:
            with trio.CancelScope(shield=True):  # the payer learns the job is over, however it ended
                await self.payer.finish()

    async def _wait_for_end(self, stream: Any) -> None:
        with trio.move_on_after(self.stall_timeout):
            try:
                while True:
                    await stream.receive()
            except (trio.EndOfChannel, ConnectionClosed, RemoteError):
                pass

    def _check_claim(self, owed: int) -> None:
        if self.completion_tokens > self.terms.max_completion_tokens or owed > self._max_owed(self.completion_tokens):
            raise OverCharged(f"worker claims {owed} nanoTON for {self.completion_tokens} tokens")

    async def _pay(self, stream: Any, owed: int) -> None:
        if owed <= self.paid:
            return
        state = await self.payer.pay(owed)
        self.paid = owed
        try:
            await stream.send({"t": "pay", "state": state})
        except (ConnectionClosed, RemoteError, trio.ClosedResourceError):
            pass  # the worker went away; what we signed covers only what we received
