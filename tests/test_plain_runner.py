"""A runner from outside wafleet joins it the way a plugin would, and runs a session's life.

``tests/plain_runner.py`` is declared as an entry point of an installed distribution (a
``.dist-info`` folder on ``serve``'s path, what ``pip install`` of a plugin leaves), and
``RUNNER=plain`` picks it. Everything else is the real fleet: redis, microsocks, simwa,
``wafleet serve`` and ``wafleet worker`` processes, only started by that runner.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from tests import plain_runner
from tests.fleet import PHONE, Fleet, eventually
from wafleet.serve import instance_id

ROOT = Path(__file__).resolve().parent.parent


def _install(plugins: Path) -> Path:
    """An installed distribution that declares ``RUNNER=plain`` (its code is in ``tests``)."""
    info = plugins / "wafleet_plain_runner-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: wafleet-plain-runner\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[wafleet.runners]\nplain = tests.plain_runner:factory\n"
    )
    return plugins


@pytest.fixture
def fleet_options(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    plugins = _install(tmp_path / "plugins")
    # This process reads the fleet's settings too (the instance id): it sees the plugin.
    monkeypatch.syspath_prepend(str(plugins))
    path = os.pathsep.join([str(plugins), str(ROOT)])
    yield {"RUNNER": "plain", "PYTHONPATH": path, **getattr(request, "param", {})}
    plain_runner.kill_all(tmp_path)  # serve is gone by now; its workers outlive it


def _workers(fleet: Fleet) -> dict[str, int]:
    return plain_runner.find(instance_id(Settings.from_env(fleet.env)))


async def _replaced(fleet: Fleet, sid: str, old: int) -> int:
    async def new_pid() -> int | None:
        pid = _workers(fleet).get(sid)
        return pid if pid not in (None, old) else None

    return await eventually(new_pid, 10, f"a new worker for {sid}")


async def test_an_outside_runner_provisions_links_restarts_stops_and_deletes(
    fleet: Fleet,
) -> None:
    assert "(runner: plain," in fleet.log()
    sid = (await fleet.provision())["id"]
    code = await fleet.qr(sid)
    assert code.startswith("2@")
    assert await fleet.scan(code) == 200
    linked = await fleet.wait_status(sid, "connected")
    assert linked["phone"] == PHONE
    assert (await fleet.device(sid))["connected"]
    pid = _workers(fleet)[sid]
    status, body = await fleet.call("GET", "/api/v1/nodes")
    assert status == 200, body
    assert [node["sessionIds"] for node in body["nodes"]] == [[sid]]

    # A worker that dies is noticed by the runner and restarted: a crash, with its exit code.
    os.kill(pid, signal.SIGKILL)
    pid = await _replaced(fleet, sid, pid)
    await fleet.wait_status(sid, "connected")
    assert "the worker exited (code -9); restarting it" in fleet.log()
    assert len(await fleet.events(sid, "QR_CODE")) == 1  # credentials kept

    status, _ = await fleet.call("POST", f"/api/sessions/{sid}/restart")
    assert status == 200
    pid = await _replaced(fleet, sid, pid)
    await fleet.wait_status(sid, "connected")

    status, stopped = await fleet.call("POST", f"/api/sessions/{sid}/stop")
    assert (status, stopped["status"]) == (200, "stopped")
    assert sid not in _workers(fleet)
    status, started = await fleet.call("POST", f"/api/sessions/{sid}/start")
    assert status == 200, started
    await fleet.wait_status(sid, "connected")
    assert sid in _workers(fleet)
    assert len(await fleet.events(sid, "QR_CODE")) == 1
    assert fleet.log().count("restarting it") == 1  # the stop, start and restart: no crash

    status, body = await fleet.call("DELETE", f"/api/sessions/{sid}")
    assert (status, body) == (200, {"deleted": sid})
    assert sid not in _workers(fleet)
    assert not (fleet.sessions_dir / sid).exists()
    status, _ = await fleet.call("GET", f"/api/sessions/{sid}/status")
    assert status == 404


@pytest.mark.parametrize("fleet_options", [{"WORKER_ATTEMPTS_PER_PROCESS": "2"}], indirect=True)
async def test_an_outside_runners_recycle_is_no_crash_and_serve_adopts_its_workers(
    fleet: Fleet,
) -> None:
    sid = (await fleet.link())["id"]
    pid = _workers(fleet)[sid]
    # Attempt 2 reconnects in the same process, attempt 3 asks for a fresh one (exit 75).
    assert await fleet.control("drop", phone=PHONE) == 200

    async def reconnected_in_place() -> bool:
        return (
            bool(await fleet.events(sid, "DISCONNECTED"))
            and (await fleet.device(sid))["connected"]
        )

    await eventually(reconnected_in_place, what="the second attempt")
    assert await fleet.control("drop", phone=PHONE) == 200
    pid = await _replaced(fleet, sid, pid)
    await fleet.wait_status(sid, "connected")
    assert "recycled its worker process" in fleet.log()
    assert "worker_crashed" not in fleet.log()  # the runner said recycled: no crash alert

    fleet.kill()  # SIGKILL: the worker outlives serve...
    assert _workers(fleet) == {sid: pid}
    fleet.start()
    assert _workers(fleet) == {sid: pid}  # ...and the next serve adopts it
    assert "1 adopted, 0 started" in fleet.log()
    os.kill(pid, signal.SIGKILL)  # an adopted worker's end is noticed too
    await _replaced(fleet, sid, pid)
    await fleet.wait_status(sid, "connected")
