"""What a new user, or an attacker, hit: each of these was a 500, a zero, an unbounded label or
a wrong word, and is now a clear answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import Server, free_port, gateway_config, isolated_env
from tests.fakes import FakeCall, Script
from tests.fakes.ollama_fake import FakeOllama
from tests.fakes.openai_fake import FakeOpenAI
from tests.helpers import error_of, stream_chunks, user


@pytest.fixture
def server(servers: Callable[[str], Server], openai_upstream: FakeOpenAI) -> Server:
    return servers(gateway_config(openai_upstream.url, gateway=False, extra="# rough edges"))


def workspace(server: Server) -> Path:
    return server.home / "data" / "localgpt" / "workspace"


# --- errors that were 500s ------------------------------------------------------------------


def test_odd_memory_paths_are_4xx_and_keep_the_connection(server: Server) -> None:
    root = workspace(server)
    (root / "loop-a.md").unlink(missing_ok=True)
    (root / "loop-b.md").unlink(missing_ok=True)
    os.symlink(root / "loop-b.md", root / "loop-a.md")
    os.symlink(root / "loop-a.md", root / "loop-b.md")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for path in ("loop-a.md", "x" * 300 + ".md", "knowledge/" + "y" * 300):
            resp = client.get("/api/memory/file", params={"path": path})
            assert 400 <= resp.status_code < 500, (path, resp.status_code, resp.text)
            assert error_of(resp)["param"] == "path"
        assert client.get("/health").status_code == 200  # the same connection, still open


def test_damaged_session_files_are_skipped_not_500s(server: Server) -> None:
    folder = server.home / "state" / "localgpt" / "sessions"
    folder.mkdir(parents=True, exist_ok=True)
    damaged = "d" * 32
    (folder / f"{damaged}.jsonl").write_text(
        json.dumps({"type": "session", "id": damaged, "created": "yesterday", "title": 3})
        + "\n"
        + json.dumps({"type": "message", "role": "user", "content": "still here"})
        + "\n"
    )
    (folder / f"{'e' * 32}.jsonl").mkdir(exist_ok=True)  # a folder named like a session
    listed = httpx.get(f"{server.url}/api/sessions", timeout=10)
    assert listed.status_code == 200
    assert damaged in [s["id"] for s in listed.json()]
    shown = httpx.get(f"{server.url}/api/sessions/{damaged}", timeout=10)
    assert shown.status_code == 200 and shown.json()["messages"][0]["content"] == "still here"
    assert httpx.get(f"{server.url}/api/sessions/{'e' * 32}", timeout=10).status_code == 404
    assert httpx.get(f"{server.url}/api/status", timeout=10).status_code == 200


def test_a_body_that_is_not_json_is_named_plainly(server: Server) -> None:
    resp = httpx.post(
        f"{server.url}/api/chat",
        content=b"hello there",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert resp.status_code == 400
    message = error_of(resp)["message"]
    assert "not valid JSON" in message and '{"message": "Hello"}' in message


# --- words ---------------------------------------------------------------------------------


def test_the_embedding_model_for_chat_is_named_as_one(server: Server) -> None:
    for model in ("local/all-minilm-l6-v2", "all-minilm-l6-v2"):
        resp = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": model, "messages": user("hi")},
            timeout=10,
        )
        assert resp.status_code == 400
        error = error_of(resp)
        assert "is an embedding model" in error["message"] and "/v1/embeddings" in error["message"]
        assert error["code"] == "model_not_supported" and error["param"] == "model"


def test_a_failed_first_message_keeps_the_users_text(
    server: Server, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script(
        "fake-model", Script(status=500, error={"error": {"message": "boom", "type": "x"}})
    )
    resp = httpx.post(f"{server.url}/api/chat", json={"message": "my long question"}, timeout=30)
    assert resp.status_code == 502
    sessions = httpx.get(f"{server.url}/api/sessions", timeout=10).json()
    mine = [s for s in sessions if s["title"] == "my long question"]
    assert len(mine) == 1 and mine[0]["message_count"] == 1
    assert not [s for s in sessions if s["message_count"] == 0]  # no empty session left


# --- usage ---------------------------------------------------------------------------------


def test_usage_is_counted_when_the_upstream_omits_it(
    server: Server, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script("fake-model", Script(text=["Hello", " there, friend."], usage=None))
    api = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    whole = api.chat.completions.create(model="openai/fake-model", messages=user("greet me"))
    assert whole.usage is not None
    assert whole.usage.prompt_tokens > 10 and whole.usage.completion_tokens == 5  # 20 chars / 4
    raw = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={
            "model": "openai/fake-model",
            "messages": user("greet me"),
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        timeout=30,
    ).text
    usage = stream_chunks(raw)[-1]["usage"]
    assert usage["completion_tokens"] == 5 and usage["prompt_tokens"] > 10
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_usage_is_counted_when_ollama_omits_it(
    servers: Callable[[str], Server], ollama_upstream: FakeOllama
) -> None:
    server = servers(
        f'[agent]\ndefault_model = "ollama/llama3"\ngateway_mode = true\n'
        f'[providers.ollama]\nendpoint = "{ollama_upstream.url}"\n'
    )
    ollama_upstream.script("llama3", Script(text=["Four words right here"], usage=None))
    api = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    for stream in (False, True):
        if stream:
            chunks = list(
                api.chat.completions.create(
                    model="ollama/llama3",
                    messages=user("hi"),
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )
            usage = chunks[-1].usage
        else:
            usage = api.chat.completions.create(model="ollama/llama3", messages=user("hi")).usage
        assert usage is not None and usage.completion_tokens == 6 and usage.prompt_tokens > 0


# --- metrics -------------------------------------------------------------------------------


def test_made_up_model_names_do_not_grow_the_metrics(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    server = servers(gateway_config(openai_upstream.url, extra="# metrics labels"))
    api = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    for i in range(20):
        api.chat.completions.create(model=f"openai/made-up-{i}", messages=user("hi"))
    api.chat.completions.create(model="openai/fake-model", messages=user("hi"))
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert "made-up" not in text
    assert 'model="other"' in text and 'model="openai/fake-model"' in text


def test_metrics_need_a_key_that_allows_them(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    full, scraper, root = "full-key-0123456789", "scrape-key-0123456789", "root-key-0123456789"
    server = servers(
        gateway_config(
            openai_upstream.url,
            extra=f'[server]\nauth_token = ["{full}", {{ key = "{scraper}", scope = "metrics" }},'
            f' {{ key = "{root}", scope = "admin" }}]',
        )
    )

    def get(key: str, path: str) -> int:
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.get(f"{server.url}{path}", headers=headers, timeout=10).status_code

    assert get(full, "/metrics") == 403
    assert get(scraper, "/metrics") == 200 and get(root, "/metrics") == 200
    assert get(scraper, "/v1/models") == 403 and get(scraper, "/api/sessions") == 403
    assert get(full, "/v1/models") == 200


# --- readiness and the lists of models ------------------------------------------------------


def test_ready_says_when_the_default_provider_cannot_be_reached(
    servers: Callable[[str], Server],
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    server = servers(gateway_config(dead, extra="# unreachable"))
    resp = httpx.get(f"{server.url}/ready", timeout=10)
    assert resp.status_code == 503
    error = error_of(resp)
    assert error["code"] == "model_unavailable" and "unreachable" in error["message"]
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200


def test_every_list_of_models_agrees(
    tmp_path: Path, servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    config_text = gateway_config(openai_upstream.url, extra="# model lists")
    server = servers(config_text)
    listed = [m["id"] for m in httpx.get(f"{server.url}/v1/models", timeout=10).json()["data"]]
    for model in listed:
        assert httpx.get(f"{server.url}/v1/models/{model}", timeout=10).status_code == 200
    config = tmp_path / "config.toml"
    config.write_text(config_text)
    env = isolated_env(tmp_path)
    models = subprocess.run(
        [sys.executable, "-m", "localgpt", "models", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert [m["id"] for m in json.loads(models.stdout)] == listed
    doctor = subprocess.run(
        [sys.executable, "-m", "localgpt", "doctor", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    checks = {c["name"]: c for c in json.loads(doctor.stdout)}
    owned = sum(1 for m in listed if m.startswith("openai/") or m in ("gpt", "gpt-mini"))
    assert f"{owned} models in /v1/models" in checks["provider openai"]["detail"]


# --- tools ---------------------------------------------------------------------------------


def test_memory_save_has_a_size_cap(server: Server, openai_upstream: FakeOpenAI) -> None:
    huge = "word " * 4000
    openai_upstream.script(
        "fake-model",
        Script(tool_calls=[FakeCall("memory_save", [json.dumps({"content": huge})])]),
        Script(text=["ok"]),
    )
    api = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    api.chat.completions.create(model="openai/fake-model", messages=user("log all this"))
    result = next(m for m in openai_upstream.last_body()["messages"] if m["role"] == "tool")
    assert "a note may have at most 8192" in result["content"]
    assert "word word word" not in (workspace(server) / "MEMORY.md").read_text()
