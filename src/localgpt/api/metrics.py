"""Prometheus metrics for ``GET /metrics``.

Counters and histograms are updated as requests run; queue depths are read from the
providers only when Prometheus scrapes, so they cost nothing per request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Queues(Collector):
    def __init__(self, read: Callable[[], dict[str, tuple[int, int]]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        waiting = GaugeMetricFamily(
            "localgpt_provider_queue_depth",
            "Requests waiting for a provider slot",
            labels=["provider"],
        )
        running = GaugeMetricFamily(
            "localgpt_provider_in_flight", "Requests running on a provider", labels=["provider"]
        )
        for provider, (queued, active) in self._read().items():
            waiting.add_metric([provider], queued)
            running.add_metric([provider], active)
        yield waiting
        yield running


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[str, str, int, str], tuple[Any, Any]] = {}
        r = self.registry
        self.requests = Counter(
            "localgpt_requests",
            "HTTP requests",
            ["method", "route", "status", "model"],
            registry=r,
        )
        self.latency = Histogram(
            "localgpt_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "localgpt_time_to_first_token_seconds",
            "Time to the first content of a completion",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "localgpt_tokens", "Tokens in and out", ["model", "direction"], registry=r
        )
        self.completions = Counter(
            "localgpt_completions", "Completions served", ["model", "stream"], registry=r
        )
        self.provider_errors = Counter(
            "localgpt_provider_errors", "Failed provider calls", ["provider", "code"], registry=r
        )
        self.failovers = Counter(
            "localgpt_failovers", "Moves to a fallback model", ["from_model"], registry=r
        )
        self.queue_wait = Histogram(
            "localgpt_queue_wait_seconds",
            "Time spent waiting for a provider slot",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def watch_queues(self, read: Callable[[], dict[str, tuple[int, int]]]) -> None:
        self.registry.register(_Queues(read))

    def request(self, method: str, route: str, status: int, seconds: float, model: str) -> None:
        # Children are cached: labels() validates and locks on every call, which on the
        # request path costs more than the increment itself.
        key = (method, route, status, model)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(method, route, str(status), model),
                self.latency.labels(route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def completion(
        self, model: str, stream: bool, ttft: float | None, prompt: int, completion: int
    ) -> None:
        self.completions.labels(model, "true" if stream else "false").inc()
        if ttft is not None:
            self.ttft.labels(model).observe(ttft)
        if prompt:
            self.tokens.labels(model, "in").inc(prompt)
        if completion:
            self.tokens.labels(model, "out").inc(completion)

    def provider_error(self, provider: str, code: str | None, failover: bool, model: str) -> None:
        self.provider_errors.labels(provider, code or "error").inc()
        if failover:
            self.failovers.labels(model).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
