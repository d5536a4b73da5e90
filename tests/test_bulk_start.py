"""Starting many workers at once: bounded, connected sessions first, counted.

The reconcile runs in process over the real ``ProcessRunner``, wrapped only to record
when each start begins and ends, so the test measures how many starts are in flight
where they happen. The workers are real ``wafleet worker`` processes (their simulated
network is unreachable, so they keep running and retrying). The second test is the
whole story through a real ``serve``: linked sessions come back connected with their
saved credentials after a reboot took every worker down.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from api import serialize
from bot import texts
from bot.i18n import build_i18n
from core import session_files
from core.bulk_start import BulkStart
from core.fleet_stats import FleetStats
from core.notifier import Alert, AlertKind
from core.process_runner import ProcessRunner, find_workers
from core.runner import Runner, WorkerHandle, WorkerSpec
from core.sessions import SessionService
from core.settings import Settings
from core.store import Store
from tests.fleet import Fleet, eventually
from tests.service_rig import Alerts, ServiceRig
from tests.test_backups import create, link_many, restore
from wafleet import devstack

BOUND = 4


@dataclass
class StartRecorder:
    """The real ``ProcessRunner``; every ``start`` is counted while it is in flight."""

    inner: ProcessRunner
    service: SessionService | None = None
    in_flight: int = 0
    most_in_flight: int = 0
    began: list[str] = field(default_factory=list)
    # (started, pending) of the service's bulk start as each start began: what REST shows.
    progress: list[dict[str, int] | None] = field(default_factory=list)
    # Starts of these sessions wait for ``release`` (a slow start, held on purpose).
    held: set[str] = field(default_factory=set)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def start(self, spec: WorkerSpec) -> WorkerHandle:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.began.append(spec.session_id)
        if self.service is not None:
            self.progress.append(serialize.starting(self.service.starting))
        try:
            if spec.session_id in self.held:
                await self.release.wait()
            return await self.inner.start(spec)
        finally:
            self.in_flight -= 1


@dataclass
class Rig:
    service: SessionService
    runner: StartRecorder
    alerts: Alerts
    store: Store
    settings: Settings
    instance: str


@pytest.fixture
def rig_env() -> dict[str, str]:
    return {"MAX_SESSIONS_PER_PROXY": "1000", "WORKER_START_CONCURRENCY": str(BOUND)}


@pytest.fixture
def rig_runner() -> Callable[[ProcessRunner], Runner]:
    return StartRecorder


@pytest.fixture
def rig(rig: ServiceRig) -> Rig:
    """The conftest's in-process rig, its runner the recorder of every start."""
    assert isinstance(rig.runner, StartRecorder)
    rig.runner.service = rig.service
    return Rig(rig.service, rig.runner, rig.alerts, rig.store, rig.settings, rig.instance)


async def _seed(rig: Rig, n: int) -> list[str]:
    """``n`` sessions in Redis with their folders and no worker: a host just rebooted."""
    ids = []
    for _ in range(n):
        now = rig.service.clock.now_ms()
        sid, proxy = await rig.store.reserve("", "", 1000, 4, now)
        meta = session_files.Meta(sid, None, proxy, now)
        await session_files.write_record_meta(rig.settings.sessions_dir, meta)
        ids.append(sid)
    return ids


async def _reconcile_many(rig: Rig, n: int) -> None:
    ids = await _seed(rig, n)
    # The store lists sessions in its own order; the connected ones are put last in it,
    # so starting in the store's order would bring them back last.
    listed = [r.id for r in await rig.store.list_sessions()]
    connected = listed[-(n // 4) :]
    once = listed[-(n // 2) : -(n // 4)]  # connected before, disconnected when it went down
    for i, sid in enumerate(connected + once):
        await rig.store.mark_connected(sid, f"97250{i:07d}", rig.service.clock.now_ms())
    for sid in once:
        await rig.store.set_fields(sid, status="disconnected", reason="connection_lost")
    never = [sid for sid in listed if sid not in connected and sid not in once]

    report = await rig.service.reconcile()

    assert sorted(report["started"]) == sorted(ids)
    # Bounded, and really concurrent (one at a time would leave the last phone waiting).
    assert 2 <= rig.runner.most_in_flight <= BOUND, rig.runner.most_in_flight
    began = rig.runner.began
    assert sorted(began) == sorted(ids)  # each started once
    # Connected first, then connected once, then the rest. Starts run side by side, so one
    # taken from the queue later may reach the runner before up to BOUND - 1 taken earlier.
    slack = BOUND - 1
    at = {sid: i for i, sid in enumerate(began)}
    assert max(at[s] for s in connected) < len(connected) + slack, began
    assert min(at[s] for s in once) >= len(connected) - slack, began
    assert max(at[s] for s in once) < len(connected) + len(once) + slack, began
    assert min(at[s] for s in never) >= len(connected) + len(once) - slack, began
    # Progress as REST shows it, while the starts ran; nothing once it is over.
    assert rig.runner.progress[0] == {"total": n, "started": 0, "pending": n}
    assert all(p is not None and p["total"] == n for p in rig.runner.progress)
    assert rig.runner.progress[-1] is not None and rig.runner.progress[-1]["pending"] >= 1
    assert rig.service.starting is None
    done = [a for a in rig.alerts.seen if a.kind is AlertKind.BULK_START_DONE]
    assert [dict(a.facts) for a in done] == [{"total": n, "started": n, "failed": 0}]

    async def all_running() -> bool:
        return set(find_workers(rig.instance)) == set(ids)

    await eventually(all_running, 60, f"all {n} workers running")


async def test_a_reconcile_starts_missing_workers_bounded_and_connected_first(rig: Rig) -> None:
    await _reconcile_many(rig, 24)


@pytest.mark.timeout(600)
async def test_a_reconcile_of_200_missing_workers(rig: Rig) -> None:
    await _reconcile_many(rig, 200)


@pytest.mark.parametrize("fleet_options", [{"WORKER_START_CONCURRENCY": "2"}])
async def test_after_a_reboot_linked_sessions_come_back_connected_first(fleet: Fleet) -> None:
    # Provisioned last, so the store's own order would bring them back last.
    waiting = [(await fleet.provision(f"97250222000{i}"))["id"] for i in range(3)]
    linked = [(await fleet.link(f"97250111000{i}"))["id"] for i in range(2)]
    fleet.kill()
    fleet.kill_workers()  # the host rebooted: serve and every worker are gone

    async def none_left() -> bool:
        return not fleet.workers()

    await eventually(none_left, 10, "every worker gone")
    fleet.start()  # returns once the reconcile is over: its bulk start is over
    for sid in linked:  # with their saved credentials: nobody scans a QR again
        await fleet.wait_status(sid, "connected", 30)
    assert set(fleet.workers()) == set(linked + waiting)
    marker = "starting 5 worker(s), 2 at a time, connected ones first"
    assert marker in fleet.log()
    after = fleet.log().split(marker)[-1]  # the second serve's bulk start only
    assert "bulk start done: 5 of 5 started, 0 failed" in after
    order = re.findall(r"wafleet\.session\.(\S+): worker started", after)
    assert sorted(order) == sorted(linked + waiting), order
    # The log says when a start finished; two run side by side, so a quick start taken
    # after a slow one may finish first (one place of slack). In the store's own order the
    # linked ones would be the last two.
    assert max(order.index(sid) for sid in linked) <= len(linked), order
    status, stats = await fleet.call("GET", "/api/v1/dashboard/stats")
    assert status == 200 and "starting" not in stats  # nothing starting any more


def test_the_chat_words_a_bulk_start_in_both_languages() -> None:
    done = Alert(AlertKind.BULK_START_DONE, facts={"total": 200, "started": 198, "failed": 2})
    fleet = FleetStats({"pending": 3}, [], 0, 0)
    i18n = build_i18n()
    with i18n.context(), i18n.use_locale("en"):
        assert "198 of 200 started, 2 failed" in "\n".join(texts.alert_burst([done]))
        line = texts.stats(fleet, BulkStart(total=200, started=120)).splitlines()[-1]
        assert line == "Starting workers: 120 of 200 started, 80 to go"
        assert "Starting" not in texts.stats(fleet)  # only while a bulk start runs
    with i18n.context(), i18n.use_locale("he"):
        said = "\n".join(texts.alert_burst([done]))
        assert re.search(r"[\u0590-\u05FF]", said) and "198" in said and "200" in said
        line = texts.stats(fleet, BulkStart(total=200, started=120)).splitlines()[-1]
        assert re.search(r"[\u0590-\u05FF]", line) and "120" in line and "80" in line


@pytest.mark.parametrize("fleet_options", [{"WORKER_START_CONCURRENCY": "1"}])
async def test_a_restore_starts_its_workers_through_the_bounded_start(fleet: Fleet) -> None:
    sids = await link_many(fleet, ["972503330001", "972503330002", "972503330003"])
    backup = await create(fleet)
    status, report = await restore(fleet, backup["id"])
    assert status == 200, report
    assert sorted(report["connected"]) == sorted(sids)
    assert set(fleet.workers()) == set(sids)
    # serve itself started none of them (all were provisioned): these lines are the restore's
    assert "starting 3 worker(s), 1 at a time, connected ones first" in fleet.log()
    assert "bulk start done: 3 of 3 started, 0 failed" in fleet.log()


async def test_requests_during_a_reconcile_are_not_undone_by_it(rig: Rig) -> None:
    """serve answers while it reconciles: what a request did meanwhile stands."""
    ids = await _seed(rig, 12)
    rig.runner.held = set(ids[:BOUND])  # every starter busy: the other 8 wait in the queue
    reconcile = asyncio.create_task(rig.service.reconcile())

    async def all_starters_busy() -> bool:
        return rig.runner.in_flight == BOUND

    await eventually(all_starters_busy, 30, "the reconcile's starters all busy")
    assert rig.service.reconciling
    restarted, deleted = ids[-2], ids[-1]  # still queued
    await rig.service.restart(restarted)  # its worker runs now, on the operator's request
    await rig.service.delete(deleted)
    provisioned = (await rig.service.provision("972507770001")).id
    rig.runner.release.set()
    report = await reconcile

    assert not rig.service.reconciling
    # Each started once: the reconcile did not start again what the operator just started,
    # did not bring back what was deleted, and did not take the new session for an orphan.
    assert rig.runner.began.count(restarted) == 1, rig.runner.began
    assert deleted not in rig.runner.began
    assert rig.runner.began.count(provisioned) == 1
    assert sorted(report["started"]) == sorted(ids[:-2])
    assert report["removed"] == []
    wanted = set(ids[:-1]) | {provisioned}

    async def all_running() -> bool:
        return set(find_workers(rig.instance)) == wanted

    await eventually(all_running, 60, "every session's worker running, the deleted one's not")


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "fleet_options",
    [{"start": False, "WORKER_START_CONCURRENCY": "1", "MAX_SESSIONS_PER_PROXY": "100"}],
)
async def test_serve_answers_with_the_progress_while_it_reconciles(fleet: Fleet) -> None:
    """After a reboot serve starts many workers; REST must tell how far it got meanwhile."""
    n = 40
    store = Store(fleet.redis)
    for proxy in fleet.proxies:
        await store.add_proxy(proxy.url)
    settings = Settings.from_env(fleet.env)
    ids = []
    for _ in range(n):  # in Redis and on disk, no worker: the host just rebooted
        now = int(time.time() * 1000)
        sid, proxy_url = await store.reserve("", "", 100, 4, now)
        meta = session_files.Meta(sid, None, proxy_url, now)
        await session_files.write_record_meta(settings.sessions_dir, meta)
        ids.append(sid)
    fleet.port = devstack.free_port()
    fleet.serve = devstack.start_serve(fleet.workdir, fleet.env, fleet.port, reconciled=None)

    async def midway() -> dict[str, Any] | None:
        status, stats = await fleet.call("GET", "/api/v1/dashboard/stats")
        assert status == 200, stats
        starting = stats.get("starting")
        return stats if starting and 0 < starting["started"] < n - 2 else None

    stats = await eventually(midway, 60, "the bulk start's progress, midway")
    assert stats["reconciling"] is True
    assert stats["starting"]["total"] == n
    assert stats["starting"]["pending"] == n - stats["starting"]["started"]
    assert stats["sessions"]["total"] == n
    status, listing = await fleet.call("GET", "/api/v1/dashboard/sessions")
    assert status == 200 and len(listing["sessions"]) == n
    _, health = await fleet.call("GET", "/healthz", headers={"X-API-Key": ""})
    assert health["reconciling"] is True
    # Requests meanwhile: a delete of one still queued (started last: never linked, highest
    # id) and a new session; the reconcile neither brings the first back nor stops the second.
    deleted = ids[-1]
    status, _ = await fleet.call("DELETE", f"/api/sessions/{deleted}")
    assert status == 200
    provisioned = (await fleet.provision("972507770002"))["id"]

    async def done() -> dict[str, Any] | None:
        _, health = await fleet.call("GET", "/healthz", headers={"X-API-Key": ""})
        return health if health["reconciling"] is False else None

    await eventually(done, 120, "the reconcile over")
    status, stats = await fleet.call("GET", "/api/v1/dashboard/stats")
    assert status == 200 and "starting" not in stats and "reconciling" not in stats
    assert f"reconciled: 0 adopted, {n - 1} started, 0 orphan(s) removed" in fleet.log()
    wanted = set(ids[:-1]) | {provisioned}

    async def all_running() -> bool:
        return set(fleet.workers()) == wanted

    await eventually(all_running, 60, "every session's worker running, the deleted one's not")
    await fleet.wait_status(provisioned, "qr_ready", 30)
