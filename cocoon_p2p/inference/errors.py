"""Typed inference errors; ``code`` is what a worker sends back to the client."""

from __future__ import annotations

from cocoon_p2p.errors import CocoonError


class InferenceError(CocoonError):
    """Base of the engine's errors. ``code`` is stable and safe to put on the wire."""

    code: str = "internal"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.code)
        self.message = message


class ModelNotServed(InferenceError):
    code = "model_not_served"


class OverCapacity(InferenceError):
    """Every slot is busy; the caller may retry later or bid elsewhere."""

    code = "over_capacity"


class BadRequest(InferenceError):
    code = "bad_request"


class Cancelled(InferenceError):
    code = "cancelled"


class InternalError(InferenceError):
    code = "internal"


class ModelFileError(InternalError):
    """A model file is missing, corrupt, or does not match its pinned hash."""


ERROR_CODES: dict[str, type[InferenceError]] = {
    cls.code: cls for cls in (ModelNotServed, OverCapacity, BadRequest, Cancelled, InternalError)
}
