"""Strict validation of OpenAI request bodies into :class:`CompletionRequest`.

Any JSON value must end in either a request or an :class:`ApiError` (400), never an
exception from deep inside: the bodies come from whatever process can reach the port.
Unknown fields are rejected like OpenAI does; fields we cannot honour (tools, n > 1,
logprobs...) are accepted only with their neutral value so generic clients that send
defaults keep working. ``null`` always means "not given".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from ..client.types import ChatMessage, CompletionRequest, Role
from .config import GatewayConfig
from .errors import ApiError, invalid

_INT64 = 2**63

_COMMON_FIELDS = frozenset(
    {"model", "max_tokens", "temperature", "top_p", "seed", "stop", "stream", "stream_options", "n", "user"}
    | {"presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "metadata", "service_tier", "store"}
)
CHAT_FIELDS = _COMMON_FIELDS | {
    "messages",
    "max_completion_tokens",
    "top_logprobs",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
}
COMPLETION_FIELDS = _COMMON_FIELDS | {"prompt", "echo", "best_of", "suffix"}

# Accepted only when they ask for nothing we would have to do differently.
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "n": (1,),
    "presence_penalty": (0,),
    "frequency_penalty": (0,),
    "logit_bias": ({},),
    "logprobs": (False, 0),
    "top_logprobs": (0,),
    "tools": ([],),
    "tool_choice": ("none", "auto"),
    "response_format": ({"type": "text"},),
    "store": (False,),
    "echo": (False,),
    "best_of": (1,),
    "suffix": ("",),
}
# Accepted and ignored; only their type is checked.
_IGNORED: dict[str, type] = {"user": str, "metadata": dict, "service_tier": str, "parallel_tool_calls": bool}

_ROLES: dict[str, Role] = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_MESSAGE_FIELDS = frozenset({"role", "content", "name"})
_UNSUPPORTED_MESSAGE_FIELDS = frozenset({"tool_calls", "function_call", "tool_call_id", "refusal", "audio"})
_MAX_STOP = 4
_MAX_STOP_LEN = 256
_MAX_MODEL_LEN = 256


@dataclass(frozen=True)
class ParsedCompletion:
    request: CompletionRequest
    include_usage: bool
    """``stream_options.include_usage``: usage goes in an extra final chunk, as OpenAI does."""


def parse_json_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise invalid("request body is nested too deeply", code="invalid_json") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limit, NaN
        raise invalid(f"could not parse the request body as JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise invalid("request body must be a JSON object", code="invalid_json")
    return body


def parse_chat(body: dict[str, Any], config: GatewayConfig) -> ParsedCompletion:
    _check_fields(body, CHAT_FIELDS)
    messages = _messages(body.get("messages"))
    max_tokens = _max_tokens(body, "max_completion_tokens", config)
    if max_tokens is None:
        max_tokens = _max_tokens(body, "max_tokens", config)
    return _build(body, config, max_tokens, messages=messages)


def parse_completion(body: dict[str, Any], config: GatewayConfig) -> ParsedCompletion:
    _check_fields(body, COMPLETION_FIELDS)
    prompt = _prompt(body.get("prompt"))
    return _build(body, config, _max_tokens(body, "max_tokens", config), prompt=prompt)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check_fields(body: dict[str, Any], allowed: frozenset[str]) -> None:
    for name in sorted(body):
        if name not in allowed:
            raise invalid(f"Unrecognized request argument supplied: {name}", name, "unknown_parameter")
    for name, neutral in _NEUTRAL.items():
        value = body.get(name)
        if name in allowed and value is not None and not any(_same(value, n) for n in neutral):
            shown = " or ".join(json.dumps(n) for n in neutral)
            raise invalid(f"{name} is not supported by this gateway (only {shown})", name, "unsupported_parameter")
    for name, kind in _IGNORED.items():
        value = body.get(name)
        if value is not None and type(value) is not kind:
            raise invalid(f"{name} must be a {_TYPE_NAMES[kind]}", name, "invalid_type")


_TYPE_NAMES = {str: "string", dict: "object", bool: "boolean"}


def _same(value: Any, neutral: Any) -> bool:
    # In Python False == 0 and 1 == True; JSON keeps them apart, so must we.
    if isinstance(value, bool) or isinstance(neutral, bool):
        return type(value) is type(neutral) and value == neutral
    if isinstance(neutral, int | float) and isinstance(value, int | float):
        return value == neutral
    return type(value) is type(neutral) and value == neutral


def _build(
    body: dict[str, Any],
    config: GatewayConfig,
    max_tokens: int | None,
    *,
    messages: tuple[ChatMessage, ...] | None = None,
    prompt: str | None = None,
) -> ParsedCompletion:
    model = body.get("model")
    if not isinstance(model, str) or not model or len(model) > _MAX_MODEL_LEN:
        raise invalid("model must be a non-empty string naming a model (see GET /v1/models)", "model")
    stream = _optional_bool(body, "stream") or False
    include_usage = _stream_options(body.get("stream_options"), stream)
    request = CompletionRequest(
        model=model,
        messages=messages,
        prompt=prompt,
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 0.0, 2.0),
        top_p=_number(body, "top_p", 0.0, 1.0),
        seed=_seed(body.get("seed")),
        stop=_stop(body.get("stop")),
        stream=stream,
    )
    return ParsedCompletion(request=request, include_usage=include_usage)


def _messages(value: Any) -> tuple[ChatMessage, ...]:
    if value is None:
        raise invalid("messages is required", "messages", "missing_required_parameter")
    if not isinstance(value, list):
        raise invalid("messages must be an array of message objects", "messages", "invalid_type")
    if not value:
        raise invalid("messages must contain at least one message", "messages", "empty_array")
    return tuple(_message(item, f"messages[{i}]") for i, item in enumerate(value))


def _message(item: Any, param: str) -> ChatMessage:
    if not isinstance(item, dict):
        raise invalid(f"{param} must be an object with role and content", param, "invalid_type")
    for name in sorted(item):
        if name in _UNSUPPORTED_MESSAGE_FIELDS and item[name] is None:
            continue
        if name in _UNSUPPORTED_MESSAGE_FIELDS:
            raise invalid(f"{param}.{name}: tool and function calls are not supported", f"{param}.{name}",
                          "unsupported_parameter")
        if name not in _MESSAGE_FIELDS:
            raise invalid(f"{param}: unrecognized field {name}", f"{param}.{name}", "unknown_parameter")
    role = item.get("role")
    if role in ("tool", "function"):
        raise invalid(f"{param}.role: tool messages are not supported", f"{param}.role", "unsupported_parameter")
    if not isinstance(role, str) or role not in _ROLES:
        raise invalid(f"{param}.role must be one of system, developer, user, assistant", f"{param}.role")
    name = item.get("name")
    if name is not None and not isinstance(name, str):
        raise invalid(f"{param}.name must be a string", f"{param}.name", "invalid_type")
    return ChatMessage(role=_ROLES[role], content=_content(item.get("content"), f"{param}.content"))


def _content(value: Any, param: str) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise invalid(f"{param} must be a string or an array of text parts", param, "invalid_type")
    texts = []
    for i, part in enumerate(value):
        where = f"{param}[{i}]"
        if not isinstance(part, dict) or part.get("type") != "text":
            raise invalid(f"{where}: only parts of type text are supported", where, "unsupported_parameter")
        if set(part) - {"type", "text"}:
            raise invalid(f"{where}: a text part has only type and text", where, "unknown_parameter")
        text = part.get("text")
        if not isinstance(text, str):
            raise invalid(f"{where}.text must be a string", f"{where}.text", "invalid_type")
        texts.append(text)
    return "\n".join(texts)


def _prompt(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    if value is None:
        raise invalid("prompt is required", "prompt", "missing_required_parameter")
    if isinstance(value, list) and len(value) > 1 and all(isinstance(p, str) for p in value):
        raise invalid("batched prompts are not supported: send one prompt per request", "prompt",
                      "unsupported_parameter")
    raise invalid("prompt must be a string (token arrays are not supported)", "prompt", "invalid_type")


def _max_tokens(body: dict[str, Any], name: str, config: GatewayConfig) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if type(value) is not int:
        raise invalid(f"{name} must be an integer", name, "invalid_type")
    if value < 1:
        raise invalid(f"{name} must be at least 1", name)
    if value > config.max_tokens_cap:
        raise invalid(f"{name} is {value}, above this gateway's limit of {config.max_tokens_cap}", name)
    return value


def _optional_bool(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise invalid(f"{name} must be true or false", name, "invalid_type")
    return value


def _stream_options(value: Any, stream: bool) -> bool:
    if value is None:
        return False
    if not stream:
        raise invalid("stream_options is only allowed when stream is true", "stream_options")
    if not isinstance(value, dict):
        raise invalid("stream_options must be an object", "stream_options", "invalid_type")
    for name in sorted(value):
        if name not in ("include_usage", "include_obfuscation"):
            raise invalid(f"stream_options: unrecognized field {name}", f"stream_options.{name}", "unknown_parameter")
        if value[name] is not None and not isinstance(value[name], bool):
            raise invalid(f"stream_options.{name} must be true or false", f"stream_options.{name}", "invalid_type")
    return value.get("include_usage") is True


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"{name} must be a number", name, "invalid_type")
    try:
        number = float(value)
    except OverflowError:  # an integer literal with hundreds of digits
        number = math.inf
    if not math.isfinite(number) or not low <= number <= high:
        raise invalid(f"{name} must be between {low:g} and {high:g}", name)
    return number


def _seed(value: Any) -> int | None:
    if value is None:
        return None
    if type(value) is not int:
        raise invalid("seed must be an integer", "seed", "invalid_type")
    if not -_INT64 <= value < _INT64:
        raise invalid("seed must fit in a signed 64-bit integer", "seed")
    return value


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise invalid("stop must be a string or an array of strings", "stop", "invalid_type")
    if len(items) > _MAX_STOP:
        raise invalid(f"stop takes at most {_MAX_STOP} sequences", "stop")
    if any(not s or len(s) > _MAX_STOP_LEN for s in items):
        raise invalid(f"stop sequences must be 1 to {_MAX_STOP_LEN} characters", "stop")
    return tuple(items)


__all__ = ["ApiError", "ParsedCompletion", "parse_chat", "parse_completion", "parse_json_body"]
