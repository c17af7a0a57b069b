"""Wire models of Anthropic's Messages API: ``POST /v1/messages`` and
``POST /v1/messages/count_tokens``, as the anthropic SDK and Claude Code send them.

Strictness is Anthropic's where it protects the conversion (required fields, types, the
image media types, the thinking budget, tool_use/tool_result pairing, with the real API's
wording) and deliberately looser where Claude Code would break: unknown *top-level* fields
are accepted and ignored (the real API rejects them, but Claude Code keeps adding new ones
and a gateway must "forward them as open lists"; ``unknown_fields`` names them
for a log line), and blocks and tools ignore keys they do not declare (new beta fields
such as ``eager_input_streaming``). Server tools and server-side blocks are accepted and
dropped; ``mcp_servers`` and non-text documents are refused. Errors are worded by
``anthropic.errors.validation_error``: locations keep the tags of tagged unions
(``thinking.enabled.budget_tokens``), as Anthropic's do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from localgpt.api.anthropic.blocks import (
    Message,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    refusal,
)

_lenient = ConfigDict(extra="ignore", strict=True)
_opaque = ConfigDict(extra="allow", strict=True)


# --- tools, tool_choice, thinking, the small objects ----------------------------------------


class ClientTool(BaseModel):
    """A tool the client runs: ``type`` absent or ``custom``."""

    model_config = _lenient
    type: Literal["custom"] | None = None
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,128}$")
    description: str | None = None
    input_schema: dict[str, Any]
    cache_control: dict[str, Any] | None = None
    strict: bool | None = None


class ServerTool(BaseModel):
    """A versioned Anthropic tool (``web_search_20250305``, ``bash_20250124``...): its
    schema is Anthropic's and server tools run at Anthropic; accepted, not offered."""

    model_config = _opaque
    type: str
    name: str | None = None


def _tool_kind(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    return "custom" if value.get("type") in (None, "custom") else "server"


Tool = Annotated[
    Annotated[ClientTool, Tag("custom")] | Annotated[ServerTool, Tag("server")],
    Discriminator(_tool_kind, custom_error_type="dict_type"),
]


class ToolChoiceAuto(BaseModel):
    model_config = _lenient
    type: Literal["auto"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(BaseModel):
    model_config = _lenient
    type: Literal["any"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(BaseModel):
    model_config = _lenient
    type: Literal["tool"]
    name: str
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(BaseModel):
    model_config = _lenient
    type: Literal["none"]


ToolChoice = Annotated[
    ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone, Field(discriminator="type")
]


class ThinkingEnabled(BaseModel):
    model_config = _lenient
    type: Literal["enabled"]
    budget_tokens: int = Field(ge=1024)
    display: str | None = None


class ThinkingOther(BaseModel):
    """``disabled``, ``adaptive`` (what Claude Code sends to unknown model names) and
    ``between_tools``: accepted, and like ``enabled`` without effect on a chat model."""

    model_config = _lenient
    type: Literal["disabled", "adaptive", "between_tools"]
    display: str | None = None


Thinking = Annotated[ThinkingEnabled | ThinkingOther, Field(discriminator="type")]


class OutputFormat(BaseModel):
    model_config = _lenient
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(BaseModel):
    model_config = _lenient
    effort: str | None = None
    format: OutputFormat | None = None


class Metadata(BaseModel):
    model_config = _lenient
    user_id: str | None = None


# --- the requests ---------------------------------------------------------------------------


class _Conversation(BaseModel):
    """What ``/v1/messages`` and ``/v1/messages/count_tokens`` share."""

    model_config = ConfigDict(extra="ignore", strict=True)

    model: str = Field(min_length=1)
    messages: list[Message]
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None
    # Accepted and ignored: caching hints, Anthropic's infrastructure, beta context edits.
    cache_control: dict[str, Any] | None = None
    context_management: dict[str, Any] | None = None
    container: str | dict[str, Any] | None = None
    speed: str | None = None
    inference_geo: str | None = None
    diagnostics: dict[str, Any] | None = None
    mcp_servers: list[Any] | None = None

    @field_validator("messages")
    @classmethod
    def _not_empty(cls, value: list[Message]) -> list[Message]:
        if not value:
            raise ValueError("at least one message is required")
        return value

    @field_validator("mcp_servers")
    @classmethod
    def _no_mcp(cls, value: list[Any] | None) -> list[Any] | None:
        if value:
            raise ValueError(
                "MCP servers are not supported by this server; give the client the tools"
            )
        return value

    @model_validator(mode="after")
    def _checks(self) -> _Conversation:
        self._check_tool_choice()
        _check_pairing(self.messages)
        return self

    def _check_tool_choice(self) -> None:
        choice = self.tool_choice
        names = {t.name for t in self.tools or () if isinstance(t, ClientTool)}
        if isinstance(choice, ToolChoiceAny) and not names:
            raise refusal(("tool_choice",), "`any` needs at least one client tool in `tools`")
        if isinstance(choice, ToolChoiceTool) and choice.name not in names:
            raise refusal(
                ("tool_choice", "tool", "name"), f"tool `{choice.name}` is not in `tools`"
            )


def _check_pairing(messages: list[Message]) -> None:
    """Every ``tool_use`` answered by a ``tool_result`` in the next turn, and no result
    without its call, worded as the real API words it: chat templates break
    on unpaired calls. Consecutive same-role messages are one turn, as Anthropic merges
    them; system messages do not break a turn."""
    turns: list[tuple[str, list[tuple[int, Message]]]] = []
    for i, message in enumerate(messages):
        if message.role == "system":
            continue
        if turns and turns[-1][0] == message.role:
            turns[-1][1].append((i, message))
        else:
            turns.append((message.role, [(i, message)]))
    calls: dict[str, int] = {}  # tool_use id -> index of its message, in the last assistant turn
    for role, turn in turns:
        if role == "assistant":
            calls = {
                block.id: i
                for i, message in turn
                for block in _blocks(message)
                if isinstance(block, ToolUseBlock)
            }
            continue
        answered = set()
        for i, message in turn:
            for j, block in enumerate(_blocks(message)):
                if not isinstance(block, ToolResultBlock):
                    continue
                if block.tool_use_id not in calls:
                    raise refusal(
                        ("messages", i, "content", j),
                        f"unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{block.tool_use_id}. Each `tool_result` block must have a "
                        "corresponding `tool_use` block in the previous message.",
                    )
                answered.add(block.tool_use_id)
        missing = [call for call in calls if call not in answered]
        if missing:
            raise refusal(
                ("messages", calls[missing[0]]),
                "`tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(missing)}. Each `tool_use` block must have a corresponding "
                "`tool_result` block in the next message.",
            )
        calls = {}


def _blocks(message: Message) -> list[Any]:
    return [] if isinstance(message.content, str) else list(message.content)


class MessagesRequest(_Conversation):
    """``POST /v1/messages``."""

    max_tokens: int = Field(ge=0)
    stream: bool | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)
    metadata: Metadata | None = None
    service_tier: Literal["auto", "standard_only"] | None = None

    @model_validator(mode="after")
    def _budget_below_max_tokens(self) -> MessagesRequest:
        thinking = self.thinking
        if isinstance(thinking, ThinkingEnabled) and thinking.budget_tokens >= self.max_tokens:
            raise refusal(
                (),
                "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult "
                "our documentation at https://docs.claude.com/en/docs/build-with-claude/"
                "extended-thinking#max-tokens-and-context-window-size",
            )
        return self


class CountTokensRequest(_Conversation):
    """``POST /v1/messages/count_tokens``: the conversation, no ``max_tokens``."""


def unknown_fields(raw: Mapping[str, Any], model: type[BaseModel] = MessagesRequest) -> list[str]:
    """The top-level fields of ``raw`` that ``model`` ignores: worth a log line."""
    known = {field.alias or name for name, field in model.model_fields.items()}
    return [key for key in raw if key not in known]
