"""The Anthropic Messages API wire models and translations, in-process: errors in Anthropic's
shape and wording, requests become valid chat requests, built Messages parse with the
anthropic SDK."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from anthropic.types import Message as SDKMessage
from pydantic import BaseModel

from localgpt.api.anthropic.convert import (
    INVALID_ARGUMENTS,
    chat_params,
    dropped_tools,
    message_object,
    stop_reason,
    to_chat,
    tool_use_id,
    usage_object,
)
from localgpt.api.anthropic.errors import (
    AnthropicError,
    anthropic_error,
    decode,
    error_type,
    validate,
)
from localgpt.api.anthropic.protocol import CountTokensRequest, MessagesRequest, unknown_fields
from localgpt.api.errors import APIError
from localgpt.api.protocol import ChatCompletionRequest

M = {"model": "claude-local", "max_tokens": 1024}
HI = [{"role": "user", "content": "hi"}]
WEATHER = {
    "name": "get_weather",
    "description": "Get the weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
USE = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
RESULT = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}
PNG = {"type": "base64", "media_type": "image/png", "data": "iVBOR"}


def refused(body: dict[str, Any], model: type[BaseModel] = MessagesRequest) -> str:
    with pytest.raises(AnthropicError) as info:
        validate(body, model)
    assert info.value.status == 400
    assert info.value.type == "invalid_request_error"
    return info.value.message


def chat(body: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``to_chat`` of a valid request, checked to be a valid chat request itself."""
    messages, params = to_chat(validate(body, MessagesRequest))
    ChatCompletionRequest.model_validate({"model": body["model"], "messages": messages, **params})
    return messages, params


# --- errors ---------------------------------------------------------------------------------


def test_error_shape() -> None:
    assert anthropic_error(400, None, "max_tokens: Field required", "req_1") == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
        "request_id": "req_1",
    }
    assert anthropic_error(529, "overloaded_error", "Overloaded") == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    statuses = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error"}
    statuses |= {404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error"}
    statuses |= {500: "api_error", 502: "api_error", 504: "timeout_error", 529: "overloaded_error"}
    statuses |= {409: "invalid_request_error"}
    assert {s: error_type(s) for s in statuses} == statuses
    response = AnthropicError(429, "slow down").response("req_9")
    assert response.status_code == 429
    assert "request-id" not in response.headers  # the gate sends it on every answer
    assert response.headers["x-should-retry"] == "true"
    assert orjson.loads(response.body) == anthropic_error(429, None, "slow down", "req_9")
    assert AnthropicError(400, "x").response().headers["x-should-retry"] == "false"
    shaped = AnthropicError.from_api_error(APIError(400, "Not supported.", param="top_k"))
    assert (shaped.status, shaped.type, shaped.message) == (
        400,
        "invalid_request_error",
        "top_k: Not supported.",
    )


def test_bad_json() -> None:
    with pytest.raises(AnthropicError) as info:
        decode(b"{nope")
    assert info.value.message.startswith("The request body is not valid JSON: ")
    with pytest.raises(AnthropicError):
        decode(b"[1]")
    assert decode(b'{"a": 1}') == {"a": 1}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "m", "messages": HI}, "max_tokens: Field required"),
        ({"max_tokens": 1, "messages": HI}, "model: Field required"),
        ({**M}, "messages: Field required"),
        ({**M, "messages": []}, "messages: at least one message is required"),
        ({**M, "messages": HI, "max_tokens": "8"}, "max_tokens: Input should be a valid integer"),
        ({**M, "messages": [{"role": "bot", "content": "x"}]}, "messages.0.role: Input should be"),
        ({**M, "messages": [{"role": "user"}]}, "messages.0.content: Field required"),
        (
            {**M, "messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]},
            "messages.0.content.0.text.text: Input should be a valid string",
        ),
        (
            {
                **M,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": {**PNG, "media_type": "image/bmp"}}
                        ],
                    }
                ],
            },
            "messages.0.content.0.image.source.base64.media_type: Input should be 'image/jpeg', "
            "'image/png', 'image/gif' or 'image/webp'",
        ),
        (
            {
                **M,
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                    }
                ],
            },
            "messages.0.content.0.image.source.file: file ids are not supported",
        ),
        (
            {
                **M,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "document",
                                "source": {
                                    "type": "base64",
                                    "media_type": "application/pdf",
                                    "data": "x",
                                },
                            }
                        ],
                    }
                ],
            },
            "messages.0.content.0.document.source.base64: only text documents",
        ),
        (
            {**M, "messages": [{"role": "user", "content": [{"type": "wat"}]}]},
            "messages.0.content.0: Input tag 'wat' found using 'type' does not match",
        ),
        (
            {
                **M,
                "messages": [{"role": "assistant", "content": [{"type": "image", "source": PNG}]}],
            },
            "messages.0.content.0: `image` blocks are not allowed in `assistant` messages",
        ),
        (
            {**M, "messages": [{"role": "user", "content": [USE]}]},
            "messages.0.content.0: `tool_use` blocks are not allowed in `user` messages",
        ),
        (
            {**M, "messages": [{"role": "system", "content": [RESULT]}]},
            "messages.0.content.0: `tool_result` blocks are not allowed in `system` messages",
        ),
        (
            {
                **M,
                "messages": [
                    *HI,
                    {"role": "assistant", "content": [USE]},
                    {"role": "user", "content": "next"},
                ],
            },
            "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: "
            "toolu_1. Each `tool_use` block must have a corresponding `tool_result` block in the "
            "next message.",
        ),
        (
            {**M, "messages": [*HI, {"role": "user", "content": [RESULT]}]},
            "messages.1.content.0: unexpected `tool_use_id` found in `tool_result` blocks: "
            "toolu_1. Each `tool_result` block must have a corresponding `tool_use` block in "
            "the previous message.",
        ),
        (
            {**M, "messages": HI, "thinking": {"type": "enabled", "budget_tokens": 10}},
            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
        ),
        (
            {**M, "messages": HI, "thinking": {"type": "enabled", "budget_tokens": 4096}},
            "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our "
            "documentation at https://docs.claude.com/en/docs/build-with-claude/"
            "extended-thinking#max-tokens-and-context-window-size",
        ),
        (
            {**M, "messages": HI, "thinking": {"type": "sometimes"}},
            "thinking: Input tag 'sometimes'",
        ),
        (
            {**M, "messages": HI, "tools": [{**WEATHER, "name": "get weather"}]},
            "tools.0.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'",
        ),
        (
            {**M, "messages": HI, "tools": [{"name": "f"}]},
            "tools.0.custom.input_schema: Field required",
        ),
        ({**M, "messages": HI, "tools": ["f"]}, "tools.0: Input should be a valid dictionary"),
        (
            {**M, "messages": HI, "tool_choice": {"type": "tool", "name": "f"}},
            "tool_choice.tool.name: tool `f` is not in `tools`",
        ),
        (
            {**M, "messages": HI, "tool_choice": {"type": "any"}},
            "tool_choice: `any` needs at least one client tool",
        ),
        (
            {**M, "messages": HI, "tool_choice": {"type": "sometimes"}},
            "tool_choice: Input tag 'sometimes'",
        ),
        (
            {**M, "messages": HI, "mcp_servers": [{"type": "url", "url": "u", "name": "n"}]},
            "mcp_servers: MCP servers are not supported",
        ),
        (
            {**M, "messages": HI, "temperature": 1.5},
            "temperature: Input should be less than or equal to 1",
        ),
        ({**M, "messages": HI, "top_k": -1}, "top_k: Input should be greater than or equal to 0"),
        (
            {**M, "messages": HI, "stop_sequences": "END"},
            "stop_sequences: Input should be a valid list",
        ),
        ({**M, "messages": HI, "system": [{"type": "text"}]}, "system.0.text: Field required"),
        (
            {**M, "messages": HI, "service_tier": "fast"},
            "service_tier: Input should be 'auto' or 'standard_only'",
        ),
    ],
)
def test_invalid_requests_are_worded_as_anthropic_words_them(
    body: dict[str, Any], message: str
) -> None:
    assert refused(body).startswith(message)


def test_what_claude_code_sends_is_accepted() -> None:
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {
                "type": "text",
                "text": "x-anthropic-billing-header: cc_version=2.1.208.abc; cc_entrypoint=cli;",
            },
            {
                "type": "text",
                "text": "You are Claude Code.",
                "cache_control": {"type": "ephemeral"},
            },
            {
                "type": "text",
                "text": "Long prompt.",
                "cache_control": {"type": "ephemeral", "ttl": "1h"},
            },
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>r</system-reminder>"},
                    {"type": "text", "text": "fix it", "cache_control": {"type": "ephemeral"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "xx"},
                    {"type": "text", "text": "Reading."},
                    {**USE, "caller": {"type": "direct"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {**RESULT, "content": [{"type": "text", "text": "data"}], "is_error": False}
                ],
            },
            {"role": "system", "content": "mid-conversation reminder"},
            {"role": "user", "content": ""},
        ],
        "tools": [
            {
                **WEATHER,
                "strict": True,
                "defer_loading": False,
                "eager_input_streaming": None,
                "input_examples": [{"city": "x"}],
            },
            {
                "name": "Bash",
                "description": "run",
                "input_schema": {"type": "object"},
                "cache_control": {"type": "ephemeral"},
            },
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
            {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
        ],
        "metadata": {"user_id": '{"device_id":"d","session_id":"s"}'},
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "temperature": 1,
        "diagnostics": {"x": 1},
        "safeguards": {"y": 2},
        "speed": "fast",
    }
    validate(body, MessagesRequest)
    assert unknown_fields(body) == ["safeguards"]
    assert dropped_tools(body) == ["web_search_20250305", "text_editor_20250728"]
    for thinking in ({"type": "disabled"}, {"type": "between_tools"}):
        validate({**M, "messages": HI, "thinking": thinking}, MessagesRequest)
    validate({**M, "max_tokens": 0, "messages": HI}, MessagesRequest)


def test_count_tokens_needs_no_max_tokens() -> None:
    validate({"model": "m", "messages": HI, "system": "s", "tools": [WEATHER]}, CountTokensRequest)
    assert refused({"model": "m"}, CountTokensRequest) == "messages: Field required"
    assert unknown_fields({"model": "m", "max_tokens": 1}, CountTokensRequest) == ["max_tokens"]


# --- to_chat --------------------------------------------------------------------------------


def test_system_blocks_join_and_the_billing_header_goes() -> None:
    messages, _ = chat(
        {
            **M,
            "system": [
                {
                    "type": "text",
                    "text": "x-anthropic-billing-header: cc_version=1; cc_entrypoint=cli;",
                },
                {"type": "text", "text": "You are Claude Code."},
                {"type": "text", "text": ""},
                {"type": "text", "text": "Be careful.", "cache_control": {"type": "ephemeral"}},
            ],
            "messages": HI,
        }
    )
    assert messages == [
        {"role": "system", "content": "You are Claude Code.\n\nBe careful."},
        {"role": "user", "content": "hi"},
    ]
    messages, _ = chat({**M, "system": "plain", "messages": HI})
    assert messages[0] == {"role": "system", "content": "plain"}


def test_user_blocks_become_parts() -> None:
    messages, _ = chat(
        {
            **M,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "text", "text": "  "},
                        {"type": "image", "source": PNG},
                        {"type": "image", "source": {"type": "url", "url": "https://x/a.jpg"}},
                        {
                            "type": "document",
                            "title": "T",
                            "context": "C",
                            "source": {"type": "text", "media_type": "text/plain", "data": "body"},
                        },
                        {
                            "type": "document",
                            "source": {
                                "type": "content",
                                "content": [
                                    {"type": "text", "text": "c1"},
                                    {"type": "image", "source": PNG},
                                ],
                            },
                        },
                        {"type": "document", "source": {"type": "content", "content": "c2"}},
                        {
                            "type": "search_result",
                            "title": "R",
                            "source": "https://r",
                            "content": [{"type": "text", "text": "found"}],
                        },
                    ],
                }
            ],
        }
    )
    png = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}
    assert messages == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                png,
                {"type": "image_url", "image_url": {"url": "https://x/a.jpg"}},
                {"type": "text", "text": "T\n\nC\n\nbody"},
                {"type": "text", "text": "c1"},
                png,
                {"type": "text", "text": "c2"},
                {"type": "text", "text": "R\nhttps://r\nfound"},
            ],
        }
    ]


def test_tool_use_and_tool_result() -> None:
    second = {**USE, "id": "toolu_2", "input": {"city": "Oslo"}}
    messages, _ = chat(
        {
            **M,
            "messages": [
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "t", "signature": "s"},
                        {"type": "text", "text": "Checking "},
                        {"type": "text", "text": "both."},
                        USE,
                        {
                            "type": "server_tool_use",
                            "id": "srvtoolu_1",
                            "name": "web_search",
                            "input": {},
                        },
                        second,
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "here you go"},
                        RESULT,
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_2",
                            "is_error": True,
                            "content": [
                                {"type": "text", "text": "no"},
                                {"type": "text", "text": "data"},
                                {"type": "image", "source": PNG},
                                {"type": "tool_reference", "tool_name": "x"},
                            ],
                        },
                    ],
                },
                {
                    "role": "assistant",
                    "content": [{"type": "thinking", "thinking": "only", "signature": "s"}],
                },
                {"role": "user", "content": "ok"},
                {"role": "assistant", "content": "The answer is"},
            ],
        }
    )
    assert messages == [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "Checking both.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: no\ndata"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                {"type": "text", "text": "here you go"},
            ],
        },
        {"role": "user", "content": "ok"},
        {"role": "assistant", "content": "The answer is"},  # a prefill, kept last
    ]
    messages, _ = chat(
        {
            **M,
            "messages": [
                *HI,
                {"role": "assistant", "content": [USE]},
                {"role": "user", "content": [{**RESULT, "content": None, "is_error": True}]},
                {"role": "system", "content": [{"type": "text", "text": "reminder"}]},
            ],
        }
    )
    assert messages[1]["content"] is None
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Error"},
        {"role": "system", "content": "reminder"},
    ]


def test_params() -> None:
    body = {
        **M,
        "max_tokens": 2048,
        "messages": HI,
        "stop_sequences": ["END", "STOP"],
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "metadata": {"user_id": "u1"},
        "output_config": {
            "effort": "low",
            "format": {"type": "json_schema", "schema": {"type": "object"}},
        },
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [
            WEATHER,
            {"name": "bare", "input_schema": {"properties": {}}},
            {"type": "web_search_20250305", "name": "web_search"},
        ],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    }
    _, params = chat(body)
    assert params == {
        "max_completion_tokens": 2048,
        "stop": ["END", "STOP"],
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "user": "u1",
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": {"type": "object"}},
        },
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": WEATHER["input_schema"],
                    "description": "Get the weather",
                },
            },
            {
                "type": "function",
                "function": {"name": "bare", "parameters": {"properties": {}, "type": "object"}},
            },
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
    }
    assert chat_params({"model": "m", "messages": HI}) == {}
    assert chat_params({**M, "max_tokens": 0, "messages": HI}) == {}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        (
            {"type": "tool", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    _, params = chat({**M, "messages": HI, "tools": [WEATHER], "tool_choice": choice})
    assert params["tool_choice"] == expected
    assert "parallel_tool_calls" not in params


def test_no_tool_settings_without_client_tools() -> None:
    body = {
        **M,
        "messages": HI,
        "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        "tool_choice": {"type": "auto"},
    }
    assert chat(body)[1] == {"max_completion_tokens": 1024}


# --- the Message object ---------------------------------------------------------------------


def assert_exact(model: BaseModel, sent: dict[str, Any]) -> None:
    """Nothing we sent was ignored or coerced: the SDK model dumps back to it exactly, and
    no key landed in ``model_extra`` anywhere (i.e. every key is a declared field)."""
    assert model.model_dump(exclude_unset=True, by_alias=True, warnings=False) == sent

    def walk(value: Any) -> None:
        if isinstance(value, BaseModel):
            assert not value.model_extra, (type(value).__name__, value.model_extra)
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(model)


def parse(obj: dict[str, Any]) -> SDKMessage:
    message = SDKMessage.model_validate(obj)
    assert_exact(message, obj)
    return message


def test_text_answer() -> None:
    obj = message_object(
        id="msg_01XFDUDYJgAACzvnptvVoYEL",
        model="local-model",
        text="Hello! How can I help?",
        usage=usage_object(12, 9),
    )
    # An SDK-verified example, with the usage details the real API adds.
    assert obj == {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "local-model",
        "content": [{"type": "text", "text": "Hello! How can I help?"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 12,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 9,
            "service_tier": "standard",
        },
    }
    message = parse(obj)
    assert message.usage.cache_read_input_tokens == 0
    assert message_object(model="m", usage=usage_object(1, 1))["id"].startswith("msg_")


def test_tool_calls() -> None:
    obj = message_object(
        model="local-model",
        text="Checking both cities.",
        calls=[
            ("call_abc", "get_weather", '{"location": "Paris"}'),
            ("toolu_keep", "get_weather", '{"location": "London"}'),
            ("call_empty", "now", ""),
        ],
        finish_reason="tool_calls",
        usage=usage_object(472, 89, cached_tokens=400),
    )
    message = parse(obj)
    assert [block.type for block in message.content] == ["text", "tool_use", "tool_use", "tool_use"]
    assert obj["content"][1:] == [
        {
            "type": "tool_use",
            "id": "toolu_abc",
            "name": "get_weather",
            "input": {"location": "Paris"},
        },
        {
            "type": "tool_use",
            "id": "toolu_keep",
            "name": "get_weather",
            "input": {"location": "London"},
        },
        {"type": "tool_use", "id": "toolu_empty", "name": "now", "input": {}},
    ]
    assert obj["stop_reason"] == "tool_use"
    assert obj["usage"]["input_tokens"] == 72
    assert obj["usage"]["cache_read_input_tokens"] == 400
    assert tool_use_id("call_abc") == "toolu_abc"
    # Some engines finish "stop" with calls: still tool_use. A cut call stays max_tokens.
    assert (
        message_object(model="m", usage={}, calls=[("c", "f", "{}")])["stop_reason"] == "tool_use"
    )
    cut = message_object(
        model="m", usage=usage_object(1, 2), calls=[("c", "f", '{"a"')], finish_reason="length"
    )
    assert cut["stop_reason"] == "max_tokens"
    assert cut["content"][0]["input"] == {INVALID_ARGUMENTS: '{"a"'}
    parse(cut)
    listed = message_object(model="m", usage=usage_object(1, 2), calls=[("c", "f", "[1]")])
    assert listed["content"][0]["input"] == {INVALID_ARGUMENTS: "[1]"}


@pytest.mark.parametrize(
    ("finish", "matched", "expected"),
    [
        ("stop", None, "end_turn"),
        ("stop", "END", "stop_sequence"),
        ("length", None, "max_tokens"),
        ("tool_calls", None, "tool_use"),
        ("function_call", None, "tool_use"),
        ("content_filter", None, "refusal"),
        ("something_new", None, "end_turn"),
        (None, None, None),
    ],
)
def test_stop_reason(finish: str | None, matched: str | None, expected: str | None) -> None:
    assert stop_reason(finish, matched) == expected


def test_stop_sequence_only_when_the_engine_says_which() -> None:
    told = message_object(model="m", text="a", usage=usage_object(1, 1), stop_sequence="END")
    assert (told["stop_reason"], told["stop_sequence"]) == ("stop_sequence", "END")
    parse(told)
    untold = message_object(model="m", text="a", usage=usage_object(1, 1))
    assert (untold["stop_reason"], untold["stop_sequence"]) == ("end_turn", None)
    cut = message_object(
        model="m", text="a", usage=usage_object(1, 1), finish_reason="length", stop_sequence="END"
    )
    assert (cut["stop_reason"], cut["stop_sequence"]) == ("max_tokens", None)


def test_message_start_and_empty_messages() -> None:
    start = message_object(model="m", usage=usage_object(25, 1), finish_reason=None)
    assert start["content"] == [] and start["stop_reason"] is None
    parse(start)
    empty = message_object(model="m", text="", usage=usage_object(25, 0), finish_reason="length")
    assert empty["content"] == [] and empty["stop_reason"] == "max_tokens"
    parse(empty)
