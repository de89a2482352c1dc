"""msgpack codec with typed validation (DESIGN.md §3).

Every message is a map with string keys and a type tag. Decoding bounds every
length and raises only :class:`CodecError`; ``Schema`` checks field types and
sizes so handlers never see a KeyError or a wrong type from the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from ..errors import CodecError
from .limits import DEFAULT_LIMITS


def _no_ext(code: int, data: bytes) -> Any:
    raise CodecError("msgpack ext types are not allowed")


def pack(obj: Any) -> bytes:
    """Encode a plain value (maps, lists, str, bytes, ints, bools, None, floats)."""
    try:
        return msgpack.packb(obj, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode: {exc}") from None


def unpack(data: bytes, *, max_size: int = DEFAULT_LIMITS.max_message) -> Any:
    if len(data) > max_size:
        raise CodecError(f"message of {len(data)} bytes exceeds the {max_size} byte limit")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=max_size,
            max_bin_len=max_size,
            max_array_len=DEFAULT_LIMITS.max_items,
            max_map_len=DEFAULT_LIMITS.max_items,
            max_ext_len=0,
            ext_hook=_no_ext,
        )
    except CodecError:
        raise
    except Exception as exc:  # msgpack raises a zoo of types on bad input
        raise CodecError(f"undecodable message: {type(exc).__name__}") from None


def unpack_map(data: bytes, *, max_size: int = DEFAULT_LIMITS.max_message) -> dict[str, Any]:
    obj = unpack(data, max_size=max_size)
    if not isinstance(obj, dict):
        raise CodecError("a message must be a map")
    return obj


@dataclass(frozen=True)
class Field:
    """One expected field: its type(s), bounds, and whether it may be missing."""

    kind: type | tuple[type, ...]
    optional: bool = False
    max_len: int | None = None
    min_value: int | None = None
    max_value: int | None = None
    exact_len: int | None = None


def _check(name: str, value: Any, field: Field) -> None:
    kinds = field.kind if isinstance(field.kind, tuple) else (field.kind,)
    # bool is an int subclass; a bool where an int is expected is a type error.
    if isinstance(value, bool) and bool not in kinds:
        raise CodecError(f"field {name!r} has the wrong type")
    if not isinstance(value, kinds):
        raise CodecError(f"field {name!r} has the wrong type: expected {'/'.join(k.__name__ for k in kinds)}")
    if isinstance(value, (str, bytes, list, dict)):
        if field.max_len is not None and len(value) > field.max_len:
            raise CodecError(f"field {name!r} is longer than {field.max_len}")
        if field.exact_len is not None and len(value) != field.exact_len:
            raise CodecError(f"field {name!r} must be {field.exact_len} long")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if field.min_value is not None and value < field.min_value:
            raise CodecError(f"field {name!r} is below {field.min_value}")
        if field.max_value is not None and value > field.max_value:
            raise CodecError(f"field {name!r} is above {field.max_value}")


class Schema:
    """Validates a decoded map; unknown fields are dropped, missing ones rejected."""

    def __init__(self, name: str, **fields: Field) -> None:
        self.name = name
        self.fields = fields

    def validate(self, msg: Any) -> dict[str, Any]:
        if not isinstance(msg, Mapping):
            raise CodecError(f"{self.name}: expected a map")
        out: dict[str, Any] = {}
        for key, field in self.fields.items():
            if key not in msg or msg[key] is None:
                if field.optional:
                    out[key] = None
                    continue
                raise CodecError(f"{self.name}: missing field {key!r}")
            _check(f"{self.name}.{key}", msg[key], field)
            out[key] = msg[key]
        return out


U64 = Field(int, min_value=0, max_value=(1 << 64) - 1)
U32 = Field(int, min_value=0, max_value=(1 << 32) - 1)
BYTES32 = Field(bytes, exact_len=32)
BYTES64 = Field(bytes, exact_len=64)
