"""``/healthz`` for orchestrators, ``/metrics`` for Prometheus, and the runner's nodes."""

from __future__ import annotations

import dataclasses
import hmac

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from api import serialize
from api.auth import identify, presented
from api.context import CLUSTER, METRICS, POOL, SERVICE, SETTINGS, STORE
from api.describe import operation
from api.errors import Forbidden, Unauthorized
from api.schema import answer, array, obj
from core import fleet_stats
from core.errors import NotFound
from core.models import ProxyStatus

routes = web.RouteTableDef()


@routes.get("/healthz")
@operation(
    "Liveness and Redis",
    {
        200: answer(
            "ok; `reconciling` is true while the start-up reconcile still adopts and starts "
            "workers"
        )
    },
    public=True,
    responses={503: answer("Redis unreachable")},
)
async def healthz(request: web.Request) -> web.Response:
    cluster = request.app.get(CLUSTER)
    # Which replica answered, and whether it leads (by its own clock: no Redis needed).
    replica = (
        {}
        if cluster is None
        else {"replica": cluster.serve_id, "leader": cluster.leadership.is_leader()}
    )
    try:
        await request.app[STORE].redis.ping()
    except Exception as exc:  # health must answer, whatever is broken
        body = {"ok": False, "redis": type(exc).__name__, **replica}
        return web.json_response(body, status=503)
    service = request.app[SERVICE]
    # "reconciling": serve answers already, but is still adopting and starting the workers
    # that Redis knows (a readiness probe or a script can wait for it to turn false).
    return web.json_response(
        {
            "ok": True,
            "redis": "ok",
            "runner": service.runner.name,
            "reconciling": service.reconciling or (cluster is not None and cluster.settling()),
            **replica,
        }
    )


_REPLICA = obj(
    {
        "id": {"type": "string", "description": "SERVE_ID, or <hostname>:<HTTP_PORT>"},
        "url": {"type": "string", "description": "the replica's own base URL"},
        "leader": {"type": "boolean"},
        "seenAt": {"type": "integer", "description": "epoch ms of its last heartbeat"},
    }
)
_CLUSTER = obj(
    {
        "leader": {"type": ["string", "null"], "description": "the leading replica's id"},
        "replicas": array(_REPLICA),
        "redis": obj({"primary": {"type": "string"}, "replicas": {"type": "integer"}}),
    }
)


@routes.get("/api/v1/cluster")
@operation(
    "The serve replicas seen within three leases, which one leads, and the Redis primary",
    {200: answer("the cluster", _CLUSTER)},
    404,
)
async def cluster_view(request: web.Request) -> web.Response:
    """The ``serve`` replicas seen lately (each heartbeats into Redis), which one leads, and
    the Redis primary with its replica count."""
    cluster = request.app.get(CLUSTER)
    if cluster is None:
        raise NotFound("this server runs without cluster support")
    return web.json_response(await cluster.view())


@routes.get("/api/v1/nodes")
@operation(
    "Where the workers run: this host for RUNNER=process/docker, every swarm node (sessions "
    "or not) for RUNNER=swarm",
    {200: answer("nodes", obj({"nodes": array(serialize.NODE)}))},
)
async def nodes(request: web.Request) -> web.Response:
    """Where the workers run: one node (this host) for process and docker runners, every
    node of the swarm with ``RUNNER=swarm``, each with its sessions."""
    found = await request.app[SERVICE].runner.nodes()
    return web.json_response({"nodes": [serialize.node(n) for n in found]})


@routes.get("/metrics")
@operation(
    "Prometheus metrics",
    {200: answer("text exposition")},
    public=True,
    responses={
        401: answer("METRICS_TOKEN is set and neither it nor an admin key was given"),
        403: answer("a read or client key: the metrics are the whole fleet's"),
    },
)
async def metrics(request: web.Request) -> web.Response:
    await _check_token(request)
    stats = await fleet_stats.with_nodes(
        await request.app[POOL].stats(), request.app[SERVICE].runner
    )
    by_status = GaugeMetricFamily("wafleet_sessions", "Sessions by status", labels=["status"])
    for status, n in stats.by_status.items():
        by_status.add_metric([status], n)
    proxy_status = GaugeMetricFamily("wafleet_proxies", "Proxies by status", labels=["status"])
    for status in ProxyStatus:
        proxy_status.add_metric([status], sum(p.status == status for p in stats.proxies))
    # Labelled by the proxy's id (as in /api/v1/proxies/:id): a URL would name its user,
    # host and port to whoever reads the scrape.
    load = GaugeMetricFamily("wafleet_proxy_sessions", "Sessions per proxy", labels=["proxy"])
    for p in stats.proxies:
        load.add_metric([p.id], p.sessions)
    slots = GaugeMetricFamily("wafleet_free_slots", "Free session slots on active proxies")
    slots.add_metric([], stats.free_slots)
    per_node = GaugeMetricFamily(
        "wafleet_node_sessions", "Sessions whose worker runs on a node", labels=["node"]
    )
    for node in stats.nodes:
        per_node.add_metric([node.name], len(node.session_ids))
    # Counted as they happen (a deleted session's stay counted): a true counter.
    sent = await request.app[SERVICE].messages.fleet_counts()
    messages = CounterMetricFamily(
        "wafleet_messages", "Messages sent, received and failed by the fleet", labels=["kind"]
    )
    for kind, n in dataclasses.asdict(sent).items():
        messages.add_metric([kind], n)
    fleet = CollectorRegistry()
    fleet.register(_Families([by_status, proxy_status, load, slots, per_node, messages]))
    text = generate_latest(request.app[METRICS].registry) + generate_latest(fleet)
    return web.Response(body=text, content_type="text/plain", charset="utf-8")


async def _check_token(request: web.Request) -> None:
    """With ``METRICS_TOKEN`` set, only that bearer token or an admin key may scrape; a read or
    client key is refused either way (the metrics count every client's sessions)."""
    expected = request.app[SETTINGS].metrics_token
    given = presented(request)
    # surrogatepass: a header that is not valid UTF-8 is a wrong token, not a 500.
    if expected and hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode()):
        return
    caller = await identify(request, given)
    if caller is not None and caller.scope != "admin":
        raise Forbidden("the metrics are the whole fleet's: an admin key or METRICS_TOKEN")
    if expected and caller is None:
        raise Unauthorized("missing or wrong metrics token (Authorization: Bearer <token>)")


class _Families:
    """Families read from Redis at scrape time, so they can never drift from the truth."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families
