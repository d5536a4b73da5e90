"""One fleet count behind REST's dashboard and ``/metrics``; ``/metrics`` behind its token.

A real ``serve`` with ``METRICS_TOKEN`` set: what a scraper without the token gets, and that
what one with it reads names proxies only by id (the id of ``/api/v1/proxies/:id``).
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from core.errors import ConfigError
from core.proxy_url import ProxyUrl
from core.settings import Settings
from tests.fleet import API_KEY, WEBHOOK_SECRET, Fleet, eventually

TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture
def fleet_options() -> dict[str, Any]:
    return {"METRICS_TOKEN": TOKEN}


async def _scrape(fleet: Fleet, authorization: str | None) -> tuple[int, Any]:
    headers = {"X-API-Key": ""}
    if authorization is not None:
        headers["Authorization"] = authorization
    return await fleet.call("GET", "/metrics", headers=headers)


async def test_metrics_needs_its_token_and_names_proxies_by_id_only(fleet: Fleet) -> None:
    await fleet.provision()
    for authorization in (None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", API_KEY):
        status, body = await _scrape(fleet, authorization)
        assert (status, body["error"]["code"]) == (401, "unauthorized"), authorization

    status, body = await _scrape(fleet, f"Bearer {TOKEN}")
    assert status == 200
    text = body.decode()
    prefix = 'wafleet_proxy_sessions{proxy="'
    loads = dict(
        line.removeprefix(prefix).split('"} ')
        for line in text.splitlines()
        if line.startswith(prefix)
    )
    assert loads.keys() == {ProxyUrl.parse(p.url).id for p in fleet.proxies}
    assert sorted(loads.values()) == ["0.0", "1.0"]
    for proxy in fleet.proxies:
        for secret_or_address in (proxy.password, f"{proxy.user}:", f":{proxy.port}"):
            assert secret_or_address not in text
    assert TOKEN not in fleet.log()


async def test_dashboard_and_metrics_tell_the_same_count(fleet: Fleet) -> None:
    sids = [(await fleet.provision(phone))["id"] for phone in ("972501234567", "972507654321")]
    for sid in sids:
        await fleet.wait_status(sid, "qr_ready")
    status, stats = await fleet.call("GET", "/api/v1/dashboard/stats")
    assert status == 200
    assert stats == {
        "sessions": {
            "total": 2,
            "byStatus": {
                "pending": 0,
                "qr_ready": 2,
                "connected": 0,
                "disconnected": 0,
                "failed": 0,
                "stopped": 0,
            },
        },
        "proxies": {"total": 2, "active": 2, "bad": 0},
        "capacity": {"free": 6, "total": 8},
        "nodes": [
            {
                "name": socket.gethostname(),
                "id": socket.gethostname(),
                "state": "ready",
                "availability": "active",
                "sessions": 2,
                "sessionIds": sids,
            }
        ],
        "messages": {"sent": 0, "received": 0, "failed": 0},
    }

    async def scraped() -> str | None:
        _, body = await _scrape(fleet, f"Bearer {TOKEN}")
        text = str(body.decode())
        return text if 'wafleet_sessions{status="qr_ready"} 2.0' in text else None

    text = await eventually(scraped, what="the scrape to count both sessions")
    for line in (
        'wafleet_proxies{status="active"} 2.0',
        'wafleet_proxies{status="bad"} 0.0',
        "wafleet_free_slots 6.0",
        f'wafleet_node_sessions{{node="{socket.gethostname()}"}} 2.0',
        'wafleet_messages_total{kind="sent"} 0.0',
    ):
        assert line in text.splitlines()


def test_a_weak_metrics_token_is_refused_at_start() -> None:
    env = {"API_KEY": API_KEY, "WEBHOOK_SECRET": WEBHOOK_SECRET}
    assert Settings.from_env(env).metrics_token == ""
    assert Settings.from_env(env | {"METRICS_TOKEN": TOKEN}).metrics_token == TOKEN
    for weak in ("changeme", "short"):
        with pytest.raises(ConfigError, match="METRICS_TOKEN"):
            Settings.from_env(env | {"METRICS_TOKEN": weak})
