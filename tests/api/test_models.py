"""GET /v1/models and /v1/models/{id}: configured ids, aliases, upstream listings, no failures."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import Server, free_port
from tests.fakes import wait_for
from tests.fakes.openai_fake import FakeOpenAI
from tests.helpers import error_of


def test_list_shape_and_content(servers: Callable[[str], Server], fake_openai: FakeOpenAI) -> None:
    fake_openai.models = ["fake-model", "other-model"]
    dead = free_port()
    server = servers(f"""
[agent]
default_model = "openai/fake-model"
fallback_models = ["openai/other-model", "openai/fake-model"]
[agent.aliases]
fast = "openai/other-model"
[providers.openai]
base_url = "{fake_openai.url}/v1"
models = ["extra-listed"]
[providers.down]
type = "openai"
base_url = "http://127.0.0.1:{dead}/v1"
models = ["configured-only"]
""")
    resp = httpx.get(f"{server.url}/v1/models", timeout=30)
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert len(ids) == len(set(ids)), "duplicates"
    assert ids[0] == "openai/fake-model"  # the default model first
    for expected in (
        "openai/other-model",
        "fast",
        "gpt",
        "gpt-mini",
        "openai/extra-listed",
        "down/configured-only",
    ):
        assert expected in ids
    assert "opus" not in ids and "sonnet" not in ids  # anthropic is not configured
    for model in body["data"]:
        assert set(model) == {"id", "object", "created", "owned_by"}
        assert model["object"] == "model"
        assert 1_600_000_000 < model["created"] <= time.time() + 1
    by_id = {m["id"]: m for m in body["data"]}
    assert by_id["openai/fake-model"]["created"] == 1700000000  # the upstream's own date
    assert by_id["fast"]["owned_by"] == "openai"


def test_retrieve_ids_with_slashes_and_404(gateway: Server) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key="x", max_retries=0)
    model = client.models.retrieve("openai/fake-model")
    assert model.id == "openai/fake-model" and model.object == "model"
    resp = httpx.get(f"{gateway.url}/v1/models/openai/no-such-model", timeout=10)
    assert resp.status_code == 404
    assert error_of(resp)["code"] == "model_not_found"


def test_listing_is_cached(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    httpx.get(f"{gateway.url}/v1/models", timeout=10)
    calls = len([r for r in openai_upstream.requests if r.path == "/v1/models"])
    for _ in range(3):
        httpx.get(f"{gateway.url}/v1/models", timeout=10)
    assert len([r for r in openai_upstream.requests if r.path == "/v1/models"]) == calls


def test_a_provider_down_does_not_fail_or_slow_the_list(
    servers: Callable[[str], Server], fake_openai: FakeOpenAI
) -> None:
    server = servers(f"""
[agent]
default_model = "down/x"
[providers.down]
type = "openai"
base_url = "http://127.0.0.1:{free_port()}/v1"
[providers.up]
type = "openai"
base_url = "{fake_openai.url}/v1"
""")
    start = time.monotonic()
    resp = httpx.get(f"{server.url}/v1/models", timeout=30)
    assert resp.status_code == 200 and time.monotonic() - start < 5
    ids = [m["id"] for m in resp.json()["data"]]
    assert "down/x" in ids and "up/fake-model" in ids


def test_a_provider_answering_garbage_does_not_fail_the_list(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    # A proxy's HTML error page with status 200, or JSON of the wrong shape.
    fakes = [FakeOpenAI().start(), FakeOpenAI().start()]
    fakes[0].models_body = b"<html><body>502 Bad Gateway</body></html>"
    fakes[1].models_body = b'["not", "an", "object"]'
    try:
        server = servers(f"""
[agent]
default_model = "up/fake-model"
[providers.html]
type = "openai"
base_url = "{fakes[0].url}/v1"
[providers.list]
type = "openai"
base_url = "{fakes[1].url}/v1"
[providers.up]
type = "openai"
base_url = "{openai_upstream.url}/v1"
""")
        resp = httpx.get(f"{server.url}/v1/models", timeout=30)
    finally:
        for fake in fakes:
            fake.stop()
    assert resp.status_code == 200
    ids = [m["id"] for m in resp.json()["data"]]
    assert "up/fake-model" in ids and not any(i.startswith(("html/", "list/")) for i in ids)


def test_health_and_ready(gateway: Server) -> None:
    assert httpx.get(f"{gateway.url}/health", timeout=10).json()["status"] == "ok"
    # A remote default model needs no loading: ready at once.
    assert httpx.get(f"{gateway.url}/ready", timeout=10).json() == {"status": "ready"}


@pytest.mark.parametrize("gateway", ["true", "false"])
def test_an_unnamed_default_does_not_load_the_embedded_model_next_to_a_remote_one(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI, gateway: str
) -> None:
    # No default_model: the embedded model is the default by rule, but with a remote
    # provider configured it is loaded on first use, not joined and loaded at every start.
    server = servers(
        f'[agent]\ngateway_mode = {gateway}\n[providers.openai]\napi_key = "x"\n'
        f'base_url = "{openai_upstream.url}/v1"\n'
    )
    assert wait_for(lambda: httpx.get(f"{server.url}/ready", timeout=10).status_code == 200, 30)
    assert not list((server.home / "cache").rglob("*.gguf"))
    status = (Path(f"/proc/{server.process.pid}/status")).read_text()
    rss_kb = next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]
    rss_mb = int(rss_kb) / 1024
    assert rss_mb < 300, rss_mb


def test_docs_and_the_page_are_served_offline(gateway: Server) -> None:
    docs = httpx.get(f"{gateway.url}/docs", timeout=10)
    assert docs.status_code == 200 and "/static/swagger/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower()
    bundle = httpx.get(f"{gateway.url}/static/swagger/swagger-ui-bundle.js", timeout=10)
    assert bundle.status_code == 200 and len(bundle.content) > 100_000
    page = httpx.get(f"{gateway.url}/", timeout=10)
    assert (
        page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    )
    for asset in ("app.js", "markdown.js", "style.css"):
        assert httpx.get(f"{gateway.url}/static/{asset}", timeout=10).status_code == 200
