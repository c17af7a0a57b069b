"""A lean HTTP/1.1 load generator (asyncio + httptools) for the benchmark.

Each of ``concurrency`` keep-alive connections sends the same request back to back; the
generator records each request's latency and, for streams, the time to the first content
chunk. It costs a few tens of microseconds per request, so it does not hide the server's.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

import httptools

# The first text: a Chat Completions delta's content, a Responses output_text delta, or an
# Anthropic text_delta's text (never the empty text of a block's start).
FIRST_CONTENT = re.compile(rb'"(?:content|delta|text)":\s*"[^"]')


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    first_chunk: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0

    @property
    def count(self) -> int:
        return len(self.latencies)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done: asyncio.Future[int] | None = None
        self.started = 0.0
        self.first = 0.0
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("connection lost"))
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.done is not None and not self.done.done():
                self.done.set_exception(exc)

    def on_body(self, body: bytes) -> None:
        if not self.first:
            self.buffer += body
            if FIRST_CONTENT.search(self.buffer):
                self.first = time.perf_counter()
                self.buffer = b""

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(self.parser.get_status_code())

    async def request(self, payload: bytes) -> tuple[int, float, float]:
        assert self.transport is not None
        self.done = asyncio.get_running_loop().create_future()
        self.first = 0.0
        self.buffer = b""
        self.started = time.perf_counter()
        self.transport.write(payload)
        status = await self.done
        end = time.perf_counter()
        return status, end - self.started, (self.first or end) - self.started


def build_request(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def run(
    port: int, payload: bytes, concurrency: int, duration: float, warmup: float = 0.5
) -> Result:
    loop = asyncio.get_running_loop()
    result = Result()
    clients = []
    for _ in range(concurrency):
        _, client = await loop.create_connection(Client, "127.0.0.1", port)
        clients.append(client)
    recording = False
    stop_at = time.perf_counter() + warmup + duration

    async def worker(client: Client) -> None:
        while time.perf_counter() < stop_at:
            try:
                status, latency, first = await client.request(payload)
            except (ConnectionError, httptools.HttpParserError):
                result.errors += 1
                return
            if not recording:
                continue
            if status != 200:
                result.errors += 1
            else:
                result.latencies.append(latency)
                result.first_chunk.append(first)

    tasks = [asyncio.ensure_future(worker(c)) for c in clients]
    await asyncio.sleep(warmup)
    recording = True
    begin = time.perf_counter()
    await asyncio.gather(*tasks)
    result.elapsed = time.perf_counter() - begin
    for client in clients:
        assert client.transport is not None
        client.transport.close()
    return result
