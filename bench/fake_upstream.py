"""A fast fake OpenAI-compatible upstream for the benchmark: raw asyncio and httptools.

It answers ``POST /v1/chat/completions`` with a fixed completion, or with a stream of
``--chunks`` content chunks (each its own write, as a real server sends them), and
``GET /v1/models``. It parses only what it must, so that it is never the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import httptools
import uvloop

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the bench."},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
    }
).encode()
MODELS = json.dumps(
    {
        "object": "list",
        "data": [
            {"id": "bench-model", "object": "model", "created": 1700000000, "owned_by": "bench"}
        ],
    }
).encode()


def stream_chunks(n: int) -> list[bytes]:
    base = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "bench-model",
    }

    def event(delta: dict[str, object], finish: str | None = None) -> bytes:
        chunk = {
            **base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    chunks = [event({"role": "assistant", "content": ""})]
    chunks += [event({"content": f"tok{i} "}) for i in range(n)]
    chunks.append(event({}, "stop"))
    usage = {
        **base,
        "choices": [],
        "usage": {"prompt_tokens": 12, "completion_tokens": n, "total_tokens": 12 + n},
    }
    chunks.append(b"data: " + json.dumps(usage).encode() + b"\n\n")
    chunks.append(b"data: [DONE]\n\n")
    return chunks


def response(body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: "
        + content_type
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)


class Upstream(asyncio.Protocol):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = [f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks]
        self.parser = httptools.HttpRequestParser(self)
        self.body = bytearray()
        self.url = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        transport = self.transport
        assert transport is not None
        body, self.body = bytes(self.body), bytearray()
        if self.url.endswith(b"/models"):
            transport.write(response(MODELS))
        elif b'"stream":true' in body.replace(b" ", b""):
            asyncio.get_running_loop().create_task(self.stream(transport))
        else:
            transport.write(response(COMPLETION))

    async def stream(self, transport: asyncio.Transport) -> None:
        transport.write(STREAM_HEAD)
        for chunk in self.chunks:
            await asyncio.sleep(0)  # each chunk in its own write, as a model emits tokens
            if transport.is_closing():
                return
            transport.write(chunk)
        transport.write(b"0\r\n\r\n")


async def main(port: int, chunks: int) -> None:
    loop = asyncio.get_running_loop()
    pieces = stream_chunks(chunks)
    server = await loop.create_server(lambda: Upstream(pieces), "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=20)
    args = parser.parse_args()
    uvloop.run(main(args.port, args.chunks))
