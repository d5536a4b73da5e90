"""Several real ``wafleet serve`` replicas on 127.0.0.1/.2/.3 sharing one redis-server.

One replica leads (a lease in Redis with a fencing token) and runs the singletons: the
reconcile, the watchdog, the exit watch, the Telegram polling and alert sending. These tests
kill, freeze and restart replicas and check what an operator would see: one leader again
within a lease, each crash handled once, one alert, never two Telegram pollers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from core import keys
from tests import fake_telegram
from tests.fake_telegram import ADMIN, CHAT, FakeTelegram, bot_env
from tests.fleet import API_KEY, Fleet, eventually
from tests.messaging import FAST, send, wait_message
from wafleet import devstack

telegram = fake_telegram.telegram  # the fixture

LEASE_MS = 3_000


@pytest.fixture
def fleet_options(telegram: FakeTelegram) -> dict[str, Any]:
    # Started here, one replica at a time; messages without pauses for the wake test.
    return bot_env(telegram, start=False, LEADER_LEASE_MS=str(LEASE_MS), **FAST)


@dataclass
class Replica:
    name: str
    host: str
    port: int
    proc: devstack.Proc | None = None

    @property
    def api(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.popen.pid


class Replicas:
    """``c`` on 127.0.0.1 is the one workers post to and the fleet's own API (never killed
    here: a worker moving to another URL is not what these tests are about)."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.a = Replica("replica-a", "127.0.0.2", devstack.free_port("127.0.0.2"))
        self.b = Replica("replica-b", "127.0.0.3", devstack.free_port("127.0.0.3"))
        self.c = Replica("replica-c", "127.0.0.1", devstack.free_port())
        fleet.port = self.c.port
        fleet.env["PUBLIC_WEBHOOK_URL"] = f"{self.c.api}/webhook"
        self.frozen: set[int] = set()

    @property
    def all(self) -> list[Replica]:
        return [self.a, self.b, self.c]

    async def start(self, replica: Replica) -> None:
        """In a thread: this loop also serves the fake Telegram, which must keep answering."""
        await asyncio.to_thread(self._start, replica)

    def _start(self, replica: Replica) -> None:
        env = {
            **os.environ,
            **self.fleet.env,
            "HTTP_HOST": replica.host,
            "HTTP_PORT": str(replica.port),
            "SERVE_ID": replica.name,
        }
        log = self.fleet.workdir / f"{replica.name}.log"
        replica.proc = devstack.spawn(
            replica.name, [sys.executable, "-m", "wafleet", "serve"], log, env
        )
        devstack.wait_port(replica.host, replica.port, timeout=20, proc=replica.proc.popen)
        # The port was free when drawn; make sure it is this replica that answers on it.
        url = f"{replica.api}/healthz"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError, ValueError),
                urllib.request.urlopen(url, timeout=2) as answer,
            ):
                if json.loads(answer.read()).get("replica") == replica.name:
                    return
            time.sleep(0.05)
        raise AssertionError(f"{replica.name} does not answer on {replica.api}")

    def log(self, replica: Replica) -> str:
        return (self.fleet.workdir / f"{replica.name}.log").read_text(errors="replace")

    def freeze(self, replica: Replica) -> None:
        os.kill(replica.pid, signal.SIGSTOP)
        self.frozen.add(replica.pid)

    def thaw(self, replica: Replica) -> None:
        os.kill(replica.pid, signal.SIGCONT)
        self.frozen.discard(replica.pid)

    def stop(self) -> None:
        for pid in self.frozen:
            os.kill(pid, signal.SIGCONT)
        for replica in self.all:
            if replica.proc is not None:
                replica.proc.stop()

    async def health(self, replica: Replica) -> dict[str, Any] | None:
        try:
            async with self.fleet.http.get(
                replica.api + "/healthz", timeout=aiohttp.ClientTimeout(total=0.5)
            ) as r:
                body: dict[str, Any] = await r.json()
                return body
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def leader(self, among: list[Replica] | None = None) -> Replica | None:
        """The replica that says it leads and has reconciled (None: none yet)."""
        for replica in among or self.all:
            found = await self.health(replica)
            if found and found.get("leader") and found.get("reconciling") is False:
                return replica
        return None

    async def cluster(self, replica: Replica) -> dict[str, Any]:
        async with self.fleet.http.get(
            replica.api + "/api/v1/cluster", headers={"X-API-Key": API_KEY}
        ) as r:
            assert r.status == 200, await r.text()
            body: dict[str, Any] = await r.json()
            return body

    async def call(
        self, replica: Replica, method: str, path: str, body: Any = None
    ) -> tuple[int, Any]:
        async with self.fleet.http.request(
            method, replica.api + path, json=body, headers={"X-API-Key": API_KEY}
        ) as r:
            return r.status, await r.json() if r.content_type == "application/json" else None


@pytest.fixture
async def replicas(fleet: Fleet) -> AsyncIterator[Replicas]:
    found = Replicas(fleet)
    try:
        yield found
    finally:
        found.stop()


async def start_led_by_a(replicas: Replicas, *others: Replica) -> None:
    """``a`` first, so it wins the lease; then the others, as followers."""
    await replicas.start(replicas.a)
    await eventually(lambda: replicas.leader([replicas.a]), 15, "replica-a leading")
    for replica in others:
        await replicas.start(replica)


def crash_alerts(fake: FakeTelegram, sid: str) -> list[str]:
    return [
        c.text
        for c in fake.calls_of("sendMessage", CHAT)
        if "Worker crashed" in c.text and sid in c.text
    ]


async def test_killed_leader_is_replaced_within_a_lease_and_the_new_one_handles_crashes(
    fleet: Fleet, replicas: Replicas, telegram: FakeTelegram
) -> None:
    """Would catch: singletons that die with the leader (no watchdog, no exit watch, no
    polling after it is gone), a lease that is never taken over or only after a restart,
    a crash handled by every replica (two restarts, two alerts), two Telegram pollers."""
    a, b, c = replicas.a, replicas.b, replicas.c
    await start_led_by_a(replicas, b, c)
    sid = (await fleet.link())["id"]
    view = await replicas.cluster(b)
    assert view["leader"] == a.name
    assert {r["id"]: r["leader"] for r in view["replicas"]} == {
        a.name: True,
        b.name: False,
        c.name: False,
    }
    assert {r["id"]: r["url"] for r in view["replicas"]}[b.name] == b.api
    assert view["redis"]["replicas"] == 0 and view["redis"]["primary"].endswith(
        fleet.redis_url.rsplit(":", 1)[1].split("/")[0]
    )

    assert a.proc is not None
    a.proc.kill()
    killed = time.monotonic()
    successor = await eventually(lambda: replicas.leader([b, c]), 15, "a new leader")
    took = time.monotonic() - killed
    print(f"take-over after SIGKILL of the leader: {took:.2f} s (lease {LEASE_MS} ms)")
    assert took < LEASE_MS / 1000 + 2

    # The new leader watches the worker's exit: a crash is restarted at once, and once.
    pid = fleet.workers()[sid]
    os.kill(pid, signal.SIGKILL)

    async def replaced() -> int | None:
        new = fleet.workers().get(sid)
        return new if new not in (None, pid) else None

    new_pid = await eventually(replaced, 10, "the crashed worker restarted")
    await fleet.wait_status(sid, "connected")
    await eventually(lambda: _some(crash_alerts(telegram, sid)), 15, "the crash alert")
    await asyncio.sleep(2)
    assert fleet.workers()[sid] == new_pid  # not restarted a second time
    assert len(crash_alerts(telegram, sid)) == 1
    restarts = sum(replicas.log(r).count("); restarting it") for r in (b, c))
    assert restarts == 1

    # The new leader polls Telegram, alone: an operator's command is answered.
    telegram.send("/status")
    await telegram.wait_call("sendMessage", lambda call: call.chat != CHAT, timeout=15)
    assert telegram.conflicts == 0

    # The dead replica leaves the listing after three leases unseen.
    async def gone() -> dict[str, Any] | None:
        found = await replicas.cluster(successor)
        return found if a.name not in [r["id"] for r in found["replicas"]] else None

    listed = await eventually(gone, 3 * LEASE_MS / 1000 + 5, "replica-a unlisted")
    assert listed["leader"] == successor.name


async def test_frozen_leader_thawed_does_nothing_to_the_fleet_and_follows(
    fleet: Fleet, replicas: Replicas, telegram: FakeTelegram
) -> None:
    """Would catch: a leader frozen past its lease (SIGSTOP) that, thawed, acts on what it
    saw before: it restarts the worker that crashed while it slept (a second restart after
    the new leader's), sends a second alert, polls Telegram beside the new leader (409), or
    goes on believing it leads. Telegram's long poll is held as long as asked here: a poll
    that outlived the lease would meet the new leader's (409)."""
    telegram.max_hold_s = 30  # held as long as asked, as Telegram does
    a, b, c = replicas.a, replicas.b, replicas.c
    await start_led_by_a(replicas, b, c)
    sid = (await fleet.link())["id"]
    await eventually(lambda: replicas.leader([a]), 5, "replica-a leading")
    replicas.freeze(a)
    frozen_at = time.monotonic()
    successor = await eventually(lambda: replicas.leader([b, c]), 15, "a new leader")
    print(f"take-over after SIGSTOP of the leader: {time.monotonic() - frozen_at:.2f} s")

    # The worker crashes: the new leader restarts it and tells the chat, once. The frozen
    # replica also watches this worker (it adopted it) and hears of its exit when it thaws.
    pid = fleet.workers()[sid]
    os.kill(pid, signal.SIGKILL)

    async def replaced() -> int | None:
        new = fleet.workers().get(sid)
        return new if new not in (None, pid) else None

    new_pid = await eventually(replaced, 10, "the crashed worker restarted")
    await eventually(lambda: _some(crash_alerts(telegram, sid)), 15, "the crash alert")
    a_log_before = len(replicas.log(a))

    replicas.thaw(a)
    await asyncio.sleep(LEASE_MS / 1000 + 1)
    assert fleet.workers()[sid] == new_pid  # the thawed one restarted nothing
    await fleet.wait_status(sid, "connected")
    assert len(crash_alerts(telegram, sid)) == 1
    after = replicas.log(a)[a_log_before:]
    assert "worker started" not in after and "restarting it" not in after
    assert "no longer the leader" in after
    health = await replicas.health(a)
    assert health is not None and health["leader"] is False and health["replica"] == a.name
    assert (await replicas.cluster(a))["leader"] == successor.name
    # One poller: an operator's command is answered once, by the new leader.
    mark = len(telegram.calls)
    telegram.send("/status")
    await telegram.wait_call("sendMessage", lambda call: call.chat == ADMIN, after=mark)
    await asyncio.sleep(1)
    assert len([c for c in telegram.calls[mark:] if c.method == "sendMessage"]) == 1
    assert telegram.conflicts == 0


async def test_restarted_replica_rejoins_as_a_follower(
    fleet: Fleet, replicas: Replicas, telegram: FakeTelegram
) -> None:
    """Would catch: a replica that, started again, takes the lease from the living leader
    (two leaders), or that is not listed again in the cluster."""
    a, b = replicas.a, replicas.b
    await start_led_by_a(replicas, b, replicas.c)
    assert a.proc is not None
    a.proc.kill()
    successor = await eventually(lambda: replicas.leader([b, replicas.c]), 15, "a new leader")
    await replicas.start(a)

    async def listed() -> dict[str, Any] | None:
        view = await replicas.cluster(a)
        return view if a.name in [r["id"] for r in view["replicas"]] else None

    view = await eventually(listed, 10, "replica-a listed again")
    assert view["leader"] == successor.name
    await asyncio.sleep(LEASE_MS / 1000)
    health = await replicas.health(a)
    assert health is not None and health["leader"] is False
    assert await replicas.leader() is successor
    assert telegram.conflicts == 0


async def test_restart_on_one_replica_and_delete_on_another_are_ordered(
    fleet: Fleet, replicas: Replicas
) -> None:
    """Would catch: per-session locks held in one process only: a restart on one replica
    interleaved with a delete on another leaves a worker running for a deleted session (or
    a half-deleted record)."""
    a, b = replicas.a, replicas.b
    await start_led_by_a(replicas, b, replicas.c)
    for n in range(3):
        phone = f"97250123450{n}"
        sid = (await fleet.provision(phone))["id"]
        await fleet.qr(sid)
        restart, delete = await asyncio.gather(
            replicas.call(a, "POST", f"/api/sessions/{sid}/restart"),
            replicas.call(b, "DELETE", f"/api/sessions/{sid}"),
        )
        assert delete[0] in (200, 204), delete
        assert restart[0] in (200, 404), restart
        for replica in (a, b):
            assert (await replicas.call(replica, "GET", f"/api/sessions/{sid}/status"))[0] == 404
        await asyncio.sleep(1)
        assert sid not in fleet.workers(), f"a worker runs for deleted {sid}"
        assert await fleet.redis.keys(f"session:{sid}:*") == []


async def test_a_message_accepted_on_one_replica_wakes_the_poll_held_by_another(
    fleet: Fleet, replicas: Replicas
) -> None:
    """Would catch: command-channel wake-ups kept in one process: the worker's poll, held
    open by the replica it talks to, would sleep until its poll ends (25 s) before the
    message accepted by another replica went out."""
    a = replicas.a
    await start_led_by_a(replicas, replicas.b, replicas.c)
    sid = (await fleet.link())["id"]
    await asyncio.sleep(1)  # the worker's poll is now held open by replica-c
    status, body = await replicas.call(
        a, "POST", f"/api/sessions/{sid}/messages", {"to": "14155550123", "text": "hi"}
    )
    assert status == 202, body
    started = time.monotonic()
    await wait_message(fleet, sid, body["id"], {"sent", "delivered", "read"}, timeout=10)
    assert time.monotonic() - started < 5
    # and the same through the replica the worker talks to, for comparison
    sent = await send(fleet, sid, "14155550123", "again")
    await wait_message(fleet, sid, sent["id"], {"sent", "delivered", "read"}, timeout=10)


async def _some(items: list[str]) -> list[str] | None:
    return items or None


async def test_a_restore_on_a_follower_makes_every_replica_refuse_until_it_ends(
    fleet: Fleet, replicas: Replicas
) -> None:
    """Would catch: a restore's maintenance kept in the restoring replica's memory: the
    other replicas (the leader among them, with its watchdog) would go on starting and
    moving workers in a fleet being replaced."""
    a, c = replicas.a, replicas.c
    await start_led_by_a(replicas, c)
    sid = (await fleet.link())["id"]
    status, backup = await fleet.call("POST", "/api/v1/backups/create")
    assert status == 201, backup
    restoring = asyncio.create_task(
        replicas.call(c, "POST", f"/api/v1/backups/restore/{backup['id']}", {"waitSeconds": 10})
    )

    # A one-session restore is over in well under a second: hold the restoring replica still
    # the moment it has claimed the fleet, so the leader's refusal is looked at, not raced.
    deadline = time.monotonic() + 20
    while not await fleet.redis.get(keys.MAINTENANCE):
        assert time.monotonic() < deadline, "the restoring replica never claimed the fleet"
        await asyncio.sleep(0.002)  # a tight watch of a short window, not a wait for a state
    replicas.freeze(c)
    try:

        async def refused_on_a() -> bool:
            status, _ = await replicas.call(a, "POST", "/api/sessions/worker_999/restart")
            return status == 409

        await eventually(refused_on_a, 10, "the leader refusing during the restore")
        status, body = await replicas.call(
            a, "POST", "/api/sessions/provision", {"phone": "972501234599"}
        )
        assert status == 409 and body["error"]["code"] == "busy", body
    finally:
        replicas.thaw(c)
    status, report = await restoring
    assert status == 200, report

    async def open_again() -> bool:
        status, _ = await replicas.call(a, "POST", "/api/sessions/worker_999/restart")
        return status == 404

    await eventually(open_again, 5, "the leader taking actions again")
    await fleet.wait_status(sid, "connected")
