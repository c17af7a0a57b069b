"""The embedded model, for real: SmolLM2-135M for plumbing, the default Qwen where answers count."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable

import httpx
import openai
import pytest

from tests.conftest import SMOLLM, Server, local_config
from tests.fakes import wait_for
from tests.helpers import error_of, post_chat, stream_chunks, user

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Current time in a time zone",
            "parameters": {
                "type": "object",
                "properties": {"tz": {"type": "string"}},
                "required": ["tz"],
            },
        },
    },
]


@pytest.fixture
def client(local: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=local.base_url, api_key="x", max_retries=0, timeout=120)


def test_streaming_arrives_token_by_token(local: Server) -> None:
    resp = post_chat(
        local.url,
        {
            "model": SMOLLM,
            "messages": user("Count from 1 to 20, separated by commas."),
            "stream": True,
            "max_tokens": 40,
            "temperature": 0,
            "stream_options": {"include_usage": True},
        },
    )
    chunks = stream_chunks(resp.text)
    texts = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len([t for t in texts if t]) >= 10  # many deltas, not one
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] >= 10 and usage["prompt_tokens"] > 20
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_max_tokens_and_stop(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=SMOLLM, messages=user("Write a long story."), max_completion_tokens=5
    )
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage is not None and resp.usage.completion_tokens == 5
    resp = client.chat.completions.create(
        model=SMOLLM,
        messages=user("Count: 1, 2, 3, 4, 5, 6"),
        stop=["4"],
        max_tokens=40,
        temperature=0,
    )
    assert "4" not in (resp.choices[0].message.content or "")


def test_same_seed_same_answer(client: openai.OpenAI) -> None:
    def ask() -> str:
        resp = client.chat.completions.create(
            model=SMOLLM,
            messages=user("Invent a name for a cat."),
            temperature=1.0,
            top_p=0.95,
            seed=1234,
            max_tokens=20,
        )
        return resp.choices[0].message.content or ""

    assert ask() == ask() == ask()


def test_json_schema_output_validates(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    resp = client.chat.completions.create(
        model=SMOLLM,
        messages=user("Describe a person as JSON."),
        max_tokens=60,
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}},
    )
    data = json.loads(resp.choices[0].message.content or "")
    assert set(data) == {"name", "age"} and isinstance(data["age"], int) and data["age"] >= 0


def test_required_tool_call_streams_valid_arguments(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model=SMOLLM,
        messages=user("What is the weather in Oslo?"),
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice="required",
        max_tokens=60,
    ) as stream:
        argument_pieces = [e for e in stream if e.type == "tool_calls.function.arguments.delta"]
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert calls and calls[0].function.name in {"get_weather", "get_time"}
    args = json.loads(calls[0].function.arguments)
    assert set(args) == ({"city"} if calls[0].function.name == "get_weather" else {"tz"})
    assert len(argument_pieces) >= 3  # arguments arrive as deltas, not whole


def test_named_tool_choice_is_enforced(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=SMOLLM,
        messages=user("What is the weather in Oslo?"),
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        max_tokens=60,
    )
    calls = resp.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_time"]
    assert "tz" in json.loads(calls[0].function.arguments)


def test_the_clients_stop_strings_do_not_cut_the_tool_decision(client: openai.OpenAI) -> None:
    # "}" and a newline both occur in the decision's JSON; they are for the answer only.
    resp = client.chat.completions.create(
        model=SMOLLM,
        messages=user("What is the weather in Oslo?"),
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice="required",
        stop=["}", "\n"],
        frequency_penalty=2.0,
        max_tokens=60,
    )
    calls = resp.choices[0].message.tool_calls or []
    assert calls and isinstance(json.loads(calls[0].function.arguments), dict)


def test_native_tool_calls_make_one_pass_through_llama_cpps_parser(
    servers: Callable[[str], Server],
) -> None:
    # With tool_calls = "native" the tools go to llama.cpp with the chat template, which
    # parses what the model writes: one model pass. The grammar route makes two (decide,
    # then answer), so it evaluates the prompt twice.
    usage = {}
    for mode in ("native", "grammar"):
        server = servers(local_config(SMOLLM, gateway=True, extra=f'tool_calls = "{mode}"'))
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=120)
        with client.chat.completions.stream(
            model=SMOLLM,
            messages=user("Say hi."),
            tools=TOOLS,  # type: ignore[arg-type]
            max_tokens=40,
            stream_options={"include_usage": True},
            temperature=0,
        ) as stream:
            for _ in stream:
                pass
            final = stream.current_completion_snapshot
        choice = final.choices[0]
        for call in choice.message.tool_calls or []:
            assert isinstance(json.loads(call.function.arguments), dict)
        assert choice.finish_reason in ("stop", "length", "tool_calls")
        assert final.usage is not None
        usage[mode] = final.usage.prompt_tokens
        server.stop()
    assert usage["native"] < usage["grammar"], usage


def test_tool_choice_none_answers_in_text(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=SMOLLM,
        messages=user("Say hi."),
        tools=TOOLS,
        tool_choice="none",  # type: ignore[arg-type]
        max_tokens=20,
    )
    assert resp.choices[0].message.tool_calls is None
    assert resp.choices[0].message.content


def test_tool_results_continue_the_conversation(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=SMOLLM,
        tools=TOOLS,
        tool_choice="none",  # type: ignore[arg-type]
        max_tokens=30,
        messages=[
            *user("What is the weather in Oslo?"),
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "call_1",
                "name": "get_weather",
                "content": "Snow, -3C",
            },
        ],
    )
    assert resp.choices[0].finish_reason in ("stop", "length")
    assert resp.choices[0].message.content


def test_what_the_local_model_cannot_honour_is_refused(local: Server) -> None:
    image = {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}],
    }
    for extra, param in [
        ({"n": 2}, "n"),
        ({"messages": [image]}, "messages[0].content[0]"),
        ({"audio": {"voice": "x"}}, "audio"),
    ]:
        resp = post_chat(local.url, {"model": SMOLLM, "messages": user("x"), **extra})
        assert resp.status_code == 400, resp.text
        assert error_of(resp)["param"] == param


def test_a_participant_name_reaches_the_local_model(local: Server) -> None:
    def prompt_tokens(message: dict[str, object]) -> int:
        body = {"model": SMOLLM, "messages": [message], "max_tokens": 1}
        resp = post_chat(local.url, body)
        assert resp.status_code == 200, resp.text
        return int(resp.json()["usage"]["prompt_tokens"])

    plain = prompt_tokens({"role": "user", "content": "What is the capital of France?"})
    named = prompt_tokens(
        {"role": "user", "content": "What is the capital of France?", "name": "Annabelle"}
    )
    parts = prompt_tokens(
        {
            "role": "user",
            "content": [{"type": "text", "text": "What is the capital of France?"}],
            "name": "Annabelle",
        }
    )
    assert named > plain and parts == named  # "Annabelle: " is in the prompt, either way


def test_context_overflow_is_context_length_exceeded(local: Server) -> None:
    resp = post_chat(local.url, {"model": SMOLLM, "messages": user("word " * 6000)})
    assert resp.status_code == 400
    assert error_of(resp)["code"] == "context_length_exceeded"


def test_unknown_local_model_is_404(local: Server) -> None:
    resp = post_chat(local.url, {"model": "local/nope", "messages": user("x")})
    assert resp.status_code == 404 and error_of(resp)["code"] == "model_not_found"


def test_disconnect_stops_generation(local: Server) -> None:
    host, port = local.url.removeprefix("http://").split(":")
    body = json.dumps(
        {
            "model": SMOLLM,
            "stream": True,
            "max_tokens": 2000,
            "messages": user("Write a very long story about a dragon."),
        }
    ).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
        b"application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    received = b""
    while received.count(b'"content":"') < 3:
        received += sock.recv(65536)
    sock.close()
    pattern = re.compile(r"generation stopped after (\d+) chunks")
    assert wait_for(lambda: bool(pattern.search(local.log())), 10)
    stopped_after = int(pattern.findall(local.log())[-1])
    assert stopped_after < 40  # it did not run on to max_tokens
    # The single slot is free again: a new request is served, not queued behind the story.
    start = time.monotonic()
    resp = post_chat(local.url, {"model": SMOLLM, "messages": user("Hi"), "max_tokens": 5})
    assert resp.status_code == 200 and time.monotonic() - start < 30


def test_concurrent_requests_queue_and_all_succeed(local: Server) -> None:
    import concurrent.futures

    def one(i: int) -> int:
        return post_chat(
            local.url,
            {"model": SMOLLM, "messages": user(f"Say {i}"), "max_tokens": 8, "stream": i % 2 == 0},
        ).status_code

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        assert list(pool.map(one, range(6))) == [200] * 6


def test_wrong_checksum_is_refused(servers: Callable[[str], Server]) -> None:
    from localgpt.providers.local.models import PACKAGED

    path = PACKAGED["smollm2-135m-instruct"].part_paths()[0]
    server = servers(
        local_config(
            "local/SmolLM2-135M-Instruct.Q4_1",
            extra=f'model_path = "{path}"\nmodel_sha256 = "{"0" * 64}"',
        )
    )
    # The default model cannot load: the server is alive but never ready, and says why.
    assert wait_for(
        lambda: (
            httpx.get(f"{server.url}/ready", timeout=10).status_code == 503
            and error_of(httpx.get(f"{server.url}/ready", timeout=10))["code"]
            == "model_unavailable"
        ),
        60,
    )
    assert "checksum mismatch" in error_of(httpx.get(f"{server.url}/ready", timeout=10))["message"]
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    resp = post_chat(
        server.url, {"model": "local/SmolLM2-135M-Instruct.Q4_1", "messages": user("x")}
    )
    assert resp.status_code == 503
    error = error_of(resp)
    assert error["code"] == "model_unavailable" and "checksum mismatch" in error["message"]


def test_models_lists_local_models(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {SMOLLM, "local/qwen2.5-coder-1.5b-instruct"} <= ids


def test_default_model_answers_tools_and_json(servers: Callable[[str], Server]) -> None:
    """The default Qwen model routes a weather question to the tool and a poem to text, keeps
    to a JSON object when asked for one, and fills in the middle of code."""
    server = servers(local_config("local/qwen2.5-coder-1.5b-instruct"))
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=300)
    weather = client.chat.completions.create(
        model="local/qwen2.5-coder-1.5b-instruct",
        tools=TOOLS,  # type: ignore[arg-type]
        messages=user("What's the weather like in Paris right now?"),
        max_tokens=40,
    )
    calls = weather.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather"]
    assert "paris" in json.loads(calls[0].function.arguments)["city"].lower()
    poem = client.chat.completions.create(
        model="local/qwen2.5-coder-1.5b-instruct",
        tools=TOOLS,  # type: ignore[arg-type]
        messages=user("Write a two-line poem about the sea."),
        max_tokens=40,
    )
    assert poem.choices[0].message.tool_calls is None and poem.choices[0].message.content
    answer = client.chat.completions.create(
        model="local/qwen2.5-coder-1.5b-instruct",
        response_format={"type": "json_object"},
        messages=user('Reply with a JSON object holding the key "answer" set to 42.'),
        max_tokens=60,
        temperature=0,
    )
    assert answer.choices[0].finish_reason == "stop"
    assert json.loads(answer.choices[0].message.content or "") == {"answer": 42}
    fim = client.completions.create(
        model="local/qwen2.5-coder-1.5b-instruct",
        prompt="def add(a, b):\n    ",
        suffix="\n\nprint(add(1, 2))\n",
        max_tokens=8,
        temperature=0,
    )
    assert fim.choices[0].text.startswith("return a + b")
    assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200


def listening_tcp_ports(pid: int) -> set[int]:
    """The TCP ports a process listens on, read from /proc."""
    import os
    from pathlib import Path

    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_runtime_listener_is_not_reachable_over_tcp(local: Server) -> None:
    """llama.cpp's own HTTP server is on a private unix socket, not on any TCP port."""
    assert (
        post_chat(local.url, {"model": SMOLLM, "messages": user("hi"), "max_tokens": 2}).status_code
        == 200
    )  # the model is loaded
    own_port = int(local.url.rsplit(":", 1)[1])
    assert listening_tcp_ports(local.process.pid) == {own_port}


def test_sessions_count_tokens_with_the_models_tokenizer(local: Server) -> None:
    """The runtime's own template and tokenizer, over its private socket."""
    import asyncio

    from localgpt.config import parse_config
    from localgpt.providers.router import Router

    messages = [{"role": "user", "content": "Hello there, how are you today?"}]

    async def count() -> int | None:
        router = Router(parse_config({"providers": {"local": {"threads": 1}}}))
        try:
            return await router.count_tokens(SMOLLM, messages)
        finally:
            await router.aclose()

    counted = asyncio.run(count())
    # The same prompt, as the runtime itself counts it when it answers.
    resp = post_chat(local.url, {"model": SMOLLM, "messages": messages, "max_tokens": 1})
    assert counted == resp.json()["usage"]["prompt_tokens"]


def test_ready_once_the_default_model_is_loaded_and_warm(
    servers: Callable[[str], Server],
) -> None:
    server = servers(local_config())  # assistant mode: the prompt is evaluated at start-up
    statuses = []

    def ready() -> bool:
        statuses.append(httpx.get(f"{server.url}/ready", timeout=10).status_code)
        return statuses[-1] == 200

    assert wait_for(ready, 120)
    assert set(statuses) <= {503, 200}
    resp = post_chat(server.url, {"model": SMOLLM, "messages": user("Hi"), "max_tokens": 3})
    usage = resp.json()["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] > 100  # the warm system prompt


def test_refused_streams_give_their_slot_back(local: Server) -> None:
    """The single slot (parallel = 1) is free again after streams refused before their
    first token; a leak here would make every later request wait forever."""
    for _ in range(3):
        resp = post_chat(
            local.url, {"model": SMOLLM, "messages": user("x"), "n": 2, "stream": True}
        )
        assert resp.status_code == 400
    resp = httpx.post(
        f"{local.url}/v1/chat/completions",
        timeout=30,
        json={"model": SMOLLM, "messages": user("Hi"), "max_tokens": 3, "stream": True},
    )
    assert resp.status_code == 200 and resp.text.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize(
    ("start", "finished", "verdict"),
    [
        ('{"tool": "none"}', True, True),
        ('  {"name": "memory_save", "arguments"', False, True),
        ('```json\n{"name": "get_weather"', False, True),
        ("<tool_call>\n{", False, True),
        ('[{"tool": "a"', False, True),
        ("{", False, None),  # too little to tell, more to come
        ('{"', False, None),
        ("{", True, False),  # that was all: a brace is not a call
        ("Hello! How can I help?", False, False),
        ('```python\nprint("hi")\n' + "x" * 40, False, False),
        ('{"city": "Paris", "country": "France"} is the answer', False, False),
        ("", False, None),
        ("", True, False),
    ],
)
def test_a_call_written_out_as_an_answer_is_recognised(
    start: str, finished: bool, verdict: bool | None
) -> None:
    from localgpt.providers.local.decisions import call_written_out

    assert call_written_out(start, finished) is verdict
