"""A web page cannot drive a server that has no keys: cross-site requests, DNS rebinding and
bodies a browser sends without asking are refused; the page and real clients keep working."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import Server, gateway_config
from tests.fakes.openai_fake import FakeOpenAI
from tests.helpers import error_of, user

CHAT = {
    "model": "openai/fake-model",
    "messages": [{"role": "user", "content": "Remember that I am Eve."}],
}


@pytest.fixture
def server(servers: Callable[[str], Server], openai_upstream: FakeOpenAI) -> Server:
    return servers(
        gateway_config(
            openai_upstream.url,
            gateway=False,
            extra='# browser tests\n[server]\nallowed_hosts = ["nas.lan"]\n'
            'cors_origins = ["https://app.example"]',
        )
    )


def memory_file(server: Server) -> Path:
    return server.home / "data" / "localgpt" / "workspace" / "MEMORY.md"


def test_a_cross_site_text_plain_post_runs_nothing(
    server: Server, openai_upstream: FakeOpenAI
) -> None:
    """What a form or fetch() on any site could send without a preflight."""
    before = memory_file(server).read_text() if memory_file(server).exists() else ""
    import json

    resp = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=json.dumps(CHAT),
        headers={"Content-Type": "text/plain", "Origin": "https://evil.example"},
        timeout=10,
    )
    assert resp.status_code == 403
    assert error_of(resp)["code"] == "forbidden_origin"
    assert "evil.example" in error_of(resp)["message"]
    assert openai_upstream.requests == []
    after = memory_file(server).read_text() if memory_file(server).exists() else ""
    assert after == before and "Eve" not in after


@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/api/chat", "/api/sessions", "/api/memory/reindex"]
)
def test_a_foreign_origin_is_refused_whatever_the_body(server: Server, path: str) -> None:
    resp = httpx.post(
        f"{server.url}{path}",
        json=CHAT if "chat" in path else {},
        headers={"Origin": "https://evil.example"},
        timeout=10,
    )
    assert resp.status_code == 403 and error_of(resp)["code"] == "forbidden_origin"
    got = httpx.get(f"{server.url}/api/memory/search?q=x", headers={"Origin": "null"}, timeout=10)
    assert got.status_code == 403


@pytest.mark.parametrize(
    "kind", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x", ""]
)
def test_bodies_that_are_not_json_get_415(server: Server, kind: str) -> None:
    headers = {"Content-Type": kind} if kind else {}
    resp = httpx.post(
        f"{server.url}/v1/chat/completions", content=b'{"a": 1}', headers=headers, timeout=10
    )
    assert resp.status_code == 415
    assert error_of(resp)["code"] == "unsupported_media_type"


def test_dns_rebinding_cannot_read_the_memory(server: Server) -> None:
    port = server.url.rsplit(":", 1)[1]
    for path in ("/api/memory/search?q=dentist", "/api/memory/file?path=MEMORY.md", "/v1/models"):
        resp = httpx.get(
            f"{server.url}{path}", headers={"Host": f"rebind.evil.example:{port}"}, timeout=10
        )
        assert resp.status_code == 403, path
        assert error_of(resp)["code"] == "forbidden_host"
    for host in (
        f"localhost:{port}",
        f"127.0.0.1:{port}",
        f"[::1]:{port}",
        "nas.lan",
        "NAS.lan:80",
    ):
        resp = httpx.get(f"{server.url}/v1/models", headers={"Host": host}, timeout=10)
        assert resp.status_code == 200, host


def test_allowed_and_same_origin_pages_work(server: Server) -> None:
    for origin, host in (
        ("https://app.example", None),  # [server] cors_origins
        ("http://localhost:5173", None),  # a local dev page
        ("http://10.1.2.3:31327", "10.1.2.3:31327"),  # the server's own page, on the LAN
    ):
        headers = {"Origin": origin, **({"Host": host} if host else {})}
        resp = httpx.post(f"{server.url}/v1/chat/completions", json=CHAT, headers=headers)
        assert resp.status_code == 200, origin


def test_the_openai_client_is_unaffected(server: Server) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    resp = client.chat.completions.create(model="openai/fake-model", messages=user("hello"))
    assert resp.choices[0].message.content == "You said: hello"


def test_any_host_with_a_star(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    server = servers(gateway_config(openai_upstream.url, extra='[server]\nallowed_hosts = ["*"]'))
    resp = httpx.get(f"{server.url}/v1/models", headers={"Host": "anything.example"})
    assert resp.status_code == 200
