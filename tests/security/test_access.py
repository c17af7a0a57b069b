"""Access control: keys, scopes, the loopback rule, rate limits, body caps, CORS."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Server, free_port, gateway_config, isolated_env
from tests.fakes import FakeCall, Script
from tests.fakes.openai_fake import FakeOpenAI
from tests.helpers import error_of, user

FULL, GATEWAY, ASSISTANT, ADMIN = (
    "full-key-0123456789",
    "gateway-key-0123456789",
    "full-key-for-the-assistant-scope",  # shares its first 8 characters with FULL
    "admin-key-0123456789",
)


def keyed_config(url: str, extra: str = "") -> str:
    return gateway_config(
        url,
        gateway=False,
        extra=f"""
[server]
auth_token = ["{FULL}", {{ key = "{GATEWAY}", scope = "gateway" }},
              {{ key = "{ASSISTANT}", scope = "assistant" }},
              {{ key = "{ADMIN}", scope = "admin", name = "me" }}]
[tools]
shell = true
file_write = true
{extra}
""",
    )


@pytest.fixture
def server(servers: Callable[[str], Server], openai_upstream: FakeOpenAI) -> Server:
    return servers(keyed_config(openai_upstream.url))


def chat(server: Server, key: str | None, **body: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(
        f"{server.url}/v1/chat/completions",
        headers=headers,
        timeout=30,
        json={"model": "openai/fake-model", "messages": user("hi"), **body},
    )


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key-0123456789"},
        {"Authorization": f"Basic {FULL}"},
        {"X-API-Key": f"Bearer {FULL}"},  # x-api-key carries the bare key
        {"api-key": FULL},
        {"Authorization": FULL},
        {"Authorization": f"Bearer {FULL}x"},
    ],
)
def test_missing_wrong_or_misplaced_keys_get_401(server: Server, headers: dict[str, str]) -> None:
    for method, path in (
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
        ("GET", "/api/sessions"),
        ("GET", "/metrics"),
        ("GET", "/api/memory/file?path=MEMORY.md"),
        ("GET", "/ready"),
    ):
        resp = httpx.request(
            method,
            f"{server.url}{path}",
            headers=headers,
            timeout=10,
            json={} if method == "POST" else None,
        )
        assert resp.status_code == 401, (path, resp.text)
        error = error_of(resp)
        assert error["code"] == "invalid_api_key"
        assert resp.headers["www-authenticate"] == "Bearer"
        assert resp.headers["x-request-id"]


def test_health_is_public_and_keys_work(server: Server, openai_upstream: FakeOpenAI) -> None:
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    client = openai.OpenAI(base_url=server.base_url, api_key=FULL, max_retries=0)
    assert client.chat.completions.create(model="openai/fake-model", messages=user("x"))
    bad = openai.OpenAI(base_url=server.base_url, api_key="nope-0123456789", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def offered(fake: FakeOpenAI) -> list[str]:
    body = fake.last_body()
    return [t["function"]["name"] for t in body.get("tools", [])]


def test_scopes_decide_what_the_assistant_may_do(
    server: Server, openai_upstream: FakeOpenAI
) -> None:
    assert chat(server, GATEWAY).status_code == 200
    body = openai_upstream.last_body()
    assert body["messages"] == user("hi") and "tools" not in body  # a plain proxy
    chat(server, ASSISTANT)
    assert "memory_search" in offered(openai_upstream)
    assert "memory_save" not in offered(openai_upstream)  # read-only memory
    chat(server, FULL)
    assert "memory_save" in offered(openai_upstream)
    assert not {"bash", "write_file"} & set(offered(openai_upstream))  # enabled, not allowed
    chat(server, ADMIN)
    assert {"bash", "write_file"} <= set(offered(openai_upstream))


@pytest.mark.parametrize(
    ("key", "path", "status"),
    [
        (GATEWAY, "/api/sessions", 403),
        (GATEWAY, "/api/memory/search?q=x", 403),
        (ASSISTANT, "/api/sessions", 403),
        (ASSISTANT, "/api/memory/search?q=x", 200),
        (FULL, "/api/sessions", 200),
    ],
)
def test_native_api_by_scope(server: Server, key: str, path: str, status: int) -> None:
    resp = httpx.get(f"{server.url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert resp.status_code == status, resp.text
    if status == 403:
        assert error_of(resp)["type"] == "permission_error"


def test_admin_tools_stay_inside_the_workspace(server: Server, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script(
        "fake-model",
        Script(
            tool_calls=[
                FakeCall("write_file", [json.dumps({"path": "../../escape.md", "content": "x"})])
            ]
        ),
        Script(text=["ok"]),
    )
    chat(server, ADMIN)
    result = openai_upstream.last_body()["messages"][-1]
    assert result["role"] == "tool" and result["content"].startswith("Error")
    assert not (server.home / "data" / "escape.md").exists()


def test_a_non_loopback_bind_without_a_key_refuses_to_start(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[agent]\ndefault_model = "openai/x"\n[providers.openai]\n')
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "localgpt",
            "serve",
            "--config",
            str(config),
            "--host",
            "0.0.0.0",
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        env=isolated_env(tmp_path),
        timeout=60,
    )
    assert done.returncode == 2
    assert "auth_token" in done.stderr and "Traceback" not in done.stderr


def test_rate_limits_are_per_client(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    server = servers(
        keyed_config(
            openai_upstream.url,
            extra="""
[server.rate_limit]
enabled = true
requests_per_minute = 6
burst = 3
""",
        )
    )
    statuses = [chat(server, FULL).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = chat(server, FULL)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert error_of(limited)["type"] == "rate_limit_error"
    assert chat(server, ASSISTANT).status_code == 200  # another client is not throttled


def test_rate_limits_key_on_the_peer_address_without_keys(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    server = servers(
        gateway_config(
            openai_upstream.url,
            extra="""
[server.rate_limit]
enabled = true
requests_per_minute = 6
burst = 2
""",
        )
    )
    body = {"model": "openai/fake-model", "messages": user("x")}
    with (
        httpx.Client(timeout=10) as one,
        httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=10) as two,
    ):
        url = f"{server.url}/v1/chat/completions"
        first = [
            one.post(url, json=body, headers={"X-Forwarded-For": f"10.0.0.{i}"}).status_code
            for i in range(3)
        ]
        assert first == [200, 200, 429]  # a forwarded-for header changes nothing
        assert two.post(url, json=body).status_code == 200


def raw_request(server: Server, head: bytes, body: bytes = b"") -> bytes:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR) if not body else None
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_an_oversized_body_is_refused_before_it_is_read(server: Server) -> None:
    started = time.monotonic()
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
        b"\r\nAuthorization: Bearer " + FULL.encode() + b"\r\nContent-Length: 50000000\r\n\r\n"
    )
    answer = raw_request(server, head, b'{"model": "x"')  # 50 MB announced, 13 bytes sent
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - started < 10


def test_a_chunked_body_past_the_cap_is_refused(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    server = servers(
        gateway_config(
            openai_upstream.url,
            gateway=False,
            extra="""
[server]
max_request_body = 1000
""",
        )
    )

    def chunks(body: bytes, count: int) -> Any:
        for _ in range(count):
            yield body

    big = b'{"model": "x", "pad": "' + b"a" * 200 + b'"}'
    for path in ("/v1/chat/completions", "/api/chat", "/api/sessions"):
        resp = httpx.post(
            f"{server.url}{path}",
            content=chunks(big, 20),
            timeout=10,
            headers={"Content-Type": "application/json"},
        )
        assert resp.status_code == 413 and error_of(resp)["code"] == "request_too_large", path
    # A chunked body under the cap is read whole and handled as usual.
    small = b'{"model": "openai/fake-model", "messages": [{"role": "user", "content": "hi"}]}'
    resp = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=chunks(small, 1),
        timeout=10,
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"]


def test_cors_allows_localhost_origins_only(server: Server) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        # The official SDKs add x-stainless-* headers of their own.
        "Access-Control-Request-Headers": "authorization,content-type,x-stainless-os",
    }
    ok = httpx.options(
        f"{server.url}/v1/chat/completions",
        timeout=10,
        headers={"Origin": "http://localhost:3000", **preflight},
    )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "http://localhost:3000"
    evil = httpx.options(
        f"{server.url}/v1/chat/completions",
        timeout=10,
        headers={"Origin": "https://evil.example", **preflight},
    )
    assert "access-control-allow-origin" not in evil.headers
    real = httpx.get(
        f"{server.url}/v1/models",
        timeout=10,
        headers={"Origin": "http://127.0.0.1:8080", "Authorization": f"Bearer {FULL}"},
    )
    assert real.headers["access-control-allow-origin"] == "http://127.0.0.1:8080"
