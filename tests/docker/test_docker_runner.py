"""RUNNER=docker on a real Docker Engine: one container per session, end to end.

REST → ``wafleet serve`` (a local process) → DockerRunner → container ``wa_session_<id>``
(the wafleet-worker image built from this tree) → microsocks → simwa → webhook → serve.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import docker
import pytest

from core.docker_engine import INSTANCE_LABEL, SESSION_LABEL, SESSION_MOUNT
from core.signing import session_secret
from tests.docker.conftest import (
    DOCKER_OPTIONS,
    ORCH_IMAGE,
    ROOT,
    WORKER_IMAGE,
    Images,
    containers,
    instance_of,
)
from tests.fleet import API_KEY, PHONE, WEBHOOK_SECRET, Fleet, eventually

pytestmark = pytest.mark.docker

OTHER_PHONE = "972509999999"


def only(client: Any, fleet: Fleet, sid: str) -> Any:
    """The one running container of ``sid`` (and there is exactly one)."""
    found = containers(client, fleet, sid)
    assert len(found) == 1, f"{sid}: {len(found)} running containers"
    return found[0]


def env_of(container: Any) -> dict[str, str]:
    pairs = (item.partition("=") for item in container.attrs["Config"]["Env"])
    return {k: v for k, _, v in pairs}


def exists(client: Any, cid: str) -> bool:
    try:
        client.containers.get(cid)
    except docker.errors.NotFound:
        return False
    return True


async def replaced(client: Any, fleet: Fleet, sid: str, old_id: str, timeout: float) -> Any:
    async def check() -> Any:
        found = containers(client, fleet, sid)
        return found[0] if len(found) == 1 and found[0].id != old_id else None

    return await eventually(check, timeout, f"a new container for {sid}")


async def test_provision_starts_one_labelled_isolated_container_that_links(
    fleet: Fleet, docker_client: Any
) -> None:
    sid = (await fleet.provision())["id"]
    other = (await fleet.provision(OTHER_PHONE))["id"]
    container = only(docker_client, fleet, sid)
    attrs = container.attrs
    assert container.name == f"wa_session_{sid}"
    assert attrs["Config"]["Image"] == WORKER_IMAGE
    assert attrs["Config"]["Labels"][SESSION_LABEL] == sid
    assert attrs["Config"]["Labels"][INSTANCE_LABEL] == instance_of(fleet)
    assert await fleet.redis.get(f"session:{sid}:lock") == container.id

    env = env_of(container)
    proxy = await fleet.text(f"session:{sid}:proxy")
    assert env["SESSION_ID"] == sid
    assert env["PROXY_URL"] == proxy and proxy.startswith("socks5h://")
    assert env["WEBHOOK_URL"] == f"{fleet.api}/webhook"
    assert env["WEBHOOK_SECRET"] == session_secret(WEBHOOK_SECRET, sid)
    assert env["SESSION_DIR"] == SESSION_MOUNT
    assert env["WA_DRIVER"] == "sim"
    # Nothing of the orchestrator's secrets, nor of another session's, is in the container.
    everything = json.dumps(attrs)
    for secret in (session_secret(WEBHOOK_SECRET, other), WEBHOOK_SECRET, API_KEY):
        assert secret not in everything
    assert "REDIS_URL" not in env and "API_KEY" not in env
    assert env_of(only(docker_client, fleet, other))["WEBHOOK_SECRET"] == session_secret(
        WEBHOOK_SECRET, other
    )

    [mount] = attrs["Mounts"]
    assert mount["Type"] == "bind"
    assert mount["Source"] == str((fleet.sessions_dir / sid).resolve())
    assert mount["Destination"] == SESSION_MOUNT and mount["RW"]
    host = attrs["HostConfig"]
    assert host["Memory"] == 256 * 1024 * 1024
    assert host["PidsLimit"] == 256
    assert host["NetworkMode"] == "host"
    assert host["RestartPolicy"]["Name"] in ("", "no")  # the orchestrator decides restarts
    rotation = {"max-file": "3", "max-size": "10m"}
    assert host["LogConfig"] == {"Type": "json-file", "Config": rotation}

    code = await fleet.qr(sid)
    assert code.startswith("2@")
    assert await fleet.scan(code) == 200
    linked = await fleet.wait_status(sid, "connected")
    assert linked["phone"] == PHONE
    assert await fleet.redis.get(f"phone:{PHONE}:session") == sid
    # the worker in the container wrote its auth into the mounted host folder
    assert (fleet.sessions_dir / sid / "creds.json").exists()
    assert (await fleet.device(sid))["connected"]
    assert only(docker_client, fleet, sid).id == container.id


async def test_killed_container_is_replaced_within_seconds_keeping_auth(
    fleet: Fleet, docker_client: Any
) -> None:
    sid = (await fleet.link())["id"]
    old = only(docker_client, fleet, sid)
    killed_at = time.monotonic()
    await asyncio.to_thread(old.kill)  # docker kill: SIGKILL
    new = await replaced(docker_client, fleet, sid, old.id, 5)
    noticed = time.monotonic() - killed_at
    assert noticed < 5, noticed
    assert new.name == f"wa_session_{sid}"
    assert not exists(docker_client, old.id)  # the dead one is removed, not left behind
    await fleet.wait_status(sid, "connected")
    assert len(await fleet.events(sid, "QR_CODE")) == 1  # auth kept: no new QR
    assert await fleet.redis.get(f"session:{sid}:lock") == new.id
    # handled as a crash (restart + alert), from the engine's die event with SIGKILL's code
    assert "the worker exited (code 137) | done: restarted the worker" in fleet.log()


# While serve is down the workers' webhook retries back off (up to 5 s): with the tests' 4 s
# PING_TIMEOUT_MS the watchdog could restart an adopted worker, which is not what this is about.
@pytest.mark.parametrize("fleet_options", [{**DOCKER_OPTIONS, "PING_TIMEOUT_MS": "60000"}])
async def test_serve_restarted_adopts_containers_none_duplicated_none_lost(
    fleet: Fleet, docker_client: Any
) -> None:
    first = (await fleet.link())["id"]
    second = (await fleet.link(OTHER_PHONE))["id"]
    ids = {sid: only(docker_client, fleet, sid).id for sid in (first, second)}

    fleet.stop()  # SIGTERM: serve goes (returns once it is gone), its containers stay
    assert {sid: only(docker_client, fleet, sid).id for sid in ids} == ids
    fleet.start()  # listens only after the reconcile: whatever it started runs already
    restarted_at = time.time_ns() // 1_000_000
    for sid in ids:
        await fleet.wait_status(sid, "connected")

        async def pinged(sid: str = sid) -> bool:
            return await _pinged_since(fleet, sid, restarted_at)

        await eventually(pinged)
    assert {sid: only(docker_client, fleet, sid).id for sid in ids} == ids  # adopted
    assert "2 adopted, 0 started, 0 orphan(s) removed" in fleet.log()

    fleet.kill()  # SIGKILL this time; and one container goes missing while serve is down
    await asyncio.to_thread(docker_client.containers.get(ids[second]).remove, force=True)
    fleet.start()
    for sid in ids:
        await fleet.wait_status(sid, "connected")
    assert only(docker_client, fleet, first).id == ids[first]  # adopted again
    restarted = only(docker_client, fleet, second)  # started again, exactly one
    assert restarted.id != ids[second]
    assert "1 adopted, 1 started, 0 orphan(s) removed" in fleet.log()
    assert len(containers(docker_client, fleet, alive=False)) == 2
    for sid in ids:
        assert len(await fleet.events(sid, "QR_CODE")) == 1  # auth kept throughout

    # an adopted container is watched: its death is noticed at once
    await asyncio.to_thread(docker_client.containers.get(ids[first]).kill)
    await replaced(docker_client, fleet, first, ids[first], 5)
    await fleet.wait_status(first, "connected")


async def test_orphan_containers_are_removed_at_start_and_others_left_alone(
    fleet: Fleet, docker_client: Any
) -> None:
    sid = (await fleet.provision())["id"]
    await fleet.qr(sid)
    dropped = only(docker_client, fleet, sid)
    fleet.kill()
    # The session vanishes from Redis while serve is down: its container is an orphan now.
    await fleet.redis.srem("wafleet:sessions", sid)
    instance = instance_of(fleet)
    idle = {"command": ["sleep", "300"], "init": True, "network_mode": "host", "detach": True}
    stray = docker_client.containers.run(
        WORKER_IMAGE,
        name="wa_session_worker_99",
        labels={INSTANCE_LABEL: instance, SESSION_LABEL: "worker_99"},
        **idle,
    )
    # A container of another wafleet instance on the same engine is none of our business.
    foreign = docker_client.containers.run(
        WORKER_IMAGE,
        name=f"wa_session_worker_1_{instance}",
        labels={INSTANCE_LABEL: f"other-{instance}", SESSION_LABEL: "worker_1"},
        **idle,
    )
    try:
        fleet.start()

        async def gone() -> bool:
            return not any(exists(docker_client, c.id) for c in (dropped, stray))

        await eventually(gone, 15, "the orphan containers removed")
        assert "2 orphan(s) removed" in fleet.log()
        foreign.reload()
        assert foreign.status == "running"
        assert containers(docker_client, fleet, alive=False) == []
    finally:
        foreign.remove(force=True)


async def test_delete_removes_container_and_folder_and_releases_the_slot(
    fleet: Fleet, docker_client: Any
) -> None:
    sid = (await fleet.link())["id"]
    container = only(docker_client, fleet, sid)
    proxy = await fleet.text(f"session:{sid}:proxy")
    assert await fleet.redis.get(f"proxy:{proxy}:sessions") == "1"
    status, body = await fleet.call("DELETE", f"/api/sessions/{sid}")
    assert (status, body) == (200, {"deleted": sid})
    assert not exists(docker_client, container.id)
    assert containers(docker_client, fleet, sid, alive=False) == []
    assert not (fleet.sessions_dir / sid).exists()
    assert await fleet.redis.get(f"proxy:{proxy}:sessions") == "0"
    assert await fleet.redis.smembers(f"proxy:{proxy}:members") == set()
    assert await fleet.redis.get(f"session:{sid}:status") is None
    # and nothing brings it back: a session linked afterwards went through serve and Docker's
    # event stream after the deleted container's death, and is the only container there
    other = (await fleet.link(OTHER_PHONE))["id"]
    left = containers(docker_client, fleet, alive=False)
    assert [c.labels[SESSION_LABEL] for c in left] == [other]


async def test_dead_proxy_moves_the_session_to_a_new_container_on_the_new_proxy(
    fleet: Fleet, docker_client: Any
) -> None:
    sid = (await fleet.link())["id"]
    old = only(docker_client, fleet, sid)
    old_url = await fleet.text(f"session:{sid}:proxy")
    assert env_of(old)["PROXY_URL"] == old_url
    first_ip = (await fleet.device(sid))["ip"]
    dead = next(p for p in fleet.proxies if p.url == old_url)
    dead.proc.kill()

    async def moved() -> str | None:
        url = await fleet.text(f"session:{sid}:proxy")
        status = (await fleet.status(sid))["status"]
        return url if url != old_url and status == "connected" else None

    new_url = await eventually(moved, 20, "failover to the other proxy")
    assert not exists(docker_client, old.id)  # the old container stopped and removed
    new = only(docker_client, fleet, sid)
    assert new.id != old.id
    assert env_of(new)["PROXY_URL"] == new_url
    assert await fleet.redis.get(f"proxy:{old_url}:status") == "bad"
    assert await fleet.redis.get(f"phone:{PHONE}:proxy") == new_url  # sticky moved
    device = await fleet.device(sid)
    assert device["ipHistory"] == [first_ip, device["ip"]]  # the IP changed once
    assert len(await fleet.events(sid, "QR_CODE")) == 1  # no new QR


# The same digest, computed inside an image over its installed wafleet package.
IMAGE_DIGEST = """
import hashlib, pathlib, wafleet
root = pathlib.Path(wafleet.__file__).parent
h = hashlib.sha256()
for p in sorted(root.rglob("*.py")):
    if "__pycache__" not in p.parts:
        h.update(str(p.relative_to(root)).encode() + b"\\0")
        h.update(p.read_bytes() + b"\\0")
print(h.hexdigest())
"""


def test_images_build_from_the_wheelhouse_with_no_network(
    docker_images: Images, docker_client: Any
) -> None:
    if not docker_images.build_log.exists():
        pytest.skip("WAFLEET_DOCKER_BUILD=0: the images were not built by this run")
    log = docker_images.build_log.read_text(errors="replace")
    # Both builds ran with no network at all inside the build...
    builds = re.findall(r"\[build-images\] (docker build .*)", log)
    assert len(builds) == 2, builds
    assert all("--network none" in b for b in builds), builds
    # ...and the pip step really ran (not taken from the layer cache), from /wheels only.
    pip_steps = re.findall(r"Step \d+/\d+ : RUN python3 -m venv.*\n(.*)\n", log)
    assert len(pip_steps) == 2 and all("Using cache" not in s for s in pip_steps), pip_steps
    assert log.count("Looking in links: /wheels") == 2  # the locked requirements, per image
    assert "Downloading" not in log.split("[build-images] docker build", 1)[1]
    assert "--no-index" in (ROOT / "Dockerfile").read_text()
    assert "--no-index" in (ROOT / "worker" / "Dockerfile").read_text()

    digest = docker_images.tree_digest
    for tag in (ORCH_IMAGE, WORKER_IMAGE):
        image = docker_client.images.get(tag)
        # The image holds the wafleet of this working tree (its final layers may come from the
        # layer cache when an earlier build installed byte-identical files), and runs as a
        # non-root user.
        out = docker_client.containers.run(
            tag, ["python", "-c", IMAGE_DIGEST], network_mode="none", remove=True
        )
        assert out.decode().strip() == digest, f"{tag} does not hold this tree's wafleet"
        assert image.attrs["Config"]["User"] not in ("", "root", "0")


INSTALLED = (
    "import json, importlib.metadata as m;"
    "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
)


@pytest.mark.parametrize(("tag", "lock"), [(ORCH_IMAGE, "orchestrator"), (WORKER_IMAGE, "worker")])
def test_each_image_holds_exactly_the_locked_versions(
    docker_images: Images, docker_client: Any, tag: str, lock: str
) -> None:
    """What each image runs is requirements/<image>.txt, version for version: a dependency
    resolved afresh at build time (a newer release, one the lock lacks) fails here."""
    pinned: dict[str, str] = {}
    text = re.sub(r"\\\n\s*", " ", (ROOT / "requirements" / f"{lock}.txt").read_text())
    for line in text.splitlines():
        if m := re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line.strip()):
            pinned.setdefault(canonical(m[1]), m[2])
    out = docker_client.containers.run(
        tag, ["python", "-c", INSTALLED], network_mode="none", remove=True
    )
    installed = {canonical(name): v for name, v in json.loads(out).items()}
    # The venv's own tools (pip is removed at the end) and wafleet itself are not in the lock.
    ours = {k: v for k, v in installed.items() if k not in ("wafleet", "pip", "setuptools")}
    assert ours, installed
    assert {k: (v, pinned.get(k)) for k, v in ours.items() if pinned.get(k) != v} == {}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


async def test_rolling_backup_pauses_containers_and_restore_brings_them_back(
    fleet: Fleet, docker_client: Any
) -> None:
    first = (await fleet.link())["id"]
    second = (await fleet.link(OTHER_PHONE))["id"]
    before = {sid: only(docker_client, fleet, sid).id for sid in (first, second)}
    status, made = await fleet.call("POST", "/api/v1/backups/create")
    assert status == 201, made
    assert made["sessions"] == 2 and made["mode"] == "rolling"
    # paused (docker pause) one at a time and unpaused: same containers, still connected
    for sid in (first, second):
        assert only(docker_client, fleet, sid).id == before[sid]
        assert (await fleet.status(sid))["status"] == "connected"

    status, _ = await fleet.call("DELETE", f"/api/sessions/{second}")
    assert status == 200
    status, report = await fleet.call(
        "POST", f"/api/v1/backups/restore/{made['id']}", {"waitSeconds": 30}
    )
    assert status == 200, report
    assert sorted(report["connected"]) == sorted([first, second])
    for sid in (first, second):
        only(docker_client, fleet, sid)  # exactly one running container each
        assert await fleet.events(sid, "QR_CODE") == []  # no new QR since the restore
        assert (fleet.sessions_dir / sid / "creds.json").exists()
    assert not [p for p in fleet.sessions_dir.iterdir() if p.name.startswith(".")]


# The watchdog must not be what replaces or keeps the paused container: see the adoption test.
@pytest.mark.parametrize("fleet_options", [{**DOCKER_OPTIONS, "PING_TIMEOUT_MS": "60000"}])
async def test_a_container_left_paused_by_a_backup_is_adopted_and_resumed(
    fleet: Fleet, docker_client: Any
) -> None:
    sid = (await fleet.link())["id"]
    container = only(docker_client, fleet, sid)
    await asyncio.to_thread(container.pause)  # what a rolling backup does while it copies
    fleet.kill()  # ...and serve dies with the backup
    fleet.start()
    restarted_at = time.time_ns() // 1_000_000
    await eventually(
        lambda: _pinged_since(fleet, sid, restarted_at), 20, "a ping from the resumed worker"
    )
    assert only(docker_client, fleet, sid).id == container.id  # adopted, not replaced
    assert (await fleet.status(sid))["status"] == "connected"
    assert "1 adopted, 0 started, 0 orphan(s) removed" in fleet.log()


async def _pinged_since(fleet: Fleet, sid: str, since_ms: int) -> bool:
    last = await fleet.text(f"session:{sid}:lastPing")
    return last is not None and int(last) > since_ms
