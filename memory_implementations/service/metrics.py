"""Prometheus metrics of one app, in a private CollectorRegistry (two apps in a process never collide)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..background import BackgroundWorker
from .usage import ProviderUsage

HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TIER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _RuntimeCollector(Collector):
    """Reads live objects at scrape time: background queue and job counters, provider usage."""

    def __init__(
        self, worker: Callable[[], BackgroundWorker | None], usage: Callable[[], ProviderUsage | None]
    ) -> None:
        self._worker = worker
        self._usage = usage

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        worker = self._worker()
        depth = GaugeMetricFamily(
            "memory_background_queue_depth", "Background jobs (embedding, summaries, entities) submitted and not done."
        )
        jobs = CounterMetricFamily(
            "memory_background_jobs", "Background jobs finished, by outcome.", labels=["outcome"]
        )
        if worker is not None:
            depth.add_metric([], worker.pending)
            jobs.add_metric(["succeeded"], worker.stats.succeeded)
            jobs.add_metric(["failed"], worker.stats.failed)
            jobs.add_metric(["retried"], worker.stats.retried)
        else:
            depth.add_metric([], 0)
        yield depth
        yield jobs
        usage = self._usage()
        calls = CounterMetricFamily(
            "memory_provider_calls",
            "Embedding/LLM provider calls.",
            labels=["provider", "model", "operation", "outcome"],
        )
        tokens = CounterMetricFamily(
            "memory_provider_tokens", "Tokens sent to providers.", labels=["provider", "model", "operation"]
        )
        if usage is not None:
            for key, value in sorted(usage.calls().items()):
                calls.add_metric(list(key), value)
            for tkey, value in sorted(usage.tokens().items()):
                tokens.add_metric(list(tkey), value)
        yield calls
        yield tokens


class ServiceMetrics:
    """Every metric the service exports; ``render()`` gives the Prometheus text format."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(
        self,
        *,
        worker: Callable[[], BackgroundWorker | None] = lambda: None,
        usage: Callable[[], ProviderUsage | None] = lambda: None,
    ) -> None:
        """Create the metrics in a fresh registry; ``worker``/``usage`` are read at scrape time."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "memory_http_requests",
            "HTTP requests by route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "memory_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("memory_http_requests_in_flight", "HTTP requests being served.", registry=r)
        self.tier_latency = Histogram(
            "memory_tier_read_duration_seconds",
            "Latency of one tier's read (context or direct).",
            ["tier"],
            buckets=TIER_BUCKETS,
            registry=r,
        )
        self.tier_degraded = Counter(
            "memory_tier_degraded",
            "Reads where a tier failed or timed out and the turn went on without it.",
            ["tier"],
            registry=r,
        )
        self.context_tokens = Histogram(
            "memory_context_tokens",
            "Tokens in composed contexts.",
            buckets=(64, 256, 512, 1024, 2048, 4096, 8192, 16384),
            registry=r,
        )
        self.auth_failures = Counter("memory_auth_failures", "Rejected API keys by reason.", ["reason"], registry=r)
        self.rate_limited = Counter("memory_rate_limited", "Requests refused with 429.", registry=r)
        self.rate_limit_errors = Counter(
            "memory_rate_limit_errors", "Rate-limit checks that failed open because Redis did not answer.", registry=r
        )
        self.queued = Gauge("memory_http_requests_queued", "API requests waiting for a request slot.", registry=r)
        self.overloaded = Counter(
            "memory_http_overloaded", "API requests refused with 503 after waiting for a slot.", registry=r
        )
        self.ready = Gauge("memory_ready", "1 when every backend answered the last readiness check.", registry=r)
        self.registry.register(_RuntimeCollector(worker, usage))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one finished request."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def observe_tier(self, tier: str, seconds: float) -> None:
        """Record one tier read's latency."""
        self.tier_latency.labels(tier).observe(seconds)

    def count_degraded(self, tiers: Iterable[Any]) -> None:
        """Count each degraded tier of one read."""
        for tier in tiers:
            self.tier_degraded.labels(str(getattr(tier, "value", tier))).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)


__all__ = ["ServiceMetrics"]
