"""The session life cycle end to end: REST → serve → worker process → proxy → simwa → webhook."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from PIL import Image

from tests.fleet import PHONE, Fleet, eventually
from wafleet import devstack


async def test_provision_qr_scan_connect_writes_sticky_keys(fleet: Fleet) -> None:
    session = await fleet.provision()
    sid = session["id"]
    assert sid == "worker_1"
    assert session["status"] == "pending"
    assert "s3cret-pw" not in json.dumps(session)  # the proxy password is masked
    code = await fleet.qr(sid)
    assert code.startswith("2@")

    status, png = await fleet.call(
        "GET", f"/api/sessions/{sid}/qr", headers={"Accept": "image/png"}
    )
    assert status == 200
    path = fleet.workdir / "qr.png"
    path.write_bytes(png)
    decoded = zxingcpp.read_barcodes(Image.open(path))
    assert [d.text for d in decoded] == [code]

    assert await fleet.scan(code) == 200
    linked = await fleet.wait_status(sid, "connected")
    assert linked["phone"] == PHONE
    proxy_url = await fleet.text(f"session:{sid}:proxy")
    assert await fleet.redis.get(f"phone:{PHONE}:proxy") == proxy_url
    assert await fleet.redis.get(f"phone:{PHONE}:session") == sid
    assert await fleet.redis.get(f"session:{sid}:qr") is None
    meta = json.loads((fleet.sessions_dir / sid / "session.json").read_text())
    assert meta == {"id": sid, "phone": PHONE, "proxy": proxy_url, "created": session["created"]}
    assert (fleet.sessions_dir / sid / "creds.json").exists()

    # keep-alive reaches the network: presence updates and self-messages
    async def kept_alive() -> bool:
        device = await fleet.device(sid)
        presence: int = device["presenceCount"]
        self_messages: int = device["selfMessages"]
        return presence >= 2 and self_messages >= 1

    await eventually(kept_alive, what="presence and a self-message")


async def test_restart_reconnects_with_saved_credentials(fleet: Fleet) -> None:
    sid = (await fleet.link())["id"]
    before = await fleet.device(sid)
    old_pid = fleet.workers()[sid]
    status, _ = await fleet.call("POST", f"/api/sessions/{sid}/restart")
    assert status == 200
    await fleet.wait_status(sid, "connected")
    assert fleet.workers()[sid] != old_pid
    after = await fleet.device(sid)
    assert after["connected"]
    assert after["ipHistory"] == before["ipHistory"]  # same proxy, same IP
    assert len(await fleet.events(sid, "QR_CODE")) == 1  # no new QR


async def test_dead_proxy_fails_over_once_and_comes_back(fleet: Fleet) -> None:
    sid = (await fleet.link())["id"]
    old_url = await fleet.text(f"session:{sid}:proxy")
    dead = next(p for p in fleet.proxies if p.url == old_url)
    first_ip = (await fleet.device(sid))["ip"]
    dead.proc.kill()

    async def moved() -> str | None:
        url = await fleet.text(f"session:{sid}:proxy")
        status = (await fleet.status(sid))["status"]
        return url if url != old_url and status == "connected" else None

    new_url = await eventually(moved, 20, "failover to the other proxy")
    assert await fleet.redis.get(f"proxy:{old_url}:status") == "bad"
    assert await fleet.redis.get(f"proxy:{old_url}:sessions") == "0"
    assert await fleet.redis.get(f"proxy:{new_url}:sessions") == "1"
    assert await fleet.redis.get(f"phone:{PHONE}:proxy") == new_url  # sticky moved
    device = await fleet.device(sid)
    assert device["ipHistory"] == [first_ip, device["ip"]]  # the IP changed exactly once
    assert len(await fleet.events(sid, "QR_CODE")) == 1  # no new QR
    assert "s3cret-pw" not in fleet.log()

    dead.restart()

    async def back() -> bool:
        return await fleet.redis.get(f"proxy:{old_url}:status") == "active"

    await eventually(back, 10, "the proxy back in the pool")
    assert await fleet.redis.get(f"phone:{PHONE}:proxy") == new_url  # no move back


async def test_logout_deletes_auth_and_offers_a_new_qr(fleet: Fleet) -> None:
    sid = (await fleet.link())["id"]
    first_qr = await fleet.events(sid, "QR_CODE")
    assert await fleet.control("logout", phone=PHONE) == 200

    async def new_qr() -> dict[str, Any] | None:
        body = await fleet.status(sid)
        return body if body["status"] == "qr_ready" else None

    await eventually(new_qr, what="a new QR after the logout")
    assert not (fleet.sessions_dir / sid / "creds.json").exists()
    assert (fleet.sessions_dir / sid / "session.json").exists()
    failures = await fleet.events(sid, "AUTH_FAILURE")
    assert failures and failures[0]["data"]["reason"] == "logged_out"
    assert len(await fleet.events(sid, "QR_CODE")) == len(first_qr) + 1
    # the new QR links again
    await fleet.scan(await fleet.qr(sid))
    await fleet.wait_status(sid, "connected")


async def test_dropped_connection_reconnects_by_itself(fleet: Fleet) -> None:
    sid = (await fleet.link())["id"]
    proxy = await fleet.text(f"session:{sid}:proxy")
    pid = fleet.workers()[sid]
    assert await fleet.control("drop", phone=PHONE) == 200

    async def dropped_and_back() -> bool:
        return (
            bool(await fleet.events(sid, "DISCONNECTED"))
            and (await fleet.device(sid))["connected"]
        )

    await eventually(dropped_and_back, what="a reconnect after the drop")
    await fleet.wait_status(sid, "connected")
    assert fleet.workers()[sid] == pid  # the worker itself reconnected
    assert await fleet.redis.get(f"session:{sid}:proxy") == proxy
    assert len((await fleet.device(sid))["ipHistory"]) == 1
    assert len(await fleet.events(sid, "QR_CODE")) == 1


async def test_frozen_worker_is_restarted_by_the_watchdog(fleet: Fleet) -> None:
    sid = (await fleet.link())["id"]
    pid = fleet.workers()[sid]
    os.kill(pid, signal.SIGSTOP)
    try:

        async def replaced() -> int | None:
            new = fleet.workers().get(sid)
            return new if new not in (None, pid) else None

        await eventually(replaced, 15, "a watchdog restart")  # PING_TIMEOUT_MS is 4 s here
    finally:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # the frozen one was killed, not left behind
    await fleet.wait_status(sid, "connected")
    assert "watchdog restarted worker_1" in fleet.log()


async def test_killed_worker_is_restarted_within_seconds(fleet: Fleet) -> None:
    sid = (await fleet.link())["id"]
    pid = fleet.workers()[sid]
    os.kill(pid, signal.SIGKILL)
    loop = asyncio.get_running_loop()
    killed_at = loop.time()

    async def replaced() -> int | None:
        new = fleet.workers().get(sid)
        return new if new not in (None, pid) else None

    await eventually(replaced, 5, "a new worker")
    assert loop.time() - killed_at < 3
    await fleet.wait_status(sid, "connected")
    assert len(await fleet.events(sid, "QR_CODE")) == 1


@pytest.mark.parametrize("fleet_options", [{"proxies": 3}])
async def test_concurrent_provisions_never_exceed_the_cap(fleet: Fleet) -> None:
    results = await asyncio.gather(
        *(fleet.call("POST", "/api/sessions/provision", {}) for _ in range(20))
    )
    codes = sorted(status for status, _ in results)
    assert codes == [201] * 12 + [503] * 8
    refused = [body for status, body in results if status == 503]
    assert all(b["error"]["code"] == "no_proxy_capacity" for b in refused)
    for proxy in fleet.proxies:
        members = await fleet.redis.smembers(f"proxy:{proxy.url}:members")
        assert await fleet.redis.get(f"proxy:{proxy.url}:sessions") == str(len(members)) == "4"
    _, listing = await fleet.call("GET", "/api/v1/dashboard/sessions")
    assert len(listing["sessions"]) == 12
    await eventually(lambda: _count(fleet, 12), what="12 workers running")


async def _count(fleet: Fleet, n: int) -> bool:
    return len(fleet.workers()) == n


async def test_serve_killed_and_restarted_adopts_every_worker(fleet: Fleet) -> None:
    first = (await fleet.link())["id"]
    second = (await fleet.link("972509999999"))["id"]
    pids = fleet.workers()
    fleet.kill()  # SIGKILL: no chance to clean up (returns once serve is gone)
    assert fleet.workers() == pids  # workers outlive serve
    fleet.start()  # returns once the reconcile is over: whatever it started runs already
    assert fleet.workers() == pids  # adopted, not duplicated
    restarted_at = time.time_ns() // 1_000_000
    for sid in (first, second):
        await fleet.wait_status(sid, "connected")

        async def pinged(sid: str = sid) -> bool:
            return await _pinged_since(fleet, sid, restarted_at)

        await eventually(pinged)
    assert fleet.workers() == pids
    assert "2 adopted, 0 started, 0 orphan(s) removed" in fleet.log()
    # an adopted worker is watched like a child: killing it gets it restarted
    os.kill(pids[first], signal.SIGKILL)

    async def replaced() -> bool:
        return fleet.workers().get(first) not in (None, pids[first])

    await eventually(replaced, 5, "the adopted worker restarted")


async def test_orphan_worker_is_stopped_at_start(fleet: Fleet) -> None:
    sid = (await fleet.link())["id"]
    pid = fleet.workers()[sid]
    fleet.kill()
    # the session vanishes from Redis while serve is down: its worker is an orphan now
    await fleet.redis.srem("wafleet:sessions", sid)
    fleet.start()
    await eventually(lambda: _gone(pid), 10, "the orphan stopped")
    assert "1 orphan(s) removed" in fleet.log()


async def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_delete_stops_worker_removes_folder_releases_slot(fleet: Fleet) -> None:
    sid = (await fleet.link())["id"]
    proxy = await fleet.text(f"session:{sid}:proxy")
    status, body = await fleet.call("DELETE", f"/api/sessions/{sid}")
    assert (status, body) == (200, {"deleted": sid})
    assert sid not in fleet.workers()
    assert not (fleet.sessions_dir / sid).exists()
    assert await fleet.redis.get(f"proxy:{proxy}:sessions") == "0"
    assert await fleet.redis.get(f"session:{sid}:status") is None
    assert await fleet.redis.get(f"phone:{PHONE}:proxy") == proxy  # sticky kept
    # the phone comes back on the same proxy
    again = await fleet.provision()
    assert await fleet.redis.get(f"session:{again['id']}:proxy") == proxy
    status, _ = await fleet.call("GET", f"/api/sessions/{sid}/status")
    assert status == 404


@pytest.mark.parametrize(
    "fleet_options", [{"simwa": {"first_ttl_ms": 700, "next_ttl_ms": 300, "count": 3}}]
)
async def test_qr_round_runs_out_then_a_new_round_on_request(fleet: Fleet) -> None:
    sid = (await fleet.provision())["id"]
    waiting = await fleet.wait_status(sid, "failed", timeout=15)
    assert waiting["needsQr"] is True
    assert waiting["reason"] == "qr_expired"
    assert len(await fleet.events(sid, "QR_CODE")) == 3
    status, body = await fleet.call("GET", f"/api/sessions/{sid}/qr")
    assert status == 409 and "POST" in body["error"]["message"]
    # no silent reconnect loop: while the idle worker pings on, still waiting, still 3 QRs
    waiting_since = time.time_ns() // 1_000_000 + 1000
    await eventually(lambda: _pinged_since(fleet, sid, waiting_since))
    assert (await fleet.status(sid))["status"] == "failed"
    assert len(await fleet.events(sid, "QR_CODE")) == 3
    status, _ = await fleet.call("POST", f"/api/sessions/{sid}/qr")
    assert status == 202
    code = await fleet.qr(sid)
    assert await fleet.scan(code) == 200
    await fleet.wait_status(sid, "connected")


async def test_expired_or_unknown_qr_is_refused_by_the_network(fleet: Fleet) -> None:
    sid = (await fleet.provision())["id"]
    await fleet.qr(sid)
    assert await fleet.scan("2@not-a-real-code") == 404


async def _snapshot_unchanged(
    fleet: Fleet, request: Awaitable[tuple[int, Any]]
) -> tuple[int, Any]:
    before = await fleet.snapshot()
    result = await request
    assert await fleet.snapshot() == before
    return result


@pytest.mark.parametrize("fleet_options", [{"WORKER_ATTEMPTS_PER_PROCESS": "2"}])
async def test_worker_recycles_its_process_quietly_after_n_attempts(fleet: Fleet) -> None:
    """A fresh process every N attempts bounds a native library's per-connection leak."""
    sid = (await fleet.link())["id"]
    pid = fleet.workers()[sid]
    assert await fleet.control("drop", phone=PHONE) == 200  # attempt 2 reconnects in-process

    async def reconnected_in_place() -> bool:
        return (
            bool(await fleet.events(sid, "DISCONNECTED"))
            and (await fleet.device(sid))["connected"]
        )

    await eventually(reconnected_in_place, what="the second attempt")
    assert fleet.workers()[sid] == pid
    assert await fleet.control("drop", phone=PHONE) == 200  # a third attempt: a new process

    async def recycled() -> int | None:
        new = fleet.workers().get(sid)
        return new if new not in (None, pid) else None

    await eventually(recycled, what="a recycled worker process")
    await fleet.wait_status(sid, "connected")
    assert len(await fleet.events(sid, "QR_CODE")) == 1  # auth kept
    assert "recycled its worker process" in fleet.log()
    assert "worker_crashed" not in fleet.log()  # not a crash: no alert, no crash count


async def test_a_phone_that_cannot_scan_links_with_a_pairing_code(fleet: Fleet) -> None:
    sid = (await fleet.provision())["id"]

    async def pairing_code() -> str | None:
        status, body = await fleet.call("GET", f"/api/sessions/{sid}/qr")
        return body.get("pairingCode") if status == 200 else None

    code = await eventually(pairing_code, what="a pairing code")
    assert len(code) == 9 and code[4] == "-"
    assert (await fleet.events(sid, "PAIRING_CODE"))[0]["data"] == {"code": "…"}  # not logged
    async with fleet.http.post(
        fleet.simwa + "/control/pair", json={"code": code, "phone": "972509999999"}
    ) as r:
        assert r.status == 400  # typed in on another phone: refused
    async with fleet.http.post(
        fleet.simwa + "/control/pair", json={"code": code, "phone": PHONE}
    ) as r:
        assert r.status == 200
    linked = await fleet.wait_status(sid, "connected")
    assert linked["phone"] == PHONE
    status, _ = await fleet.call("GET", f"/api/sessions/{sid}/qr")
    assert status == 409  # connected: neither a QR nor a code is shown any more


@pytest.mark.parametrize("fleet_options", [{"MAX_SESSIONS_PER_PROXY": "1"}])
async def test_failover_impossible_parks_then_a_new_proxy_takes_the_session(
    fleet: Fleet,
) -> None:
    first = (await fleet.link())["id"]
    await fleet.link("972509999999")  # both proxies full now (cap 1)
    old = await fleet.text(f"session:{first}:proxy")
    next(p for p in fleet.proxies if p.url == old).proc.kill()
    parked = await fleet.wait_status(first, "failed", timeout=20)
    assert parked["reason"] == "no_proxy_capacity"
    assert first not in fleet.workers()  # stopped, not spinning on a dead proxy
    status, body = await fleet.call("POST", f"/api/sessions/{first}/restart")
    assert (status, body["error"]["code"]) == (503, "no_proxy_capacity")

    spare = devstack.start_proxy(fleet.workdir, 3)
    fleet.proxies.append(spare)  # the fixture stops it
    status, _ = await fleet.call("POST", "/api/v1/proxies", {"url": spare.url})
    assert status == 201
    await fleet.wait_status(first, "connected", timeout=20)
    assert await fleet.redis.get(f"session:{first}:proxy") == spare.url
    assert await fleet.redis.get(f"proxy:{spare.url}:sessions") == "1"
    assert await fleet.redis.get(f"proxy:{old}:sessions") == "0"
    assert await fleet.redis.get(f"phone:{PHONE}:proxy") == spare.url
    assert len(await fleet.events(first, "QR_CODE")) == 1


async def test_a_replayed_event_changes_nothing(fleet: Fleet) -> None:
    sid = (await fleet.link())["id"]
    # the worker gives every event an id, and serve remembers the ones it applied
    assert await fleet.redis.keys(f"wafleet:applied:{sid}:*")
    lost = {
        "id": "replay-test-0001",
        "sessionId": sid,
        "type": "DISCONNECTED",
        "data": {"code": "connection_lost", "reason": "test"},
        "timestamp": 1,
    }
    assert (await fleet.post_webhook(lost))[0] == 200
    assert (await fleet.status(sid))["status"] == "disconnected"
    back = {**lost, "id": "replay-test-0002", "type": "CONNECTED", "data": {"phoneNumber": PHONE}}
    assert (await fleet.post_webhook(back))[0] == 200
    assert (await fleet.status(sid))["status"] == "connected"
    # the same body again, freshly signed: answered 200, applied never
    status, body = await _snapshot_unchanged(fleet, fleet.post_webhook(lost))
    assert (status, body) == (200, {"ok": True})
    assert (await fleet.status(sid))["status"] == "connected"
    assert len(await fleet.events(sid, "DISCONNECTED")) == 1
    # an older worker's events carry no id: still accepted, applied every time
    old_style = {k: v for k, v in back.items() if k != "id"}
    for _ in range(2):
        assert (await fleet.post_webhook(old_style))[0] == 200
    assert len(await fleet.events(sid, "CONNECTED")) == 4
    status, body = await fleet.post_webhook({**lost, "id": "../x"})
    assert status == 400 and body["error"]["code"] == "invalid_input"


async def test_serve_killed_mid_failover_replaces_the_worker_on_the_old_proxy(
    fleet: Fleet,
) -> None:
    sid = (await fleet.link())["id"]
    old_url = await fleet.text(f"session:{sid}:proxy")
    old_pid = fleet.workers()[sid]
    await fleet.redis.config_set("notify-keyspace-events", "K$")
    moves = fleet.redis.pubsub()
    await moves.psubscribe(f"__keyspace@*__:session:{sid}:proxy")
    await moves.get_message(timeout=1)  # the subscription's confirmation
    next(p for p in fleet.proxies if p.url == old_url).proc.kill()
    # SIGKILL serve the moment Redis moves the session, before it replaces the worker
    moved = await moves.get_message(ignore_subscribe_messages=True, timeout=20)
    fleet.kill()
    # redis-py 8.1 leaves PubSub.aclose unannotated, 8.2 does not: the ignore is for 8.1
    await moves.aclose()  # type: ignore[no-untyped-call, unused-ignore]
    assert moved is not None and moved["data"] == "set"
    new_url = await fleet.text(f"session:{sid}:proxy")
    assert new_url != old_url
    assert fleet.workers()[sid] == old_pid  # the worker on the dead proxy is still there
    fleet.start()

    async def reconnected() -> bool:
        status: str = (await fleet.status(sid))["status"]
        return status == "connected"

    await eventually(reconnected, 20, "the session connected on the new proxy")
    pid = fleet.workers()[sid]
    assert pid != old_pid
    assert f"PROXY_URL={new_url}".encode() in _environ(pid)
    assert await fleet.redis.get(f"phone:{PHONE}:proxy") == new_url
    assert len(await fleet.events(sid, "QR_CODE")) == 1  # the same link, no new QR
    assert "1 replaced (started with other settings)" in fleet.log()
    meta = json.loads((fleet.sessions_dir / sid / "session.json").read_text())
    assert meta["proxy"] == new_url


async def test_a_worker_left_paused_by_a_backup_is_adopted_and_resumed(fleet: Fleet) -> None:
    sid = (await fleet.link())["id"]
    pid = fleet.workers()[sid]
    os.kill(pid, signal.SIGSTOP)  # what a rolling backup does while it copies the folder
    fleet.kill()  # ...and serve dies with the backup
    fleet.start()
    restarted_at = time.time_ns() // 1_000_000

    await eventually(
        lambda: _pinged_since(fleet, sid, restarted_at), 10, "a ping from the resumed worker"
    )
    assert fleet.workers()[sid] == pid  # adopted and resumed, not replaced
    assert _state(pid) != "T"
    assert (await fleet.status(sid))["status"] == "connected"
    assert "1 adopted, 0 started, 0 orphan(s) removed" in fleet.log()
    assert "left paused" in fleet.log()


async def _pinged_since(fleet: Fleet, sid: str, since_ms: int) -> bool:
    last = await fleet.text(f"session:{sid}:lastPing")
    return last is not None and int(last) > since_ms


def _environ(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rpartition(")")[2].split()[0]


async def test_serve_stops_by_itself_at_once_while_workers_wait_on_their_command_polls(
    fleet: Fleet,
) -> None:
    """A connected worker always has a long poll (25 s) waiting in ``serve``. A SIGTERM used
    to wait those out until the stop's grace ran out and ``serve`` was SIGKILLed half-way
    through its clean-up (the bot's last messages unsent); now they answer at once."""
    sid = (await fleet.link())["id"]

    async def polling() -> bool:
        status, text = await fleet.call("GET", "/metrics")
        return status == 200 and "wafleet_command_polls_total 0.0" not in str(text)

    await eventually(polling, what="the worker's first command poll")
    assert fleet.serve is not None
    popen = fleet.serve.popen
    popen.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(popen.wait, 10)  # well under the poll's 25 s
    assert code == 0
    assert fleet.log().rstrip().endswith("stopped")
    assert sid in fleet.workers()  # the worker keeps running, adopted at the next start
    fleet.start()
    await fleet.wait_status(sid, "connected")
