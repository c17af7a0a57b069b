"""Events the assistant adds to a provider's stream while it runs its own tools.

The OpenAI-compatible API shows none of them in its chunks: it turns ``KeepAlive`` into an SSE
comment and drops the rest. The native session stream shows tool activity as upstream's
``tool_start`` and ``tool_end`` events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from localgpt.providers.base import StreamEvent


@dataclass(slots=True)
class ToolStart:
    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class ToolEnd:
    id: str
    name: str
    output: str
    error: bool = False


@dataclass(slots=True)
class KeepAlive:
    """Sent while tools run, so that clients and proxies do not time the stream out."""


AgentEvent = StreamEvent | ToolStart | ToolEnd | KeepAlive


def tool_message(call_id: str, output: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": output}
