"""Property: no request body makes the gateway answer 5xx or stop serving.

Hypothesis drives a sync httpx client from a worker thread while the real gateway
runs in the trio loop, so every example is a real HTTP round trip.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cocoon_p2p.gateway.validation import CHAT_FIELDS, COMPLETION_FIELDS

from .scripted_backend import ScriptedBackend, running_gateway

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()  # NaN and infinities included: json.dumps writes them as bare words
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
# Near-valid values per field reach deeper into validation than random JSON does.
good_message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "robot"]),
        "content": st.text(max_size=30)
        | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": st.text()}), max_size=3)
        | json_values,
    },
    optional={"name": st.text(max_size=5) | json_values, "tool_calls": json_values, "extra": json_values},
)
field_values: dict[str, st.SearchStrategy[Any]] = {
    "model": st.sampled_from(["gemma3-270m", "org/tiny-random", "missing", ""]),
    "messages": st.lists(good_message | json_values, max_size=4),
    "prompt": st.text(max_size=30) | st.lists(st.text(max_size=5), max_size=3),
    "max_tokens": st.integers(min_value=-3, max_value=20_000),
    "max_completion_tokens": st.integers(min_value=-3, max_value=20_000),
    "temperature": st.floats(min_value=-1, max_value=3),
    "top_p": st.floats(min_value=-1, max_value=2),
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans(), "x": json_values}),
    "stop": st.text(max_size=5) | st.lists(st.text(max_size=5), max_size=6),
    "n": st.integers(min_value=0, max_value=3),
}
all_fields = sorted(CHAT_FIELDS | COMPLETION_FIELDS | {"unknown_field"})
shaped_bodies = st.dictionaries(
    st.sampled_from(all_fields),
    json_values,
    max_size=6,
).flatmap(
    lambda base: st.fixed_dictionaries(
        {}, optional={name: strategy | json_values for name, strategy in field_values.items()}
    ).map(lambda tuned: {**base, **tuned})
)
valid_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["gemma3-270m", "org/tiny-random", "no-such-model"])},
    optional={
        "max_tokens": st.integers(min_value=1, max_value=128),
        "stream": st.booleans(),
        "temperature": st.floats(min_value=0, max_value=2),
        "stop": st.sampled_from(["!", ["x", " world"]]),
    },
).flatmap(
    lambda base: st.sampled_from(
        [
            {**base, "prompt": "tell me"},
            {**base, "messages": [{"role": "user", "content": "tell me"}]},
        ]
    )
)
# A valid body with one field replaced by anything at all.
mutated_bodies = st.tuples(valid_bodies, st.sampled_from(all_fields), json_values).map(lambda t: {**t[0], t[1]: t[2]})
bodies = (
    valid_bodies.map(lambda b: json.dumps(b).encode())
    | mutated_bodies.map(lambda b: json.dumps(b).encode())
    | shaped_bodies.map(lambda b: json.dumps(b).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=200)
)


STREAMED_JOB = {"model": "gemma3-270m", "stream": True, "messages": [{"role": "user", "content": "tell me"}]}
PLAIN_JOB = {"model": "gemma3-270m", "stream": False, "prompt": "tell me", "max_tokens": 8}


def check_answer(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["message"], str) and isinstance(error["type"], str)
    elif response.headers["content-type"].startswith("text/event-stream"):
        assert response.text.endswith("data: [DONE]\n\n")
    else:
        assert response.json()["usage"]["total_tokens"] >= 0


async def test_random_bodies_never_get_a_5xx_and_the_gateway_keeps_serving() -> None:
    backend = ScriptedBackend()
    async with running_gateway(backend) as url:
        with httpx.Client(base_url=url) as http:

            @settings(
                max_examples=400,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=[HealthCheck.too_slow],
            )
            @given(path=st.sampled_from(["/v1/chat/completions", "/v1/completions"]), body=bodies)
            # Valid jobs both ways always run: which generated bodies happen to be valid depends
            # on how hypothesis explores the union of strategies above.
            @example(path="/v1/chat/completions", body=json.dumps(STREAMED_JOB).encode())
            @example(path="/v1/completions", body=json.dumps(PLAIN_JOB).encode())
            def property_holds(path: str, body: bytes) -> None:
                check_answer(http.post(path, content=body, headers={"content-type": "application/json"}))

            await trio.to_thread.run_sync(property_holds)
            ok = await trio.to_thread.run_sync(
                lambda: http.post("/v1/completions", json={"model": "gemma3-270m", "prompt": "still there?"})
            )
            health = await trio.to_thread.run_sync(lambda: http.get("/health"))
    assert ok.status_code == 200 and ok.json()["choices"][0]["text"] == "Hello, world!"
    assert health.json() == {"status": "ok"}
    # Some examples must have been valid jobs, or the property says little about streaming.
    assert any(r.stream for r in backend.requests) and any(not r.stream for r in backend.requests)
