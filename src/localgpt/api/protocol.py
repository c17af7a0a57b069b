"""Wire models of the requests the server takes: OpenAI's Chat Completions, Completions and
Embeddings as OpenAI's published spec defines them, and the native API's bodies.

They validate requests strictly (unknown fields and wrong types are 400s, as at OpenAI), with
the rules between fields as model validators, and give ``/openapi.json`` its schema. What
passes travels on as the decoded dicts, typed by ``providers.messages`` (``ChatMessage``,
``ChatParams``). Responses are rendered directly to JSON bytes (``api.render``): building
pydantic objects for every chunk would cost more than the rest of the request path.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

_strict = ConfigDict(extra="forbid", strict=True)


class _Wire(BaseModel):
    model_config = _strict


# --- content parts --------------------------------------------------------------------------


class TextPart(_Wire):
    type: Literal["text"]
    text: str


class ImageURL(_Wire):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Wire):
    type: Literal["image_url"]
    image_url: ImageURL


class InputAudio(_Wire):
    data: str
    format: Literal["wav", "mp3"]


class AudioPart(_Wire):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FileData(_Wire):
    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


class FilePart(_Wire):
    type: Literal["file"]
    file: FileData


class RefusalPart(_Wire):
    type: Literal["refusal"]
    refusal: str


UserPart = Annotated[TextPart | ImagePart | AudioPart | FilePart, Field(discriminator="type")]
AssistantPart = Annotated[TextPart | RefusalPart, Field(discriminator="type")]


# --- messages -------------------------------------------------------------------------------


class FunctionCall(_Wire):
    name: str
    arguments: str


class ToolCall(_Wire):
    id: str
    type: Literal["function"]
    function: FunctionCall


class SystemMessage(_Wire):
    role: Literal["system"]
    content: str | list[TextPart]
    name: str | None = None


class DeveloperMessage(_Wire):
    role: Literal["developer"]
    content: str | list[TextPart]
    name: str | None = None


class UserMessage(_Wire):
    role: Literal["user"]
    content: str | list[UserPart]
    name: str | None = None


class AssistantAudio(_Wire):
    id: str


class AssistantMessage(_Wire):
    role: Literal["assistant"]
    content: str | list[AssistantPart] | None = None
    refusal: str | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None
    audio: AssistantAudio | None = None


class ToolMessage(_Wire):
    role: Literal["tool"]
    content: str | list[TextPart]
    tool_call_id: str
    name: str | None = None  # not in the spec, but in OpenAI's own examples, and accepted


class FunctionMessage(_Wire):
    role: Literal["function"]
    content: str | None
    name: str


Message = Annotated[
    SystemMessage
    | DeveloperMessage
    | UserMessage
    | AssistantMessage
    | ToolMessage
    | FunctionMessage,
    Field(discriminator="role"),
]


# --- tools and formats ----------------------------------------------------------------------


class FunctionDef(_Wire):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Wire):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Wire):
    name: str


class NamedToolChoice(_Wire):
    type: Literal["function"]
    function: NamedFunction


class JSONSchemaFormat(_Wire):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class TextFormat(_Wire):
    type: Literal["text"]


class JSONObjectFormat(_Wire):
    type: Literal["json_object"]


class JSONSchemaResponseFormat(_Wire):
    type: Literal["json_schema"]
    json_schema: JSONSchemaFormat


ResponseFormat = Annotated[
    TextFormat | JSONObjectFormat | JSONSchemaResponseFormat, Field(discriminator="type")
]


class StreamOptions(_Wire):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class Prediction(_Wire):
    type: Literal["content"]
    content: str | list[TextPart]


# --- the request ----------------------------------------------------------------------------

# Fields of OpenAI's spec that cannot change the answer: accepted, then ignored.
IGNORED_FIELDS = frozenset({"store", "service_tier", "metadata", "stream", "stream_options"})
# Fields of OpenAI's spec that only OpenAI-compatible upstreams understand.
OPENAI_ONLY_FIELDS = frozenset(
    {
        "logit_bias",
        "modalities",
        "audio",
        "prediction",
        "reasoning_effort",
        "web_search_options",
        "verbosity",
        "functions",
        "function_call",
        "prompt_cache_key",
        "safety_identifier",
        "prompt_cache_retention",
    }
)
# Sampling extensions common among local servers.
EXTENSION_FIELDS = frozenset({"top_k", "min_p", "repeat_penalty"})


class ChatCompletionRequest(_Wire):
    """``POST /v1/chat/completions``. Every field is honoured or refused by name."""

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(None, ge=1, le=128)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    # OpenAI-only fields, forwarded to OpenAI-compatible providers and refused elsewhere.
    logit_bias: dict[str, int] | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    audio: dict[str, Any] | None = None
    prediction: Prediction | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    web_search_options: dict[str, Any] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    functions: list[FunctionDef] | None = None
    function_call: Literal["none", "auto"] | NamedFunction | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    prompt_cache_retention: str | None = None
    # Sampling extensions: for providers that understand them.
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0, le=1)
    repeat_penalty: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _between_fields(self) -> Self:
        """The rules between fields, worded as OpenAI words them. A ``tool_choice`` that
        names or requires tools the request does not offer is refused here, rather than
        left to each provider to fail in its own words."""
        if self.stream_options is not None and not self.stream:
            raise field_error(
                "stream_options",
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            )
        choice = self.tool_choice
        if choice is None or choice in ("none", "auto"):
            return self
        if not self.tools:
            raise field_error(
                "tool_choice",
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
                "are specified.",
            )
        if isinstance(choice, NamedToolChoice):
            name = choice.function.name
            if name not in {tool.function.name for tool in self.tools}:
                raise field_error(
                    "tool_choice",
                    f"Invalid value for 'tool_choice': function '{name}' is not in 'tools'.",
                )
        return self


def field_error(param: str, message: str, code: str = "invalid_value") -> PydanticCustomError:
    """A rule between fields, broken: ``api.errors.validation_error`` makes it a 400 that
    names ``param`` with this very message."""
    return PydanticCustomError(
        "field_rule",
        message.replace("{", "{{").replace("}", "}}"),
        {
            "param": param,
            "code": code,
        },
    )


class CompletionRequest(_Wire):
    """``POST /v1/completions``, the legacy text endpoint editors use for autocomplete."""

    model: str = Field(min_length=1)
    prompt: str | list[str] | list[int] | list[list[int]]
    suffix: str | None = None
    max_tokens: int | None = Field(None, ge=0)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=128)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: bool | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    best_of: int | None = Field(None, ge=1, le=20)
    logit_bias: dict[str, int] | None = None
    user: str | None = None
    seed: int | None = None
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0, le=1)
    repeat_penalty: float | None = Field(None, ge=0)


class EmbeddingRequest(_Wire):
    """``POST /v1/embeddings``."""

    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


# --- the native API -------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewSession(_Body):
    model: str | None = None


class ChatBody(_Body):
    message: str = Field(min_length=1)
    session_id: str | None = None
    model: str | None = None


class ModelBody(_Body):
    model: str = Field(min_length=1)


class ReindexBody(_Body):
    force: bool = False
