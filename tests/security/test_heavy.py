"""One client cannot stall the server: large bodies are validated without holding the event
loop, the number of messages is bounded, and slow clients are dropped."""

from __future__ import annotations

import socket
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import Server, gateway_config
from tests.fakes.openai_fake import FakeOpenAI
from tests.helpers import error_of


@pytest.fixture
def server(servers: Callable[[str], Server], openai_upstream: FakeOpenAI) -> Server:
    return servers(
        gateway_config(
            openai_upstream.url,
            extra="# heavy\n[server]\nheader_timeout = 1.5\nbody_timeout = 1.5\n",
        )
    )


def body(messages: int, size: int) -> bytes:
    # An unknown model: the request fails right after validation, so only parsing is timed.
    text = "x" * size
    return orjson.dumps(
        {
            "model": "no-such-model",
            "messages": [{"role": "user", "content": text}] * messages,
        }
    )


@pytest.mark.parametrize(
    ("max_messages", "messages", "size", "status"),
    [
        # The attack: 200,000 short messages, 6.8 MB each (they stalled /health for 7.9 s).
        # Refused by count before decoding, with the default limit.
        (None, 200_000, 1, 400),
        # Under a raised limit: decoded one at a time, validated a slice at a time.
        (50_000, 40_000, 140, 404),
    ],
)
def test_health_answers_while_large_bodies_are_parsed(
    servers: Callable[[str], Server],
    openai_upstream: FakeOpenAI,
    max_messages: int | None,
    messages: int,
    size: int,
    status: int,
    tmp_path: Path,
) -> None:
    limit = f"max_messages = {max_messages}" if max_messages else ""
    server = servers(gateway_config(openai_upstream.url, extra=f"[server]\n{limit}\n"))
    heavy = tmp_path / "heavy.json"
    heavy.write_bytes(body(messages, size))
    assert heavy.stat().st_size > 6_000_000
    # The uploads run in other processes (curl), so this process's own threads cannot
    # delay the /health requests it times.
    uploads = [
        subprocess.Popen(
            [
                "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                "-H", "Content-Type: application/json", "--data-binary", f"@{heavy}",
                f"{server.url}/v1/chat/completions",
            ],
            stdout=subprocess.PIPE,
        )
        for _ in range(5)
    ]  # fmt: skip
    latencies: list[float] = []
    with httpx.Client(base_url=server.url, timeout=10) as client:
        client.get("/health")  # the connection is open before the load starts
        while any(p.poll() is None for p in uploads):
            started = time.perf_counter()
            assert client.get("/health").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.01)
    assert [int(p.communicate()[0]) for p in uploads] == [status] * 5
    assert latencies
    # Alone, the slowest /health takes under 30 ms; late in the whole suite, with two dozen
    # servers resident on 2 cores, one in ~20 has been seen at 100 ms. What must not come
    # back is the loop held for the whole parse (0.4 s per body, seconds in all).
    ordered = sorted(latencies)
    typical = ordered[int(len(ordered) * 0.9)]
    assert typical < 0.05 and ordered[-1] < 0.25, (ordered[-3:], statistics.median(ordered))


def test_too_many_messages_is_a_400_before_any_work(server: Server) -> None:
    resp = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=body(200_000, 1),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert resp.status_code == 400
    error = error_of(resp)
    assert error["code"] == "too_many_messages" and error["param"] == "messages"
    assert "at most 10000" in error["message"]


def test_an_invalid_message_deep_in_a_large_body_is_named(server: Server) -> None:
    messages = [{"role": "user", "content": "x"}] * 2500
    messages[2345] = {"role": "bot", "content": "x"}
    resp = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": "openai/fake-model", "messages": messages},
        timeout=30,
    )
    assert resp.status_code == 400 and error_of(resp)["param"] == "messages[2345].role"


def _trickle(server: Server, head: bytes, then: bytes) -> tuple[float, bytes]:
    """Send ``head``, then ``then`` a byte every 0.3 s; when and how the server hung up."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(head)
        answer = b""
        for byte in then:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.3)
            sock.setblocking(False)
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                chunk = None
            finally:
                sock.setblocking(True)
            if chunk is not None:
                answer += chunk
                if not chunk:
                    break
        return time.monotonic() - started, answer


def test_a_client_trickling_its_headers_is_dropped(server: Server) -> None:
    seconds, answer = _trickle(server, b"GET /health HTTP/1.1\r\n", b"Host: x" + b"y" * 60)
    assert seconds < 5  # dropped at the 1.5 s header timeout, not after the 20 s trickle
    assert answer.startswith(b"HTTP/1.1 408")
    assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200


def test_a_client_trickling_its_body_is_dropped(server: Server) -> None:
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    seconds, answer = _trickle(server, head, b"{" + b" " * 99)
    assert seconds < 5
    assert answer.startswith(b"HTTP/1.1 408")
