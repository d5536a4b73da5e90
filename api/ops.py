"""``/healthz`` for orchestrators and ``/metrics`` for Prometheus."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from api.context import METRICS, POOL, SERVICE, STORE
from core.models import count_by_status
from core.proxy_url import ProxyUrl

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    try:
        await request.app[STORE].redis.ping()
    except Exception as exc:  # health must answer, whatever is broken
        return web.json_response({"ok": False, "redis": type(exc).__name__}, status=503)
    return web.json_response(
        {"ok": True, "redis": "ok", "runner": request.app[SERVICE].runner.name}
    )


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    sessions = await request.app[SERVICE].all_sessions()
    proxies = await request.app[POOL].all_proxies()
    by_status = GaugeMetricFamily("wafleet_sessions", "Sessions by status", labels=["status"])
    for status, n in count_by_status(sessions).items():
        by_status.add_metric([status], n)
    proxy_status = GaugeMetricFamily("wafleet_proxies", "Proxies by status", labels=["status"])
    for status in ("active", "bad"):
        proxy_status.add_metric([status], sum(p.status == status for p in proxies))
    load = GaugeMetricFamily("wafleet_proxy_sessions", "Sessions per proxy", labels=["proxy"])
    for p in proxies:
        load.add_metric([ProxyUrl.parse(p.url).masked], p.sessions)
    fleet = CollectorRegistry()
    fleet.register(_Families([by_status, proxy_status, load]))
    text = generate_latest(request.app[METRICS].registry) + generate_latest(fleet)
    return web.Response(body=text, content_type="text/plain", charset="utf-8")


class _Families:
    """Gauges read from Redis at scrape time, so they can never drift from the truth."""

    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self.families = families

    def collect(self) -> list[GaugeMetricFamily]:
        return self.families
