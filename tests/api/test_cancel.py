"""A client that disconnects cancels the upstream request promptly."""

from __future__ import annotations

import socket
import time

import orjson

from tests.conftest import Server
from tests.fakes import Script, wait_for
from tests.fakes.openai_fake import FakeOpenAI
from tests.helpers import user


def raw_post(server: Server, body: dict[str, object]) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    payload = orjson.dumps(body)
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\n"
        + f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    return sock


def test_stream_disconnect_closes_the_upstream(
    gateway: Server, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script("slow", Script(text=[f"t{i} " for i in range(100)], delay=0.2))
    sock = raw_post(gateway, {"model": "openai/slow", "messages": user("x"), "stream": True})
    received = sock.recv(65536)
    assert b"200 OK" in received
    sock.close()
    closed_at = time.monotonic()
    assert wait_for(lambda: bool(openai_upstream.disconnects), 3)
    assert openai_upstream.disconnects[0][1] - closed_at < 1.0


def test_non_stream_disconnect_closes_the_upstream(
    gateway: Server, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script("hang", Script(first_delay=30))
    sock = raw_post(gateway, {"model": "openai/hang", "messages": user("x")})
    assert wait_for(lambda: len(openai_upstream.requests) == 1, 3)
    sock.close()
    closed_at = time.monotonic()
    assert wait_for(lambda: bool(openai_upstream.disconnects), 3)
    assert openai_upstream.disconnects[0][1] - closed_at < 1.0


def test_stream_disconnect_while_waiting_for_the_first_token(
    gateway: Server, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script("late", Script(first_delay=30))
    sock = raw_post(gateway, {"model": "openai/late", "messages": user("x"), "stream": True})
    assert wait_for(lambda: len(openai_upstream.requests) == 1, 3)
    sock.close()
    closed_at = time.monotonic()
    assert wait_for(lambda: bool(openai_upstream.disconnects), 3)
    assert openai_upstream.disconnects[0][1] - closed_at < 1.0
