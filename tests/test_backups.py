"""Backups and restore against the real system: serve, workers, proxies, simwa.

Every test drives ``wafleet serve`` over REST and checks what Redis, the session folders
and the simulated network really hold afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from core import session_files
from core.backups import BackupService, cron_trigger
from core.clock import SystemClock
from core.metrics import Metrics
from core.notifier import LogNotifier
from core.proxies import ProxyPool
from core.sessions import SessionService
from core.settings import Settings
from core.signing import session_secret
from core.store import Store
from tests import fake_telegram
from tests.conftest import fleet_env
from tests.fake_telegram import ADMIN, FakeTelegram, bot_env
from tests.fleet import API_KEY, WEBHOOK_SECRET, Fleet, eventually
from tests.messaging import FAST, OUTSIDE, message, send, sent_by, wait_message
from wafleet import devstack
from wafleet.serve import make_runner
from worker.outbox import OUTBOX_FILE
from worker.webhook_client import WebhookClient

PHONES = [f"9725010000{n:02d}" for n in range(10)]


telegram = fake_telegram.telegram  # the fixture, for the tests that read the chat


@pytest.fixture
def fleet_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Each test shapes its fleet with ``parametrize("fleet_options", [...], indirect=True)``;
    ``"bot": True`` runs the Telegram bot against the fake Bot API."""
    options = dict(getattr(request, "param", {}))
    if options.pop("bot", False):
        return bot_env(request.getfixturevalue("telegram"), **options)
    return options


def backups_dir(fleet: Fleet) -> Path:
    return Path(fleet.env["BACKUPS_DIR"])


def listing(fleet: Fleet) -> dict[str, str]:
    """Every file under sessions/ with a hash of its content (the worker's own log aside)."""
    found = {}
    for path in sorted(fleet.sessions_dir.rglob("*")):
        if path.is_file() and not path.name.startswith("worker.log"):
            rel = str(path.relative_to(fleet.sessions_dir))
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


async def create(fleet: Fleet) -> dict[str, Any]:
    status, answer = await fleet.call("POST", "/api/v1/backups/create")
    assert status == 201, answer
    made: dict[str, Any] = answer
    return made


async def restore(fleet: Fleet, backup_id: str, wait: float = 30) -> tuple[int, Any]:
    return await fleet.call("POST", f"/api/v1/backups/restore/{backup_id}", {"waitSeconds": wait})


async def link_many(fleet: Fleet, phones: list[str]) -> list[str]:
    linked = await asyncio.gather(*(fleet.link(p) for p in phones))
    return [s["id"] for s in linked]


async def wipe(fleet: Fleet) -> None:
    """Lose everything but the backups: serve and workers down, Redis and sessions/ gone."""
    fleet.stop()
    fleet.kill_workers()
    await eventually(lambda: _no_workers(fleet), what="the workers to die")
    await fleet.redis.flushdb()
    shutil.rmtree(fleet.sessions_dir)


async def _no_workers(fleet: Fleet) -> bool:
    return not fleet.workers()


async def cli(fleet: Fleet, *args: str, port: int | None = None) -> tuple[int, str, str]:
    env = {**os.environ, "API_KEY": API_KEY, "HTTP_PORT": str(port or fleet.port)}
    env.pop("WAFLEET_API_URL", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wafleet",
        "backup",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def get(fleet: Fleet, key: str) -> str:
    """A string key's value (the test client decodes; redis-py types it loosely)."""
    return str(await fleet.redis.get(key))


async def sticky(fleet: Fleet, phone: str) -> tuple[str | None, str | None]:
    proxy, owner = await fleet.redis.mget(f"phone:{phone}:proxy", f"phone:{phone}:session")
    return (None if proxy is None else str(proxy), None if owner is None else str(owner))


async def devices_of(fleet: Fleet, sid: str) -> list[dict[str, Any]]:
    async with fleet.http.get(fleet.simwa + "/control/devices") as r:
        return [d for d in await r.json() if d["sessionId"] == sid]


# create, list, retention ------------------------------------------------------------------


@pytest.mark.parametrize(
    "fleet_options", [{"MAX_BACKUPS": "2", "BACKUP_MODE": "stop-all"}], indirect=True
)
async def test_create_list_retention_and_cli(fleet: Fleet) -> None:
    sid = (await fleet.link(PHONES[0]))["id"]
    pid = fleet.workers()[sid]
    made = []
    for _ in range(3):
        made.append(await create(fleet))
        await fleet.wait_status(sid, "connected")  # stop-all restarted the worker
    ids = [m["id"] for m in made]
    today = datetime.now(tz=UTC).astimezone().strftime("%Y-%m-%d")
    assert ids[0] == f"backup_{today}"  # the day's first; later ones get a time suffix
    assert all(re.fullmatch(rf"backup_{today}_\d{{6}}(_\d+)?", i) for i in ids[1:])
    assert len(set(ids)) == 3
    assert {m["sessions"] for m in made} == {1}
    assert {m["mode"] for m in made} == {"stop-all"}

    _, listed = await fleet.call("GET", "/api/v1/backups")
    assert [b["id"] for b in listed["backups"]] == [ids[2], ids[1]]  # MAX_BACKUPS=2, newest first
    assert sorted(p.name for p in backups_dir(fleet).iterdir()) == sorted(
        f"{i}.zip" for i in ids[1:]
    )  # the oldest removed, and no temporary file left behind
    newest = backups_dir(fleet) / f"{ids[2]}.zip"
    assert stat.S_IMODE(newest.stat().st_mode) == 0o600
    assert listed["backups"][0]["size"] == newest.stat().st_size

    with zipfile.ZipFile(newest) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("manifest.json"))
    assert f"sessions/{sid}/creds.json" in names
    assert f"sessions/{sid}/session.json" in names
    assert not [n for n in names if "worker.log" in n]
    proxy = await fleet.redis.get(f"session:{sid}:proxy")
    entry = manifest["sessions"][0]
    assert (entry["id"], entry["phone"], entry["proxy"]) == (sid, PHONES[0], proxy)
    assert entry["status"] == "connected"
    assert manifest["sticky"] == {PHONES[0]: proxy}
    assert sorted(p["url"] for p in manifest["proxies"]) == sorted(p.url for p in fleet.proxies)
    assert manifest["wafleetVersion"] and manifest["created"] == listed["backups"][0]["created"]

    # stop-all: the worker was stopped and started again, and came back on its saved creds
    assert fleet.workers()[sid] != pid
    assert len(await fleet.events(sid, "QR_CODE")) == 1
    assert made[-1]["maxPauseMs"] > 0

    # the CLI goes through the running serve
    code, out, err = await cli(fleet, "list")
    assert code == 0, err
    assert [line.split()[0] for line in out.splitlines()[1:]] == [ids[2], ids[1]]
    code, out, err = await cli(fleet, "restore", "backup_1999-01-01")
    assert code == 1 and "backup_not_found" in err
    code, out, err = await cli(fleet, "list", port=devstack.free_port())
    assert code == 3 and "wafleet serve is not reachable" in err


# restore after losing everything ----------------------------------------------------------


async def test_restore_after_total_loss_brings_every_session_back(fleet: Fleet) -> None:
    sids = await link_many(fleet, PHONES[:3])
    before = {
        sid: {
            "phone": await fleet.redis.get(f"session:{sid}:phone"),
            "proxy": await fleet.redis.get(f"session:{sid}:proxy"),
            "ips": (await fleet.device(sid))["ipHistory"],
        }
        for sid in sids
    }
    stickies = {p: await sticky(fleet, p) for p in PHONES[:3]}
    backup = await create(fleet)
    assert backup["sessions"] == 3 and backup["mode"] == "rolling"

    await wipe(fleet)
    fleet.start()
    status, report = await restore(fleet, backup["id"])
    assert status == 200, report
    assert sorted(report["sessions"]) == sorted(sids)
    assert sorted(report["connected"]) == sorted(sids) and report["notConnected"] == []
    assert report["reassigned"] == [] and report["proxiesAdded"] == []

    assert set(fleet.workers()) == set(sids)
    for sid in sids:
        body = await fleet.status(sid)
        assert body["status"] == "connected"
        assert body["phone"] == before[sid]["phone"]
        assert await fleet.redis.get(f"session:{sid}:proxy") == before[sid]["proxy"]
        # no new QR: no QR_CODE since the restore, one paired device, the same IP as before
        assert await fleet.events(sid, "QR_CODE") == []
        devices = await devices_of(fleet, sid)
        assert len(devices) == 1 and devices[0]["connected"]
        assert devices[0]["ipHistory"] == before[sid]["ips"]
    assert {p: await sticky(fleet, p) for p in PHONES[:3]} == stickies
    for proxy in fleet.proxies:
        members = await fleet.redis.smembers(f"proxy:{proxy.url}:members")
        assert members == {s for s in sids if before[s]["proxy"] == proxy.url}
        assert int(await get(fleet, f"proxy:{proxy.url}:sessions")) == len(members)
    async with fleet.http.get(fleet.simwa + "/control/qrs") as r:
        assert await r.json() == []
    # new sessions never reuse a restored id
    assert (await fleet.provision(PHONES[5]))["id"] == "worker_4"


# restore on a fresh install with another proxy pool ---------------------------------------


@pytest.mark.parametrize("fleet_options", [{"proxies": 2}], indirect=True)
async def test_restore_on_fresh_install_with_another_pool(fleet: Fleet) -> None:
    sids = await link_many(fleet, PHONES[:2])
    on = {sid: await get(fleet, f"session:{sid}:proxy") for sid in sids}
    assert len(set(on.values())) == 2  # one session per proxy
    kept, moved = sids
    phone_of = {kept: PHONES[sids.index(kept)], moved: PHONES[sids.index(moved)]}
    backup = await create(fleet)

    await wipe(fleet)
    gone = next(p for p in fleet.proxies if p.url == on[moved])
    gone.proc.kill()  # this proxy is not coming back
    fresh = devstack.start_proxy(fleet.workdir, 3)
    fleet.proxies.append(fresh)  # so the fixture stops it
    for name in [k for k in fleet.env if k.startswith("PROXY_URL_")]:
        del fleet.env[name]
    fleet.env["PROXY_URL_1"] = fresh.url  # the new install knows only a new proxy
    fleet.start()

    status, report = await restore(fleet, backup["id"])
    assert status == 200, report
    assert sorted(report["connected"]) == sorted(sids)
    masked_fresh = f"socks5h://wa:***@127.0.0.1:{fresh.port}"
    assert report["reassigned"] == [
        {
            "id": moved,
            "phone": phone_of[moved],
            "from": on[moved].replace("s3cret-pw", "***"),
            "to": masked_fresh,
            "why": report["reassigned"][0]["why"],
        }
    ]
    assert "unreachable" in report["reassigned"][0]["why"]
    # the old proxy that still answers is back in the pool: that phone keeps its IP
    assert report["proxiesAdded"] == [on[kept].replace("s3cret-pw", "***")]
    assert await fleet.redis.get(f"session:{kept}:proxy") == on[kept]
    assert await fleet.redis.get(f"session:{moved}:proxy") == fresh.url
    assert await sticky(fleet, phone_of[moved]) == (fresh.url, moved)
    assert await sticky(fleet, phone_of[kept]) == (on[kept], kept)
    meta = json.loads((fleet.sessions_dir / moved / "session.json").read_text())
    assert meta["proxy"] == fresh.url
    assert int(await get(fleet, f"proxy:{fresh.url}:sessions")) == 1
    assert await fleet.redis.sismember("wafleet:proxies", on[moved]) == 0

    device = await fleet.device(moved)
    assert device["connected"] and device["ip"] == fresh.bind  # out through the new proxy
    assert await fleet.events(moved, "QR_CODE") == []  # still linked: no new QR
    # the operator is told, in the alert as in the answer, with no password anywhere
    log = fleet.log()
    assert "restore_done" in log
    assert f"{moved}: {on[moved].replace('s3cret-pw', '***')} -> {masked_fresh}" in log
    assert "s3cret-pw" not in log + json.dumps(report)


# bad archives -----------------------------------------------------------------------------


def _zip(members: Sequence[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for info, data in members:
            zf.writestr(info, data)
    return buffer.getvalue()


def _symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


async def test_bad_archives_are_refused_and_nothing_changes(fleet: Fleet) -> None:
    sid = (await fleet.link(PHONES[0]))["id"]
    good = backups_dir(fleet) / f"{(await create(fleet))['id']}.zip"
    manifest = zipfile.ZipFile(good).read("manifest.json")
    meta = (fleet.sessions_dir / sid / "session.json").read_bytes()
    folder = [("manifest.json", manifest), (f"sessions/{sid}/session.json", meta)]
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("manifest.json", manifest)
        zf.writestr(f"sessions/{sid}/session.json", meta)
    flipped = bytearray(stored.getvalue())
    at = flipped.index(b'"format"')
    flipped[at + 1] ^= 0x20  # one bit in a member's data: its CRC no longer matches
    cases = {
        "backup_2000-01-01": (b"this is not a zip\n" * 20, 400, "backup_not_zip"),
        "backup_2000-01-02": (
            good.read_bytes()[: good.stat().st_size // 2],
            400,
            "backup_corrupt",
        ),
        "backup_2000-01-03": (bytes(flipped), 400, "backup_corrupt"),
        "backup_2000-01-04": (
            _zip([*folder, ("../../etc/x", b"owned")]),
            400,
            "backup_path_traversal",
        ),
        "backup_2000-01-05": (
            _zip([*folder, (f"sessions/{sid}/../../../x", b"owned")]),
            400,
            "backup_path_traversal",
        ),
        "backup_2000-01-06": (_zip([*folder, ("/etc/x", b"owned")]), 400, "backup_absolute_path"),
        "backup_2000-01-07": (
            _zip([*folder, (_symlink(f"sessions/{sid}/creds.json"), b"/etc/passwd")]),
            400,
            "backup_symlink",
        ),
        "backup_2000-01-08": (_zip(folder[1:]), 400, "backup_no_manifest"),
        "backup_2000-01-09": (_zip(folder[:1]), 400, "backup_no_sessions"),
    }
    for name, (data, _, _) in cases.items():
        (backups_dir(fleet) / f"{name}.zip").write_bytes(data)
    assert len(cases) == len({c[2] for c in cases.values()}) + 2  # corrupt x2, traversal x2

    redis_before, files_before = await fleet.snapshot(), listing(fleet)
    pid = fleet.workers()[sid]
    for name, (_, status, code) in cases.items():
        got, body = await restore(fleet, name)
        assert (got, body["error"]["code"]) == (status, code), (name, body)
        assert name in body["error"]["message"]
    for name, code in (("backup_2099-01-01", "backup_not_found"), ("nightly", "backup_not_found")):
        got, body = await restore(fleet, name)
        assert (got, body["error"]["code"]) == (404, code), (name, body)

    assert await fleet.snapshot() == redis_before
    assert listing(fleet) == files_before
    assert fleet.workers() == {sid: pid}  # never stopped
    assert (await fleet.status(sid))["status"] == "connected"
    assert not (fleet.workdir / "x").exists() and not (fleet.workdir.parent / "x").exists()
    assert not [p for p in fleet.sessions_dir.parent.iterdir() if ".restore-" in p.name]


# rolling mode under load ------------------------------------------------------------------


@pytest.mark.parametrize("fleet_options", [{"proxies": 3}], indirect=True)
async def test_rolling_backup_keeps_the_fleet_connected(fleet: Fleet) -> None:
    sids = await link_many(fleet, PHONES)
    for sid in sids:  # auth state of a realistic size, so the copy takes real time
        (fleet.sessions_dir / sid / "app-state-sync-key-bulk.bin").write_bytes(os.urandom(1 << 20))
    pids = fleet.workers()
    samples: list[tuple[int, int]] = []
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            _, body = await fleet.call("GET", "/api/v1/dashboard/sessions")
            in_redis = sum(s["status"] == "connected" for s in body["sessions"])
            async with fleet.http.get(fleet.simwa + "/control/devices") as r:
                at_network = sum(d["connected"] for d in await r.json())
            samples.append((in_redis, at_network))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    started = time.monotonic()
    try:
        first = asyncio.create_task(create(fleet))

        async def copying() -> bool:  # the running backup's staging folder is there
            return any(p.name.startswith(".staging-") for p in backups_dir(fleet).glob(".*"))

        await eventually(copying, what="the first backup to start copying")
        # never two backups at once: a second request while one runs is refused, not queued
        status, body = await fleet.call("POST", "/api/v1/backups/create")
        assert (status, body["error"]["code"]) == (409, "backup_busy"), body
        result = await first
    finally:
        done.set()
        await sampler
    took = time.monotonic() - started
    assert result["sessions"] == 10 and result["mode"] == "rolling"
    assert set(result["pausesMs"]) == set(sids)
    assert result["maxPauseMs"] < 3000, result["pausesMs"]
    assert len(samples) >= 3, (samples, took)
    assert min(min(s) for s in samples) >= 9, samples
    assert fleet.workers() == pids  # paused, never restarted
    for sid in sids:
        assert (await fleet.status(sid))["status"] == "connected"
    with zipfile.ZipFile(backups_dir(fleet) / f"{result['id']}.zip") as zf:
        assert zf.testzip() is None
        assert len([n for n in zf.namelist() if n.endswith("bulk.bin")]) == 10


# the schedule -----------------------------------------------------------------------------


@pytest.mark.parametrize("fleet_options", [{"start": False}], indirect=True)
async def test_scheduled_backup_fires_and_alerts(fleet: Fleet) -> None:
    # BACKUP_CRON takes a sixth, leading seconds field, so the job fires seconds after the
    # start (should serve take longer to start, it fires a minute later: still in time).
    at = datetime.now(tz=UTC) + timedelta(seconds=3)
    fleet.env["BACKUP_CRON"] = f"{at.second} * * * * *"
    fleet.start()

    def alerted() -> str | None:
        return next((ln for ln in fleet.log().splitlines() if "backup_done" in ln), None)

    async def check() -> str | None:
        return alerted()

    line = await eventually(check, 75, "the scheduled backup's alert")
    assert "0 session(s)" in line and "backup_" in line
    _, listed = await fleet.call("GET", "/api/v1/backups")
    assert len(listed["backups"]) == 1


def test_backup_cron_keeps_crontab_meaning() -> None:
    start = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)  # a Wednesday
    sunday = cron_trigger("0 3 * * 0", UTC).get_next_fire_time(None, start)
    assert sunday == datetime(2024, 5, 5, 3, 0, tzinfo=UTC)  # crontab's 0 is Sunday
    weekdays = cron_trigger("30 2 * * 1-5", UTC).get_next_fire_time(None, start)
    assert weekdays == datetime(2024, 5, 2, 2, 30, tzinfo=UTC)
    seconds = cron_trigger("15 * * * * *", UTC).get_next_fire_time(None, start)
    assert seconds == datetime(2024, 5, 1, 12, 0, 15, tzinfo=UTC)
    with pytest.raises(ValueError):
        cron_trigger("0 3 * *", UTC)


# archives that must never be restored -------------------------------------------


def _write_zip(path: Path, members: list[tuple[str, bytes]]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate we store on purpose
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members:
                zf.writestr(name, data)


def _zip_bomb(path: Path, good: list[tuple[str, bytes]], sid: str) -> None:
    """About 1 MB on disk, 1 GiB of zeros once unpacked."""
    _write_zip(path, good)
    with (
        zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED, compresslevel=1) as zf,
        zf.open(f"sessions/{sid}/bomb.bin", "w", force_zip64=True) as out,
    ):
        zeros = bytes(1 << 20)
        for _ in range(1024):
            out.write(zeros)


def _lie_about_sizes(path: Path, member: bytes, size: int) -> None:
    """Rewrite the central directory so ``member`` claims ``size`` bytes unpacked."""
    data = bytearray(path.read_bytes())
    at = data.index(b"PK\x01\x02")
    while data[at + 46 : at + 46 + len(member)] != member:
        at = data.index(b"PK\x01\x02", at + 4)
    data[at + 24 : at + 28] = size.to_bytes(4, "little")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "fleet_options",
    [{"BACKUP_MAX_FILES": "40", "BACKUP_MAX_MANIFEST_BYTES": "65536"}],
    indirect=True,
)
async def test_poisoned_archives_are_refused_before_anything_stops(fleet: Fleet) -> None:
    sid = (await fleet.link(PHONES[0]))["id"]
    good = backups_dir(fleet) / f"{(await create(fleet))['id']}.zip"
    manifest = json.loads(zipfile.ZipFile(good).read("manifest.json"))
    meta = json.loads((fleet.sessions_dir / sid / "session.json").read_text())

    def archive(
        sessions: dict[str, dict[str, Any]],
        extra: Sequence[tuple[str, bytes]] = (),
        **changes: Any,
    ) -> list[tuple[str, bytes]]:
        listed = {**manifest, **changes}
        members = [("manifest.json", json.dumps(listed).encode())]
        for folder, data in sessions.items():
            members.append((f"sessions/{folder}/session.json", json.dumps(data).encode()))
            members.append((f"sessions/{folder}/creds.json", b"{}"))
        return members + list(extra)

    mine = {sid: meta}
    huge_seq = "worker_99999999999999999999"
    cases: dict[str, tuple[list[tuple[str, bytes]], str]] = {
        "backup_2001-01-01": (archive({"evil": {**meta, "id": "evil"}}), "backup_bad_session_id"),
        "backup_2001-01-02": (
            archive({huge_seq: {**meta, "id": huge_seq}}),
            "backup_bad_session_id",
        ),
        "backup_2001-01-03": (archive({sid: {**meta, "phone": "1"}}), "backup_bad_phone"),
        "backup_2001-01-04": (
            archive(mine, sticky={"../../x": "gopher://evil:70"}),
            "backup_bad_phone",
        ),
        "backup_2001-01-05": (
            archive(mine, sticky={PHONES[1]: "gopher://evil:70"}),
            "backup_bad_proxy",
        ),
        "backup_2001-01-06": (
            archive({sid: {**meta, "proxy": "socks5h://h:0"}}),
            "backup_bad_proxy",
        ),
        "backup_2001-01-07": (
            archive(mine, [(f"sessions/{sid}/session.json", json.dumps(meta).encode())]),
            "backup_duplicate_member",
        ),
        "backup_2001-01-08": (archive(mine, [("sessions/worker_7", b"x")]), "backup_not_a_folder"),
        "backup_2001-01-09": (
            archive(mine, [(f"sessions/{sid}/f{n}", b"") for n in range(40)]),
            "backup_too_many_files",
        ),
        "backup_2001-01-10": (
            archive(mine, pad=" " * 70_000),  # valid JSON, over BACKUP_MAX_MANIFEST_BYTES
            "backup_manifest_too_large",
        ),
    }
    for name, (members, _) in cases.items():
        _write_zip(backups_dir(fleet) / f"{name}.zip", members)
    liar = backups_dir(fleet) / "backup_2001-01-12.zip"
    _write_zip(liar, [*archive(mine), (f"sessions/{sid}/big.bin", os.urandom(1 << 20))])
    _lie_about_sizes(liar, f"sessions/{sid}/big.bin".encode(), 100)
    cases[liar.stem] = ([], "backup_corrupt")  # inflating stops at the declared size
    bomb = "backup_2001-01-11"
    _zip_bomb(backups_dir(fleet) / f"{bomb}.zip", archive(mine), sid)
    assert (backups_dir(fleet) / f"{bomb}.zip").stat().st_size < 8 << 20
    cases[bomb] = ([], "backup_too_large")

    redis_before, files_before = await fleet.snapshot(), listing(fleet)
    pid = fleet.workers()[sid]
    for name, (_, code) in cases.items():
        got, body = await restore(fleet, name)
        assert (got, body["error"]["code"]) == (400, code), (name, body)
        assert name in body["error"]["message"]
        assert "gopher" not in body["error"]["message"]
    assert await fleet.snapshot() == redis_before
    assert listing(fleet) == files_before
    assert fleet.workers() == {sid: pid}  # never stopped
    assert not [p for p in fleet.sessions_dir.iterdir() if p.name.startswith(".")]
    assert "Traceback" not in fleet.log()
    # provision still works and counts on from the fleet's own ids
    assert (await fleet.provision(PHONES[1]))["id"] == "worker_2"

    # a listing shows the oversized manifest's archive without reading the manifest
    _, listed = await fleet.call("GET", "/api/v1/backups")
    by_id = {b["id"]: b for b in listed["backups"]}
    assert by_id["backup_2001-01-10"]["sessions"] is None
    assert by_id[good.stem]["sessions"] == 1


async def test_a_failure_after_the_swap_brings_the_old_fleet_back(fleet: Fleet) -> None:
    gone = (await fleet.link(PHONES[0]))["id"]
    backup = await create(fleet)
    status, _ = await fleet.call("DELETE", f"/api/sessions/{gone}")
    assert status == 200
    kept = (await fleet.link(PHONES[1]))["id"]
    # A real fault for the rebuild to hit: the archive's phone index holds a string, so
    # Redis answers WRONGTYPE when the restore adds the session to it.
    await fleet.redis.set(f"phone:{PHONES[0]}:sessions", "not a set")
    redis_before, files_before = await fleet.snapshot(), listing(fleet)
    pid = fleet.workers()[kept]

    got, body = await restore(fleet, backup["id"], wait=5)
    assert (got, body["error"]["code"]) == (500, "restore_failed"), body
    assert "previous fleet is back" in body["error"]["message"]

    await fleet.wait_status(kept, "connected")
    assert set(fleet.workers()) == {kept} and fleet.workers()[kept] != pid  # started again
    assert listing(fleet) == files_before
    assert not [p for p in fleet.sessions_dir.iterdir() if p.name.startswith(".")]
    after = await fleet.snapshot()
    # Starting the worker again rewrites its lock (the new pid), its connection time and boot
    # id, and appends events (each marked applied); everything else is as it was, the planted
    # fault included.
    volatile = {f"session:{kept}:{k}" for k in ("lock", "events", "connectedAt", "bootId")}

    def lasting(state: dict[str, Any]) -> dict[str, Any]:
        return {
            k: v
            for k, v in state.items()
            if k not in volatile and not k.startswith("wafleet:applied:")
        }

    assert lasting(after) == lasting(redis_before)
    assert await fleet.events(kept, "RESTORED") == []
    # the fleet works: a provision is accepted again
    assert (await fleet.provision(PHONES[2]))["id"] == "worker_3"


@pytest.fixture
def tiny_backups_dir(tmp_path: Path) -> Iterator[Path]:
    """``BACKUPS_DIR`` on a real 2 MiB file system (tmpfs; CI runs as root), so a backup
    really fills it. Unmounted afterwards whatever happens."""
    small = tmp_path / "backups"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(small)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield small
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


@pytest.mark.parametrize("fleet_options", [{"start": False, "bot": True}], indirect=True)
async def test_a_full_disk_is_reported_as_disk_full(
    tiny_backups_dir: Path, fleet: Fleet, telegram: FakeTelegram
) -> None:
    assert backups_dir(fleet) == tiny_backups_dir
    fleet.start()
    sid = (await fleet.link(PHONES[0]))["id"]
    # Incompressible auth state bigger than the 2 MiB file system holding BACKUPS_DIR.
    (fleet.sessions_dir / sid / "app-state.bin").write_bytes(os.urandom(3 << 20))
    status, body = await fleet.call("POST", "/api/v1/backups/create")
    assert (status, body["error"]["code"]) == (507, "disk_full"), body
    assert "disk is full" in body["error"]["message"]
    code, _, err = await cli(fleet, "create")
    assert code == 1 and "disk_full" in err and "disk is full" in err
    mark = len(telegram.calls)
    telegram.send("/backup")
    said = await telegram.wait_call(
        "sendMessage", lambda c: c.chat == ADMIN and c.text.startswith("❌"), after=mark
    )
    assert "disk is full" in said.text and "in the log" not in said.text
    assert os.listdir(tiny_backups_dir) == []  # no partial archive, no staging folder
    assert (await fleet.status(sid))["status"] == "connected"  # resumed after its copy
    # with room again, the next backup works
    (fleet.sessions_dir / sid / "app-state.bin").write_bytes(os.urandom(1 << 10))
    assert (await create(fleet))["sessions"] == 1


async def test_restore_answers_busy_to_every_fleet_change(
    tmp_path: Path, redis_server: str, redis_client: Any
) -> None:
    """Held at a known point by the service's step hook: provision, restart and delete answer
    409 ``busy`` while the fleet is being replaced, and work again once it is."""
    env = fleet_env(tmp_path, redis_server, [], devstack.free_port())
    settings = Settings.from_env(env)
    nobody = devstack.free_port()  # a proxy port nothing listens on: the session is parked
    sid = "worker_1"
    meta = {"id": sid, "phone": PHONES[0], "proxy": f"socks5h://wa:pw@127.0.0.1:{nobody}"}
    settings.backups_dir.mkdir(parents=True)
    _write_zip(
        settings.backups_dir / "backup_2002-02-02.zip",
        [
            ("manifest.json", json.dumps({"format": 1, "sessions": [meta]}).encode()),
            (f"sessions/{sid}/session.json", json.dumps(meta).encode()),
        ],
    )
    store = Store.connect(settings.redis_url)
    notifier = LogNotifier()
    metrics = Metrics()
    pool = ProxyPool(store, notifier, settings.max_sessions_per_proxy)
    runner = make_runner(settings)
    service = SessionService(settings, store, pool, runner, notifier, SystemClock(), metrics)
    backups = BackupService(settings, store, service, runner, notifier, SystemClock())
    entered, release = asyncio.Event(), asyncio.Event()

    async def hold(step: str) -> None:
        if step == "maintenance":
            entered.set()
            await release.wait()

    backups.on_step = hold
    app = create_app(settings, store, service, pool, metrics, backups)
    server = TestServer(app, host="127.0.0.1", port=devstack.free_port())
    try:
        await _hold_a_restore_and_try_changes(TestClient(server), sid, entered, release)
    finally:
        await service.close()
        await runner.close()
        await store.close()


async def _hold_a_restore_and_try_changes(
    client: TestClient[Any, Any], sid: str, entered: asyncio.Event, release: asyncio.Event
) -> None:
    headers = {"X-API-Key": API_KEY}
    async with client:

        async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
            async with client.request(method, path, json=body, headers=headers) as r:
                return r.status, await r.json()

        restoring = asyncio.create_task(
            call("POST", "/api/v1/backups/restore/backup_2002-02-02", {"waitSeconds": 0})
        )
        await asyncio.wait_for(entered.wait(), 15)
        for method, path, body in (
            ("POST", "/api/sessions/provision", {"phone": PHONES[1]}),
            ("POST", f"/api/sessions/{sid}/restart", None),
            ("DELETE", f"/api/sessions/{sid}", None),
        ):
            status, answer = await call(method, path, body)
            assert (status, answer["error"]["code"]) == (409, "busy"), (path, answer)
            assert "a restore is in progress" in answer["error"]["message"]
        status, answer = await call("POST", "/api/v1/backups/create")
        assert (status, answer["error"]["code"]) == (409, "backup_busy")
        assert not restoring.done()

        release.set()
        status, report = await restoring
        assert status == 200, report
        assert report["sessions"] == [sid] and report["reassigned"][0]["to"] is None
        status, answer = await call("DELETE", f"/api/sessions/{sid}")
        assert status == 200, answer  # the maintenance is over


# what the operator set survives a backup and restore ---------------------------------------

OPERATOR_SET = {**FAST, "EVENTS_WEBHOOK_SECRET": "test-events-secret-0123456789abcdef"}
OWN_ENDPOINT = "http://ops:own-pw-7@127.0.0.1:9/own"  # never called: no event arrives


@pytest.mark.parametrize("fleet_options", [OPERATOR_SET], indirect=True)
async def test_restore_keeps_a_stopped_session_stopped_its_endpoint_and_limits(
    fleet: Fleet,
) -> None:
    stopped = str(
        (
            await fleet.provision(
                PHONES[0], eventsWebhookUrl=OWN_ENDPOINT, limits={"perMinute": 5, "perDay": 50}
            )
        )["id"]
    )
    await fleet.scan(await fleet.qr(stopped), PHONES[0])
    await fleet.wait_status(stopped, "connected")
    running = (await fleet.link(PHONES[1]))["id"]
    assert (await fleet.call("PUT", f"/api/sessions/{running}/limits", {"perDay": 7}))[0] == 200
    assert (await fleet.call("POST", f"/api/sessions/{stopped}/stop"))[0] == 200
    waiting = (await send(fleet, stopped, OUTSIDE, "kept through the restore"))["id"]
    backup = await create(fleet)
    # Changed after the backup: the restore puts the backup's values back.
    assert (await fleet.call("PUT", f"/api/sessions/{running}/limits", {"perDay": 99}))[0] == 200

    status, report = await restore(fleet, backup["id"], wait=15)
    assert status == 200, report
    assert report["connected"] == [running] and report["notConnected"] == [stopped]
    assert (await fleet.status(stopped))["status"] == "stopped"
    assert set(fleet.workers()) == {running}  # no worker for the stopped one
    assert (await message(fleet, stopped, waiting))["status"] == "queued"
    assert await fleet.redis.lrange(f"wafleet:outbox:{stopped}", 0, -1) == [waiting]
    assert (await fleet.status(stopped))["eventsWebhookUrl"] == "http://***@127.0.0.1:9/own"
    assert await fleet.text(f"session:{stopped}:eventsWebhookUrl") == OWN_ENDPOINT
    assert (await fleet.status(running))["eventsWebhookUrl"] is None
    own = {
        s: (await fleet.call("GET", f"/api/sessions/{s}/limits"))[1] for s in (stopped, running)
    }
    assert own == {
        stopped: {"perMinute": 5, "perDay": 50, "warmupDays": 7},  # warmupDays: the default
        running: {"perMinute": 0, "perDay": 7, "warmupDays": 7},
    }

    # Started again, it goes out with its saved link and sends what waited.
    assert (await fleet.call("POST", f"/api/sessions/{stopped}/start"))[0] == 200
    await fleet.wait_status(stopped, "connected")
    await wait_message(fleet, stopped, waiting, {"sent", "delivered", "read"})
    assert [m["text"] for m in await sent_by(fleet, PHONES[0])] == ["kept through the restore"]


@pytest.mark.parametrize("fleet_options", [OPERATOR_SET], indirect=True)
async def test_poisoned_operator_settings_in_an_archive_are_refused(fleet: Fleet) -> None:
    sid = (await fleet.link(PHONES[0]))["id"]
    good = backups_dir(fleet) / f"{(await create(fleet))['id']}.zip"
    manifest = json.loads(zipfile.ZipFile(good).read("manifest.json"))
    meta = json.loads((fleet.sessions_dir / sid / "session.json").read_text())
    entry = manifest["sessions"][0]
    assert (entry["eventsWebhookUrl"], entry["limits"]) == (None, {})
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "backup_2002-01-01": ({"eventsWebhookUrl": "gopher://evil:70/x"}, "backup_bad_events_url"),
        "backup_2002-01-02": ({"eventsWebhookUrl": 5}, "backup_bad_events_url"),
        "backup_2002-01-03": ({"limits": {"perMinute": -1}}, "backup_bad_limits"),
        "backup_2002-01-04": ({"limits": {"perHour": 5}}, "backup_bad_limits"),
        "backup_2002-01-05": ({"limits": "perMinute=5"}, "backup_bad_limits"),
        "backup_2002-01-06": ({"status": ["stopped"]}, "backup_bad_manifest"),
    }
    for name, (change, _) in cases.items():
        poisoned = {**manifest, "sessions": [{**entry, **change}]}
        _write_zip(
            backups_dir(fleet) / f"{name}.zip",
            [
                ("manifest.json", json.dumps(poisoned).encode()),
                (f"sessions/{sid}/session.json", json.dumps(meta).encode()),
                (f"sessions/{sid}/creds.json", b"{}"),
            ],
        )
    redis_before, files_before = await fleet.snapshot(), listing(fleet)
    pid = fleet.workers()[sid]
    for name, (_, code) in cases.items():
        got, body = await restore(fleet, name)
        assert (got, body["error"]["code"]) == (400, code), (name, body)
        assert "gopher" not in body["error"]["message"]
    assert await fleet.snapshot() == redis_before
    assert listing(fleet) == files_before
    assert fleet.workers() == {sid: pid}  # never stopped


async def test_a_restore_carries_unsent_incoming_messages_into_the_restored_folders(
    fleet: Fleet,
) -> None:
    """Backups leave the worker's outbox out; the restore must not drop the live one."""
    sid = (await fleet.link(PHONES[0]))["id"]
    other = (await fleet.link(PHONES[1]))["id"]
    backup = await create(fleet)
    # Stopped (no worker to drain it) with an incoming message taken but not yet reported,
    # written by the worker's own webhook client as a worker that lost serve would have.
    assert (await fleet.call("POST", f"/api/sessions/{sid}/stop"))[0] == 200
    client = WebhookClient(
        fleet.api + "/webhook",
        sid,
        session_secret(WEBHOOK_SECRET, sid),
        outbox_dir=fleet.sessions_dir / sid,
    )
    data = {"messageId": "WAMID-1", "from": OUTSIDE, "text": "arrived before", "timestamp": 1}
    assert client.take("MESSAGE_IN", data)
    client.send("QR_CODE", {"qr": "2@old", "ttlMs": 60000})  # the old process's: stale
    # A line of another session in this folder (copied from elsewhere) stays where it is.
    WebhookClient(fleet.api + "/webhook", other, "-", outbox_dir=fleet.sessions_dir / sid).take(
        "MESSAGE_IN", {**data, "messageId": "WAMID-2"}
    )

    status, report = await restore(fleet, backup["id"], wait=20)
    assert status == 200, report
    assert sorted(report["connected"]) == sorted([sid, other])

    async def delivered() -> list[dict[str, Any]] | None:
        _, page = await fleet.call("GET", f"/api/sessions/{sid}/events?since=0")
        return [e for e in page["events"] if e["type"] == "MESSAGE_IN"] or None

    found = await eventually(delivered, 30, "the carried MESSAGE_IN")
    assert [e["data"]["text"] for e in found] == ["arrived before"]
    assert "carried 1 unsent message event(s)" in fleet.log()  # not the QR, not another's
    assert session_files.OUTBOX_FILE == OUTBOX_FILE  # core and the worker name one file
