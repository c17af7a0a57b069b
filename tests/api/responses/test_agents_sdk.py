"""The OpenAI Agents SDK's default model (the Responses API) runs an agent with a function
tool against localgpt on the embedded default model, streamed and not.

The model decides to call the tool; the SDK runs it and sends its output back as a
``function_call_output`` item; the model then answers from it. Qwen2.5-Coder-1.5B is what
a user gets with no configuration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from openai import AsyncOpenAI

from tests.conftest import Server

agents = pytest.importorskip("agents")

QWEN = "local/qwen2.5-coder-1.5b-instruct"


@pytest.fixture(scope="module")
def qwen_gateway(servers: Callable[[str], Server]) -> Server:
    return servers(
        """
[agent]
gateway_mode = true
[providers.local]
threads = 2
context_size = 4096
"""
    )


def build(server: Server, calls: list[str]) -> object:
    agents.set_tracing_disabled(True)  # traces would go to api.openai.com

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Get the current weather for a city."""
        calls.append(city)
        return f"It is sunny and 21 degrees Celsius in {city}."

    client = AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=300)
    return agents.Agent(
        name="Weather",
        instructions="You answer questions about the weather. Use the get_weather tool.",
        tools=[get_weather],
        model=agents.OpenAIResponsesModel(model=QWEN, openai_client=client),
        model_settings=agents.ModelSettings(temperature=0),
    )


def check(calls: list[str], answer: str) -> None:
    assert calls and "paris" in calls[0].lower(), calls
    assert "21" in answer or "sunny" in answer.lower(), answer


def test_an_agent_runs_its_tool(qwen_gateway: Server) -> None:
    calls: list[str] = []
    agent = build(qwen_gateway, calls)
    result = asyncio.run(agents.Runner.run(agent, "What is the weather in Paris right now?"))
    check(calls, str(result.final_output))
    kinds = [item.type for item in result.new_items]
    assert kinds[:2] == ["tool_call_item", "tool_call_output_item"], kinds
    assert kinds[-1] == "message_output_item"


def test_an_agent_runs_its_tool_streamed(qwen_gateway: Server) -> None:
    calls: list[str] = []
    agent = build(qwen_gateway, calls)

    async def run() -> tuple[str, list[str]]:
        result = agents.Runner.run_streamed(agent, "What is the weather in Paris right now?")
        deltas: list[str] = []
        async for event in result.stream_events():
            if event.type == "raw_response_event" and event.data.type == (
                "response.output_text.delta"
            ):
                deltas.append(event.data.delta)
        return str(result.final_output), deltas

    answer, deltas = asyncio.run(run())
    check(calls, answer)
    assert len(deltas) > 1 and "".join(deltas) == answer  # streamed, piece by piece
