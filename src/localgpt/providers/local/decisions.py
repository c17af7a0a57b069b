"""Tool calls for local models whose own tool-call format llama.cpp does not parse.

Qwen2.5-Coder writes its calls as fenced JSON in the content, which llama.cpp's parser does
not recognise, and invents tools when none fits. Instead the model first makes a decision
under a JSON-schema grammar: ``{"tool": "<name>", "arguments": {...}}`` for one of the real
tools, a list of those for parallel calls, or ``{"tool": "none"}``. The grammar makes every
call name real and every argument object valid; ``required`` and a named ``tool_choice`` are
enforced by leaving ``none`` (and the other tools) out of it. ``CallStream`` turns the
decision, token by token, into tool-call deltas.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from localgpt.providers.base import ChatRequest
from localgpt.providers.errors import ProviderError
from localgpt.providers.events import Finish, StreamEvent, TextDelta, ToolCallDelta, Usage
from localgpt.providers.local.engine import Engine, events

log = logging.getLogger("localgpt.providers.local")

NONE = "none"


def _tool_option(fn: dict[str, Any], loose: bool) -> dict[str, Any]:
    params = fn.get("parameters") or {"type": "object", "properties": {}}
    if loose:
        params = {"type": "object"}
    return {
        "type": "object",
        "properties": {"tool": {"const": fn["name"]}, "arguments": params},
        "required": ["tool", "arguments"],
        "additionalProperties": False,
    }


def decision_schema(
    tools: list[dict[str, Any]], choice: Any, parallel: bool, loose: bool = False
) -> dict[str, Any]:
    """The grammar of the decision. ``loose`` drops argument schemas llguidance refuses."""
    functions = [t["function"] for t in tools]
    if isinstance(choice, dict):
        wanted = choice["function"]["name"]
        functions = [f for f in functions if f["name"] == wanted]
    calls = [_tool_option(f, loose) for f in functions]
    options: list[dict[str, Any]] = list(calls)
    if parallel and len(calls) > 0 and not isinstance(choice, dict):
        options.append({"type": "array", "items": {"anyOf": calls}, "minItems": 2, "maxItems": 8})
    if choice in (None, "auto"):
        options.append(
            {
                "type": "object",
                "properties": {"tool": {"const": NONE}},
                "required": ["tool"],
                "additionalProperties": False,
            }
        )
    return {"anyOf": options}


def tool_listing(tools: list[dict[str, Any]]) -> str:
    """The tools, described once near the start of the prompt, as short signatures.

    It sits in the stable prefix (after the leading system messages), so llama.cpp's prompt
    cache holds it across requests that offer the same tools: only the new turn and the short
    decision rule are evaluated each time. It says nothing of the decision's JSON, which only
    the decision rule describes: the answer that follows a decision reads this listing too,
    and a model shown the JSON here writes it as its answer.
    """
    lines = ["Tools for this conversation (a separate step decides when to call them):"]
    for tool in tools:
        fn = tool["function"]
        description = " ".join((fn.get("description") or "").split())
        lines.append(f"- {signature(fn)}: {description}".rstrip(": "))
    return "\n".join(lines)


def signature(fn: dict[str, Any]) -> str:
    """``name(a: string, b?: integer)``: a tool's parameters in a few tokens. The grammar,
    not this text, holds the model to the schema."""
    params = fn.get("parameters") or {}
    props = params.get("properties") or {}
    required = set(params.get("required") or ())
    parts = []
    for name, spec in props.items():
        spec = spec if isinstance(spec, dict) else {}
        kind = "|".join(json.dumps(v) for v in spec["enum"]) if "enum" in spec else None
        kind = kind or str(spec.get("type") or "any")
        parts.append(f"{name}{'' if name in required else '?'}: {kind}")
    return f"{fn['name']}({', '.join(parts)})"


def with_listing(messages: list[dict[str, Any]], listing: str) -> list[dict[str, Any]]:
    """Insert the tool listing after the leading system messages."""
    at = 0
    while at < len(messages) and messages[at].get("role") in ("system", "developer"):
        at += 1
    return [*messages[:at], {"role": "system", "content": listing}, *messages[at:]]


def decision_rule(choice: Any) -> str:
    """The last message of the decision step: what to reply, as JSON."""
    # Short on purpose: the tool listing, in the cached prefix, explains the format; this
    # part is evaluated anew on every request.
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        return (
            f'Call the tool {name}: reply with JSON only, {{"tool": "{name}", "arguments": ...}}.'
        )
    if choice == "required":
        return (
            'Call the tool that fits best: reply with JSON only, {"tool": "<name>", '
            '"arguments": {...}}, or a JSON list of such calls to call several at once.'
        )
    return (
        "Decide whether answering the last message needs one of the tools. Reply with JSON "
        'only: {"tool": "<name>", "arguments": {...}} to call a tool, a JSON list of such '
        'calls to call several at once, or {"tool": "none"} if no tool is needed, none fits, '
        "or the conversation already holds the tool results needed."
    )


@dataclass
class _Call:
    name: str | None = None
    args_start: int | None = None
    args_end: int | None = None


@dataclass
class CallStream:
    """Reads the decision as it is generated and reports what became known.

    The text is rescanned on every feed: decisions are short, and a rescan of a few hundred
    characters is cheaper and far simpler than an incremental JSON parser.
    """

    text: str = ""
    _sent_names: int = 0
    _sent_args: list[int] = field(default_factory=list)

    def feed(self, piece: str) -> list[tuple[int, str | None, str]]:
        """Add generated text; return ``(index, name if new, argument piece)`` updates."""
        self.text += piece
        updates: list[tuple[int, str | None, str]] = []
        for i, call in enumerate(_scan(self.text)):
            if call.name is None or call.name == NONE:
                break
            if i >= self._sent_names:
                self._sent_names = i + 1
                self._sent_args.append(0)
                updates.append((i, call.name, ""))
            if call.args_start is None:
                continue
            end = call.args_end if call.args_end is not None else len(self.text)
            args = self.text[call.args_start : end].rstrip()
            sent = self._sent_args[i]
            if len(args) > sent:
                updates.append((i, None, args[sent:]))
                self._sent_args[i] = len(args)
        return updates

    def calls(self) -> list[tuple[str, str]]:
        """The complete decision as ``(name, arguments JSON)`` pairs; empty for ``none``.

        The arguments are the model's own text, exactly as streamed.
        """
        json.loads(self.text)  # the grammar guarantees it; fail loudly if it did not hold
        return [
            (c.name, self.text[c.args_start : c.args_end] if c.args_start is not None else "{}")
            for c in _scan(self.text)
            if c.name is not None and c.name != NONE
        ]


def _scan(text: str) -> list[_Call]:
    """Find, in possibly unfinished decision JSON, each call's name and argument span."""
    calls: list[_Call] = []
    depth = 0
    call_depth = 1
    i = 0
    n = len(text)
    key: str | None = None
    current: _Call | None = None
    while i < n:
        ch = text[i]
        if ch == '"':
            end = _string_end(text, i)
            if end is None:
                return calls
            value = json.loads(text[i : end + 1])
            after = text[end + 1 :].lstrip()
            if current is not None and depth == call_depth and after.startswith(":"):
                key = value
            elif current is not None and depth == call_depth and key == "tool":
                current.name = value
                key = None
            i = end + 1
            continue
        if ch == "[" and depth == 0:
            call_depth = 2
        if ch in "{[":
            depth += 1
            if ch == "{" and depth == call_depth:
                current = _Call()
                calls.append(current)
                key = None
            elif (
                current is not None
                and depth == call_depth + 1
                and key == "arguments"
                and current.args_start is None
            ):
                current.args_start = i
        elif ch in "}]":
            depth -= 1
            if (
                current is not None
                and depth == call_depth
                and key == "arguments"
                and current.args_start is not None
                and current.args_end is None
            ):
                current.args_end = i + 1
                key = None
            if depth < call_depth:
                current = None
        i += 1
    return calls


def _string_end(text: str, start: int) -> int | None:
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i
        i += 1
    return None


# --- the answer after a decision -----------------------------------------------------------

# The start of a reply that is a tool call written out as text (the decision's JSON, the
# chat template's own call markup, or either in a code fence): never shown to a user.
_CALL_START = re.compile(
    r"\s*(?:```[a-z_]*\s*)?(?:\{\s*\"(?:tool|name|function|tool_name)\"\s*:|"
    r"\[\s*\{\s*\"(?:tool|name|function)\"\s*:|<\s*tool_call\s*>|<\s*function)",
    re.IGNORECASE,
)
_SUSPECT = ("{", "[", "<", "`")
DECIDE_AFTER = 48  # characters of a suspect start after which it is decided
PLAIN_RULE = (
    "Reply to the user's last message in plain words. Do not write JSON, code for a tool, or "
    "a tool call."
)
# llama.cpp's GBNF: the reply may not open with what starts a call or JSON.
PLAIN_GRAMMAR = "root ::= [^{\\[<`\\x00-\\x20] [^\\x00]*"


def call_written_out(text: str, finished: bool) -> bool | None:
    """Whether a reply starting with ``text`` is a tool call written out as text: True or
    False once it can be told, None while it cannot yet (an opening brace, bracket, angle
    bracket or backtick, too little after it, and more to come)."""
    start = text.lstrip()
    if not start:
        return None if not finished else False
    if not start.startswith(_SUSPECT):
        return False
    if _CALL_START.match(text):
        return True
    return False if finished or len(start) >= DECIDE_AFTER else None


# --- the decision, and the answer after it -----------------------------------------------

DECISION_TOKENS = 1024
NOT_FOR_DECISION = frozenset(
    {
        "response_format",
        "logprobs",
        "top_logprobs",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "repeat_penalty",
        "logit_bias",
    }
)


async def decide(
    engine: Engine,
    provider: str,
    body: dict[str, Any],
    tools: list[dict[str, Any]],
    choice: Any,
    request: ChatRequest,
) -> AsyncGenerator[list[StreamEvent], None]:
    """Decide under a grammar whether to call tools; answer in text if not."""
    parallel = request.params.get("parallel_tool_calls", True) is not False
    body["messages"] = with_listing(body["messages"], tool_listing(tools))
    # The decision is JSON under a grammar: the client's stop strings, penalties and
    # biases are for its answer, and could cut or bend the JSON.
    decide = {k: v for k, v in body.items() if k not in NOT_FOR_DECISION}
    decide["messages"] = [
        *body["messages"],
        {"role": "system", "content": decision_rule(choice)},
    ]
    decide["temperature"] = 0.0
    # The decision has its own budget: the client's max_tokens is for the answer.
    decide["max_tokens"] = DECISION_TOKENS
    decide["response_format"] = {
        "type": "json_schema",
        "json_schema": {
            "name": "decision",
            "schema": decision_schema(tools, choice, parallel),
        },
    }
    calls = CallStream()
    usage = Usage(0, 0)
    ids: dict[int, str] = {}
    decision = events(engine.run("handle_chat_completions", decide), provider)
    try:
        first = await anext(decision)
    except ProviderError as exc:
        if exc.status != 400 or exc.code == "context_length_exceeded":
            raise
        # An argument schema llguidance cannot compile: keep the names, loosen arguments.
        decide["response_format"]["json_schema"]["schema"] = decision_schema(
            tools, choice, parallel, loose=True
        )
        decision = events(engine.run("handle_chat_completions", decide), provider)
        first = await anext(decision)
    batch = _decision_events(first, calls, ids, usage)
    if batch:
        yield batch
    async for more in decision:
        batch = _decision_events(more, calls, ids, usage)
        if batch:
            yield batch
    try:
        decided = calls.calls()
    except ValueError:
        raise ProviderError(
            f"local model {engine.name} did not finish its tool decision within "
            f"{DECISION_TOKENS} tokens",
            status=502,
            code="upstream_error",
        ) from None
    if decided:
        yield [Finish("tool_calls"), usage]
        return
    # No tool fits: answer in text. The shared prefix is still in the prompt cache. The
    # decision's tokens are not the answer's: the client's max_tokens bounds the answer
    # alone, and the usage counts what the answer took.
    async for batch in answer(engine, provider, body, request):
        yield batch


async def answer(
    engine: Engine, provider: str, body: dict[str, Any], request: ChatRequest
) -> AsyncGenerator[list[StreamEvent], None]:
    """The text answer after a decision of none, never a tool call written out as text.

    Its start is held back while it could be one (an opening brace, bracket or backtick,
    a few dozen characters); a reply that is one is dropped unseen and written again,
    told to use plain words and held to them by a grammar that forbids such a start. An
    answer in JSON the client asked for is passed as it comes.
    """
    wanted = (request.params.get("response_format") or {}).get("type")
    stream = events(engine.run("handle_chat_completions", body), provider)
    if wanted in ("json_object", "json_schema"):
        async for batch in stream:
            yield batch
        return
    held: list[StreamEvent] | None = []
    text = ""
    written_out = False
    try:
        async for batch in stream:
            if held is None:
                yield batch
                continue
            held += batch
            text += "".join(e.text for e in batch if isinstance(e, TextDelta))
            done = any(isinstance(e, Finish) for e in batch)
            verdict = call_written_out(text, done)
            if verdict:
                written_out = True
                break
            if verdict is False:
                yield held
                held = None
        if held and not written_out:
            yield held  # a short reply that ended while it still looked like a call
    finally:
        await stream.aclose()
    if not written_out:
        return
    log.info("local model %s wrote a tool call as its answer; writing it again", engine.name)
    plain = {
        **body,
        "messages": [*body["messages"], {"role": "system", "content": PLAIN_RULE}],
        "grammar": PLAIN_GRAMMAR,
    }
    async for batch in events(engine.run("handle_chat_completions", plain), provider):
        yield batch


def _decision_events(
    events: list[StreamEvent], calls: CallStream, ids: dict[int, str], usage: Usage
) -> list[StreamEvent]:
    """Turn the decision's text into tool-call deltas as soon as each piece is known."""
    out: list[StreamEvent] = []
    for event in events:
        if isinstance(event, TextDelta):
            for index, name, args in calls.feed(event.text):
                if name is not None:
                    ids[index] = "call_" + secrets.token_hex(12)
                    out.append(ToolCallDelta(index, "", ids[index], name))
                if args:
                    out.append(ToolCallDelta(index, args))
        elif isinstance(event, Usage):
            usage.prompt_tokens += event.prompt_tokens
            usage.completion_tokens += event.completion_tokens
    return out
