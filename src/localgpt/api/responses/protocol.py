"""Wire models of OpenAI's Responses API (``POST /v1/responses``), as the openai SDK, the
Agents SDK and Codex send it (shapes checked against the openai SDK's types).

Like ``api.protocol``, the request is validated strictly: an unknown top-level field or a
wrong type is a 400 that names the parameter (``errors.validation_error`` words it), and
every field is either honoured, accepted and ignored (``IGNORED_FIELDS``), or refused by
name (``background``, ``conversation``, ``prompt``, ``moderation``, ``top_logprobs`` > 0).
Input items and tools are looser on purpose (see ``responses.items``): non-function tools
(hosted, custom, namespace) are accepted and not offered to the model (Codex sends them), and
``responses.convert.dropped_tools`` says which.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from localgpt.api.responses.items import (
    NAME_PATTERN,
    InputItem,
    Unknown,
    picker,
    refusal,
)

_strict = ConfigDict(extra="forbid", strict=True)
_replayed = ConfigDict(extra="ignore", strict=True)
_opaque = ConfigDict(extra="allow", strict=True)

# Tool types other than ``function``: accepted (Codex sends
# web_search, local_shell, image_generation, tool_search) without offering them to the model.
DroppedToolType = Literal[
    "custom",
    "local_shell",
    "shell",
    "apply_patch",
    "web_search",
    "web_search_2025_08_26",
    "web_search_preview",
    "web_search_preview_2025_03_11",
    "file_search",
    "computer",
    "computer_use_preview",
    "mcp",
    "code_interpreter",
    "image_generation",
    "namespace",
    "tool_search",
    "programmatic_tool_calling",
]
DROPPED_TOOL_TYPES: tuple[str, ...] = get_args(DroppedToolType)
# tool_choice forms that force a tool this server does not run.
HostedChoiceType = Literal[
    "custom",
    "mcp",
    "file_search",
    "web_search",
    "web_search_preview",
    "web_search_preview_2025_03_11",
    "computer",
    "computer_use",
    "computer_use_preview",
    "image_generation",
    "code_interpreter",
    "apply_patch",
    "shell",
    "programmatic_tool_calling",
]
HOSTED_CHOICES: tuple[str, ...] = get_args(HostedChoiceType)


# --- tools and tool_choice ------------------------------------------------------------------


class FunctionTool(BaseModel):
    """The flat function tool (not chat's nested ``function``)."""

    model_config = _replayed
    type: Literal["function"]
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class DroppedTool(BaseModel):
    model_config = _opaque
    type: DroppedToolType


class UnknownTool(Unknown):
    expected = ("function", *DROPPED_TOOL_TYPES)


ResponsesTool = Annotated[
    Annotated[FunctionTool, Tag("FunctionTool")]
    | Annotated[DroppedTool, Tag("DroppedTool")]
    | Annotated[UnknownTool, Tag("Unknown")],
    picker({"function": "FunctionTool", **dict.fromkeys(DROPPED_TOOL_TYPES, "DroppedTool")}),
]


class FunctionChoice(BaseModel):
    model_config = _strict
    type: Literal["function"]
    name: str


class AllowedTools(BaseModel):
    model_config = _strict
    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]]


class HostedChoice(BaseModel):
    """Forcing a hosted tool: parsed so the 400 can say which; never honoured."""

    model_config = _opaque
    type: HostedChoiceType


class UnknownChoice(Unknown):
    expected = ("function", "allowed_tools", *HOSTED_CHOICES)


ToolChoiceObject = Annotated[
    Annotated[FunctionChoice, Tag("FunctionChoice")]
    | Annotated[AllowedTools, Tag("AllowedTools")]
    | Annotated[HostedChoice, Tag("HostedChoice")]
    | Annotated[UnknownChoice, Tag("Unknown")],
    picker(
        {
            "function": "FunctionChoice",
            "allowed_tools": "AllowedTools",
            **dict.fromkeys(HOSTED_CHOICES, "HostedChoice"),
        }
    ),
]


# --- text format and the small objects ------------------------------------------------------


class TextFormat(BaseModel):
    model_config = _strict
    type: Literal["text"]


class JSONObjectFormat(BaseModel):
    model_config = _strict
    type: Literal["json_object"]


class JSONSchemaFormat(BaseModel):
    model_config = _strict
    type: Literal["json_schema"]
    name: str = Field(pattern=NAME_PATTERN)
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None
    description: str | None = None


class UnknownFormat(Unknown):
    expected = ("text", "json_object", "json_schema")


Format = Annotated[
    Annotated[TextFormat, Tag("TextFormat")]
    | Annotated[JSONObjectFormat, Tag("JSONObjectFormat")]
    | Annotated[JSONSchemaFormat, Tag("JSONSchemaFormat")]
    | Annotated[UnknownFormat, Tag("Unknown")],
    picker(
        {
            "text": "TextFormat",
            "json_object": "JSONObjectFormat",
            "json_schema": "JSONSchemaFormat",
        }
    ),
]

Verbosity = Literal["low", "medium", "high"]


class TextConfig(BaseModel):
    model_config = _strict
    format: Format | None = None
    verbosity: Verbosity | None = None


class Reasoning(BaseModel):
    """Accepted and ignored: values are open strings so a new effort level is no 400."""

    model_config = _replayed
    effort: str | None = None
    summary: str | None = None
    generate_summary: str | None = None


class StreamOptions(BaseModel):
    model_config = _strict
    include_obfuscation: bool | None = None


# --- the request ----------------------------------------------------------------------------

# Request fields that are accepted and have no effect on generation (some are echoed).
IGNORED_FIELDS = frozenset(
    {
        "include",
        "reasoning",
        "truncation",
        "store",
        "service_tier",
        "stream",
        "stream_options",
        "max_tool_calls",
        "verbosity",
        "prompt_cache_retention",
        "prompt_cache_options",
        "context_management",
        "access_programs",
        "background_options",
        "image",
        "client_metadata",
    }
)


class ResponsesRequest(BaseModel):
    """``POST /v1/responses``. Every field is honoured, accepted and ignored, or refused."""

    model_config = _strict

    model: str = Field(min_length=1)
    input: str | list[InputItem] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    tools: list[ResponsesTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceObject | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    verbosity: Verbosity | None = None  # the SDK's parse() puts it at the top level
    metadata: dict[str, str] | None = None
    store: bool | None = None
    include: list[str] | None = None
    reasoning: Reasoning | None = None
    truncation: Literal["auto", "disabled"] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    service_tier: str | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    max_tool_calls: int | None = Field(None, ge=0)
    context_management: list[dict[str, Any]] | None = None
    access_programs: dict[str, Any] | None = None
    image: dict[str, Any] | None = None
    background_options: dict[str, Any] | None = None
    # Codex CLI (0.171) sends its installation and session ids here.
    client_metadata: dict[str, Any] | None = None
    # Refused unless absent (or false/0): features this server does not have.
    background: bool | None = None
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    moderation: dict[str, Any] | None = None

    @field_validator("max_output_tokens")
    @classmethod
    def _at_least_16(cls, value: int | None) -> int | None:
        if value is not None and value < 16:
            raise ValueError(
                f"integer below minimum value. Expected a value >= 16, but got {value} instead"
            )
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return value
        if len(value) > 16:
            raise ValueError(f"at most 16 key-value pairs are allowed, got {len(value)}")
        for key, text in value.items():
            if len(key) > 64:
                raise ValueError(f"key '{key[:64]}...' is longer than 64 characters")
            if len(text) > 512:
                raise ValueError(f"the value of '{key}' is longer than 512 characters")
        return value

    @field_validator("background")
    @classmethod
    def _no_background(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("background responses are not supported by this server")
        return value

    @field_validator("conversation", "prompt", "moderation")
    @classmethod
    def _unsupported(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            names = {
                "conversation": "the Conversations API is not supported by this server; "
                "continue with 'previous_response_id' or send the whole input",
                "prompt": "stored prompts are not supported by this server; send "
                "'instructions' and 'input'",
                "moderation": "moderation is not available on this server",
            }
            raise ValueError(names[str(info.field_name)])
        return value

    @field_validator("top_logprobs")
    @classmethod
    def _no_logprobs(cls, value: int | None) -> int | None:
        if value:
            raise ValueError("log probabilities are not available from this server; send 0")
        return value

    @model_validator(mode="after")
    def _cross_field(self) -> ResponsesRequest:
        if self.input is None and self.previous_response_id is None:
            raise ValidationError.from_exception_data(
                "ResponsesRequest", [InitErrorDetails(type="missing", loc=("input",), input={})]
            )
        if self.stream_options is not None and not self.stream:
            raise refusal(
                ("stream_options",),
                "'stream_options' is only allowed when 'stream' is enabled",
                None,
            )
        self._check_tool_choice()
        return self

    def _check_tool_choice(self) -> None:
        """A choice naming or requiring tools the request does not offer is refused here, in
        OpenAI's terms, rather than by each provider in its own."""
        choice = self.tool_choice
        names = {t.name for t in self.tools or () if isinstance(t, FunctionTool)}
        if isinstance(choice, HostedChoice):
            raise refusal(
                ("tool_choice",),
                f"'{choice.type}' tools do not run on this server; only function tools can "
                "be chosen",
                choice.type,
            )
        if choice == "required" and not names:
            raise refusal(
                ("tool_choice",), "'required' needs at least one function tool in 'tools'", choice
            )
        if isinstance(choice, FunctionChoice) and choice.name not in names:
            raise refusal(
                ("tool_choice",), f"function '{choice.name}' is not in 'tools'", choice.name
            )
        if isinstance(choice, AllowedTools):
            for i, tool in enumerate(choice.tools):
                name = tool.get("name")
                if tool.get("type") == "function" and name not in names:
                    raise refusal(
                        ("tool_choice", "tools", i), f"function '{name}' is not in 'tools'", name
                    )
