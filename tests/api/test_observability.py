"""Metrics, request ids, structured logs."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import Server, gateway_config, start_server
from tests.fakes import Script
from tests.fakes.openai_fake import FakeOpenAI
from tests.helpers import post_chat, user


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_tokens_errors_and_failovers(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    server = servers(
        gateway_config(
            openai_upstream.url,
            extra="""
[agent.aliases]
primary = "openai/obs-primary"
""",
        ).replace("[agent]\n", '[agent]\nfallback_models = ["openai/obs-backup"]\n', 1)
    )
    openai_upstream.script("obs-primary", Script(status=500))
    for stream in (False, True):
        assert (
            post_chat(
                server.url, {"model": "primary", "messages": user("x"), "stream": stream}
            ).status_code
            == 200
        )
    post_chat(server.url, {"model": "nope-model", "messages": user("x")})
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    route = "/v1/chat/completions"
    served = {"route": route, "status": "200", "model": "openai/obs-backup"}
    assert metric(text, "localgpt_requests_total", **served) == 2
    # A made-up model name is not a label value: clients cannot grow the metrics at will.
    assert metric(text, "localgpt_requests_total", route=route, status="404", model="") == 1
    assert "nope-model" not in text
    assert metric(text, "localgpt_request_seconds_count", route=route) >= 3
    assert (
        metric(text, "localgpt_time_to_first_token_seconds_count", model="openai/obs-backup") >= 2
    )
    assert metric(text, "localgpt_tokens_total", model="openai/obs-backup", direction="in") >= 22
    assert metric(text, "localgpt_tokens_total", model="openai/obs-backup", direction="out") >= 14
    assert (
        metric(text, "localgpt_provider_errors_total", provider="openai", code="upstream_error")
        >= 1
    )
    assert metric(text, "localgpt_failovers_total", from_model="openai/obs-primary") >= 1
    assert "localgpt_provider_queue_depth" in text and "localgpt_queue_wait_seconds" in text


def test_native_chat_is_measured_like_v1(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    # A server of its own (a config no other test uses), so the counts are this test's.
    server = servers(gateway_config(openai_upstream.url, gateway=False, extra="# native metrics"))
    # The upstream's first chunk is a bare role chunk, 0.6 s before any content: the
    # time to first token counts to the content.
    openai_upstream.script("fake-model", Script(text=["a", "b"], delay=0.6))
    httpx.post(f"{server.url}/api/chat", json={"message": "hi"}, timeout=30)
    httpx.post(f"{server.url}/api/chat/stream", json={"message": "hi"}, timeout=30)
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    model = "openai/fake-model"
    for route in ("/api/chat", "/api/chat/stream"):
        assert metric(text, "localgpt_requests_total", route=route, model=model) == 1, route
    assert metric(text, "localgpt_completions_total", model=model) >= 1
    assert metric(text, "localgpt_tokens_total", model=model, direction="in") >= 22
    assert metric(text, "localgpt_time_to_first_token_seconds_count", model=model) == 2
    assert metric(text, "localgpt_time_to_first_token_seconds_bucket", model=model, le="0.5") == 0


def test_every_response_has_a_request_id(gateway: Server) -> None:
    ids = set()
    for method, path in (
        ("GET", "/health"),
        ("GET", "/v1/models"),
        ("GET", "/nope"),
        ("POST", "/v1/chat/completions"),
    ):
        resp = httpx.request(
            method, f"{gateway.url}{path}", timeout=10, json={} if method == "POST" else None
        )
        assert re.fullmatch(r"[0-9a-f]{16}", resp.headers["x-request-id"])
        ids.add(resp.headers["x-request-id"])
    assert len(ids) == 4
    mine = httpx.get(f"{gateway.url}/health", headers={"X-Request-ID": "trace-abc.123"}, timeout=10)
    assert mine.headers["x-request-id"] == "trace-abc.123"
    odd = httpx.get(
        f"{gateway.url}/health", headers={"X-Request-ID": "bad id\n<x>"[:6]}, timeout=10
    )
    assert re.fullmatch(r"[0-9a-f]{16}", odd.headers["x-request-id"])  # not echoed back


def test_json_logs_carry_the_request_id(tmp_path: Path, openai_upstream: FakeOpenAI) -> None:
    server = start_server(
        gateway_config(openai_upstream.url), tmp_path / "home", ("--log-format", "json")
    )
    try:
        resp = httpx.get(f"{server.url}/v1/models", headers={"X-Request-ID": "req-42"}, timeout=10)
        assert resp.status_code == 200
        openai_upstream.script("fake-model", Script(status=500))
        post_chat(
            server.url,
            {"model": "openai/fake-model", "messages": user("x")},
            headers={"X-Request-ID": "req-43"},
        )
    finally:
        server.stop()
    records = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    assert records and all(
        {"time", "level", "logger", "request_id", "message"} <= set(r) for r in records
    )
    access = [r for r in records if r["logger"] == "localgpt.access"]
    assert any(r["request_id"] == "req-42" and "/v1/models 200" in r["message"] for r in access)
    assert any(r["request_id"] == "req-43" and " 502 " in r["message"] for r in access)
