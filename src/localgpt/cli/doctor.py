"""``localgpt doctor``: check what a working install needs, and say how to fix what is not.

Each check gives ``ok``, ``warn`` or ``fail`` with a one-line detail and, when not ok, what
to do. The config, every configured provider (a local one: its model file and checksum), the
default model and every fallback model, the embedder, the workspace and its index, and the
port the server would use.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localgpt.config import Config, Paths, local_model_name
from localgpt.providers.errors import ProviderError

if TYPE_CHECKING:
    from localgpt.config import ProviderConfig

# Hash a file: (path, what to call it while it runs) -> hex sha256.
Hasher = Callable[[Path, str], str]
# Files larger than this get a progress bar while they are hashed.
_SHOW_PROGRESS = 64 << 20


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def run(
    config: Config, config_file: Path, warnings: list[str], hasher: Hasher | None = None
) -> list[Check]:
    files = ModelFiles(hasher or sha256_with_progress)
    checks = [_config(config_file, warnings)]
    checks += asyncio.run(_providers(config, files))
    checks += models(config, files)
    checks.append(_embedder(config))
    checks += _memory(config)
    checks += asyncio.run(_mcp(config))
    checks += _backends(config)
    checks += [_port(config), _exposure(config)]
    return checks


def _backends(config: Config) -> list[Check]:
    """Redis ([state]) and PostgreSQL ([storage]), when configured: reachable, and usable."""
    from localgpt.config import mask_secret

    found: list[Check] = []
    if config.state.url is not None:
        import redis

        where = _masked(config.state.url, mask_secret)
        try:
            client = redis.Redis.from_url(config.state.url, socket_timeout=3)
            version = client.info("server").get("redis_version", "?")
            client.set("localgpt:doctor", "1", px=1000)
            found.append(Check("state (Redis)", "ok", f"{where}: Redis {version}"))
        except redis.RedisError as exc:
            found.append(
                Check("state (Redis)", "fail", f"{where}: {exc}", "start Redis, or fix [state] url")
            )
    if config.storage.url is not None:
        import psycopg

        where = _masked(config.storage.url, mask_secret)
        try:
            with psycopg.connect(config.storage.url, connect_timeout=3) as conn:
                row = conn.execute("SHOW server_version").fetchone()
            version = row[0] if row else "?"
            found.append(Check("storage (PostgreSQL)", "ok", f"{where}: PostgreSQL {version}"))
        except psycopg.Error as exc:
            found.append(
                Check(
                    "storage (PostgreSQL)",
                    "fail",
                    f"{where}: {str(exc).strip()}",
                    "start PostgreSQL, create the database and user, or fix [storage] url",
                )
            )
    if (config.state.url is None) != (config.storage.url is None):
        found.append(
            Check(
                "shared backends",
                "warn",
                "only one of [state] and [storage] is set: one server process only",
                "set both to run --workers or replicas",
            )
        )
    return found


def _masked(url: str, mask: Any) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(parts.password, mask(parts.password))
    return url


async def _mcp(config: Config, wait: float = 15.0) -> list[Check]:
    """Each MCP server started (or reached) as the server would, and its tools listed."""
    servers = {n: s for n, s in config.mcp.servers.items() if s.enabled}
    if not servers:
        return []
    import tempfile

    from localgpt.mcp.client import McpConnection

    found: list[Check] = []
    with tempfile.TemporaryDirectory() as folder:
        connections = [
            McpConnection(name, settings, Path(folder) / f"{name}.log")
            for name, settings in servers.items()
        ]
        for c in connections:
            c.start()
        await asyncio.gather(*(c.wait_ready(wait) for c in connections))
        for c in connections:
            where = c.settings.command or c.settings.url
            if c.status.connected:
                names = ", ".join(t.function for t in c.tools[:6])
                more = "..." if len(c.tools) > 6 else ""
                found.append(
                    Check(f"mcp {c.name}", "ok", f"{where}: {len(c.tools)} tools ({names}{more})")
                )
            else:
                log = (Path(folder) / f"{c.name}.log").read_text(errors="replace")[-300:]
                detail = c.status.last_error or f"no answer within {wait:g} s"
                found.append(
                    Check(
                        f"mcp {c.name}",
                        "fail",
                        f"{where}: {detail}"
                        + (f"; its output: {log.strip()}" if log.strip() else ""),
                        f"check mcp.servers.{c.name} (command, args, url) and run it by hand",
                    )
                )
        await asyncio.gather(*(c.aclose() for c in connections))
    return found


def sha256_with_progress(path: Path, what: str) -> str:
    """The file's sha256; a large file shows a transient progress bar on standard error
    (nothing when it is not a terminal), so ``--json`` output stays clean."""
    from localgpt.providers.local.models import sha256_of

    size = path.stat().st_size
    if size < _SHOW_PROGRESS:
        return sha256_of(path)
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"checksum of {escape(what)}", total=size)
        return sha256_of(path, lambda n: progress.advance(task, n))


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


async def _providers(config: Config, files: ModelFiles) -> list[Check]:
    from localgpt.providers.catalog import Catalog
    from localgpt.providers.router import Router

    router = Router(config)
    checks = []
    try:
        # Counted as /v1/models and `localgpt models` list them: every list agrees.
        listed = await Catalog(router).entries()
        for name, provider in config.providers.items():
            if provider.type == "local":
                checks.append(_local_provider(name, provider, files))
                continue
            try:
                async with asyncio.timeout(5):
                    await router.list_models(name)
                count = sum(entry.owned_by == name for entry in listed)
                checks.append(
                    Check(
                        f"provider {name}",
                        "ok",
                        f"{provider.type}, reachable, {count} models in /v1/models",
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


@dataclass
class Verdict:
    status: str
    detail: str
    fix: str = ""


class ModelFiles:
    """Checks model files, each once: the default model, a fallback and the provider that
    serves them may all name the same file, and hashing a large one takes a while."""

    def __init__(self, hasher: Hasher) -> None:
        self.hasher = hasher
        self._seen: dict[tuple[Any, ...], Verdict] = {}

    def configured(self, name: str, provider: ProviderConfig) -> Verdict:
        """The GGUF file of ``[providers.NAME] model_path``, against its ``model_sha256``."""
        assert provider.model_path
        path = Path(provider.model_path).expanduser()
        expected = (provider.model_sha256 or "").strip().lower()
        key = ("file", path, expected)
        if key not in self._seen:
            self._seen[key] = self._configured(name, path, expected)
        return self._seen[key]

    def _configured(self, name: str, path: Path, expected: str) -> Verdict:
        if not path.is_file():
            return Verdict("fail", f"no file at {path}", f"fix [providers.{name}] model_path")
        if not expected:
            return Verdict("ok", f"{path} (no model_sha256 to check it against)")
        try:
            found = self.hasher(path, path.name)
        except OSError as exc:
            return Verdict(
                "fail", f"cannot read {path}: {exc.strerror}", "check the file's permissions"
            )
        if found != expected:
            return Verdict(
                "fail",
                f"checksum mismatch for {path} (expected sha256 {expected}, found {found}); "
                "the server refuses to load it",
                f"download the file again, or correct [providers.{name}] model_sha256",
            )
        return Verdict("ok", f"{path}, checksum verified")

    def packaged(self, model: str) -> Verdict:
        """A model that ships as packages: installed, joined into the cache, intact."""
        key = ("packaged", model)
        if key not in self._seen:
            self._seen[key] = self._packaged(model)
        return self._seen[key]

    def _packaged(self, model: str) -> Verdict:
        from localgpt.providers.local.models import PACKAGED, ModelError, cached_path

        packaged = PACKAGED.get(model)
        if packaged is None:
            return Verdict(
                "fail",
                f"no packaged model {model}; packaged models: {', '.join(PACKAGED)}",
                "name a packaged model, or set model_path to a GGUF file",
            )
        if not packaged.installed():
            return Verdict(
                "fail",
                "its packages are not installed",
                "run `make setup` (or pip install the model packages)",
            )
        try:
            target = cached_path(packaged, Paths.from_env().cache_dir)
        except ModelError as exc:
            return Verdict("fail", str(exc), "run `make setup`")
        if not target.exists():
            return Verdict(
                "warn",
                "not prepared yet",
                "run `localgpt model prepare` (or let the first start do it)",
            )
        try:
            found = self.hasher(target, packaged.name)
        except OSError as exc:
            return Verdict("fail", f"cannot read {target}: {exc.strerror}", "run `make setup`")
        if found != packaged.sha256:
            return Verdict(
                "fail",
                f"checksum mismatch for {target} (expected sha256 {packaged.sha256}, "
                f"found {found})",
                f"delete the file and run `localgpt model prepare {packaged.name}`, or "
                "reinstall the model packages",
            )
        return Verdict("ok", f"{target}, checksum verified")


def _local_provider(name: str, provider: ProviderConfig, files: ModelFiles) -> Check:
    """A local provider's own model file, whether or not any configured model uses it."""
    from localgpt.providers.local.models import PACKAGED

    label = f"provider {name}"
    if provider.model_path:
        verdict = files.configured(name, provider)
        model = f"{name}/{local_model_name(provider.model_path)}"
        return Check(label, verdict.status, f"local, {model}: {verdict.detail}", verdict.fix)
    installed = [m.name for m in PACKAGED.values() if m.installed()]
    if not installed:
        return Check(
            label,
            "warn",
            "local, no model_path and no packaged model installed",
            f"run `make setup`, or set [providers.{name}] model_path to a GGUF file",
        )
    return Check(label, "ok", f"local, packaged models: {', '.join(installed)}")


def models(config: Config, files: ModelFiles | None = None) -> list[Check]:
    """The default model, then each fallback model: it resolves to a configured provider,
    and a local one has its model file in place (and intact, where a checksum is known)."""
    files = files or ModelFiles(sha256_with_progress)
    checks = [
        _model("default model", config.default_model, config, files, "set [agent] default_model")
    ]
    for model in dict.fromkeys(config.agent.fallback_models):
        checks.append(
            _model(
                f"fallback {model}",
                model,
                config,
                files,
                "correct or remove it in [agent] fallback_models",
            )
        )
    return checks


def _model(label: str, model: str, config: Config, files: ModelFiles, fix: str) -> Check:
    from localgpt.providers.router import Router

    try:
        route = Router(config).resolve(model)
    except ProviderError as exc:
        return Check(label, "fail", exc.message, fix)
    provider = config.provider(route.provider)
    if provider is None:
        return Check(label, "fail", f"{route.id}: provider {route.provider} is not set up", fix)
    if provider.type != "local":
        return Check(label, "ok", f"{route.id} ({provider.type})")
    from localgpt.providers.local.models import PACKAGED

    configured = local_model_name(provider.model_path) if provider.model_path else None
    if route.model == configured:
        verdict = files.configured(route.provider, provider)
    elif route.model in PACKAGED:
        verdict = files.packaged(route.model)
    else:
        served = [m for m in (configured, *PACKAGED) if m]
        return Check(
            label,
            "fail",
            f"{route.id}: provider {route.provider} has no model {route.model}; it serves "
            + ", ".join(f"{route.provider}/{m}" for m in served),
            fix,
        )
    return Check(label, verdict.status, f"{route.id}: {verdict.detail}", verdict.fix)


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


def host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets, as in a URL."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _port(config: Config) -> Check:
    return port_check(config.server.bind, config.server.port)


def port_check(bind: str, port: int, serving: bool = False) -> Check:
    """Whether the server could listen on ``bind:port``. Like the server (asyncio's
    ``create_server``), every address the bind name resolves to is tried, with
    SO_REUSEADDR, and an IPv6 socket takes IPv6 only. A LocalGPT server already answering
    there is fine for the doctor, but a failure when ``serving`` (``localgpt serve`` checks
    before it loads anything)."""
    bind = bind.strip("[]")
    shown = host_port(bind, port)
    try:
        infos = socket.getaddrinfo(bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return Check(
            "port",
            "fail",
            f"cannot resolve [server] bind {bind}: {exc.strerror}",
            "set [server] bind to an address of this machine, e.g. 127.0.0.1",
        )
    taken: list[tuple[int, str]] = []
    seen: set[tuple[int, Any]] = set()
    for family, kind, proto, _, address in infos:
        if (family, address) in seen:
            continue
        seen.add((family, address))
        host = str(address[0])
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    taken.append((family, host))
                    continue
                fix = (
                    "set [server] port above 1023 (lower ones need privileges)"
                    if exc.errno == errno.EACCES
                    else "set [server] bind to an address of this machine, e.g. 127.0.0.1"
                )
                return Check(
                    "port",
                    "fail",
                    f"cannot listen on {host_port(host, port)}: {exc.strerror or exc}",
                    fix,
                )
    if not taken:
        return Check("port", "ok", f"{shown} is free")
    fix = "stop it, or set [server] port (or `localgpt serve --port`)"
    if all(_answers(family, host, port) for family, host in taken):
        if serving:
            return Check("port", "fail", f"{shown} is taken by a LocalGPT server", fix)
        return Check("port", "ok", f"{shown}: a LocalGPT server answers there")
    return Check("port", "fail", f"{shown} is taken by another program", fix)


def _answers(family: int, host: str, port: int) -> bool:
    """Whether something answers ``GET /health`` with 200 at the address (never through a
    proxy from the environment)."""
    if host in ("0.0.0.0", "::"):  # the wildcard: ask over loopback
        host = "127.0.0.1" if family == socket.AF_INET else "::1"
    url = f"http://{host_port(host.replace('%', '%25'), port)}/health"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (OSError, ValueError):
        return False


def _exposure(config: Config) -> Check:
    from localgpt.cli.serve import is_loopback

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
