"""The memory as an MCP server, driven by the mcp SDK's own client: ``localgpt mcp`` over
stdio, and ``/mcp`` on the running server over streamable HTTP, behind its keys."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.client.streamable_http import streamable_http_client

from mcp import Client, StdioServerParameters, stdio_client
from tests.conftest import Server, gateway_config, isolated_env
from tests.fakes.openai_fake import FakeOpenAI

FULL = "key-full-0123456789"
ASSISTANT = "key-assistant-0123456789"
GATEWAY = "key-gateway-0123456789"
NOTE = "The spare house key is under the blue flowerpot."


def text_of(result: Any) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


def stdio(home: Path, *args: str) -> Any:
    home.mkdir(parents=True, exist_ok=True)
    config = home / "config.toml"
    config.write_text('[memory]\nembedding_provider = "none"\n')
    env = {k: v for k, v in isolated_env(home).items() if k.startswith(("XDG_", "HOME", "PATH"))}
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "localgpt", "mcp", "--config", str(config), *args],
        env=env,
        cwd=str(home),
    )
    return stdio_client(params, errlog=(home / "mcp.log").open("w"))


def test_stdio_search_get_and_save(tmp_path: Path) -> None:
    async def run() -> None:
        async with Client(stdio(tmp_path), read_timeout_seconds=60) as client:
            assert client.server_info.name == "localgpt-memory"
            names = {t.name for t in (await client.list_tools()).tools}
            assert names == {"memory_search", "memory_get", "memory_save"}
            saved = await client.call_tool("memory_save", {"content": NOTE})
            assert not saved.is_error and "MEMORY.md" in text_of(saved)
            found = await client.call_tool("memory_search", {"query": "spare house key"})
            hits = json.loads(text_of(found))
            assert hits and hits[0]["path"] == "MEMORY.md" and "flowerpot" in hits[0]["text"]
            read = await client.call_tool("memory_get", {"path": "MEMORY.md"})
            assert "blue flowerpot" in text_of(read)
            outside = await client.call_tool("memory_get", {"path": "../../etc/passwd"})
            assert outside.is_error

    asyncio.run(run())
    memory = tmp_path / "data" / "localgpt" / "workspace" / "MEMORY.md"
    assert NOTE in memory.read_text()


def test_stdio_read_only_refuses_writes(tmp_path: Path) -> None:
    async def run() -> None:
        async with Client(stdio(tmp_path, "--read-only"), read_timeout_seconds=60) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert names == {"memory_search", "memory_get"}
            refused = await client.call_tool("memory_save", {"content": NOTE})
            assert refused.is_error

    asyncio.run(run())
    memory = tmp_path / "data" / "localgpt" / "workspace" / "MEMORY.md"
    assert NOTE not in memory.read_text()


@pytest.fixture
def keyed(servers: Callable[[str], Server], openai_upstream: FakeOpenAI) -> Server:
    keys = f"""
[server]
auth_token = ["{FULL}", {{ key = "{ASSISTANT}", scope = "assistant" }},
              {{ key = "{GATEWAY}", scope = "gateway" }}]
[memory]
embedding_provider = "none"
"""
    return servers(gateway_config(openai_upstream.url, gateway=False, extra=keys))


async def _over_http(server: Server, key: str | None, work: Any) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=60)) as http:
        transport = streamable_http_client(f"{server.url}/mcp", http_client=http)
        async with Client(transport, read_timeout_seconds=30) as client:
            return await work(client)


def test_http_with_the_servers_keys_and_scopes(keyed: Server) -> None:
    async def save_and_find(client: Any) -> str:
        saved = await client.call_tool("memory_save", {"content": NOTE})
        assert not saved.is_error, text_of(saved)
        found = await client.call_tool("memory_search", {"query": "flowerpot"})
        return text_of(found)

    async def try_to_save(client: Any) -> tuple[bool, str, str]:
        refused = await client.call_tool("memory_save", {"content": "I own a yacht."})
        found = await client.call_tool("memory_search", {"query": "flowerpot"})
        return refused.is_error, text_of(refused), text_of(found)

    assert "blue flowerpot" in asyncio.run(_over_http(keyed, FULL, save_and_find))
    refused, why, found = asyncio.run(_over_http(keyed, ASSISTANT, try_to_save))
    assert refused and "read-only" in why
    assert "blue flowerpot" in found  # reading is allowed
    memory = keyed.home / "data" / "localgpt" / "workspace" / "MEMORY.md"
    assert "yacht" not in memory.read_text()

    for key, why in ((GATEWAY, "assistant key"), (None, "API key"), ("key-wrong-0123", "API key")):
        with pytest.raises(Exception) as failed:
            asyncio.run(_over_http(keyed, key, lambda client: client.list_tools()))
        assert any(why in str(leaf) for leaf in leaves(failed.value)), failed.value


def leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


def test_http_refusals_are_json_rpc_errors(keyed: Server) -> None:
    import httpx

    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    resp = httpx.post(f"{keyed.url}/mcp", json=body, timeout=10)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == -32001 and "API key" in resp.json()["error"]["message"]
    resp = httpx.post(
        f"{keyed.url}/mcp", json=body, timeout=10, headers={"Authorization": f"Bearer {GATEWAY}"}
    )
    assert resp.status_code == 403 and "assistant key" in resp.json()["error"]["message"]
