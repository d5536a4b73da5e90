"""Bad input gets the documented 4xx and changes nothing in Redis."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.fleet import Fleet

WEEK_MS = 7 * 24 * 3600 * 1000


@pytest.fixture
async def linked(fleet: Fleet) -> Fleet:
    """A fleet with two sessions, so a worker could try to sign for the other one."""
    await fleet.link()
    await fleet.provision("972509999999")
    return fleet


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "code"),
    [
        ("POST", "/api/sessions/provision", {"phone": "abc"}, None, 400, "invalid_input"),
        ("POST", "/api/sessions/provision", {"phone": "0501234567"}, None, 400, "invalid_input"),
        ("POST", "/api/sessions/provision", {"phone": 972501234567}, None, 400, "invalid_input"),
        (
            "POST",
            "/api/sessions/provision",
            {"proxy": "http://u:p@h:1"},
            None,
            400,
            "invalid_input",
        ),
        (
            "POST",
            "/api/sessions/provision",
            {"proxy": "socks5://u:p@h:1"},
            None,
            400,
            "invalid_input",
        ),
        ("POST", "/api/sessions/provision", {"proxy": "socks5h://h"}, None, 400, "invalid_input"),
        ("POST", "/api/sessions/provision", {"nickname": "x"}, None, 400, "invalid_input"),
        ("POST", "/api/sessions/provision", "[1, 2]", None, 400, "invalid_input"),
        ("POST", "/api/sessions/provision", "{not json", None, 400, "invalid_input"),
        ("GET", "/api/sessions/worker_999/status", None, None, 404, "not_found"),
        ("GET", "/api/sessions/worker_999/qr", None, None, 404, "not_found"),
        ("POST", "/api/sessions/worker_999/restart", None, None, 404, "not_found"),
        ("DELETE", "/api/sessions/worker_999", None, None, 404, "not_found"),
        ("GET", "/api/v1/dashboard/sessions", None, {"X-API-Key": ""}, 401, "unauthorized"),
        (
            "GET",
            "/api/v1/dashboard/sessions",
            None,
            {"X-API-Key": "wrong-key"},
            401,
            "unauthorized",
        ),
        ("POST", "/api/sessions/provision", {}, {"X-API-Key": "wrong-key"}, 401, "unauthorized"),
        ("POST", "/api/v1/proxies", {"url": "http://x"}, None, 400, "invalid_input"),
        ("DELETE", "/api/v1/proxies/nosuchproxy", None, None, 404, "not_found"),
        ("GET", "/api/sessions/worker_1/qr", None, None, 409, "qr_unavailable"),  # connected
        # the phone is at its limit of one (MAX_SESSIONS_PER_PHONE=4 → see the test below)
    ],
)
async def test_rest_refusals_change_nothing(
    linked: Fleet,
    method: str,
    path: str,
    body: Any,
    headers: dict[str, str] | None,
    status: int,
    code: str,
) -> None:
    raw = body.encode() if isinstance(body, str) else None
    before = await linked.snapshot()
    got, answer = await linked.call(method, path, None if raw else body, headers, raw=raw)
    assert (got, answer["error"]["code"]) == (status, code), answer
    assert answer["error"]["message"]
    assert await linked.snapshot() == before


@pytest.mark.parametrize("fleet_options", [{"MAX_SESSIONS_PER_PHONE": "2"}])
async def test_phone_limit_and_removing_a_busy_proxy_are_conflicts(fleet: Fleet) -> None:
    for _ in range(2):
        await fleet.provision_settled("972509999999")
    before = await fleet.snapshot()
    status, body = await fleet.call("POST", "/api/sessions/provision", {"phone": "972509999999"})
    assert (status, body["error"]["code"]) == (409, "phone_limit")
    assert await fleet.snapshot() == before

    _, proxies = await fleet.call("GET", "/api/v1/proxies")
    busy = next(p for p in proxies["proxies"] if p["sessions"] > 0)
    status, body = await fleet.call("DELETE", f"/api/v1/proxies/{busy['id']}")
    assert (status, body["error"]["code"]) == (409, "conflict")
    assert await fleet.snapshot() == before


def _ping(sid: str) -> dict[str, Any]:
    return {"sessionId": sid, "type": "PING", "data": {"timestamp": 1}, "timestamp": 1}


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("bad signature", 401),
        ("other session's secret", 401),
        ("stale timestamp", 401),
        ("no signature", 401),
        ("malformed json", 400),
        ("unknown type", 400),
        ("bad data", 400),
        ("bad phone in CONNECTED", 400),
        ("unknown session", 404),
        ("not a session id", 400),
    ],
)
async def test_webhook_refusals_change_nothing(linked: Fleet, case: str, status: int) -> None:
    now = time.time_ns() // 1_000_000
    kwargs: dict[str, Any] = {}
    payload: dict[str, Any] = _ping("worker_1")
    if case == "bad signature":
        kwargs["signature"] = "sha256=" + "0" * 64
    elif case == "other session's secret":
        kwargs["secret_for"] = "worker_2"
    elif case == "stale timestamp":
        kwargs["ts"] = now - 6 * 60 * 1000
    elif case == "no signature":
        kwargs["signature"] = ""
    elif case == "malformed json":
        kwargs["raw"] = b'{"sessionId": "worker_1", "type": '
        kwargs["secret_for"] = "worker_1"
    elif case == "unknown type":
        payload = {**payload, "type": "HACKED"}
    elif case == "bad data":
        payload = {"sessionId": "worker_1", "type": "QR_CODE", "data": {"qr": 42}}
    elif case == "bad phone in CONNECTED":
        payload = {"sessionId": "worker_1", "type": "CONNECTED", "data": {"phoneNumber": "x"}}
    elif case == "unknown session":
        payload = _ping("worker_77")
    elif case == "not a session id":
        payload = _ping("x" * 5000)
    before = await linked.snapshot()
    got, answer = await linked.post_webhook(payload, **kwargs)
    assert got == status, answer
    assert await linked.snapshot() == before


async def test_settings_refuse_placeholders_with_one_clear_message() -> None:
    from core.errors import ConfigError
    from core.settings import Settings

    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            {
                "API_KEY": "<random-32>",
                "WEBHOOK_SECRET": "short",
                "PROXY_URL_1": "http://x:1",
                "MAX_SESSIONS_PER_PROXY": "four",
                "RUNNER": "k8s",
            }
        )
    message = caught.value.message
    for name in ("API_KEY", "WEBHOOK_SECRET", "PROXY_URL_1", "MAX_SESSIONS_PER_PROXY", "RUNNER"):
        assert name in message
