"""Prometheus metrics: requests, guard denials, connection pool, latency.

`Metrics` owns a registry of its own, so that several apps in one process (the
tests make one per environment) never clash. `web.edge.Edge` records every
HTTP request once it has been answered; `Metrics.render` is the body of `GET /metrics`
in the Prometheus text format.

Labels are bounded on purpose: a request is labelled with its route template
(`/api/customers/{id}`), never its path, and one that matched no route with
`unmatched`; a method outside HTTP's own with `other`; a denial with the
guard's reason word, never an id or a header.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.responses import Response
from starlette.types import Scope

UNMATCHED = "unmatched"
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
# Requests here take milliseconds; the tail up to the pool timeout still counts.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class StatsPool(Protocol):
    """What the pool collector reads: psycopg_pool's pools have both."""

    @property
    def name(self) -> str: ...

    def get_stats(self) -> dict[str, int]: ...


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "orgsafe_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.denials = Counter(
            "orgsafe_guard_denials",
            "Requests refused with a 4xx status, by status and reason.",
            ["status", "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "orgsafe_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

        self.series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def watch_pool(self, pool: StatsPool) -> None:
        self.registry.register(PoolCollector(pool))

    def record(self, scope: Scope, status: int, seconds: float) -> None:
        key = (method_label(scope["method"]), route_template(scope), status)
        series = self.series.get(key)
        if series is None:
            # Looked up once per label set: labels() takes a lock and checks
            # its arguments on every call, and this runs on every request.
            method, route, _ = key
            series = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self.series[key] = series
        series[0].inc()
        series[1].observe(seconds)
        if 400 <= status < 500:
            self.denials.labels(str(status), denial_reason(scope, status)).inc()

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def method_label(method: str) -> str:
    # The method comes from the client: an unknown one must not make a series.
    return method if method in KNOWN_METHODS else "other"


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


def denial_reason(scope: Scope, status: int) -> str:
    """The guard's word for a refusal, as the denial log writes it."""
    facts: dict[str, Any] = scope.get("orgsafe.audit", {})
    reason = facts.get("reason")
    if isinstance(reason, str) and reason:
        return reason
    return "not_found" if status == 404 else "refused"


# psycopg_pool's get_stats() keys, with our names: gauges are measured at each
# scrape, counters only grow.
POOL_GAUGES = {
    "pool_size": ("connections", "Connections the pool holds, busy or idle."),
    "pool_available": ("idle_connections", "Idle connections ready to hand out."),
    "pool_max": ("max_connections", "The most connections the pool may open."),
    "requests_waiting": ("waiting_requests", "Requests waiting for a connection."),
}
POOL_COUNTERS = {
    "requests_num": ("requests", "Connections asked of the pool."),
    "requests_queued": ("queued_requests", "Requests that had to wait."),
    "requests_errors": ("failed_requests", "Requests that got no connection."),
    "connections_num": ("opened_connections", "Connections opened to the database."),
    "connections_errors": ("failed_connections", "Connection attempts that failed."),
    "connections_lost": ("lost_connections", "Connections found broken, dropped."),
}


class PoolCollector(Collector):
    """Reads the pool's own statistics at each scrape; nothing is kept here."""

    def __init__(self, pool: StatsPool) -> None:
        self.pool = pool

    def collect(self) -> Iterable[Metric]:
        stats = self.pool.get_stats()
        for key, (name, text) in POOL_GAUGES.items():
            gauge = GaugeMetricFamily(f"orgsafe_db_pool_{name}", text, labels=["pool"])
            gauge.add_metric([self.pool.name], stats.get(key, 0))
            yield gauge
        for key, (name, text) in POOL_COUNTERS.items():
            total = CounterMetricFamily(
                f"orgsafe_db_pool_{name}", text, labels=["pool"]
            )
            total.add_metric([self.pool.name], stats.get(key, 0))
            yield total
        wait = CounterMetricFamily(
            "orgsafe_db_pool_wait_seconds",
            "Time requests spent waiting for a connection.",
            labels=["pool"],
        )
        wait.add_metric([self.pool.name], stats.get("requests_wait_ms", 0) / 1000)
        yield wait
