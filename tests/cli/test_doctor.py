"""``localgpt doctor``'s model and port checks, run in-process on small configs."""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localgpt.cli import doctor
from localgpt.config import Config, parse_config
from tests.conftest import free_port


def config(data: dict[str, Any]) -> Config:
    return parse_config(data, "test")


def gguf(tmp_path: Path, name: str, data: bytes = b"GGUF fake model bytes") -> tuple[Path, str]:
    path = tmp_path / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.name: c for c in checks}


def test_custom_gguf_checksum_is_checked(tmp_path: Path) -> None:
    path, digest = gguf(tmp_path, "mine.gguf")
    wrong = "0" * 64

    def checks(sha: str) -> dict[str, doctor.Check]:
        cfg = config({"providers": {"local": {"model_path": str(path), "model_sha256": sha}}})
        files = doctor.ModelFiles(doctor.sha256_with_progress)
        found = by_name(doctor.models(cfg, files))
        found["provider local"] = doctor._local_provider("local", cfg.providers["local"], files)
        return found

    bad = checks(wrong)
    assert bad["default model"].status == "fail"
    assert (
        "checksum mismatch" in bad["default model"].detail and digest in bad["default model"].detail
    )
    assert "model_sha256" in bad["default model"].fix
    assert bad["provider local"].status == "fail"
    good = checks(digest.upper())  # the config may spell it in capitals
    assert good["default model"].status == "ok", good["default model"]
    assert "checksum verified" in good["default model"].detail
    assert good["provider local"].status == "ok"


def test_each_file_is_hashed_once(tmp_path: Path) -> None:
    path, digest = gguf(tmp_path, "mine.gguf")
    hashed: list[Path] = []

    def hasher(p: Path, what: str) -> str:
        hashed.append(p)
        return hashlib.sha256(p.read_bytes()).hexdigest()

    cfg = config(
        {
            "agent": {"fallback_models": ["local/mine"]},
            "providers": {"local": {"model_path": str(path), "model_sha256": digest}},
        }
    )
    files = doctor.ModelFiles(hasher)
    found = by_name(doctor.models(cfg, files))
    assert found["default model"].status == found["fallback local/mine"].status == "ok"
    assert hashed == [path]


def test_missing_custom_gguf_fails_with_the_provider_named(tmp_path: Path) -> None:
    cfg = config({"providers": {"mine": {"type": "local", "model_path": str(tmp_path / "x.gguf")}}})
    check = doctor._local_provider(
        "mine", cfg.providers["mine"], doctor.ModelFiles(doctor.sha256_with_progress)
    )
    assert check.status == "fail" and "no file at" in check.detail
    assert "[providers.mine] model_path" in check.fix


def test_every_local_provider_and_fallback_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    good, good_sha = gguf(tmp_path, "good.gguf")
    bad, _ = gguf(tmp_path, "bad.gguf", b"other bytes")
    cfg = config(
        {
            "agent": {
                "default_model": "openai/gpt-4o",
                "fallback_models": [
                    "spare/good",
                    "broken/bad",
                    "nowhere/model",
                    "local/no-such-model",
                    "openai/gpt-4o-mini",
                ],
            },
            "providers": {
                "openai": {"api_key": "sk-x", "base_url": f"http://127.0.0.1:{free_port()}/v1"},
                "spare": {"type": "local", "model_path": str(good), "model_sha256": good_sha},
                "broken": {"type": "local", "model_path": str(bad), "model_sha256": "1" * 64},
                "idle": {"type": "local", "model_path": str(tmp_path / "absent.gguf")},
            },
        }
    )
    files = doctor.ModelFiles(doctor.sha256_with_progress)
    found = by_name(asyncio.run(doctor._providers(cfg, files)) + doctor.models(cfg, files))
    # Local providers, default or not, have their model file checked.
    assert found["provider spare"].status == "ok"
    assert (
        found["provider broken"].status == "fail" and "mismatch" in found["provider broken"].detail
    )
    assert found["provider idle"].status == "fail" and "no file" in found["provider idle"].detail
    assert found["provider openai"].status == "fail"  # nothing listens there
    # The default and every fallback model: resolved, and a local one's file checked.
    assert found["default model"].status == "ok"
    assert found["fallback spare/good"].status == "ok"
    assert found["fallback broken/bad"].status == "fail"
    assert found["fallback nowhere/model"].status == "fail"
    assert "fallback_models" in found["fallback nowhere/model"].fix
    assert found["fallback local/no-such-model"].status == "fail"
    assert found["fallback openai/gpt-4o-mini"].status == "ok"


# --- the port -------------------------------------------------------------------------------


def port_check(bind: str, port: int) -> doctor.Check:
    return doctor._port(config({"server": {"bind": bind, "port": port}}))


def ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


FAMILIES = [
    pytest.param((socket.AF_INET, "127.0.0.1"), id="ipv4"),
    pytest.param(
        (socket.AF_INET6, "::1"),
        id="ipv6",
        marks=pytest.mark.skipif(not ipv6(), reason="no IPv6 loopback here"),
    ),
]


@pytest.mark.parametrize("target", FAMILIES)
def test_port_free_and_taken(target: tuple[socket.AddressFamily, str]) -> None:
    family, host = target
    with socket.socket(family) as holder:
        holder.bind((host, 0))  # bound, not listening: nothing answers there
        port = holder.getsockname()[1]
        taken = port_check(host, port)
        assert taken.status == "fail", taken
        assert "taken by another program" in taken.detail and taken.fix
        assert taken.detail.startswith(doctor.host_port(host, port))
    free = port_check(host, port)
    assert free.status == "ok" and "is free" in free.detail, free


@pytest.fixture(params=FAMILIES)
def health_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    family, host = request.param

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b'{"status":"ok"}')

        def log_message(self, *args: Any) -> None:
            pass

    class Server(http.server.HTTPServer):
        address_family = family

    server = Server((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield host, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_port_with_a_server_answering_health(health_server: tuple[str, int]) -> None:
    host, port = health_server
    check = port_check(host, port)  # an IPv6 host must be bracketed in the URL to work
    assert check.status == "ok" and "answers there" in check.detail, check


def test_port_unresolvable_bind() -> None:
    check = port_check("no-such-host.invalid", 31327)
    assert check.status == "fail" and "cannot resolve" in check.detail


def test_each_mcp_server_is_started_and_its_tools_listed(tmp_path: Path) -> None:
    import json
    import sys

    toy = Path(__file__).parent.parent / "mcp" / "toy_server.py"
    found = asyncio.run(
        doctor._mcp(
            config(
                {
                    "mcp": {
                        "servers": {
                            "toy": {"command": sys.executable, "args": [str(toy)]},
                            "gone": {"command": str(tmp_path / "no-such-server")},
                        }
                    }
                }
            ),
            wait=10,
        )
    )
    checks = by_name(found)
    assert checks["mcp toy"].status == "ok" and "4 tools" in checks["mcp toy"].detail
    assert "mcp_toy_secret_word" in checks["mcp toy"].detail
    assert checks["mcp gone"].status == "fail" and "no-such-server" in checks["mcp gone"].detail
    assert json.dumps([c.as_dict() for c in found])
