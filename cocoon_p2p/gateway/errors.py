"""OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code"}}``.

Every failure the gateway answers goes through :class:`ApiError`, so clients written
for OpenAI (which read ``error.message`` and the status) show something useful.
"""

from __future__ import annotations

import json
from typing import Any

from ..client.types import BackendError

# OpenAI's "type" vocabulary, keyed by status; codes carry the precise reason.
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    402: "payment_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param

    @property
    def type(self) -> str:
        if self.status >= 500:
            return "server_error"
        return _TYPE_BY_STATUS.get(self.status, "invalid_request_error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def json_bytes(self) -> bytes:
        return json.dumps(self.body()).encode()


def invalid(message: str, param: str | None = None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, code=code, param=param)


def model_not_found(model: str) -> ApiError:
    return ApiError(404, f"The model {model!r} does not exist or has no live offers (see GET /v1/models)",
                    code="model_not_found", param="model")


def from_backend(error: BackendError) -> ApiError:
    status = error.http_status if 400 <= error.http_status <= 599 else 500
    return ApiError(status, error.message, code=error.code, param=error.param)


def internal() -> ApiError:
    # The detail goes to the log, not to the client: it may hold peer addresses or keys' paths.
    return ApiError(500, "internal error in the gateway; see its log", code="internal_error")
