"""Clients that send a request too slowly are dropped, so they cannot hold connections open.

uvicorn times out idle keep-alive connections, but not a client that trickles a request's
head or body a byte at a time: each byte restarts nothing, and the connection and its buffer
stay until the client stops. ``GuardedProtocol`` gives the request line and headers
``[server] header_timeout`` seconds from the first byte, and the body ``body_timeout`` seconds
once the headers are in; a request still incomplete then is answered 408 (if nothing was
answered yet) and its connection closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from localgpt.api.errors import APIError


class GuardedProtocol(HttpToolsProtocol):
    header_timeout = 10.0
    body_timeout = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    @classmethod
    def with_timeouts(cls, header: float, body: float) -> type[GuardedProtocol]:
        return type("GuardedProtocol", (cls,), {"header_timeout": header, "body_timeout": body})

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            body = APIError(408, "The request was not sent in time.", code="request_timeout")
            data = orjson.dumps(body.body())
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                b"connection: close\r\ncontent-length: "
                + str(len(data)).encode()
                + b"\r\n\r\n"
                + data
            )
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.header_timeout)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
