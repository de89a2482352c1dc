"""Request/response calls and streams over secure connections (DESIGN.md §3)."""

from .connection import Connection
from .host import Host
from .router import CallContext, Router
from .stream import Stream

__all__ = ["CallContext", "Connection", "Host", "Router", "Stream"]
