"""Real Redis and PostgreSQL servers for the shared-backend tests, one of each per run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.backends import PostgresServer, RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer.create()
    yield server
    server.stop(remove=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer.create()
    yield server
    server.stop(remove=True)
