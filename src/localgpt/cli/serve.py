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
    # The app sees the address it is served on (its "ready" line names it).
    server = config.server.model_copy(update={"bind": bind, "port": listen_port})
    config = config.model_copy(update={"server": server})
    # Refused here, in one line, before anything is loaded: not after a model has loaded.
    lock = ServerLock(Paths.from_env().server_lock)
    if not config.server.allow_shared_state:
        try:
            lock.acquire(config.server.url)
        except LockHeld as exc:
            raise fail(str(exc), 1) from None
    try:
        check = port_check(bind, listen_port, serving=True)
        if check.status == "fail":
            raise fail(f"{check.detail}; {check.fix}", 1)
        setup_logging(log_level, log_format)
        _run_server(config, log_level)
    finally:
        lock.release()
    logging.getLogger("localgpt.api").info("stopped; goodbye")


def _run_server(config: Config, log_level: str) -> None:
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
    _graceful_server(app, config.server.url)(settings).run()


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
