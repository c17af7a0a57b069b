"""When sessions compact: not too early on small windows, and never stuck on a history
longer than the window."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import Server, gateway_config, start_server
from tests.fakes import Script
from tests.fakes.openai_fake import FakeOpenAI


def config(url: str, agent: str) -> str:
    return gateway_config(url, gateway=False).replace("[agent]\n", f"[agent]\n{agent}\n", 1)


def chat(url: str, sid: str, message: str) -> httpx.Response:
    return httpx.post(f"{url}/api/chat", json={"session_id": sid, "message": message}, timeout=60)


def test_the_default_reserve_leaves_an_8k_window_usable(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    # The default reserve (8,000 tokens) is sized for 128k models; with the embedded
    # model's 8k window it must not make every session compact before every turn.
    server = servers(config(openai_upstream.url, "context_window = 8192"))
    sid = httpx.post(f"{server.url}/api/sessions", json={}, timeout=10).json()["id"]
    for i in range(6):
        assert chat(server.url, sid, f"short message {i}").status_code == 200
    session = httpx.get(f"{server.url}/api/sessions/{sid}", timeout=10).json()
    assert session["compactions"] == 0 and session["message_count"] == 12
    calls = [r for r in openai_upstream.requests if r.path == "/v1/chat/completions"]
    assert len(calls) == 6  # one model call a turn: no flush, no summary


def test_a_history_longer_than_the_window_still_compacts(
    tmp_path: Path, openai_upstream: FakeOpenAI
) -> None:
    # A session grown under a large window, continued under a small one: the older part
    # alone no longer fits, yet the memory flush and the summary must still go through.
    home = tmp_path / "home"
    big = start_server(config(openai_upstream.url, "context_window = 100000"), home)
    try:
        sid = httpx.post(f"{big.url}/api/sessions", json={}, timeout=10).json()["id"]
        for i in range(8):
            assert chat(big.url, sid, f"turn {i} " + "lorem ipsum " * 120).status_code == 200
    finally:
        big.stop()
    openai_upstream.reset()
    openai_upstream.rules += [
        ("Summarise the conversation", Script(text=["SUMMARY."])),
        ("about to be replaced by a summary", Script(text=["done"])),
    ]
    small = start_server(
        config(openai_upstream.url, "context_window = 2000\nreserve_tokens = 300"), home
    )
    try:
        reply = chat(small.url, sid, "and now?")
        assert reply.status_code == 200, reply.text
        session = httpx.get(f"{small.url}/api/sessions/{sid}", timeout=10).json()
    finally:
        small.stop()
    assert session["compactions"] == 1
    assert session["messages"][0]["content"].endswith("SUMMARY.")
    assert session["messages"][-1]["content"] == "You said: and now?"
    sent = [r.body for r in openai_upstream.requests if r.path == "/v1/chat/completions"]
    flush, summary = sent[0], sent[1]
    # Each fits the small window (about four characters a token).
    assert sum(len(str(m.get("content"))) for m in flush["messages"]) < 2000 * 4
    assert len(summary["messages"][1]["content"]) < 2000 * 4


def test_what_fits_is_summarised_whole_and_the_earlier_summary_is_always_kept() -> None:
    from localgpt.agent.conversation import SUMMARY_HEADER, _fit

    summary = {"role": "system", "content": f"{SUMMARY_HEADER}\nthe story so far"}
    turns = []
    for i in range(20):
        turns += [
            {"role": "user", "content": f"question {i} " + "word " * 40},
            {"role": "assistant", "content": f"answer {i} " + "word " * 40},
        ]
    history = [summary, *turns]
    assert _fit(history, 100_000) == history  # fits: nothing is lost
    cut = _fit(history, 600)
    assert cut[0] == summary  # the earlier summary survives any cut
    assert cut[1]["role"] == "user" and cut[-1] == turns[-1]
    assert 2 < len(cut) < len(history)
    tiny = _fit(history, 10)
    assert tiny[0] == summary and tiny[1]["content"].startswith("[earlier conversation, cut]")


def test_a_compaction_summarises_the_whole_older_part_when_it_fits(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    # Compaction starts once the history passes the limit (6,144 tokens of an 8k window):
    # the older part is then most of the window, and still fits the summary request whole.
    server = servers(config(openai_upstream.url, "context_window = 8192\n# whole older part"))
    openai_upstream.rules += [
        ("Summarise the conversation", Script(text=["SUMMARY."])),
        ("about to be replaced by a summary", Script(text=["done"])),
    ]
    sid = httpx.post(f"{server.url}/api/sessions", json={}, timeout=10).json()["id"]
    for i in range(14):
        assert chat(server.url, sid, f"turn {i} " + "lorem ipsum " * 120).status_code == 200
        session = httpx.get(f"{server.url}/api/sessions/{sid}", timeout=10).json()
        if session["compactions"]:
            break
    assert session["compactions"] == 1
    summary_request = next(
        r.body
        for r in openai_upstream.requests
        if r.path == "/v1/chat/completions" and "Summarise" in json.dumps(r.body)
    )
    transcript = summary_request["messages"][1]["content"]
    assert "[earlier conversation, cut]" not in transcript
    assert "turn 0 " in transcript and "turn 1 " in transcript  # nothing dropped
