"""The API's outer surface: health, metrics, OpenAPI, and what it never shows (secrets)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web

from api.app import create_app
from api.openapi import DOCUMENT, document
from tests.fleet import API_KEY, PHONE, WEBHOOK_SECRET, Fleet, eventually


def _app() -> web.Application:
    return create_app(None, None, None, None, None)  # type: ignore[arg-type]


def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = _app()[DOCUMENT]
    return spec


async def test_openapi_describes_exactly_the_routes_served(fleet: Fleet) -> None:
    status, served = await fleet.call("GET", "/api/openapi.json", headers={"X-API-Key": ""})
    assert status == 200
    assert served == json.loads(json.dumps(_spec()))
    routes = {
        (r.resource.canonical, r.method.lower())
        for r in _app().router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    documented = {(path, method) for path, ops in served["paths"].items() for method in ops}
    assert routes == documented


def test_a_route_without_a_declared_operation_cannot_be_served() -> None:
    app = _app()

    async def undeclared(request: web.Request) -> web.Response:
        return web.json_response({})

    app.router.add_get("/api/v1/cluster", undeclared)
    with pytest.raises(LookupError, match="GET /api/v1/cluster has no operation declared"):
        document(app.router)


async def test_metrics_and_health_tell_the_truth(fleet: Fleet) -> None:
    sid = (await fleet.link())["id"]
    await fleet.provision("972509999999")
    status, health = await fleet.call("GET", "/healthz", headers={"X-API-Key": ""})
    assert (status, health["ok"], health["redis"]) == (200, True, "ok")

    async def scraped() -> str | None:
        _, body = await fleet.call("GET", "/metrics", headers={"X-API-Key": ""})
        text = body.decode()
        return text if 'wafleet_sessions{status="qr_ready"} 1.0' in text else None

    text = await eventually(scraped, what="metrics with one qr_ready session")
    assert 'wafleet_sessions{status="connected"} 1.0' in text
    assert 'wafleet_webhook_events_total{type="CONNECTED"} 1.0' in text
    assert "wafleet_provision_to_qr_seconds_count 2.0" in text
    assert 'wafleet_proxies{status="active"} 2.0' in text
    assert "s3cret-pw" not in text
    assert sid == "worker_1"


async def test_no_secret_reaches_an_answer_or_the_log(fleet: Fleet) -> None:
    sid = (await fleet.link())["id"]
    answers = [
        await fleet.call("GET", f"/api/sessions/{sid}/status"),
        await fleet.call("GET", "/api/v1/dashboard/sessions"),
        await fleet.call("GET", "/api/v1/proxies"),
        await fleet.call("GET", f"/api/sessions/{sid}/events"),
    ]
    text = json.dumps([body for _, body in answers]) + fleet.log()
    text += (fleet.sessions_dir / sid / "worker.log").read_text()
    for secret in ("s3cret-pw", API_KEY, WEBHOOK_SECRET):
        assert secret not in text
    assert PHONE in text  # the phone is not a secret: operators need it


async def test_proxy_admin_add_list_remove(fleet: Fleet) -> None:
    url = "socks5h://ops:pa55word@127.0.0.1:1081"
    status, added = await fleet.call("POST", "/api/v1/proxies", {"url": url})
    assert status == 201
    assert added["url"] == "socks5h://ops:***@127.0.0.1:1081"
    status, again = await fleet.call("POST", "/api/v1/proxies", {"url": url})
    assert (status, again["error"]["code"]) == (409, "conflict")
    _, listing = await fleet.call("GET", "/api/v1/proxies")
    assert len(listing["proxies"]) == 3
    assert "pa55word" not in json.dumps(listing)
    status, _ = await fleet.call("DELETE", f"/api/v1/proxies/{added['id']}")
    assert status == 200
    _, listing = await fleet.call("GET", "/api/v1/proxies")
    assert len(listing["proxies"]) == 2


async def test_events_buffered_while_serve_is_down_arrive_after(fleet: Fleet) -> None:
    sid = (await fleet.link())["id"]
    fleet.stop()
    assert await fleet.control("drop", phone=PHONE) == 200  # the worker reconnects meanwhile

    async def reconnected() -> bool:
        return bool((await fleet.device(sid))["connected"])

    await eventually(reconnected, what="the worker reconnecting while serve is down")
    fleet.start()

    async def delivered() -> bool:
        return bool(await fleet.events(sid, "DISCONNECTED"))

    await eventually(delivered, 15, "the buffered DISCONNECTED event")
    await fleet.wait_status(sid, "connected")


def test_openapi_lists_the_refusals_each_route_can_answer() -> None:
    """What status_code_conformance cannot reach in a short fuzz run, checked by name."""
    spec = _spec()
    paths = spec["paths"]

    def statuses(path: str, method: str) -> set[str]:
        return set(paths[path][method]["responses"])

    assert {"400", "401", "404", "409", "503"} <= statuses("/api/sessions/{id}/restart", "post")
    assert {"400", "401", "404", "409", "503"} <= statuses("/api/sessions/{id}/qr", "post")
    assert {"400", "401", "409", "503"} <= statuses("/api/sessions/provision", "post")
    assert {"400", "401", "404", "409"} <= statuses("/api/sessions/{id}", "delete")
    for path, methods in paths.items():  # Redis down: every API route answers 503
        for method, operation in methods.items():
            if path.startswith("/api/") and path != "/api/openapi.json":
                assert "503" in operation["responses"], (method, path)
    assert "507" in statuses("/api/v1/backups/create", "post")
    assert {"500", "507"} <= statuses("/api/v1/backups/restore/{id}", "post")
    for path in ("/api/sessions/provision", "/api/v1/proxies"):
        schema = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert schema["additionalProperties"] is False
    assert paths["/api/v1/proxies"]["post"]["requestBody"]["required"] is True
    example = json.dumps(spec)
    assert "@host:" not in example and "example.com" not in example
