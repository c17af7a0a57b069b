"""The gate in-process (``httpx.ASGITransport``): keys, scopes, browsers, bodies and rate
limits, in front of a trivial application, with no server."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from localgpt.api.gate import Gate, TokenBucket
from localgpt.api.metrics import Metrics
from localgpt.api.requests import PERMISSIONS_KEY
from localgpt.config import Config, parse_config

KEY, GATEWAY = "full-key-0123456789", "gateway-key-0123456789"


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers 200 with what the gate told it about the caller."""
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    grant = scope.get(PERMISSIONS_KEY)
    text = f"{len(body)} {getattr(grant, 'assistant', None)} {getattr(grant, 'caller', None)}"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": text.encode()})


def gate(**server: Any) -> Gate:
    config: Config = parse_config({"server": server})
    return Gate(app, config=config, metrics=Metrics())


def call(g: Gate, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=g, client=("10.0.0.7", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return await c.request(method, path, **kwargs)

    return asyncio.run(go())


def test_keys_and_scopes() -> None:
    g = gate(auth_token=[KEY, {"key": GATEWAY, "scope": "gateway"}])
    assert call(g, "GET", "/v1/models").status_code == 401
    assert call(g, "GET", "/health").status_code == 200  # public
    ok = call(g, "GET", "/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200 and ok.text.split()[1:] == ["True", ok.text.split()[2]]
    assert ok.text.split()[2].startswith("key:")  # who called: a hash, not the key
    proxy = call(g, "GET", "/v1/models", headers={"Authorization": f"Bearer {GATEWAY}"})
    assert proxy.text.split()[1] == "False"  # a plain proxy: no assistant
    native = call(g, "GET", "/api/sessions", headers={"Authorization": f"Bearer {GATEWAY}"})
    assert native.status_code == 403 and native.json()["error"]["code"] == "insufficient_scope"


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"Host": "rebind.evil.example"}, 403, "forbidden_host"),
        ({"Origin": "https://evil.example"}, 403, "forbidden_origin"),
        ({"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        ({"Origin": "http://localhost:3000"}, 200, None),
        ({"Host": "192.168.1.9:31327", "Origin": "http://192.168.1.9:31327"}, 200, None),
    ],
)
def test_what_a_web_page_may_not_do(headers: dict[str, str], status: int, code: str | None) -> None:
    kind = {} if "Content-Type" in headers else {"Content-Type": "application/json"}
    resp = call(gate(), "POST", "/v1/chat/completions", content=b"{}", headers=kind | headers)
    assert resp.status_code == status
    if code:
        assert resp.json()["error"]["code"] == code


def test_bodies_past_the_cap_are_413_declared_or_chunked() -> None:
    g = gate(max_request_body=100)
    declared = call(g, "POST", "/v1/x", json={"a": "x" * 200})
    assert declared.status_code == 413

    async def chunks() -> Any:
        for _ in range(5):
            yield b"x" * 30

    chunked = call(
        g, "POST", "/v1/x", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert chunked.status_code == 413
    small = call(g, "POST", "/v1/x", json={"a": 1})
    assert small.status_code == 200 and small.text.startswith("7 ")  # {"a":1}


def test_rate_limits_answer_429_with_retry_after() -> None:
    g = gate(rate_limit={"enabled": True, "requests_per_minute": 60, "burst": 2})
    codes = [call(g, "GET", "/v1/models").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    limited = call(g, "GET", "/v1/models")
    assert limited.headers["Retry-After"] == "1"
    assert call(g, "GET", "/health").status_code == 200  # never limited


def test_the_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(per_minute=60, burst=2)
    assert bucket.take("a", 0.0) == 0 and bucket.take("a", 0.0) == 0
    assert bucket.take("a", 0.0) == pytest.approx(1.0)  # one token a second
    assert bucket.take("a", 0.5) == pytest.approx(0.5)
    assert bucket.take("a", 1.0) == 0
    assert bucket.take("b", 1.0) == 0  # clients apart
    small = TokenBucket(per_minute=60, burst=1, clients=2)
    for client in ("x", "y", "z"):
        small.take(client, 0.0)
    assert small.take("x", 0.0) == 0  # the oldest client was forgotten: a full bucket again
