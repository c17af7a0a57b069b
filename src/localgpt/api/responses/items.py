"""Input items and content parts of the Responses API (see ``responses.protocol``).

Items and parts ignore keys they do not declare, because clients replay what servers gave
them (``phase``, ``namespace``, ``prompt_cache_breakpoint``...): a replayed item must never
fail a conversation for a key we have no use for. Item types the SDK defines but a chat
model cannot use (reasoning, hosted and freeform tool calls) are accepted and dropped;
only a type the SDK does not know is a 400 (``input[3].type``), as a typo should be.

Tagged unions pick their member with a function whose tags are class-like names: the
error helper (``errors._param``) drops such names from a location, so a missing
``call_id`` is reported as ``input[3].call_id``, not ``input[3].function_call.call_id``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

_strict = ConfigDict(extra="forbid", strict=True)
_replayed = ConfigDict(extra="ignore", strict=True)
_opaque = ConfigDict(extra="allow", strict=True)

NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"

# Item types of the SDK's ``ResponseInputItemParam`` that carry nothing a chat model can
# use here (hosted tool calls, reasoning, freeform tool calls...): accepted, then dropped.
DroppedItemType = Literal[
    "reasoning",
    "custom_tool_call",
    "custom_tool_call_output",
    "local_shell_call",
    "local_shell_call_output",
    "shell_call",
    "shell_call_output",
    "apply_patch_call",
    "apply_patch_call_output",
    "web_search_call",
    "file_search_call",
    "computer_call",
    "computer_call_output",
    "image_generation_call",
    "code_interpreter_call",
    "tool_search_call",
    "tool_search_output",
    "additional_tools",
    "configuration_update",
    "compaction",
    "compaction_trigger",
    "mcp_list_tools",
    "mcp_approval_request",
    "mcp_approval_response",
    "mcp_call",
    "program",
    "program_output",
]
DROPPED_ITEM_TYPES: tuple[str, ...] = get_args(DroppedItemType)
ITEM_TYPES = ("message", "function_call", "function_call_output", "item_reference")


def refusal(loc: tuple[str | int, ...], message: str, value: Any) -> ValidationError:
    """A validation error at ``loc`` (relative to the model raising it), so that the 400
    names the field even for rules that span several fields."""
    error = PydanticCustomError("value_error", "{message}", {"message": message})
    return ValidationError.from_exception_data(
        "ResponsesRequest", [InitErrorDetails(type=error, loc=loc, input=value)]
    )


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class Unknown(BaseModel):
    """The member of a tagged union that catches types nobody defines: a 400 at ``type``."""

    model_config = _opaque
    expected: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _refuse(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        value = data.get("type")
        if value is None:
            details = InitErrorDetails(type="missing", loc=("type",), input=data)
        else:
            error = PydanticCustomError(
                "literal_error", "Input should be {expected}", {"expected": _quoted(cls.expected)}
            )
            details = InitErrorDetails(type=error, loc=("type",), input=value)
        raise ValidationError.from_exception_data(cls.__name__, [details])


def picker(
    tags: dict[str, str], *, untyped: Callable[[dict[str, Any]], str] | None = None
) -> Discriminator:
    """Pick a member by its ``type`` looked up in ``tags``, else ``Unknown`` (a 400 at
    ``type``). A value that is not an object is "expected an object" at its own place."""

    def pick(value: Any) -> str | None:
        if not isinstance(value, dict):
            return None
        kind = value.get("type")
        if kind is None and untyped is not None:
            return untyped(value)
        return tags.get(kind, "Unknown") if isinstance(kind, str) else "Unknown"

    return Discriminator(pick, custom_error_type="dict_type")


# --- content parts --------------------------------------------------------------------------


class InputText(BaseModel):
    model_config = _replayed
    type: Literal["input_text"]
    text: str


class InputImage(BaseModel):
    """An image by URL or data URL; passed on as a chat ``image_url`` part, which the
    routed provider takes or refuses by name. A ``file_id`` needs a Files API: refused."""

    model_config = _replayed
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["low", "high", "auto", "original"] | None = None

    @model_validator(mode="after")
    def _needs_url(self) -> InputImage:
        if self.image_url is None:
            where = ("file_id",) if self.file_id is not None else ("image_url",)
            raise refusal(
                where,
                "this server has no Files API; send the image as 'image_url' (a URL or a "
                "base64 data URL)",
                self.file_id,
            )
        return self


class InputFile(BaseModel):
    model_config = _replayed
    type: Literal["input_file"]

    @model_validator(mode="after")
    def _refuse(self) -> InputFile:
        raise refusal((), "file inputs are not supported by this server; send the text", None)


class OutputText(BaseModel):
    model_config = _replayed
    type: Literal["output_text"]
    text: str
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class Refusal(BaseModel):
    model_config = _replayed
    type: Literal["refusal"]
    refusal: str


MessagePart = Annotated[
    InputText | InputImage | InputFile | OutputText | Refusal, Field(discriminator="type")
]
OutputPart = Annotated[InputText | InputImage | InputFile, Field(discriminator="type")]

_ASSISTANT_PARTS = ("output_text", "refusal", "input_text")


# --- input items ----------------------------------------------------------------------------


class MessageItem(BaseModel):
    """Easy, input or replayed output message; ``type`` may be absent (Agents SDK)."""

    model_config = _replayed
    type: Literal["message"] | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[MessagePart]
    id: str | None = None
    status: str | None = None

    @model_validator(mode="after")
    def _parts_fit_role(self) -> MessageItem:
        if isinstance(self.content, str):
            return self
        for j, part in enumerate(self.content):
            if self.role == "assistant" and part.type not in _ASSISTANT_PARTS:
                message = f"assistant messages take {_quoted(_ASSISTANT_PARTS)} parts"
            elif self.role != "assistant" and part.type in ("output_text", "refusal"):
                message = f"'{part.type}' parts belong to assistant messages"
            elif self.role in ("system", "developer") and part.type == "input_image":
                message = f"{self.role} messages take text only"
            else:
                continue
            raise refusal(("content", j), message, part.type)
        return self


class FunctionCallItem(BaseModel):
    model_config = _replayed
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(BaseModel):
    model_config = _replayed
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[OutputPart]
    id: str | None = None
    status: str | None = None


class ItemReference(BaseModel):
    model_config = _replayed
    type: Literal["item_reference"] | None = None
    id: str


class DroppedItem(BaseModel):
    """An item the SDK defines that carries nothing for a chat model: kept for listing."""

    model_config = _opaque
    type: DroppedItemType


class UnknownItem(Unknown):
    expected = ITEM_TYPES + DROPPED_ITEM_TYPES


_ITEM_TAGS = {
    "message": "MessageItem",
    "function_call": "FunctionCallItem",
    "function_call_output": "FunctionCallOutputItem",
    "item_reference": "ItemReference",
    **dict.fromkeys(DROPPED_ITEM_TYPES, "DroppedItem"),
}


def _untyped_item(value: dict[str, Any]) -> str:
    """No ``type``: a message if it has a role (the easy form), else a reference by id."""
    return "ItemReference" if "role" not in value and "id" in value else "MessageItem"


InputItem = Annotated[
    Annotated[MessageItem, Tag("MessageItem")]
    | Annotated[FunctionCallItem, Tag("FunctionCallItem")]
    | Annotated[FunctionCallOutputItem, Tag("FunctionCallOutputItem")]
    | Annotated[ItemReference, Tag("ItemReference")]
    | Annotated[DroppedItem, Tag("DroppedItem")]
    | Annotated[UnknownItem, Tag("Unknown")],
    picker(_ITEM_TAGS, untyped=_untyped_item),
]
