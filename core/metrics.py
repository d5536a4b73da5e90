"""Counters core keeps in memory; gauges (sessions, proxies) are read from Redis at scrape."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "wafleet_webhook_events_total",
            "Webhook events accepted, by type",
            ["type"],
            registry=self.registry,
        )
        # Every answer by route (the route's pattern, so ids do not multiply the series): what
        # each kind of traffic costs serve, e.g. requests from workers per message sent.
        self.requests = Counter(
            "wafleet_http_requests_total",
            "HTTP requests answered, by route",
            ["route"],
            registry=self.registry,
        )
        self.failovers = Counter(
            "wafleet_failovers_total", "Sessions moved to another proxy", registry=self.registry
        )
        self.failovers_impossible = Counter(
            "wafleet_failovers_impossible_total",
            "Failovers refused for lack of capacity",
            registry=self.registry,
        )
        self.watchdog_restarts = Counter(
            "wafleet_watchdog_restarts_total",
            "Workers restarted for a stale ping",
            registry=self.registry,
        )
        self.worker_crashes = Counter(
            "wafleet_worker_crashes_total",
            "Workers that exited without being asked",
            registry=self.registry,
        )
        self.provision_to_qr = Histogram(
            "wafleet_provision_to_qr_seconds",
            "Time from provision to the first QR",
            buckets=(0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30),
            registry=self.registry,
        )
