"""Why a provider call failed, worded for the client and classified for failover.

The tree:

- ``ProviderError``: every failure, with what the client should see (status, type, code,
  param) and whether another model may be tried (``retryable``).
  - ``UnsupportedParameter``: the routed model cannot honour a request field: a 400 that
    names it, never a silent drop.
  - ``UpstreamError``: the upstream failed: 429 and 5xx (retryable), other 4xx (kept).
    - ``Unreachable``: refused, reset or unresolvable (502, retryable).
    - ``TimedOut``: no answer in time (504, retryable).
    - ``StreamCut``: a stream ended before it was complete (502, retryable).

Once failover is exhausted, an upstream 4xx keeps its status, an unreachable or 5xx
upstream is a 502 and a timeout a 504.
"""

from __future__ import annotations

from typing import Any


class ProviderError(Exception):
    """A failed provider call, carrying what the client should see and whether to fail over.

    ``status`` is what the API answers once failover is exhausted: an upstream 4xx keeps its
    status, an unreachable or 5xx upstream is 502, a timeout 504.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        type: str = "upstream_error",
        code: str | None = None,
        param: str | None = None,
        retryable: bool = False,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        self.retryable = retryable
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}


class UnsupportedParameter(ProviderError):
    """The routed model cannot honour a request field: a 400 that names it, never a silent drop."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(
            message,
            status=400,
            type="invalid_request_error",
            code="unsupported_parameter",
            param=param,
        )


class UpstreamError(ProviderError):
    """The upstream answered with an error, or not at all."""


class Unreachable(UpstreamError):
    """The upstream could not be reached."""


class TimedOut(UpstreamError):
    """The upstream did not answer in time."""


class StreamCut(UpstreamError):
    """The upstream ended a stream before it was complete."""


def upstream_status_error(
    provider: str,
    status: int,
    message: str,
    *,
    type: str | None = None,
    code: str | None = None,
    param: str | None = None,
    retry_after: str | None = None,
) -> ProviderError:
    """Classify an upstream HTTP error: 429 and 5xx fail over, other 4xx keep their status."""
    if status == 429:
        return UpstreamError(
            message,
            status=429,
            type=type or "rate_limit_error",
            code=code or "rate_limit_exceeded",
            param=param,
            retryable=True,
            retry_after=retry_after,
        )
    if status >= 500:
        return UpstreamError(
            f"provider {provider} failed with HTTP {status}: {message}",
            status=502,
            type="upstream_error",
            code=code or "upstream_error",
            retryable=True,
        )
    if status == 404:
        return UpstreamError(
            message,
            status=404,
            type=type or "invalid_request_error",
            code=code or "model_not_found",
            param=param,
        )
    return UpstreamError(
        message, status=status, type=type or "invalid_request_error", code=code, param=param
    )


def unreachable_error(provider: str, detail: str) -> ProviderError:
    return Unreachable(
        f"provider {provider} is unreachable: {detail}",
        status=502,
        type="upstream_error",
        code="upstream_unreachable",
        retryable=True,
    )


def timeout_error(provider: str, what: str) -> ProviderError:
    return TimedOut(
        f"provider {provider} timed out ({what})",
        status=504,
        type="upstream_error",
        code="upstream_timeout",
        retryable=True,
    )


def stream_cut_error(provider: str) -> ProviderError:
    return StreamCut(
        f"provider {provider} ended the stream before it was complete",
        status=502,
        type="upstream_error",
        code="upstream_stream_cut",
        retryable=True,
    )
