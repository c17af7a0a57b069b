"""The chat format every part of the server speaks: OpenAI's messages and parameters.

Requests travel as the plain dicts orjson decoded (building objects for each message would
cost more than the rest of a proxied request); these ``TypedDict``s give them types, so
strict mypy sees a misspelt key or role. The API validates them on the way in
(``api.protocol``); from there on they are trusted.
"""

from __future__ import annotations

from typing import Any, Literal, Required, TypedDict

import orjson

from localgpt.providers.errors import UnsupportedParameter

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class FunctionCallDict(TypedDict):
    name: str
    arguments: str  # JSON text


class ToolCallDict(TypedDict):
    id: str
    type: Literal["function"]
    function: FunctionCallDict


class ContentPart(TypedDict, total=False):
    type: Required[str]  # text, refusal, image_url, input_audio, file
    text: str
    refusal: str
    image_url: dict[str, Any]


class ChatMessage(TypedDict, total=False):
    """One message. Which keys a role may carry is the API's to check; here every key is
    optional but the role, so code that reads any message reads a typed key."""

    role: Required[Role]
    content: str | list[ContentPart] | None
    name: str
    tool_calls: list[ToolCallDict]
    tool_call_id: str
    refusal: str | None


class ChatParams(TypedDict, total=False):
    """Every field of a chat request but its model and messages, as OpenAI names them."""

    max_tokens: int
    max_completion_tokens: int
    temperature: float
    top_p: float
    stop: str | list[str]
    seed: int
    n: int
    presence_penalty: float
    frequency_penalty: float
    logprobs: bool
    top_logprobs: int
    response_format: dict[str, Any]
    tools: list[dict[str, Any]]
    tool_choice: str | dict[str, Any]
    parallel_tool_calls: bool
    user: str
    metadata: dict[str, str]
    store: bool
    service_tier: str
    logit_bias: dict[str, int]
    modalities: list[str]
    audio: dict[str, Any]
    prediction: dict[str, Any]
    reasoning_effort: str
    web_search_options: dict[str, Any]
    verbosity: str
    functions: list[dict[str, Any]]
    function_call: str | dict[str, Any]
    prompt_cache_key: str
    safety_identifier: str
    prompt_cache_retention: str
    top_k: int
    min_p: float
    repeat_penalty: float
    suffix: str  # legacy text completions
    echo: bool
    best_of: int


def text_of(content: Any) -> str:
    """The text of a message's content, whether a string or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(
        part.get("text") or part.get("refusal") or ""
        for part in content
        if part.get("type") in ("text", "refusal")
    )


def parse_arguments(arguments: str, where: str) -> dict[str, Any]:
    """Decode a client-sent tool call's arguments for providers that take an object."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise UnsupportedParameter(where, "Tool call arguments must be a JSON object.") from None
    if not isinstance(value, dict):
        raise UnsupportedParameter(where, "Tool call arguments must be a JSON object.")
    return value


def name_in_content(message: ChatMessage) -> ChatMessage:
    """``message`` with its participant ``name`` written into its text, for the providers
    whose messages have no field for one (Anthropic, Ollama, the embedded model's chat
    template): the text starts ``"{name}: "``, the form of a chat transcript, so the model
    still sees who spoke. In a list of parts, the first text part gets the prefix, or a text
    part holding it goes first. A message without text to label (an assistant turn of tool
    calls only) just loses the key; a tool message's name (its tool's) stays as it is."""
    name = message.get("name")
    if not name or message.get("role") in ("tool", "function"):
        return message
    out: ChatMessage = {**message}
    out.pop("name", None)
    content = message.get("content")
    label = f"{name}: "
    if isinstance(content, str):
        out["content"] = label + content
    elif isinstance(content, list):
        parts = list(content)
        if parts and parts[0].get("type") == "text":
            parts[0] = {**parts[0], "text": label + parts[0].get("text", "")}
        else:
            parts.insert(0, ContentPart(type="text", text=label))
        out["content"] = parts
    return out
