"""Property-based fuzzing of every route in the server's own /openapi.json (schemathesis).

Whatever arrives, the answer is never a 5xx, and every error is in its API's shape: OpenAI's,
or Anthropic's on /v1/messages. (The
operations are driven one by one with hypothesis: schemathesis's pytest plugin does not
work with the pytest pinned here.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode

from tests.conftest import Server, gateway_config
from tests.fakes.openai_fake import FakeOpenAI

EXAMPLES = 50


@pytest.fixture
def server(servers: Callable[[str], Server], fake_openai: FakeOpenAI) -> Server:
    return servers(gateway_config(fake_openai.url, gateway=False))


def test_no_server_errors_and_every_error_in_its_apis_shape(server: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 24  # every route is in the schema, none is left out
    seen: dict[str, int] = {}
    cases = [
        (op, mode)
        for op in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    ]
    for operation, mode in cases:
        check = _check(server, operation, mode, seen)
        try:
            check()
        except Unsatisfiable:
            assert mode == GenerationMode.NEGATIVE  # nothing to break in a route with no input
    print(f"fuzzed {sum(seen.values())} requests ({seen}) over {len(operations)} operations")


def _check(
    server: Server, operation: Any, mode: GenerationMode, seen: dict[str, int]
) -> Callable[[], None]:
    """One operation's property: never a 5xx, errors in the shape of the API's clients."""

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def check(case: schemathesis.Case) -> None:
        resp = case.call(base_url=server.url, timeout=60)
        seen[mode] = seen.get(mode, 0) + 1
        assert resp.status_code < 500, (
            operation.label,
            resp.status_code,
            resp.text[:300],
            case.body,
        )
        if resp.status_code >= 400 and operation.path.startswith("/v1/messages"):
            body = resp.json()
            assert set(body) == {"type", "error", "request_id"}, (operation.label, body)
            assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
            assert isinstance(body["error"]["message"], str) and body["error"]["message"]
        elif resp.status_code >= 400:
            body = resp.json()
            assert set(body) == {"error"}, (operation.label, body)
            assert set(body["error"]) == {"message", "type", "param", "code"}
            assert isinstance(body["error"]["message"], str) and body["error"]["message"]

    return check  # type: ignore[no-any-return]
