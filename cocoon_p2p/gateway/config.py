"""Gateway settings; the defaults suit one local user on a laptop."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class GatewayConfig:
    #: Largest request body accepted; matches the 1 MiB wire limit a prompt must fit anyway.
    max_body_bytes: int = 1024 * 1024
    #: Hard ceiling on max_tokens whatever the model's context, so a typo cannot buy a fortune.
    max_tokens_cap: int = 16384
    #: Used when the request names no max_tokens (capped by the model's context length).
    default_max_tokens: int = 512
    #: Wall clock for the ``created`` fields; injectable so tests can pin it.
    wall_clock: Callable[[], float] = field(default=time.time)
