"""The Responses API wire models and translations, in-process: validation errors name the
field, requests become valid chat requests, and built objects parse with the openai SDK."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.responses import Response, ResponseItem
from pydantic import BaseModel, TypeAdapter, ValidationError

from localgpt.api.errors import APIError, validation_error
from localgpt.api.protocol import ChatCompletionRequest
from localgpt.api.responses.convert import (
    chat_params,
    dropped_items,
    dropped_tools,
    input_items,
    referenced_ids,
    to_chat,
)
from localgpt.api.responses.objects import (
    function_call_id,
    function_call_item,
    message_id,
    message_item,
    response_id,
    response_object,
    usage_object,
)
from localgpt.api.responses.protocol import ResponsesRequest

M = {"model": "local-model"}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
CALL = {"type": "function_call", "call_id": "call_a", "name": "get_weather", "arguments": "{}"}


def valid(body: dict[str, Any]) -> dict[str, Any]:
    ResponsesRequest.model_validate(body)
    return body


def error(body: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ValidationError) as info:
        ResponsesRequest.model_validate(body)
    return validation_error(info.value.errors(include_url=False)).body()["error"]


def chat(body: dict[str, Any], **kwargs: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``to_chat`` of a valid request, checked to be a valid chat request itself."""
    messages, params = to_chat(valid(body), **kwargs)
    ChatCompletionRequest.model_validate({"model": body["model"], "messages": messages, **params})
    return messages, params


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"input": "x"}, "model", "Missing required parameter"),
        (M, "input", "Missing required parameter: 'input'"),
        ({**M, "input": "x", "bogus": 1}, "bogus", "Unrecognized request argument"),
        ({**M, "input": [{"type": "foo"}]}, "input[0].type", "Invalid value: 'foo'"),
        ({**M, "input": [{"content": "x"}]}, "input[0].role", "Missing required"),
        ({**M, "input": ["x"]}, "input[0]", "expected an object, but got a string"),
        ({**M, "input": [{**CALL, "call_id": None}]}, "input[0].call_id", "Invalid type"),
        (
            {**M, "input": [{k: v for k, v in CALL.items() if k != "call_id"}]},
            "input[0].call_id",
            "",
        ),
        (
            {**M, "input": [{"role": "user", "content": [{"type": "input_text"}]}]},
            "input[0].content[0].text",
            "Missing required",
        ),
        (
            {
                **M,
                "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}],
            },
            "input[0].content[0].file_id",
            "no Files API",
        ),
        (
            {**M, "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0]",
            "file inputs",
        ),
        (
            {
                **M,
                "input": [
                    {"role": "system", "content": [{"type": "input_image", "image_url": "u"}]}
                ],
            },
            "input[0].content[0]",
            "text only",
        ),
        (
            {**M, "input": [{"role": "user", "content": [{"type": "output_text", "text": "x"}]}]},
            "input[0].content[0]",
            "assistant messages",
        ),
        (
            {**M, "input": [{"type": "function_call_output", "call_id": "c", "output": 3}]},
            "input[0].output",
            "Invalid type",
        ),
        ({**M, "input": "x", "tools": [{**WEATHER, "name": "a b"}]}, "tools[0].name", "pattern"),
        ({**M, "input": "x", "tools": [{"type": "wat"}]}, "tools[0].type", "Invalid value: 'wat'"),
        ({**M, "input": "x", "tools": [{"name": "f"}]}, "tools[0].type", "Missing required"),
        ({**M, "input": "x", "tool_choice": "any"}, "tool_choice", "Invalid value: 'any'"),
        ({**M, "input": "x", "tool_choice": {"name": "f"}}, "tool_choice.type", "Missing"),
        ({**M, "input": "x", "tool_choice": "required"}, "tool_choice", "needs at least one"),
        (
            {**M, "input": "x", "tools": [{"type": "web_search"}], "tool_choice": "required"},
            "tool_choice",
            "needs at least one function tool",
        ),
        (
            {**M, "input": "x", "tools": [WEATHER], "tool_choice": {"type": "web_search"}},
            "tool_choice",
            "'web_search' tools do not run",
        ),
        (
            {
                **M,
                "input": "x",
                "tools": [WEATHER],
                "tool_choice": {"type": "function", "name": "f"},
            },
            "tool_choice",
            "function 'f' is not in 'tools'",
        ),
        (
            {
                **M,
                "input": "x",
                "tools": [WEATHER],
                "tool_choice": {
                    "type": "allowed_tools",
                    "mode": "auto",
                    "tools": [{"type": "function", "name": "nope"}],
                },
            },
            "tool_choice.tools[0]",
            "'nope'",
        ),
        (
            {**M, "input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}},
            "text.format.name",
            "Missing required",
        ),
        ({**M, "input": "x", "text": {"format": {"type": "xml"}}}, "text.format.type", "'xml'"),
        ({**M, "input": "x", "text": {"verbosity": "max"}}, "text.verbosity", "'max'"),
        ({**M, "input": "x", "max_output_tokens": 10}, "max_output_tokens", ">= 16, but got 10"),
        ({**M, "input": "x", "temperature": 2.5}, "temperature", "less than or equal to 2"),
        ({**M, "input": "x", "top_p": 1.5}, "top_p", "less than or equal to 1"),
        ({**M, "input": "x", "background": True}, "background", "not supported"),
        ({**M, "input": "x", "conversation": "conv_1"}, "conversation", "Conversations API"),
        ({**M, "input": "x", "conversation": {"id": "c"}}, "conversation", "Conversations API"),
        ({**M, "input": "x", "prompt": {"id": "pmpt_1"}}, "prompt", "stored prompts"),
        ({**M, "input": "x", "moderation": {"model": "m"}}, "moderation", "not available"),
        ({**M, "input": "x", "top_logprobs": 2}, "top_logprobs", "send 0"),
        ({**M, "input": "x", "stream_options": {}}, "stream_options", "only allowed when"),
        ({**M, "input": "x", "truncation": "sometimes"}, "truncation", "'sometimes'"),
        ({**M, "input": "x", "metadata": {str(i): "v" for i in range(17)}}, "metadata", "16"),
        ({**M, "input": "x", "metadata": {"k" * 65: "v"}}, "metadata", "64 characters"),
        ({**M, "input": "x", "metadata": {"k": "v" * 513}}, "metadata", "512 characters"),
        ({**M, "input": "x", "metadata": {"k": 1}}, "metadata.k", "Invalid type"),
    ],
)
def test_invalid_requests_name_the_field(body: dict[str, Any], param: str, fragment: str) -> None:
    err = error(body)
    assert err["param"] == param, err
    assert fragment in err["message"], err
    assert err["type"] == "invalid_request_error"


def test_what_codex_sends_is_accepted() -> None:
    valid(
        {
            "model": "local-model",
            "instructions": "You are Codex.",
            "input": [
                {
                    "type": "message",
                    "role": "developer",
                    "content": [{"type": "input_text", "text": "d"}],
                },
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": "data:image/png;base64,AA"}],
                },
                {
                    "type": "reasoning",
                    "summary": [{"type": "summary_text", "text": "t"}],
                    "content": None,
                    "encrypted_content": None,
                },
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "ok"}],
                },
                {"type": "function_call", "name": "shell", "arguments": "{}", "call_id": "c1"},
                {
                    "type": "function_call_output",
                    "call_id": "c1",
                    "output": [
                        {"type": "input_text", "text": "o"},
                        {"type": "input_image", "image_url": "https://x/y.png"},
                    ],
                },
                {
                    "type": "custom_tool_call",
                    "call_id": "c2",
                    "name": "apply_patch",
                    "input": "*** Begin",
                },
                {"type": "custom_tool_call_output", "call_id": "c2", "output": "done"},
                {
                    "type": "local_shell_call",
                    "call_id": "c3",
                    "status": "completed",
                    "action": {"type": "exec", "command": ["ls"]},
                },
                {
                    "type": "web_search_call",
                    "status": "completed",
                    "action": {"type": "search", "query": "q"},
                },
                {"type": "compaction", "encrypted_content": "xx"},
            ],
            "tools": [
                {
                    "type": "function",
                    "name": "shell",
                    "description": "d",
                    "strict": False,
                    "parameters": {"type": "object"},
                    "defer_loading": False,
                },
                {
                    "type": "custom",
                    "name": "apply_patch",
                    "description": "d",
                    "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"},
                },
                {"type": "local_shell"},
                {"type": "web_search", "external_web_access": False},
                {"type": "image_generation", "output_format": "png"},
                {"type": "tool_search", "execution": "client"},
            ],
            "tool_choice": "auto",
            "parallel_tool_calls": False,
            "reasoning": None,
            "store": False,
            "stream": True,
            "include": [],
            "prompt_cache_key": "0b7f",
            "text": {"verbosity": "low"},
            "service_tier": "priority",
        }
    )


def test_what_the_sdks_send_is_accepted() -> None:
    # Agents SDK turn 2: our own output, re-dumped, plus the tool result; parse() verbosity.
    valid(
        {
            **M,
            "input": [
                {"content": "hi", "role": "user"},
                {
                    "id": "msg_1",
                    "content": [
                        {"annotations": [], "text": "t", "type": "output_text", "logprobs": []}
                    ],
                    "role": "assistant",
                    "status": "completed",
                    "type": "message",
                    "phase": "final_answer",
                },
                {**CALL, "id": "fc_a", "status": "completed", "namespace": None},
                {"call_id": "call_a", "output": "sunny", "type": "function_call_output"},
                {"type": "item_reference", "id": "msg_0"},
                {"id": "msg_00"},
            ],
            "include": ["reasoning.encrypted_content", "message.output_text.logprobs"],
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "verbosity": "low",
            "reasoning": {"effort": "minimal", "summary": "auto"},
            "truncation": "auto",
            "metadata": {"k": "v"},
            "top_logprobs": 0,
            "background": False,
            "max_tool_calls": 3,
            "prompt_cache_retention": "24h",
            "context_management": [{"type": "compaction", "compact_threshold": 1000}],
            "safety_identifier": "u1",
            "user": "u1",
            "stream": True,
            "stream_options": {"include_obfuscation": False},
        }
    )
    valid({**M, "previous_response_id": "resp_1"})


def test_dropped_tools_and_items_are_recorded() -> None:
    body = {
        **M,
        "input": [{"type": "reasoning", "summary": []}, {"role": "user", "content": "x"}],
        "tools": [WEATHER, {"type": "web_search"}, {"type": "local_shell"}, {"type": "web_search"}],
    }
    assert dropped_tools(valid(body)) == ["web_search", "local_shell"]
    assert dropped_items(body) == ["reasoning"]
    _, params = chat(body)
    assert [t["function"]["name"] for t in params["tools"]] == ["get_weather"]


# --- to_chat --------------------------------------------------------------------------------


def test_string_input_and_instructions() -> None:
    messages, params = chat({**M, "input": "Hello", "instructions": "Be brief."})
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
    ]
    assert params == {}


def test_message_items_keep_their_roles_and_parts() -> None:
    messages, _ = chat(
        {
            **M,
            "input": [
                {"role": "developer", "content": "dev"},
                {
                    "type": "message",
                    "role": "system",
                    "content": [{"type": "input_text", "text": "sys"}],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "look"},
                        {"type": "input_image", "image_url": "https://x/a.png", "detail": "low"},
                        {
                            "type": "input_image",
                            "image_url": "data:image/png;base64,AA",
                            "detail": "original",
                        },
                    ],
                },
                {"role": "assistant", "content": "plain"},
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [
                        {"type": "output_text", "text": "a", "annotations": [], "logprobs": []},
                        {"type": "output_text", "text": "b"},
                    ],
                },
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
            ],
        }
    )
    assert messages == [
        {"role": "developer", "content": "dev"},
        {"role": "system", "content": [{"type": "text", "text": "sys"}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
            ],
        },
        {"role": "assistant", "content": "plain"},
        {"role": "assistant", "content": "ab"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
    ]


def test_function_calls_join_one_assistant_message_and_outputs_become_tool_messages() -> None:
    second = {**CALL, "call_id": "call_b", "arguments": '{"city":"Oslo"}', "id": "fc_b"}
    messages, _ = chat(
        {
            **M,
            "input": [
                {"role": "user", "content": "weather?"},
                {"type": "reasoning", "summary": []},
                {"role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
                {"type": "reasoning", "summary": []},
                CALL,
                second,
                {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
                {"type": "function_call_output", "call_id": "call_b", "output": "rain"},
                CALL | {"call_id": "call_c"},
                {"type": "function_call_output", "call_id": "call_c", "output": "x"},
                {"role": "assistant", "content": "Done."},
            ],
        }
    )
    calls = [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": "{}"},
        },
        {
            "id": "call_b",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
        },
    ]
    assert messages == [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_b", "content": "rain"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{**calls[0], "id": "call_c"}],
        },
        {"role": "tool", "tool_call_id": "call_c", "content": "x"},
        {"role": "assistant", "content": "Done."},
    ]


def test_images_in_tool_outputs_follow_the_tool_group() -> None:
    image = {"type": "input_image", "image_url": "https://x/shot.png"}
    messages, _ = chat(
        {
            **M,
            "input": [
                CALL,
                CALL | {"call_id": "call_b"},
                {
                    "type": "function_call_output",
                    "call_id": "call_a",
                    "output": [{"type": "input_text", "text": "see"}, image],
                },
                {"type": "function_call_output", "call_id": "call_b", "output": [image]},
                {"role": "user", "content": "and?"},
            ],
        }
    )
    url = {"type": "image_url", "image_url": {"url": "https://x/shot.png"}}
    assert messages[1:] == [
        {"role": "tool", "tool_call_id": "call_a", "content": [{"type": "text", "text": "see"}]},
        {"role": "tool", "tool_call_id": "call_b", "content": ""},
        {"role": "user", "content": [url, url]},
        {"role": "user", "content": "and?"},
    ]
    # At the very end too, and before calls that come right after.
    messages, _ = chat(
        {
            **M,
            "input": [
                CALL,
                {"type": "function_call_output", "call_id": "call_a", "output": [image]},
                CALL | {"call_id": "call_b"},
                {"type": "function_call_output", "call_id": "call_b", "output": [image]},
            ],
        }
    )
    assert [m["role"] for m in messages] == [
        "assistant",
        "tool",
        "user",
        "assistant",
        "tool",
        "user",
    ]


def test_history_comes_before_the_input_and_references_resolve() -> None:
    earlier = input_items(valid({**M, "input": "first"}))
    output = [
        {
            "id": "msg_out",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "calling", "annotations": [], "logprobs": []}
            ],
        },
        {
            "id": "fc_a",
            "type": "function_call",
            "status": "completed",
            **{k: CALL[k] for k in ("call_id", "name", "arguments")},
        },
    ]
    history = earlier + output
    body = {
        **M,
        "previous_response_id": "resp_1",
        "instructions": "new rules",
        "input": [
            {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
            {"type": "item_reference", "id": "msg_out"},
            {"id": "stored"},
        ],
    }
    assert referenced_ids(body) == ["msg_out", "stored"]
    stored = {
        "id": "stored",
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "s"}],
    }
    messages, _ = chat(body, history=history, items={"stored": stored})
    assert messages == [
        {"role": "system", "content": "new rules"},
        {"role": "user", "content": [{"type": "text", "text": "first"}]},
        {
            "role": "assistant",
            "content": "calling",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
        {"role": "assistant", "content": "calling"},
        {"role": "user", "content": [{"type": "text", "text": "s"}]},
    ]
    with pytest.raises(APIError) as info:
        to_chat(valid({**M, "input": [{"role": "user", "content": "x"}, {"id": "gone"}]}))
    assert info.value.status == 400
    assert info.value.param == "input[1].id"
    assert "'gone' not found" in info.value.message


def test_params() -> None:
    body = {
        **M,
        "input": "x",
        "max_output_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "u",
        "metadata": {"k": "v"},
        "safety_identifier": "s",
        "prompt_cache_key": "p",
        "store": False,
        "truncation": "auto",
        "reasoning": {"effort": "low"},
        "include": ["message.output_text.logprobs"],
        "text": {
            "format": {
                "type": "json_schema",
                "name": "Answer",
                "schema": {"type": "object"},
                "strict": True,
            },
            "verbosity": "low",
        },
        "tools": [WEATHER, {"type": "web_search"}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": False,
    }
    _, params = chat(body)
    assert params == {
        "max_completion_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "u",
        "metadata": {"k": "v"},
        "safety_identifier": "s",
        "prompt_cache_key": "p",
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "Answer", "schema": {"type": "object"}, "strict": True},
        },
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Get weather",
                    "parameters": WEATHER["parameters"],
                    "strict": True,
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
    }
    assert chat_params({**M, "text": {"format": {"type": "json_object"}}}) == {
        "response_format": {"type": "json_object"}
    }
    assert chat_params({**M, "text": {"format": {"type": "text"}}}) == {}


@pytest.mark.parametrize("choice", ["none", "auto", "required"])
def test_tool_choice_strings_pass(choice: str) -> None:
    _, params = chat({**M, "input": "x", "tools": [WEATHER], "tool_choice": choice})
    assert params["tool_choice"] == choice


def test_allowed_tools_narrow_the_tools() -> None:
    other = {**WEATHER, "name": "other"}
    _, params = chat(
        {
            **M,
            "input": "x",
            "tools": [WEATHER, other, {"type": "mcp", "server_label": "s"}],
            "tool_choice": {
                "type": "allowed_tools",
                "mode": "required",
                "tools": [
                    {"type": "function", "name": "other"},
                    {"type": "mcp", "server_label": "s"},
                ],
            },
        }
    )
    assert [t["function"]["name"] for t in params["tools"]] == ["other"]
    assert params["tool_choice"] == "required"


def test_no_tool_settings_without_function_tools() -> None:
    # Codex always sends tool_choice "auto" and parallel_tool_calls; chat refuses them bare.
    _, params = chat(
        {
            **M,
            "input": "x",
            "tools": [{"type": "local_shell"}],
            "tool_choice": "auto",
            "parallel_tool_calls": False,
        }
    )
    assert params == {}


# --- input_items ----------------------------------------------------------------------------

ITEM = TypeAdapter(ResponseItem)


def test_input_items_of_a_string() -> None:
    [item] = input_items(valid({**M, "input": "Tell me a joke?"}))
    assert item["id"].startswith("msg_") and len(item["id"]) == 4 + 48
    assert item == {
        "id": item["id"],
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": [{"type": "input_text", "text": "Tell me a joke?"}],
    }
    assert_exact(ITEM.validate_python(item), item)


def test_input_items_have_ids_and_parse_with_the_sdk() -> None:
    body = valid(
        {
            **M,
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": "https://x/a.png"}],
                },
                {"role": "developer", "content": "d"},
                {"role": "assistant", "content": "plain"},
                {
                    "id": "msg_keep",
                    "type": "message",
                    "role": "assistant",
                    "status": "completed",
                    "phase": "final_answer",
                    "content": [
                        {"type": "output_text", "text": "t", "annotations": [], "logprobs": []},
                        {"type": "refusal", "refusal": "r"},
                    ],
                },
                CALL,
                {**CALL, "call_id": "call_b", "id": "fc_keep", "status": "completed"},
                {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
                {
                    "type": "function_call_output",
                    "call_id": "call_b",
                    "output": [{"type": "input_text", "text": "o"}],
                },
                {"type": "reasoning", "summary": [{"type": "summary_text", "text": "s"}]},
                {"type": "item_reference", "id": "msg_old"},
            ],
        }
    )
    old = {
        "id": "msg_old",
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": [{"type": "input_text", "text": "o"}],
    }
    items = input_items(body, items={"msg_old": old})
    prefixes = [item["id"].split("_")[0] for item in items]
    assert prefixes == ["msg", "msg", "msg", "msg", "fc", "fc", "fco", "fco", "rs", "msg"]
    assert items[3]["id"] == "msg_keep" and items[5]["id"] == "fc_keep"
    assert len({item["id"] for item in items}) == len(items)
    assert items[0]["content"][0]["detail"] == "auto"
    assert items[2]["content"] == [{"type": "output_text", "text": "plain", "annotations": []}]
    assert items[9] == old
    for item in items:
        assert item.get("status", "completed") == "completed"
        assert_exact(ITEM.validate_python(item), item)
    with pytest.raises(APIError) as info:
        input_items(valid({**M, "input": [{"id": "nope"}]}))
    assert info.value.param == "input[0].id"


# --- the Response object --------------------------------------------------------------------

NOTES_TEXT_ANSWER = {
    "id": "resp_0123456789abcdef0123456789abcdef",
    "object": "response",
    "created_at": 1741476777,
    "status": "completed",
    "completed_at": 1741476778,
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "max_output_tokens": None,
    "model": "local-model",
    "output": [
        {
            "id": "msg_0123456789abcdef0123456789abcdef",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "Hello there!", "annotations": [], "logprobs": []}
            ],
        }
    ],
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "reasoning": {"effort": None, "summary": None},
    "store": True,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}, "verbosity": "medium"},
    "tool_choice": "auto",
    "tools": [],
    "top_p": 1.0,
    "truncation": "disabled",
    "usage": {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 17,
    },
    "user": None,
    "metadata": {},
}
# Optional fields of the spec, emitted too.
EXTRAS = {
    "background": False,
    "max_tool_calls": None,
    "prompt_cache_key": None,
    "prompt_cache_retention": None,
    "safety_identifier": None,
    "service_tier": "default",
    "top_logprobs": 0,
}


def assert_exact(
    model: BaseModel, sent: dict[str, Any], extras: frozenset[str] = frozenset()
) -> None:
    """Nothing we sent was ignored or coerced: the SDK model dumps back to it exactly, and no
    key landed in ``model_extra`` (undeclared) except the ones named."""
    assert model.model_dump(exclude_unset=True, by_alias=True, warnings=False) == sent

    def walk(value: Any, top: bool) -> None:
        if isinstance(value, BaseModel):
            extra = set(value.model_extra or {})
            assert extra <= (extras if top else set()), (type(value).__name__, extra)
            for name in type(value).model_fields:
                walk(getattr(value, name), False)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v, False)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v, False)

    walk(model, True)


def parse(obj: dict[str, Any]) -> Response:
    response = Response.model_validate(obj)
    assert_exact(response, obj, extras=frozenset({"store"}))  # the SDK declares no 'store'
    return response


def test_text_answer_matches_the_documented_example() -> None:
    obj = response_object(
        valid({**M, "input": "Hi"}),
        id="resp_0123456789abcdef0123456789abcdef",
        created_at=1741476777,
        text="Hello there!",
        usage=usage_object(12, 5),
        completed_at=1741476778,
    )
    assert obj == {**NOTES_TEXT_ANSWER, **EXTRAS}
    response = parse(obj)
    assert response.output_text == "Hello there!"
    assert response.usage is not None
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0


def test_function_calls_and_echoed_settings() -> None:
    fmt = {"type": "json_schema", "name": "Out", "schema": {"type": "object"}, "strict": True}
    request = valid(
        {
            **M,
            "input": "weather in Paris and Tokyo?",
            "instructions": "Use tools.",
            "tools": [WEATHER, {"type": "web_search"}],
            "tool_choice": "required",
            "parallel_tool_calls": True,
            "max_output_tokens": 500,
            "temperature": 0.3,
            "top_p": 0.5,
            "text": {"format": fmt},
            "verbosity": "low",
            "metadata": {"k": "v"},
            "store": False,
            "previous_response_id": "resp_prev",
            "reasoning": {"effort": "low", "summary": "auto"},
            "truncation": "auto",
            "user": "u",
            "safety_identifier": "s",
            "prompt_cache_key": "p",
            "max_tool_calls": 4,
        }
    )
    rid = response_id()
    calls = [
        ("call_aaa", "get_weather", '{"city":"Paris"}'),
        ("call_bbb", "get_weather", '{"city":"Tokyo"}'),
    ]
    obj = response_object(
        request,
        id=rid,
        created_at=1760000000,
        text="",
        calls=calls,
        finish_reason="tool_calls",
        usage=usage_object(40, 20, cached_tokens=32, reasoning_tokens=3),
    )
    response = parse(obj)
    assert rid.startswith("resp_") and len(rid) == 5 + 48
    assert [item.type for item in response.output] == ["function_call", "function_call"]
    assert obj["output"][0] == {
        "id": "fc_aaa",
        "type": "function_call",
        "status": "completed",
        "call_id": "call_aaa",
        "name": "get_weather",
        "arguments": '{"city":"Paris"}',
    }
    assert function_call_id("call_bbb") == obj["output"][1]["id"] == "fc_bbb"
    assert obj["status"] == "completed" and isinstance(obj["completed_at"], int)
    assert obj["usage"]["total_tokens"] == 60
    assert obj["usage"]["input_tokens_details"]["cached_tokens"] == 32
    assert obj["usage"]["output_tokens_details"]["reasoning_tokens"] == 3
    echoed = {k: obj[k] for k in ("instructions", "tools", "tool_choice", "max_output_tokens")}
    assert echoed == {
        "instructions": "Use tools.",
        "tools": [WEATHER, {"type": "web_search"}],
        "tool_choice": "required",
        "max_output_tokens": 500,
    }
    assert obj["text"] == {"format": fmt, "verbosity": "low"}
    assert obj["reasoning"] == {"effort": "low", "summary": "auto"}
    assert (obj["temperature"], obj["top_p"], obj["store"], obj["truncation"]) == (
        0.3,
        0.5,
        False,
        "auto",
    )
    assert (obj["metadata"], obj["user"], obj["previous_response_id"]) == (
        {"k": "v"},
        "u",
        "resp_prev",
    )
    assert (obj["safety_identifier"], obj["prompt_cache_key"], obj["max_tool_calls"]) == (
        "s",
        "p",
        4,
    )
    # Text and calls together: the message first, with the id the stream renderer derives.
    both = response_object(request, id=rid, created_at=1, text="Checking.", calls=calls[:1])
    assert [item["type"] for item in both["output"]] == ["message", "function_call"]
    assert both["output"][0]["id"] == message_id(rid) == "msg_" + rid[5:]
    parse(both)


def test_incomplete_failed_and_in_progress() -> None:
    request = valid({**M, "input": "x", "max_output_tokens": 16})
    cut = response_object(
        request,
        id="resp_1",
        created_at=1,
        text="Once upon",
        finish_reason="length",
        usage=usage_object(3, 16),
    )
    assert cut["status"] == "incomplete"
    assert cut["incomplete_details"] == {"reason": "max_output_tokens"}
    assert cut["completed_at"] is None
    assert cut["output"][0]["status"] == "incomplete"
    assert parse(cut).output_text == "Once upon"
    filtered = response_object(
        request, id="resp_1", created_at=1, text="", finish_reason="content_filter"
    )
    assert filtered["incomplete_details"] == {"reason": "content_filter"}
    parse(filtered)
    failed = response_object(
        request,
        id="resp_1",
        created_at=1,
        text="partial",
        finish_reason=None,
        error=("server_error", "boom"),
    )
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": "boom"}
    assert failed["completed_at"] is None and failed["incomplete_details"] is None
    parse(failed)
    started = response_object(request, id="resp_1", created_at=1, finish_reason=None)
    assert started["status"] == "in_progress"
    assert started["output"] == [] and started["usage"] is None
    parse(started)
    added = message_item(None, id="msg_1", status="in_progress")
    assert added == {
        "id": "msg_1",
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    call = function_call_item("call_x", "f", "", status="in_progress")
    assert call["id"] == "fc_x" and call["arguments"] == ""
    parse({**started, "output": [added, call]})
    empty = response_object(request, id="resp_1", created_at=1, text="")
    assert empty["output"][0]["content"][0]["text"] == ""
    assert parse(empty).output_text == ""
