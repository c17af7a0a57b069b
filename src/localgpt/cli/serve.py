"""``localgpt serve``: the HTTP server, refusing before it loads anything what would fail
(a taken port, another server on the same data, an exposed address without keys)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

import typer

from localgpt.cli.common import ConfigOption, fail, load

if TYPE_CHECKING:
    from fastapi import FastAPI

    from localgpt.config import Config


def serve(
    config_path: ConfigOption = None,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to bind (default: [server] bind, 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", "-p", help="Port (default: [server] port, 31327).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    log_format: Annotated[str, typer.Option(help="text, or json: one object a line.")] = "text",
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            "-w",
            min=1,
            max=64,
            help="Server processes on the one port; more than 1 needs [state] and [storage].",
        ),
    ] = 1,
) -> None:
    """Run the HTTP server: the OpenAI-compatible API and the native API."""
    import logging

    from localgpt.cli.doctor import port_check
    from localgpt.cli.lock import LockHeld, ServerLock
    from localgpt.config import Paths

    config = load(config_path)
    bind = host or config.server.bind
    listen_port = config.server.port if port is None else port
    if not config.server.api_keys() and not is_loopback(bind):
        raise fail(
            f"refusing to listen on {bind} without an API key: anyone who can reach it could "
            "read your memory. Set one in config.toml, e.g. [server] auth_token = "
            '"${LOCALGPT_TOKEN}" with LOCALGPT_TOKEN from `openssl rand -hex 32`, or bind to '
            "127.0.0.1."
        )
    if workers > 1 and not config.shared:
        raise fail(
            f"--workers {workers} needs shared backends: each worker would keep its own rate "
            "limits, tool context and session locks, and write the same session files. Set "
            '[state] url = "redis://127.0.0.1:6379/0" and [storage] url = '
            '"postgresql://localgpt@127.0.0.1/localgpt" (see docs/deploy.md), or run one worker.'
        )
    # The app sees the address it is served on (its "ready" line names it).
    server = config.server.model_copy(update={"bind": bind, "port": listen_port})
    config = config.model_copy(update={"server": server})
    # Refused here, in one line, before anything is loaded: not after a model has loaded.
    # With shared backends, several servers on this machine's folders are the point.
    lock = ServerLock(Paths.from_env().server_lock)
    if not config.server.allow_shared_state and not config.shared:
        try:
            lock.acquire(config.server.url)
        except LockHeld as exc:
            raise fail(str(exc), 1) from None
    try:
        check = port_check(bind, listen_port, serving=True)
        if check.status == "fail":
            raise fail(f"{check.detail}; {check.fix}", 1)
        setup_logging(log_level, log_format)
        if workers > 1:
            _run_workers(config, log_level, workers)
        else:
            _run_server(config, log_level)
    finally:
        lock.release()
    logging.getLogger("localgpt.api").info("stopped; goodbye")


def uses_embedded_model(config: Config) -> bool:
    """Whether serving this configuration loads the embedded model in the process."""
    local = config.providers.get("local")
    if local is not None:
        return local.base_url is None
    models = [config.default_model, *config.agent.fallback_models]
    return any(m.startswith("local/") for m in models)


def model_host(config: Config) -> tuple[Config, Config]:
    """The configuration of a process that only serves the embedded model (gateway mode, on
    a loopback port, with a key of its own), and the workers' configuration, whose ``local``
    provider is that process."""
    import secrets

    from localgpt.config import (
        DEFAULT_LOCAL_MODEL,
        HeartbeatConfig,
        McpConfig,
        ProviderConfig,
        RateLimitConfig,
        StateConfig,
        StorageConfig,
    )

    port, key = _free_port(), secrets.token_hex(24)
    local = config.providers.get("local") or ProviderConfig(type="local")
    models = [config.default_model, *config.agent.fallback_models]
    default = next((m for m in models if m.startswith("local/")), f"local/{DEFAULT_LOCAL_MODEL}")
    host = config.model_copy(
        update={
            "agent": config.agent.model_copy(
                update={"gateway_mode": True, "default_model": default, "fallback_models": []}
            ),
            "providers": {"local": local},
            "server": config.server.model_copy(
                update={
                    "bind": "127.0.0.1",
                    "port": port,
                    "auth_token": [key],
                    "rate_limit": RateLimitConfig(enabled=False),
                    "allow_shared_state": True,
                }
            ),
            "state": StateConfig(),
            "storage": StorageConfig(),
            "heartbeat": HeartbeatConfig(),
            "jobs": [],
            "mcp": McpConfig(),
        }
    )
    hosted = local.model_copy(update={"base_url": f"http://127.0.0.1:{port}/v1", "api_key": key})
    workers = config.model_copy(update={"providers": {**config.providers, "local": hosted}})
    return host, workers


def _wait_ready(url: str, key: str, alive: Any, timeout: float = 900.0) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    request = urllib.request.Request(f"{url}/ready", headers={"Authorization": f"Bearer {key}"})
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the model host exited before it was ready")
        try:
            with urllib.request.urlopen(request, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the model host was not ready within {timeout:g} s")


def _run_workers(config: Config, log_level: str, count: int) -> None:
    """``count`` server processes accepting on one socket (the kernel spreads connections);
    a worker that dies is started again; SIGTERM or Ctrl-C stops them all gracefully."""
    import logging
    import os
    import signal
    import socket
    import time

    log = logging.getLogger("localgpt.api")
    family = socket.AF_INET6 if ":" in config.server.bind.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.server.bind.strip("[]"), config.server.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    children: dict[int, int] = {}  # pid -> worker number (HOST: the model host)
    stopping = False
    host_config = None
    if uses_embedded_model(config):
        # The embedded model is loaded once, by a process of its own; the workers use it.
        host_config, config = model_host(config)

    def spawn(number: int) -> None:
        # Signals wait while the child is forked and registered: a stop in between would
        # miss it, and the supervisor would wait for it forever.
        blocked = {signal.SIGTERM, signal.SIGINT}
        pid = -1
        signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            pid = os.fork()
            if pid != 0:
                children[pid] = number
        finally:
            if pid != 0:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
        if pid == 0:  # the worker
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
            code = 0
            try:
                if number == HOST:
                    assert host_config is not None
                    sock.close()  # the model host does not serve the public port
                    _run_server(host_config, log_level)
                else:
                    _run_server(config, log_level, sockets=[sock])
            except BaseException:
                log.exception("worker %d failed", number)
                code = 1
            finally:
                os._exit(code)

    def signal_all(which: str) -> None:
        for pid, number in list(children.items()):
            if (number == HOST) == (which == "host"):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def stop(sig: int, frame: Any) -> None:
        # The workers first: those still finishing a reply may need the model host.
        nonlocal stopping
        stopping = True
        signal_all("workers")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        if host_config is not None:
            spawn(HOST)
            host_pid = _pid_of(children, HOST)
            assert host_pid is not None
            key = str(host_config.server.api_keys()[0].key)
            _wait_ready(
                host_config.server.url, key, lambda: os.waitpid(host_pid, os.WNOHANG) == (0, 0)
            )
            log.info("the embedded model is loaded once, by the model host (pid %d)", host_pid)
        for number in range(count):
            if not stopping:
                spawn(number)
        log.info("%d workers on %s", count, config.server.url)
        host_told = False
        while children:
            if stopping and not host_told and not any(n != HOST for n in children.values()):
                signal_all("host")  # the workers are done: now the model host
                host_told = True
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            ended = children.pop(pid) if pid in children else None
            if ended is not None and not stopping:
                log.error("worker %d (pid %d) ended (%s); starting it again", ended, pid, status)
                time.sleep(0.5)
                if not stopping:  # a stop may have come during the pause
                    spawn(ended)
    except BaseException:
        stopping = True
        for pid in list(children):  # nothing left running without its supervisor
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        raise
    finally:
        sock.close()


HOST = -1  # the model host's number among the workers' processes


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pid_of(children: dict[int, int], number: int) -> int | None:
    return next((pid for pid, n in children.items() if n == number), None)


def _run_server(config: Config, log_level: str, sockets: list[Any] | None = None) -> None:
    import uvicorn

    from localgpt.api.app import create_app
    from localgpt.api.connections import GuardedProtocol

    app = create_app(config)
    settings = uvicorn.Config(
        app,
        host=config.server.bind,
        port=config.server.port,
        loop="uvloop",
        http=GuardedProtocol.with_timeouts(
            config.server.header_timeout, config.server.body_timeout
        ),
        log_level=log_level.lower(),
        log_config=None,
        access_log=False,
        server_header=False,
        # The peer address is what rate limits key on: no header may claim another one.
        proxy_headers=False,
        timeout_graceful_shutdown=config.server.shutdown_grace,
    )
    _graceful_server(app, config.server.url)(settings).run(sockets=sockets)


def _graceful_server(app: FastAPI, url: str) -> Any:
    import logging
    import signal

    import uvicorn

    log = logging.getLogger("localgpt.api")

    class Server(uvicorn.Server):
        """Says when it is ready and where: once it listens and the default model can answer
        (a model that fails to load is logged as such instead).

        Exits 0 after a SIGTERM or Ctrl-C, once in-flight requests have finished. uvicorn
        re-raises the signal after its graceful shutdown, which makes the exit status 143 (or
        a KeyboardInterrupt, "Aborted!") and tells a supervisor the stop went wrong; a
        completed shutdown is a success.
        """

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                ready = app.state.localgpt.ready  # set by the app's start-up
                self._announce = asyncio.get_running_loop().create_task(self._ready(ready))

        async def _ready(self, ready: asyncio.Event) -> None:
            await ready.wait()
            log.info("ready: API %s/v1, chat page %s/", url, url)

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            if sig in (signal.SIGTERM, signal.SIGINT) and sig in self._captured_signals:
                self._captured_signals.remove(sig)

    return Server


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def setup_logging(level: str, style: str) -> None:
    """Every line carries the request id; ``json`` gives one object a line."""
    import logging

    from localgpt.api.gate import JSONFormatter, RequestIdFilter

    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if style == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
