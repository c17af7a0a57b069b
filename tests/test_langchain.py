"""langchain-openai as a second real client: invoke, stream, tool binding."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from tests.conftest import Server
from tests.fakes import FakeCall, Script
from tests.fakes.openai_fake import FakeOpenAI


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return "sunny"


def chat(server: Server) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=server.base_url,
        api_key="x",
        model="openai/fake-model",  # type: ignore[arg-type]
        max_retries=0,
    )


def test_invoke_and_stream(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    llm = chat(gateway)
    reply = llm.invoke([HumanMessage("hello langchain")])
    assert reply.content == "You said: hello langchain"
    assert reply.usage_metadata and reply.usage_metadata["total_tokens"] == 18
    pieces = [c.content for c in llm.stream([HumanMessage("a b c")])]
    assert "".join(str(p) for p in pieces) == "You said: a b c"
    assert len([p for p in pieces if p]) >= 4


def test_bound_tools_round_trip(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script(
        "fake-model",
        Script(tool_calls=[FakeCall("get_weather", ['{"city":', ' "Bern"}'], id="call_lc")]),
        Script(text=["It is sunny in Bern."]),
    )
    llm = chat(gateway).bind_tools([get_weather])
    first = llm.invoke([HumanMessage("weather in Bern?")])
    assert isinstance(first, AIMessage)
    assert first.tool_calls == [
        {"name": "get_weather", "args": {"city": "Bern"}, "id": "call_lc", "type": "tool_call"}
    ]
    second = llm.invoke(
        [HumanMessage("weather in Bern?"), first, ToolMessage("sunny", tool_call_id="call_lc")]
    )
    assert second.content == "It is sunny in Bern."
    chunks = list(llm.stream([HumanMessage("again")]))
    merged = chunks[0]
    for c in chunks[1:]:
        merged += c  # type: ignore[assignment]
    assert merged.content == "It is sunny in Bern."
