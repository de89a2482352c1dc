"""Prometheus text exposition for the gateway, without a client library.

The counters are few and live in one process, so a dict per metric is all it takes.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..client.types import CompletionResult

Scope = dict[str, Any]

_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics")


def path_label(path: str) -> str:
    # Bounded label values: arbitrary paths from the network must not grow the series set.
    if path in _PATHS:
        return path
    if path.startswith("/v1/models/"):
        return "/v1/models/{model}"
    return "other"


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.backend_errors: Counter[str] = Counter()
        self.jobs = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_nanoton = 0
        self.in_flight = 0

    def record_request(self, method: str, path: str, status: int) -> None:
        self.requests[(method if method in ("GET", "POST") else "other", path_label(path), status)] += 1

    def record_job(self, result: CompletionResult) -> None:
        self.jobs += 1
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens
        self.cost_nanoton += result.cost_nanoton

    def record_backend_error(self, code: str) -> None:
        self.backend_errors[code] += 1

    def render(self) -> str:
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")

        family("cocoon_gateway_requests_total", "counter", "HTTP requests answered, by method, path and status.")
        for (method, path, status), count in sorted(self.requests.items()):
            lines.append(f'cocoon_gateway_requests_total{{method="{method}",path="{path}",status="{status}"}} {count}')
        family("cocoon_gateway_backend_errors_total", "counter", "Jobs or listings the backend failed, by code.")
        for code, count in sorted(self.backend_errors.items()):
            lines.append(f'cocoon_gateway_backend_errors_total{{code="{_escape(code)}"}} {count}')
        family("cocoon_gateway_jobs_total", "counter", "Completions served to the end.")
        lines.append(f"cocoon_gateway_jobs_total {self.jobs}")
        family("cocoon_gateway_tokens_total", "counter", "Tokens served, by kind.")
        lines.append(f'cocoon_gateway_tokens_total{{kind="prompt"}} {self.prompt_tokens}')
        lines.append(f'cocoon_gateway_tokens_total{{kind="completion"}} {self.completion_tokens}')
        family("cocoon_gateway_cost_nanoton_total", "counter", "nanoTON paid to workers for served completions.")
        lines.append(f"cocoon_gateway_cost_nanoton_total {self.cost_nanoton}")
        family("cocoon_gateway_in_flight", "gauge", "Completions being served right now.")
        lines.append(f"cocoon_gateway_in_flight {self.in_flight}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class MetricsMiddleware:
    """Counts every HTTP response by the status it started with."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: int | None = None
        recorded = False

        def record(final_status: int) -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                self.metrics.record_request(scope.get("method", ""), scope.get("path", ""), final_status)

        async def counting_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                # Counted before the last byte leaves, so a client that reads /metrics
                # right after its response always sees it counted.
                record(status or 500)
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except Exception:
            record(status or 500)  # what the server in front answers when the app dies
            raise
        finally:
            # 499 (nginx's "client closed request"): cancelled before any answer, i.e. a disconnect.
            record(status or 499)
