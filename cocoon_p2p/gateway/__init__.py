"""The local OpenAI-compatible HTTP gateway in front of a completion backend."""

from .app import create_app
from .config import GatewayConfig
from .metrics import Metrics
from .server import serve_gateway

__all__ = ["GatewayConfig", "Metrics", "create_app", "serve_gateway"]
