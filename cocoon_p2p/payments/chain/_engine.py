"""pytvm's emulator library, loaded with the fixes its 0.0.14 wrapper needs.

- ``EmulatorEngineC.default()`` imports ``pkg_resources`` (gone from modern setuptools): we pass
  the bundled ``engine/libemulator-linux-x86_64.so`` path ourselves.
- Several argtypes are declared 32-bit where the C API takes 64-bit values (lt, balance, amount,
  gas limit): amounts of 4.3 TON and more would be silently truncated, so they are re-declared.
- The JSON strings the library returns are strdup'ed and never freed by the wrapper; we read them
  and hand them back to the same (glibc) allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import threading
from pathlib import Path
from typing import Any

import pytvm
from pytvm.engine import EmulatorEngineC

from ..errors import ChainError

_LIB_NAME = "libemulator-linux-x86_64.so"
_JSON_FUNCTIONS = (
    "transaction_emulator_emulate_transaction",
    "transaction_emulator_emulate_tick_tock_transaction",
    "tvm_emulator_run_get_method",
    "tvm_emulator_send_external_message",
    "tvm_emulator_send_internal_message",
)
_engine: EmulatorEngineC | None = None
_lock = threading.Lock()


class _Engine(EmulatorEngineC):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        lib = self.lib
        vp, cp = ctypes.c_void_p, ctypes.c_char_p
        lib.transaction_emulator_set_lt.argtypes = [vp, ctypes.c_uint64]
        lib.tvm_emulator_set_c7.argtypes = [vp, cp, ctypes.c_uint32, ctypes.c_uint64, cp, cp]
        lib.tvm_emulator_set_gas_limit.argtypes = [vp, ctypes.c_int64]
        lib.tvm_emulator_send_internal_message.argtypes = [vp, cp, ctypes.c_uint64]
        for name in _JSON_FUNCTIONS:
            getattr(lib, name).restype = vp
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.free.argtypes = [vp]
        self._free = libc.free

    def _json(self, pointer: int | None) -> dict[str, Any]:
        if not pointer:
            raise ChainError("the emulator returned nothing")
        try:
            return json.loads(ctypes.string_at(pointer))
        finally:
            self._free(pointer)

    def transaction_emulator_emulate_transaction(self, emulator: Any, shard_account_boc: bytes, message_boc: bytes):
        return self._json(self.lib.transaction_emulator_emulate_transaction(emulator, shard_account_boc, message_boc))

    def transaction_emulator_emulate_tick_tock_transaction(
        self, emulator: Any, shard_account_boc: bytes, is_tock: bool
    ):
        return self._json(
            self.lib.transaction_emulator_emulate_tick_tock_transaction(emulator, shard_account_boc, is_tock)
        )

    def tvm_emulator_run_get_method(self, emulator: Any, method_id: int, stack_boc: bytes):
        return self._json(self.lib.tvm_emulator_run_get_method(emulator, method_id, stack_boc))

    def tvm_emulator_send_external_message(self, emulator: Any, message_boc: bytes):
        return self._json(self.lib.tvm_emulator_send_external_message(emulator, message_boc))

    def tvm_emulator_send_internal_message(self, emulator: Any, message_boc: bytes, amount: int):
        return self._json(self.lib.tvm_emulator_send_internal_message(emulator, message_boc, amount))


def emulator_engine() -> EmulatorEngineC:
    """The process-wide engine (the library is stateless between emulator handles)."""
    global _engine
    with _lock:
        if _engine is None:
            path = Path(pytvm.__file__).parent / "engine" / _LIB_NAME
            if not path.exists():
                raise ChainError(f"pytvm's emulator library is missing ({path}); reinstall pytvm 0.0.14")
            _engine = _Engine(str(path))
            _engine.emulator_set_verbosity_level(0)
        return _engine
