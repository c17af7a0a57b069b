"""The one error a shared backend raises: it is down (or did not answer in time)."""

from __future__ import annotations


class BackendDown(Exception):
    """A configured shared backend cannot be reached: the API answers 503, and the server
    recovers by itself when the backend is back."""

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(message)
        self.backend = backend  # "state" (Redis) or "storage" (PostgreSQL)
        self.message = message
