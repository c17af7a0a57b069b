"""A fake Ollama: the native /api/chat (NDJSON stream and not) and /api/tags."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.fakes import FakeServer, pieces_of


class FakeOllama(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.models = ["llama3:latest"]

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/chat", self.chat)
        app.router.add_get("/api/tags", self.tags)

    async def tags(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "models": [
                    {
                        "name": m,
                        "model": m,
                        "modified_at": "2025-05-01T10:00:00.000000+02:00",
                        "size": 1,
                    }
                    for m in self.models
                ]
            }
        )

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        model = body.get("model", "")
        script = self.next_script(model, body)
        if script.first_delay and not await self.wait_or_disconnect(
            request, script.first_delay, model
        ):
            return web.Response(status=499)
        if script.status >= 400:
            error = script.error or {"error": f"fake error {script.status}"}
            return web.json_response(error, status=script.status, headers=script.headers)
        pieces = pieces_of(script, body["messages"])
        if script.text is None and script.tool_calls:
            pieces = []
        calls = [
            {"function": {"name": c.name, "arguments": json.loads("".join(c.arguments))}}
            for c in script.tool_calls
        ]
        reason = "length" if script.finish_reason == "length" else "stop"
        final: dict[str, Any] = {
            "model": model,
            "created_at": "2025-05-01T10:00:00Z",
            "done": True,
            "done_reason": reason,
        }
        if script.usage is not None:  # Ollama leaves the counts out now and then
            final.update(prompt_eval_count=script.usage[0], eval_count=script.usage[1])
        if body.get("stream") is False:
            message: dict[str, Any] = {"role": "assistant", "content": "".join(pieces)}
            if calls:
                message["tool_calls"] = calls
            return web.json_response({**final, "message": message})
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        lines = [
            {
                "model": model,
                "created_at": "2025-05-01T10:00:00Z",
                "message": {"role": "assistant", "content": p},
                "done": False,
            }
            for p in pieces
        ]
        if calls:
            lines.append(
                {
                    "model": model,
                    "created_at": "2025-05-01T10:00:00Z",
                    "message": {"role": "assistant", "content": "", "tool_calls": calls},
                    "done": False,
                }
            )
        if script.mid_stream_error is not None:
            lines.append(script.mid_stream_error)
        else:
            lines.append({**final, "message": {"role": "assistant", "content": ""}})
        for i, line in enumerate(lines):
            if script.cut_after is not None and i >= script.cut_after:
                self.cut(request)
                return resp
            if script.delay and not await self.wait_or_disconnect(request, script.delay, model):
                return resp
            if not await self.write_or_disconnect(resp, (json.dumps(line) + "\n").encode(), model):
                return resp
        await resp.write_eof()
        return resp
