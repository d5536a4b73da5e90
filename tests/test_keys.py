"""Scoped API keys against a real serve: two clients and an admin, every route."""

from __future__ import annotations

import asyncio
import time

import pytest

from api import openapi
from api.app import create_app
from tests.fleet import API_KEY, PHONE, Fleet
from tests.keyring import OTHER_PHONE, call_as, fill, issue, provision_as, served_routes


async def test_a_client_reaches_only_its_own_sessions_on_every_route(fleet: Fleet) -> None:
    """Catches a session route that forgets the owner check (another client's session must be
    404 whatever the route, as if it did not exist), a listing or stats that count other
    clients' sessions, and an ``owner`` field leaking to a client."""
    a = await issue(fleet, "client-a", "client")
    b = await issue(fleet, "client-b", "client")
    mine = await provision_as(fleet, a["key"], PHONE)
    theirs = await provision_as(fleet, b["key"], OTHER_PHONE)
    admin_owned = (await fleet.provision("972501234569"))["id"]

    session_routes = [(m, p) for m, p, scopes in served_routes() if "client" in scopes]
    assert len([p for _, p in session_routes if "{id}" in p]) >= 14
    wrong = []
    for method, path in session_routes:
        if "{id}" not in path:
            continue
        for other in (theirs, admin_owned):
            status, body = await call_as(fleet, a["key"], method, fill(path, other))
            if status != 404 or body["error"]["code"] != "not_found":
                wrong.append((method, path, other, status, body))
    assert wrong == []

    status, own = await call_as(fleet, a["key"], "GET", f"/api/sessions/{mine}/status")
    assert status == 200 and own["id"] == mine and "owner" not in own
    assert (await fleet.status(mine))["owner"] == a["id"]
    assert (await fleet.status(admin_owned))["owner"] is None

    _, page = await call_as(fleet, a["key"], "GET", "/api/v1/dashboard/sessions")
    assert [s["id"] for s in page["sessions"]] == [mine] and page["total"] == 1
    _, stats = await call_as(fleet, a["key"], "GET", "/api/v1/dashboard/stats")
    assert stats["sessions"]["total"] == 1
    assert "proxies" not in stats and "nodes" not in stats and "capacity" not in stats
    _, everything = await fleet.call("GET", "/api/v1/dashboard/stats")
    assert everything["sessions"]["total"] == 3


async def test_outside_its_scope_a_valid_key_is_forbidden(fleet: Fleet) -> None:
    """Catches an admin route (proxies, backups, restore, nodes, keys, audit) open to a
    client or read key, a read key that can change something, and /metrics scraped by a
    client; and a refusal that still ran the handler (nothing may change)."""
    client = await issue(fleet, "client-a", "client", ratePerS=1000)
    reader = await issue(fleet, "reader", "read", ratePerS=1000)
    sid = await provision_as(fleet, client["key"], PHONE)
    before = await fleet.snapshot()
    open_doors = []
    for method, path, scopes in served_routes():
        for key, scope in ((client["key"], "client"), (reader["key"], "read")):
            if scope in scopes:
                continue
            status, body = await call_as(fleet, key, method, fill(path, sid))
            if status != 403 or body["error"]["code"] != "forbidden":
                open_doors.append((scope, method, path, status))
    assert open_doors == []
    rates = {k for k in await fleet.snapshot() if k.endswith(":rate")}
    assert {k: v for k, v in (await fleet.snapshot()).items() if k not in rates} == {
        k: v for k, v in before.items() if k not in rates
    }

    status, _ = await call_as(fleet, reader["key"], "GET", f"/api/sessions/{sid}/status")
    assert status == 200
    status, _ = await call_as(fleet, client["key"], "GET", "/metrics")
    assert status == 403
    status, _ = await fleet.call("GET", "/metrics")
    assert status == 200


async def test_guessed_revoked_and_expired_keys_are_refused(fleet: Fleet) -> None:
    """Catches a key accepted by its id alone, a revocation that waits for the in-memory
    cache to expire, an expiry not enforced, and a key's value in a listing."""
    a = await issue(fleet, "client-a", "client", expiresAt=int(time.time() * 1000) + 2_500)
    b = await issue(fleet, "client-b", "client")
    good = "/api/v1/dashboard/sessions"
    assert (await call_as(fleet, b["key"], "GET", good))[0] == 200  # now cached
    guessed = f"wfk_{b['id']}_{'A' * 43}"
    for wrong in (guessed, b["key"][:-1] + "x", "wfk_", "wfk_000000000000_x", API_KEY + "x"):
        status, body = await call_as(fleet, wrong, "GET", good)
        assert (status, body["error"]["code"]) == (401, "unauthorized"), wrong

    _, listed = await fleet.call("GET", "/api/v1/keys")
    assert {k["name"] for k in listed["keys"]} == {"client-a", "client-b"}
    assert all("key" not in k for k in listed["keys"])
    assert b["key"] not in str(listed) and b["key"] not in fleet.log()

    status, _ = await fleet.call("DELETE", f"/api/v1/keys/{b['id']}")
    assert status == 204
    assert (await call_as(fleet, b["key"], "GET", good))[0] == 401
    _, listed = await fleet.call("GET", "/api/v1/keys")
    assert [k["name"] for k in listed["keys"]] == ["client-a"]

    assert (await call_as(fleet, a["key"], "GET", good))[0] == 200
    await asyncio.sleep(3)
    assert (await call_as(fleet, a["key"], "GET", good))[0] == 401


async def test_bad_key_requests_are_refused_and_change_nothing(fleet: Fleet) -> None:
    """Catches a key created from bad input (unknown scope, past expiry, a duplicate name,
    the reserved name admin) and a 500 for any of them."""
    await issue(fleet, "client-a", "client")
    before = await fleet.snapshot()
    for body in (
        {"name": "x", "scope": "root"},
        {"name": "x", "scope": "client", "expiresAt": 1},
        {"name": "client-a", "scope": "client"},
        {"name": "admin", "scope": "admin"},
        {"name": "", "scope": "read"},
        {"name": "x", "scope": "read", "ratePerS": 0},
        {"scope": "read"},
    ):
        status, answer = await fleet.call("POST", "/api/v1/keys", body)
        assert status in (400, 409), (body, status, answer)
    assert (await fleet.call("DELETE", "/api/v1/keys/000000000000"))[0] == 404
    assert await fleet.snapshot() == before


@pytest.mark.parametrize("fleet_options", [{"KEY_ROTATE_GRACE_S": "2"}])
async def test_a_rotated_key_keeps_the_old_value_for_the_grace(fleet: Fleet) -> None:
    """Catches a rotation that cuts the old key off at once (clients mid-deploy break), one
    that never cuts it off, and one that loses the key's sessions."""
    a = await issue(fleet, "client-a", "client")
    sid = await provision_as(fleet, a["key"], PHONE)
    status, rotated = await fleet.call("POST", f"/api/v1/keys/{a['id']}/rotate")
    assert status == 201 and rotated["id"] == a["id"] and rotated["key"] != a["key"]
    path = f"/api/sessions/{sid}/status"
    assert (await call_as(fleet, a["key"], "GET", path))[0] == 200
    assert (await call_as(fleet, rotated["key"], "GET", path))[0] == 200
    await asyncio.sleep(2.5)
    assert (await call_as(fleet, a["key"], "GET", path))[0] == 401
    assert (await call_as(fleet, rotated["key"], "GET", path))[0] == 200


@pytest.mark.parametrize("fleet_options", [{"KEY_RATE_PER_S": "1", "KEY_RATE_BURST": "5"}])
async def test_over_its_rate_a_key_gets_429_with_retry_after(fleet: Fleet) -> None:
    """Catches a limiter that never refuses, a 429 without a whole-second Retry-After, a
    bucket that never refills, and one key's burst spent by another (or by API_KEY)."""
    a = await issue(fleet, "client-a", "client")
    b = await issue(fleet, "client-b", "client")
    path = "/api/v1/dashboard/sessions"
    statuses = []
    for _ in range(6):
        async with fleet.http.get(fleet.api + path, headers={"X-API-Key": a["key"]}) as r:
            statuses.append(r.status)
            retry = r.headers.get("Retry-After")
    assert statuses == [200] * 5 + [429]
    assert retry is not None and retry.isdigit() and 1 <= int(retry) <= 2
    assert (await call_as(fleet, b["key"], "GET", path))[0] == 200
    for _ in range(10):
        assert (await fleet.call("GET", path))[0] == 200
    await asyncio.sleep(int(retry) + 0.2)
    assert (await call_as(fleet, a["key"], "GET", path))[0] == 200


async def test_ownership_survives_stop_start_restart_and_a_restore(fleet: Fleet) -> None:
    """Catches an owner kept in a key that a stop/start, a restart of serve or a restore
    rewrites, or left out of the backup: the client would lose its own session (404) or
    another would gain it."""
    a = await issue(fleet, "client-a", "client")
    b = await issue(fleet, "client-b", "client")
    sid = await provision_as(fleet, a["key"], PHONE)
    await fleet.qr(sid)
    path = f"/api/sessions/{sid}/status"
    assert (await call_as(fleet, a["key"], "POST", f"/api/sessions/{sid}/stop"))[0] == 200
    assert (await call_as(fleet, a["key"], "POST", f"/api/sessions/{sid}/start"))[0] == 200
    assert (await call_as(fleet, a["key"], "POST", f"/api/sessions/{sid}/restart"))[0] == 200
    fleet.stop()
    fleet.start()
    await fleet.qr(sid)
    status, backup = await fleet.call("POST", "/api/v1/backups/create", {})
    assert status == 201, backup
    # As on a fresh install: the archive alone must say whose the session is.
    await fleet.redis.delete("wafleet:owners", f"wafleet:owner:{a['id']}:sessions")
    status, restored = await fleet.call(
        "POST", f"/api/v1/backups/restore/{backup['id']}", {"waitSeconds": 0}
    )
    assert status == 200 and restored["sessions"] == [sid], restored
    assert (await call_as(fleet, a["key"], "GET", path))[0] == 200
    assert (await call_as(fleet, b["key"], "GET", path))[0] == 404
    assert (await fleet.status(sid))["owner"] == a["id"]
    _, page = await call_as(fleet, a["key"], "GET", "/api/v1/dashboard/sessions")
    assert [s["id"] for s in page["sessions"]] == [sid]


def test_the_document_names_each_operations_scopes() -> None:
    """Catches scopes enforced but not documented (or documented wrong): a read key may only
    GET, a client key reaches the session routes, the rest is admin only."""
    app = create_app(None, None, None, None, None)  # type: ignore[arg-type]
    paths = openapi.document(app.router)["paths"]
    assert paths["/api/sessions/{id}/status"]["get"]["x-scopes"] == ["admin", "read", "client"]
    assert paths["/api/sessions/{id}/restart"]["post"]["x-scopes"] == ["admin", "client"]
    for admin_only in ("/api/v1/keys", "/api/v1/audit", "/api/v1/proxies", "/api/v1/nodes"):
        assert paths[admin_only]["get"]["x-scopes"] == ["admin"], admin_only
    assert "403" in paths["/api/v1/keys"]["post"]["responses"]
    assert "429" in paths["/api/sessions/{id}/status"]["get"]["responses"]


@pytest.mark.parametrize("fleet_options", [{"proxies": 1, "MAX_SESSIONS_PER_PROXY": "1"}])
async def test_the_owner_is_written_with_the_session_and_never_without_it(fleet: Fleet) -> None:
    """Catches an owner written after the session's record (a reader, or a crash of serve in
    between, finds a client's session without its owner: the client gets 404 for its own
    session and an admin sees it as nobody's), and a refused provision that leaves an owner
    behind."""
    a = await issue(fleet, "client-a", "client")
    b = await issue(fleet, "client-b", "client")
    seen: list[tuple[bool, str | None]] = []
    done = asyncio.Event()

    async def watch() -> None:
        while not done.is_set():
            pipe = fleet.redis.pipeline(transaction=True)
            pipe.sismember("wafleet:sessions", "worker_1")
            pipe.hget("wafleet:owners", "worker_1")
            member, owner = await pipe.execute()
            seen.append((bool(member), owner))
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    try:
        sid = await provision_as(fleet, a["key"], PHONE)
    finally:
        done.set()
        await watcher
    assert sid == "worker_1"
    assert any(member for member, _ in seen)  # the watch did run while the record existed
    assert [s for s in seen if s[0] and s[1] != a["id"]] == []
    _, page = await call_as(fleet, a["key"], "GET", "/api/v1/dashboard/sessions")
    assert [s["id"] for s in page["sessions"]] == [sid]

    before = await fleet.redis.hgetall("wafleet:owners")
    for body in ({"phone": "12"}, {"phone": OTHER_PHONE}):  # bad phone; no slot left
        status, answer = await call_as(fleet, b["key"], "POST", "/api/sessions/provision", body)
        assert status in (400, 503), answer
    assert await fleet.redis.hgetall("wafleet:owners") == before == {sid: a["id"]}
    assert not await fleet.redis.exists(f"wafleet:owner:{b['id']}:sessions")
