"""A fake Anthropic Messages API: /v1/messages (stream and not), /v1/models."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.fakes import FakeServer, Script, pieces_of

STOP = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}


def _user_text(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Anthropic content blocks -> OpenAI-ish messages, so the echo finds the user's text."""
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, list):
            text = " ".join(b.get("text", "") for b in content if b.get("type") == "text")
        else:
            text = content
        out.append({"role": m["role"], "content": text})
    return out


class FakeAnthropic(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.models = ["claude-fake-1"]

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.count_tokens)
        app.router.add_get("/v1/models", self.list_models)

    async def list_models(self, request: web.Request) -> web.Response:
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-02-19T00:00:00Z"}
            for m in self.models
        ]
        return web.json_response(
            {"data": data, "has_more": False, "first_id": None, "last_id": None}
        )

    async def count_tokens(self, request: web.Request) -> web.Response:
        """A made-up count: a token per four characters of the body."""
        body = await self.record(request)
        return web.json_response({"input_tokens": len(json.dumps(body)) // 4})

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        model = body.get("model", "")
        script = self.next_script(model, body)
        if script.first_delay and not await self.wait_or_disconnect(
            request, script.first_delay, model
        ):
            return web.Response(status=499)
        if script.status >= 400:
            error = script.error or {
                "type": "error",
                "error": {"type": "api_error", "message": f"fake error {script.status}"},
            }
            return web.json_response(error, status=script.status, headers=script.headers)
        pieces = pieces_of(script, _user_text(body["messages"]))
        if not body.get("stream"):
            content: list[dict[str, Any]] = []
            if script.thinking is not None:
                thought, signature = script.thinking
                content.append({"type": "thinking", "thinking": thought, "signature": signature})
            if script.text is not None or not script.tool_calls:
                content.append({"type": "text", "text": "".join(pieces)})
            for i, call in enumerate(script.tool_calls):
                content.append(
                    {
                        "type": "tool_use",
                        "id": call.id or f"toolu_fake{i}",
                        "name": call.name,
                        "input": json.loads("".join(call.arguments) or "{}"),
                    }
                )
            return web.json_response(
                {
                    "id": "msg_fake",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": content,
                    "stop_reason": self._stop(script),
                    "stop_sequence": None,
                    "usage": {"input_tokens": script.usage[0], "output_tokens": script.usage[1]},
                }
            )
        return await self._stream(request, body, script, pieces)

    @staticmethod
    def _stop(script: Script) -> str:
        reason = script.finish_reason or ("tool_calls" if script.tool_calls else "stop")
        return STOP.get(reason, reason)

    async def _stream(
        self, request: web.Request, body: dict[str, Any], script: Script, pieces: list[str]
    ) -> web.StreamResponse:
        model = body["model"]
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        def event(kind: str, data: dict[str, Any]) -> bytes:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

        chunks = [
            event(
                "message_start",
                {
                    "message": {
                        "id": "msg_fake",
                        "type": "message",
                        "role": "assistant",
                        "content": [],
                        "model": model,
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": script.usage[0], "output_tokens": 1},
                    }
                },
            ),
            event("ping", {}),
        ]
        index = 0
        if script.thinking is not None:
            thought, signature = script.thinking
            start = {"type": "thinking", "thinking": "", "signature": ""}
            chunks += [
                event("content_block_start", {"index": 0, "content_block": start}),
                event(
                    "content_block_delta",
                    {"index": 0, "delta": {"type": "thinking_delta", "thinking": thought}},
                ),
                event(
                    "content_block_delta",
                    {"index": 0, "delta": {"type": "signature_delta", "signature": signature}},
                ),
                event("content_block_stop", {"index": 0}),
            ]
            index = 1
        if script.text is not None or not script.tool_calls:
            chunks.append(
                event(
                    "content_block_start",
                    {"index": index, "content_block": {"type": "text", "text": ""}},
                )
            )
            chunks += [
                event(
                    "content_block_delta",
                    {"index": index, "delta": {"type": "text_delta", "text": p}},
                )
                for p in pieces
            ]
            chunks.append(event("content_block_stop", {"index": index}))
            index += 1
        for i, call in enumerate(script.tool_calls):
            chunks.append(
                event(
                    "content_block_start",
                    {
                        "index": index,
                        "content_block": {
                            "type": "tool_use",
                            "id": call.id or f"toolu_fake{i}",
                            "name": call.name,
                            "input": {},
                        },
                    },
                )
            )
            chunks += [
                event(
                    "content_block_delta",
                    {"index": index, "delta": {"type": "input_json_delta", "partial_json": a}},
                )
                for a in call.arguments
            ]
            chunks.append(event("content_block_stop", {"index": index}))
            index += 1
        if script.mid_stream_error is not None:
            chunks.append(event("error", script.mid_stream_error))
        else:
            chunks.append(
                event(
                    "message_delta",
                    {
                        "delta": {"stop_reason": self._stop(script), "stop_sequence": None},
                        "usage": {"output_tokens": script.usage[1]},
                    },
                )
            )
            chunks.append(event("message_stop", {}))
        for i, chunk in enumerate(chunks):
            if script.cut_after is not None and i >= script.cut_after:
                self.cut(request)
                return resp
            if script.delay and not await self.wait_or_disconnect(request, script.delay, model):
                return resp
            if not await self.write_or_disconnect(resp, chunk, model):
                return resp
        await resp.write_eof()
        return resp
