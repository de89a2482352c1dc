"""The shared client types and the error plumbing around them."""

from __future__ import annotations

import pytest

from cocoon_p2p.client.types import (
    BackendError,
    BackendTimeout,
    BadRequest,
    ChatMessage,
    CompletionRequest,
    ModelNotFound,
    NoBids,
    PaymentFailed,
    Unavailable,
    WorkerFailed,
)
from cocoon_p2p.errors import CocoonError
from cocoon_p2p.gateway.completion import _as_backend_error
from cocoon_p2p.gateway.errors import from_backend
from cocoon_p2p.gateway.metrics import path_label


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (BadRequest("prompt too long"), "bad_request", 400),
        (PaymentFailed(), "payment_failed", 402),
        (ModelNotFound(), "model_not_found", 404),
        (WorkerFailed(), "worker_failed", 502),
        (NoBids(), "no_bids", 503),
        (Unavailable(), "unavailable", 503),
        (BackendTimeout(), "timeout", 504),
        (BackendError("no_bids", "nobody"), "no_bids", 503),
        (BackendError("brand_new_code", "?"), "brand_new_code", 500),
        (BackendError("worker_failed", "x", 418), "worker_failed", 418),
    ],
)
def test_backend_errors_carry_code_and_status(error: BackendError, code: str, status: int) -> None:
    assert isinstance(error, CocoonError)
    assert (error.code, error.http_status) == (code, status)
    assert error.message


def test_backend_error_becomes_openai_error_body() -> None:
    api = from_backend(BadRequest("prompt does not fit", param="messages"))
    assert api.status == 400
    assert api.body() == {
        "error": {
            "message": "prompt does not fit",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "bad_request",
        }
    }
    assert from_backend(NoBids()).body()["error"]["type"] == "server_error"
    assert from_backend(BackendError("odd", "x", 99)).status == 500


def test_completion_request_needs_exactly_one_input() -> None:
    hi = (ChatMessage("user", "hi"),)
    assert CompletionRequest(model="m", messages=hi).is_chat
    assert not CompletionRequest(model="m", prompt="").is_chat
    for bad in [{}, {"messages": hi, "prompt": "x"}, {"messages": ()}, {"prompt": "x", "max_tokens": 0}]:
        with pytest.raises(ValueError):
            CompletionRequest(model="m", **bad)  # type: ignore[arg-type]


def test_backend_errors_are_found_inside_exception_groups() -> None:
    # A backend's nursery wraps what its tasks raise; the status must survive that.
    inner = WorkerFailed("gone")
    assert _as_backend_error(ExceptionGroup("g", [ExceptionGroup("h", [inner])])) is inner
    assert _as_backend_error(ExceptionGroup("g", [inner, KeyError("x")])) is None
    assert _as_backend_error(RuntimeError("bug")) is None


def test_metric_path_labels_stay_bounded() -> None:
    assert path_label("/v1/completions") == "/v1/completions"
    assert path_label("/v1/models/org/tiny") == "/v1/models/{model}"
    assert path_label("/wp-admin/../../etc/passwd") == "other"
