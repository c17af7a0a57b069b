"""A fake OpenAI-compatible server: /v1/chat/completions (stream and not), /v1/models."""

from __future__ import annotations

import json
import time
from itertools import zip_longest
from typing import Any

from aiohttp import web

from tests.fakes import FakeServer, Script, pieces_of


class FakeOpenAI(FakeServer):
    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.list_models)
        app.router.add_post("/v1/completions", self.text)

    models_body: bytes | None = None  # served as it is instead of the listing, if set

    async def list_models(self, request: web.Request) -> web.Response:
        if self.models_body is not None:
            return web.Response(body=self.models_body, content_type="text/html")
        data = [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"}
            for m in self.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        model = body.get("model", "")
        script = self.next_script(model, body)
        if script.first_delay and not await self.wait_or_disconnect(
            request, script.first_delay, model
        ):
            return web.Response(status=499)
        if script.status >= 400:
            error = script.error or {
                "error": {
                    "message": f"fake error {script.status}",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            }
            return web.json_response(error, status=script.status, headers=script.headers)
        if body.get("stream"):
            return await self._stream(request, body, script)
        return web.json_response(self._completion(body, script))

    def _completion(self, body: dict[str, Any], script: Script) -> dict[str, Any]:
        text = "".join(pieces_of(script, body["messages"]))
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if script.tool_calls:
            message["content"] = text if script.text else None
            message["tool_calls"] = [
                {
                    "id": c.id or f"call_fake{i}",
                    "type": "function",
                    "function": {"name": c.name, "arguments": "".join(c.arguments)},
                }
                for i, c in enumerate(script.tool_calls)
            ]
        reason = script.finish_reason or ("tool_calls" if script.tool_calls else "stop")
        n = body.get("n") or 1
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {"index": i, "message": message, "logprobs": None, "finish_reason": reason}
                for i in range(n)
            ],
            "usage": usage_of(script),
        }

    async def _stream(
        self, request: web.Request, body: dict[str, Any], script: Script
    ) -> web.StreamResponse:
        model = body["model"]
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        base = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }

        def event(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> bytes:
            chunk = {
                **base,
                "choices": [
                    {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            return f"data: {json.dumps(chunk)}\n\n".encode()

        def choice(index: int) -> list[bytes]:
            """One choice's chunks; with n > 1 the choices' chunks interleave, as OpenAI's."""
            out = [event({"role": "assistant", "content": ""}, None, index)]
            if script.text is not None or not script.tool_calls:
                out += [
                    event({"content": p}, None, index) for p in pieces_of(script, body["messages"])
                ]
            if script.interleave:  # every call introduced, then their pieces in turn
                out += [
                    event(
                        {
                            "tool_calls": [
                                {
                                    "index": i,
                                    "id": call.id or f"call_fake{i}",
                                    "type": "function",
                                    "function": {"name": call.name, "arguments": ""},
                                }
                            ]
                        },
                        None,
                        index,
                    )
                    for i, call in enumerate(script.tool_calls)
                ]
                mixed = zip_longest(*(c.arguments for c in script.tool_calls))
                for pieces in mixed:
                    for i, piece in enumerate(pieces):
                        if piece is not None:
                            delta = {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}
                            out.append(event(delta, None, index))
            for i, call in enumerate([] if script.interleave else script.tool_calls):
                first = call.arguments[0] if call.arguments else ""
                out.append(
                    event(
                        {
                            "tool_calls": [
                                {
                                    "index": i,
                                    "id": call.id or f"call_fake{i}",
                                    "type": "function",
                                    "function": {"name": call.name, "arguments": first},
                                }
                            ]
                        },
                        None,
                        index,
                    )
                )
                out += [
                    event({"tool_calls": [{"index": i, "function": {"arguments": a}}]}, None, index)
                    for a in call.arguments[1:]
                ]
            if script.mid_stream_error is None:
                reason = script.finish_reason or ("tool_calls" if script.tool_calls else "stop")
                out.append(event({}, reason, index))
            return out

        per_choice = [choice(i) for i in range(body.get("n") or 1)]
        chunks = [c for group in zip_longest(*per_choice) for c in group if c is not None]
        if script.mid_stream_error is not None:
            chunks.append(f"data: {json.dumps(script.mid_stream_error)}\n\n".encode())
        else:
            if (body.get("stream_options") or {}).get("include_usage") and script.usage:
                usage = usage_of(script)
                chunks.append(
                    f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode()
                )
            chunks.append(b"data: [DONE]\n\n")
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

    async def text(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        model = body.get("model", "")
        script = self.next_script(model, body)
        if script.status >= 400:
            error = script.error or {
                "error": {
                    "message": f"fake error {script.status}",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            }
            return web.json_response(error, status=script.status, headers=script.headers)
        pieces = (
            script.text
            if script.text is not None
            else ["<", body["prompt"][-5:], "|", body.get("suffix") or "", ">"]
        )
        reason = script.finish_reason or "stop"
        base = {
            "id": "cmpl-fake",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
        }
        usage = usage_of(script)
        if not body.get("stream"):
            return web.json_response(
                {
                    **base,
                    "choices": [
                        {
                            "text": "".join(pieces),
                            "index": 0,
                            "logprobs": None,
                            "finish_reason": reason,
                        }
                    ],
                    "usage": usage,
                }
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        chunks = [
            {**base, "choices": [{"text": p, "index": 0, "logprobs": None, "finish_reason": None}]}
            for p in pieces
        ]
        chunks.append(
            {
                **base,
                "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": reason}],
            }
        )
        if (body.get("stream_options") or {}).get("include_usage") and usage:
            chunks.append({**base, "choices": [], "usage": usage})
        if script.mid_stream_error is not None:
            chunks[len(pieces) :] = [script.mid_stream_error]
        for i, chunk in enumerate(chunks):
            if script.cut_after is not None and i >= script.cut_after:
                self.cut(request)
                return resp
            if script.delay and not await self.wait_or_disconnect(request, script.delay, model):
                return resp
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def usage_of(script: Script) -> dict[str, int] | None:
    if script.usage is None:
        return None
    prompt, completion = script.usage
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
