"""Two server processes on the same Redis and PostgreSQL, started by the suite on loopback
ports in temporary folders (``tests/backends.py``), in front of the fake OpenAI upstream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.backends import PostgresServer, RedisServer
from tests.conftest import ROOT, Server, free_port, gateway_config, isolated_env, start_server
from tests.fakes import FakeCall, Script
from tests.fakes.openai_fake import FakeOpenAI
from tests.helpers import user

WEATHER = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture
def shared_config(
    redis_server: RedisServer,
    postgres_server: PostgresServer,
    openai_upstream: FakeOpenAI,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Callable[[str], str]:
    redis_server.flush()
    database = postgres_server.create_database(f"t{abs(hash(request.node.name)) % 10**8}")
    workspace = tmp_path / "workspace"

    def make(extra: str = "") -> str:
        return gateway_config(
            openai_upstream.url,
            gateway=False,
            extra=f"""
[agent.aliases]
m = "openai/fake-model"
[state]
url = "{redis_server.url}"
[storage]
url = "{database}"
[memory]
workspace = "{workspace}"
embedding_provider = "none"
{extra}
""",
        )

    return make


@pytest.fixture
def pair(
    shared_config: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], tuple[Server, Server]]]:
    started: list[Server] = []

    def make(extra: str = "") -> tuple[Server, Server]:
        config = shared_config(extra)
        for _ in range(2):
            started.append(start_server(config, tmp_path_factory.mktemp("replica")))
        return started[-2], started[-1]

    yield make
    for server in started:
        server.stop()


def chat(server: Server, text: str, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/chat/completions",
        json={"model": "m", "messages": user(text), **body},
        timeout=30,
    )


def test_a_rate_limit_holds_exactly_across_both(pair: Any) -> None:
    a, b = pair("[server.rate_limit]\nenabled = true\nrequests_per_minute = 1\nburst = 5\n")
    codes = [chat(server, "hi").status_code for server in (a, b) * 5]
    assert codes == [200] * 5 + [429] * 5, codes
    limited = chat(b, "hi")
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(limited.headers["retry-after"]) >= 1


def test_a_client_tool_follow_up_on_the_other_process_keeps_the_server_turn(
    pair: Any, openai_upstream: FakeOpenAI
) -> None:
    a, b = pair()
    openai_upstream.script(
        "fake-model",
        Script(
            tool_calls=[
                FakeCall("memory_search", ['{"query": "home town"}'], id="call_srv"),
                FakeCall("get_weather", ['{"city": "Lyon"}'], id="call_cli"),
            ]
        ),
        Script(text=["Sunny in Lyon."]),
    )
    first = openai.OpenAI(base_url=a.base_url, api_key="x", max_retries=0).chat.completions
    message = first.create(model="m", messages=user("weather at home?"), tools=WEATHER)  # type: ignore[arg-type]
    reply = message.choices[0].message
    assert [c.id for c in reply.tool_calls or []] == ["call_cli"]
    second = openai.OpenAI(base_url=b.base_url, api_key="x", max_retries=0).chat.completions
    answer = second.create(
        model="m",
        tools=WEATHER,  # type: ignore[arg-type]
        messages=[  # type: ignore[arg-type]
            *user("weather at home?"),
            reply.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": "call_cli", "content": "sunny"},
        ],
    )
    assert answer.choices[0].message.content == "Sunny in Lyon."
    sent = openai_upstream.last_body()["messages"]
    assistant = next(m for m in sent if m["role"] == "assistant")
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_srv", "call_cli"]
    results = {m["tool_call_id"] for m in sent if m["role"] == "tool"}
    assert results == {"call_srv", "call_cli"}


def test_sessions_and_memory_are_shared(pair: Any) -> None:
    a, b = pair()
    turn = httpx.post(
        f"{a.url}/api/chat",
        json={"message": "Remember that my locker code is 4417."},
        timeout=30,
    ).json()
    session = httpx.get(f"{b.url}/api/sessions/{turn['session_id']}", timeout=10).json()
    assert [m["role"] for m in session["messages"]] == ["user", "assistant"]
    assert "locker code" in session["messages"][0]["content"]
    assert turn["session_id"] in [s["id"] for s in httpx.get(f"{b.url}/api/sessions").json()]

    deadline = time.monotonic() + 15  # the other process's watcher reindexes the note
    found: list[Any] = []
    while time.monotonic() < deadline and not found:
        found = httpx.get(f"{b.url}/api/memory/search", params={"q": "locker code"}).json()
        found = found.get("results", found) if isinstance(found, dict) else found
        time.sleep(0.2)
    assert found and "4417" in json.dumps(found)


def test_two_concurrent_turns_on_one_session_through_both_lose_nothing(
    pair: Any, openai_upstream: FakeOpenAI
) -> None:
    a, b = pair()
    openai_upstream.script("fake-model", Script(delay=0.05))  # each answer takes a while
    session = httpx.post(f"{a.url}/api/sessions", json={}, timeout=10).json()["id"]
    results: dict[str, int] = {}

    def turn(server: Server, text: str) -> None:
        resp = httpx.post(
            f"{server.url}/api/chat", json={"message": text, "session_id": session}, timeout=60
        )
        results[text] = resp.status_code

    threads = [
        threading.Thread(target=turn, args=(a, "first question")),
        threading.Thread(target=turn, args=(b, "second question")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {"first question": 200, "second question": 200}
    messages = httpx.get(f"{b.url}/api/sessions/{session}", timeout=10).json()["messages"]
    assert sorted(m["content"] for m in messages if m["role"] == "user") == [
        "first question",
        "second question",
    ]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]


def test_one_process_killed_mid_stream_the_other_keeps_serving(
    pair: Any, openai_upstream: FakeOpenAI
) -> None:
    a, b = pair()
    openai_upstream.script("fake-model", Script(text=["slow "] * 50, delay=0.1))
    with httpx.stream(
        "POST",
        f"{a.base_url}/chat/completions",
        json={"model": "m", "messages": user("tell me"), "stream": True},
        timeout=30,
    ) as resp:
        lines = resp.iter_lines()
        next(line for line in lines if line.startswith("data:"))
        os.kill(a.process.pid, signal.SIGKILL)
        with pytest.raises(httpx.HTTPError):
            for _ in lines:
                pass
    openai_upstream.script("fake-model", Script(text=["Still here."]))
    resp = chat(b, "are you there?")
    assert resp.status_code == 200
    assert resp.json()["choices"][0]["message"]["content"] == "Still here."


def test_a_backend_stopped_is_a_503_and_recovery_when_it_returns(
    pair: Any, redis_server: RedisServer, postgres_server: PostgresServer
) -> None:
    a, _ = pair("[server.rate_limit]\nenabled = true\nrequests_per_minute = 600\nburst = 100\n")
    assert chat(a, "hi").status_code == 200
    redis_server.stop()
    try:
        down = chat(a, "hi")
        assert down.status_code == 503, down.text
        assert down.json()["error"]["code"] == "backend_unavailable"
        assert "Redis" in down.json()["error"]["message"]
        assert httpx.get(f"{a.url}/ready", timeout=10).status_code == 503
    finally:
        redis_server.start()
    assert chat(a, "hi").status_code == 200
    assert httpx.get(f"{a.url}/ready", timeout=10).status_code == 200

    postgres_server.stop()
    try:
        down = httpx.get(f"{a.url}/api/sessions", timeout=30)
        assert down.status_code == 503, down.text
        assert "PostgreSQL" in down.json()["error"]["message"]
        # The answer goes on without the shared memory's notes rather than failing.
        assert chat(a, "hi").status_code == 200
        searched = httpx.get(f"{a.url}/api/memory/search", params={"q": "x"}, timeout=30)
        assert searched.status_code == 503
    finally:
        postgres_server.start()
    deadline = time.monotonic() + 15
    while httpx.get(f"{a.url}/api/sessions", timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "no recovery"
        time.sleep(0.2)
    searched = httpx.get(f"{a.url}/api/memory/search", params={"q": "x"}, timeout=30)
    assert searched.status_code == 200, searched.text  # the index connected again


def test_workers_share_one_port_and_need_shared_backends(
    shared_config: Callable[[str], str], tmp_path: Path, openai_upstream: FakeOpenAI
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(gateway_config(openai_upstream.url, gateway=False))
    refused = subprocess.run(
        [sys.executable, "-m", "localgpt", "serve", "--config", str(config), "--workers", "2"],
        capture_output=True,
        text=True,
        env=isolated_env(tmp_path),
        timeout=60,
    )
    assert refused.returncode == 2 and "needs shared backends" in refused.stderr

    config.write_text(shared_config(""))
    process, url = serve_workers(config, tmp_path, 60)
    try:
        workers = {
            httpx.get(f"{url}/api/status", timeout=10, headers={"Connection": "close"}).json()[
                "pid"
            ]
            for _ in range(40)
        }
        assert len(workers) == 2, workers
        with httpx.Client(base_url=url) as client:
            codes = [
                client.post(
                    "/v1/chat/completions",
                    json={"model": "m", "messages": user("hi")},
                    headers={"Connection": "close"},
                ).status_code
                for _ in range(10)
            ]
        assert codes == [200] * 10
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0


def test_migrate_moves_sessions_and_responses_there_and_back_losing_nothing(
    shared_config: Callable[[str], str], tmp_path: Path
) -> None:
    import asyncio

    from localgpt.agent.sessions import SessionStore
    from localgpt.api.responses.store import SQLiteResponseStore, StoredResponse

    here, there = tmp_path / "here", tmp_path / "there"
    state = here / "state" / "localgpt"
    store = SessionStore(state / "sessions")
    made = []
    for n in range(3):
        session = store.create("openai/fake-model", owner="key:abc" if n == 0 else None)
        store.append(session, [*user(f"question {n}"), {"role": "assistant", "content": f"a{n}"}])
        made.append(session.id)
    responses = SQLiteResponseStore(state / "responses.sqlite3", 30)
    item = {"id": "msg_1", "type": "message", "role": "assistant", "content": []}

    async def put() -> None:
        await responses.put(
            StoredResponse("resp_1", 1_800_000_000.0, {"id": "resp_1", "output": [item]}, [])
        )
        await responses.aclose()

    asyncio.run(put())
    config = tmp_path / "config.toml"
    config.write_text(shared_config(""))

    def migrate(home: Path, to: str) -> dict[str, int]:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "localgpt",
                "migrate",
                "--to",
                to,
                "--json",
                "--config",
                str(config),
            ],
            capture_output=True,
            text=True,
            env=isolated_env(home),
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    first = migrate(here, "shared")
    assert first.pop("index_chunks") > 0  # the workspace, indexed into PostgreSQL
    assert first == {"sessions": 3, "sessions_there": 0, "responses": 1, "responses_there": 0}
    again = migrate(here, "shared")
    again.pop("index_chunks")
    assert again == {"sessions": 0, "sessions_there": 3, "responses": 0, "responses_there": 1}
    assert migrate(there, "local")["sessions"] == 3
    back = SessionStore(there / "state" / "localgpt" / "sessions")
    for session_id in made:
        original, copy = store.get(session_id), back.get(session_id)
        assert original is not None and copy is not None
        assert copy.messages == original.messages and copy.owner == original.owner
        assert copy.title == original.title
    copied = SQLiteResponseStore(there / "state" / "localgpt" / "responses.sqlite3", 30)

    async def read() -> tuple[Any, Any]:
        try:
            return await copied.get("resp_1"), await copied.find_items(["msg_1"])
        finally:
            await copied.aclose()

    response, items = asyncio.run(read())
    assert response.response["output"] == [item] and items == {"msg_1": item}


def test_doctor_checks_each_backend(
    redis_server: RedisServer, postgres_server: PostgresServer
) -> None:
    from localgpt.cli import doctor
    from localgpt.config import parse_config

    good = parse_config(
        {"state": {"url": redis_server.url}, "storage": {"url": postgres_server.dsn()}}
    )
    checks = {c.name: c for c in doctor._backends(good)}
    assert checks["state (Redis)"].status == "ok" and "Redis 7" in checks["state (Redis)"].detail
    assert checks["storage (PostgreSQL)"].status == "ok"
    assert "PostgreSQL 18" in checks["storage (PostgreSQL)"].detail
    port = free_port()
    bad = parse_config(
        {
            "state": {"url": f"redis://127.0.0.1:{port}/0"},
            "storage": {"url": f"postgresql://postgres:secret-pw@127.0.0.1:{port}/x"},
        }
    )
    checks = {c.name: c for c in doctor._backends(bad)}
    assert checks["state (Redis)"].status == "fail"
    assert checks["storage (PostgreSQL)"].status == "fail"
    assert "secret-pw" not in checks["storage (PostgreSQL)"].detail


@pytest.mark.timeout(400)  # the model host joins and loads the embedded model first
def test_workers_share_one_copy_of_the_embedded_model(
    shared_config: Callable[[str], str], tmp_path: Path
) -> None:
    from tests.conftest import SMOLLM

    config = tmp_path / "config.toml"
    config.write_text(
        shared_config("").replace(
            'default_model = "openai/fake-model"', f'default_model = "{SMOLLM}"'
        )
        + "[providers.local]\nthreads = 1\ncontext_size = 2048\n"
    )
    process, url = serve_workers(config, tmp_path, 300)
    try:
        for _ in range(4):
            resp = httpx.post(
                f"{url}/v1/chat/completions",
                json={"model": SMOLLM, "messages": user("Say hi."), "max_tokens": 8},
                headers={"Connection": "close"},
                timeout=120,
            )
            assert resp.status_code == 200, resp.text
            assert resp.json()["choices"][0]["message"]["content"]
        family = _descendants(process.pid)
        assert len(family) == 3  # two workers and the model host
        holding = [pid for pid in family if ".gguf" in Path(f"/proc/{pid}/maps").read_text()]
        assert len(holding) == 1, holding  # the model is mapped by one process only
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0


def _descendants(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    found = [int(c) for c in children]
    for child in list(found):
        found += _descendants(child)
    return found


def serve_workers(config: Path, home: Path, patience: float) -> tuple[subprocess.Popen[bytes], str]:
    """``localgpt serve --workers 2`` on a free port, once /ready says it can answer."""
    port = free_port()
    log = home / "serve.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localgpt",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        env=isolated_env(home),
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + patience
    while True:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"not ready: {log.read_text()[-3000:]}")
        time.sleep(0.1)
