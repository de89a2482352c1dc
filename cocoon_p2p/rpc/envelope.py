"""The RPC envelope's checks (docs/PROTOCOL.md §4): what every message must look like before
a connection acts on it."""

from __future__ import annotations

from typing import Any

from ..errors import CodecError
from ..wire.codec import Field, Schema

MAX_ID = (1 << 63) - 1
MAX_METHOD = 128
ERR = Schema("err", c=Field(str, max_len=64), e=Field(str, max_len=4096, optional=True))
DATA = Schema("sdata", d=Field(dict))
CREDIT = Schema("credit", n=Field(int, min_value=1, max_value=1 << 20))


# The envelope, req and res checks run on every message, so they are written out instead of
# going through Schema; they enforce the same rules (docs/PROTOCOL.md §4).
def envelope(msg: dict[str, Any]) -> tuple[str, int]:
    kind, call_id = msg.get("t"), msg.get("id")
    if type(kind) is not str or len(kind) > 16:
        raise CodecError("envelope: field 't' must be a short string")
    if type(call_id) is not int or not 1 <= call_id <= MAX_ID:
        raise CodecError("envelope: field 'id' must be an integer in 1..2^63-1")
    return kind, call_id


def request(msg: dict[str, Any]) -> dict[str, Any]:
    method, params = msg.get("m"), msg.get("p")
    if type(method) is not str or len(method) > MAX_METHOD:
        raise CodecError(f"req: field 'm' must be a string of at most {MAX_METHOD} characters")
    if type(params) is not dict:
        raise CodecError("req: field 'p' must be a map")
    return {"m": method, "p": params}
