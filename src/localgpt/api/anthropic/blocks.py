"""Messages and content blocks of Anthropic's Messages API (see ``anthropic.protocol``).

Blocks ignore keys they do not declare (Claude Code adds beta fields over time) but are
strict on what the conversion reads, with pydantic's locations laid out as Anthropic's
(``messages.0.content.1.image.source.base64.media_type``): a standard discriminated union
on ``type`` puts the tag in the location, as the real API does, and one message model for
every role keeps the role out of it. Images are passed on as chat ``image_url`` parts,
text documents inlined; PDFs, URLs and file ids of documents and file-id images are 400s.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

_lenient = ConfigDict(extra="ignore", strict=True)
_opaque = ConfigDict(extra="allow", strict=True)


def refusal(loc: tuple[str | int, ...], message: str, value: Any = None) -> ValidationError:
    """A validation error at ``loc`` (relative to the raising model); empty ``loc``: the
    message stands alone, as some of Anthropic's do."""
    error = PydanticCustomError("value_error", "{message}", {"message": message})
    return ValidationError.from_exception_data(
        "MessagesRequest", [InitErrorDetails(type=error, loc=loc, input=value)]
    )


class _Block(BaseModel):
    model_config = _lenient
    cache_control: dict[str, Any] | None = None


# --- content blocks -------------------------------------------------------------------------


class TextBlock(_Block):
    type: Literal["text"]
    text: str
    citations: list[Any] | None = None


class Base64Source(BaseModel):
    model_config = _lenient
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str


class URLSource(BaseModel):
    model_config = _lenient
    type: Literal["url"]
    url: str


class FileSource(BaseModel):
    model_config = _lenient
    type: Literal["file"]
    file_id: str

    @model_validator(mode="after")
    def _refuse(self) -> FileSource:
        raise refusal((), "file ids are not supported by this server; send base64 data or a url")


class ImageBlock(_Block):
    """Passed on as a chat ``image_url`` part (base64 as a data URL): the routed provider
    takes it or refuses it by name."""

    type: Literal["image"]
    source: Annotated[Base64Source | URLSource | FileSource, Field(discriminator="type")]


class TextSource(BaseModel):
    model_config = _lenient
    type: Literal["text"]
    media_type: Literal["text/plain"] | None = None
    data: str


class ContentSource(BaseModel):
    model_config = _lenient
    type: Literal["content"]
    content: str | list[Annotated[TextBlock | ImageBlock, Field(discriminator="type")]]


class OtherDocumentSource(BaseModel):
    model_config = _opaque
    type: Literal["base64", "url", "file"]

    @model_validator(mode="after")
    def _refuse(self) -> OtherDocumentSource:
        raise refusal(
            (),
            "only text documents are supported by this server (source type 'text' or "
            "'content'); send PDFs and files as text",
        )


class DocumentBlock(_Block):
    """A text document is inlined as text (title, context, then the text); PDFs, URLs
    and file ids would need a reader this server does not have."""

    type: Literal["document"]
    source: Annotated[TextSource | ContentSource | OtherDocumentSource, Field(discriminator="type")]
    title: str | None = None
    context: str | None = None
    citations: Any = None


class SearchResultBlock(_Block):
    type: Literal["search_result"]
    source: str
    title: str
    content: list[TextBlock]
    citations: Any = None


class ThinkingBlock(_Block):
    type: Literal["thinking"]
    thinking: str
    signature: str


class RedactedThinkingBlock(_Block):
    type: Literal["redacted_thinking"]
    data: str


class ToolUseBlock(_Block):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolReferenceBlock(_Block):
    type: Literal["tool_reference"]
    tool_name: str


class BrowserStateBlock(BaseModel):
    model_config = _opaque
    type: Literal["browser_state"]


ToolResultContent = Annotated[
    TextBlock
    | ImageBlock
    | SearchResultBlock
    | DocumentBlock
    | ToolReferenceBlock
    | BrowserStateBlock,
    Field(discriminator="type"),
]


class ToolResultBlock(_Block):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[ToolResultContent] | None = None
    is_error: bool | None = None


# Blocks that only Anthropic's servers produce (server tools, MCP connector): accepted in
# replayed assistant turns, never shown to a local model.
ServerBlockType = Literal[
    "server_tool_use",
    "web_search_tool_result",
    "web_fetch_tool_result",
    "code_execution_tool_result",
    "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result",
    "tool_search_tool_result",
    "container_upload",
    "mcp_tool_use",
    "mcp_tool_result",
]


class ServerBlock(BaseModel):
    model_config = _opaque
    type: ServerBlockType


Block = Annotated[
    TextBlock
    | ImageBlock
    | DocumentBlock
    | SearchResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock
    | ToolUseBlock
    | ToolResultBlock
    | ServerBlock,
    Field(discriminator="type"),
]

_USER_BLOCKS = ("text", "image", "document", "search_result", "tool_result")
_ASSISTANT_BLOCKS = (
    "text",
    "tool_use",
    "thinking",
    "redacted_thinking",
    *get_args(ServerBlockType),
)


class Message(BaseModel):
    """One model for every role (not a union by role): Anthropic's locations carry no
    role (``messages.0.content.1.text.text``). ``system`` is SDK 2.14's mid-conversation
    system message."""

    model_config = _lenient
    role: Literal["user", "assistant", "system"]
    content: str | list[Block]

    @model_validator(mode="after")
    def _blocks_fit_role(self) -> Message:
        if isinstance(self.content, str):
            return self
        allowed = {
            "user": _USER_BLOCKS,
            "assistant": _ASSISTANT_BLOCKS,
            "system": ("text",),
        }[self.role]
        for j, block in enumerate(self.content):
            if block.type not in allowed:
                raise refusal(
                    ("content", j),
                    f"`{block.type}` blocks are not allowed in `{self.role}` messages",
                    block.type,
                )
        return self
