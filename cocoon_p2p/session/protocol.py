"""The job protocol between a client and the worker that won its auction (docs/PROTOCOL.md §7).

One RPC stream, method ``session.job``, per job:

    client -> worker  open   {job_id, award, request, pay}
    worker -> client  {"t": "chunk", "text", "tokens", "owed"}      (many)
    client -> worker  {"t": "pay", "state"}                          (as chunks arrive)
    worker -> client  {"t": "usage", "prompt_tokens", "completion_tokens", "finish_reason", "owed"}
    client -> worker  {"t": "pay", "state"}  (the final one), then end of stream

``owed`` is the cumulative price of everything delivered so far. The worker sends
the next chunk only while ``paid >= owed_so_far - credit``: the client is never
more than the credit plus one chunk behind, and never pays for what it did not get.
"""

from __future__ import annotations

from ..wire.codec import Field, Schema

JOB_METHOD = "session.job"
MICRO = 1_000_000

JOB_OPEN = Schema(
    "job_open",
    job_id=Field(bytes, exact_len=16),
    award=Field(bytes, max_len=4096),
    request=Field(dict),
    pay=Field(dict, optional=True),
)
CHUNK = Schema("chunk", text=Field(str, max_len=1 << 16), tokens=Field(int, min_value=0, max_value=1 << 16),
               owed=Field(int, min_value=0, max_value=(1 << 64) - 1))  # fmt: skip
USAGE = Schema(
    "usage",
    prompt_tokens=Field(int, min_value=0, max_value=1 << 24),
    completion_tokens=Field(int, min_value=0, max_value=1 << 24),
    finish_reason=Field(str, max_len=16),
    owed=Field(int, min_value=0, max_value=(1 << 64) - 1),
)
PAY = Schema("pay", state=Field(dict))
ENVELOPE = Schema("session_msg", t=Field(str, max_len=8))

# Error codes a worker answers with (RemoteError.code).
NO_AWARD = "no_award"
MODEL_NOT_SERVED = "model_not_served"
OVER_CAPACITY = "over_capacity"
PAYMENT_LAGGING = "payment_lagging"
PAYMENT_REJECTED = "payment_rejected"
BAD_REQUEST = "bad_request"
INTERNAL = "internal"
CANCELLED = "cancelled"


def job_cost(prompt_per_million: int, completion_per_million: int, prompt_tokens: int, completion_tokens: int) -> int:
    """nanoTON owed for a job so far, rounded up (integers only)."""
    scaled = prompt_tokens * prompt_per_million + completion_tokens * completion_per_million
    return -(-scaled // MICRO)
