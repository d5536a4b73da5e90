"""Files customers send reach the operator, byte for byte, while things die.

Real ``serve``, Redis (AOF, ``appendfsync always``), microsocks, simwa and process-runner
workers with the ``sim`` driver; the operator is ``tests/event_receiver.py``. A file enters
at simwa's control API as an outside number's message, crosses the WebSocket to the worker,
is written to the session folder, uploaded to ``serve`` and announced as a ``MESSAGE_IN``
whose ``data.media.url`` the test fetches.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import random
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.aof_redis import AofRedis, redis_client, redis_server  # noqa: F401 (fixtures)
from tests.event_receiver import Receiver, events_fleet_options
from tests.fleet import PHONE, Fleet, eventually
from tests.messaging import OUTSIDE

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00\x00\x01\x00" * 2
PDF = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n"
OGG = b"OggS\x00\x02" + bytes(22)
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
HEADS = {"image": PNG, "document": PDF, "voice": OGG, "audio": OGG, "video": MP4}
VIDEO_LIMIT = 1024 * 1024
MIMES = {"image": "image/png", "document": "application/pdf", "video": "video/mp4"}


@pytest.fixture
def fleet_options(receiver: Receiver) -> dict[str, Any]:
    # A watchdog that does not fire while Redis is away briefly.
    return events_fleet_options(receiver) | {
        "PING_TIMEOUT_MS": "15000",
        "MEDIA_MAX_BYTES_VIDEO": str(VIDEO_LIMIT),
    }


def a_file(kind: str, size: int) -> bytes:
    head = HEADS[kind]
    return head + os.urandom(max(0, size - len(head)))


async def send_file(
    fleet: Fleet, kind: str, data: bytes, caption: str | None, filename: str | None = None
) -> str:
    """An outside number sends ``data`` to the session's phone; the network's message id."""
    media: dict[str, Any] = {"kind": kind, "data": base64.b64encode(data).decode()}
    if filename:
        media["filename"] = filename
    body: dict[str, Any] = {"from": OUTSIDE, "to": PHONE, "media": media}
    if caption is not None:
        body["text"] = caption
    raw = io.BytesIO(json.dumps(body).encode())  # large: streamed, not one bytes body
    headers = {"Content-Type": "application/json"}
    async with fleet.http.post(
        fleet.simwa + "/control/message", data=raw, headers=headers
    ) as answer:
        assert answer.status == 200, await answer.text()
        return str((await answer.json())["id"])


def arrived(receiver: Receiver) -> dict[str, dict[str, Any]]:
    """The accepted MESSAGE_IN events with media, by the network's message id."""
    return {
        hit.body["data"]["messageId"]: hit.body["data"]
        for hit in receiver.hits
        if hit.status == 200 and "media" in hit.body["data"]
    }


async def fetch(fleet: Fleet, url: str) -> tuple[int, bytes, str]:
    async with fleet.http.get(url) as answer:
        return answer.status, await answer.read(), answer.headers.get("Content-Type", "")


def media_in(fleet: Fleet, sid: str) -> list[str]:
    folder = fleet.sessions_dir / sid / "media-in"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def stored_files(fleet: Fleet) -> list[str]:
    """What MEDIA_DIR holds, temporary files included."""
    return [p.name for p in Path(fleet.env["MEDIA_DIR"]).rglob("*") if p.is_file()]


def emptied(fleet: Fleet, sid: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return media_in(fleet, sid) == []

    return check


async def test_each_kind_reaches_the_operator_with_its_caption_and_its_bytes(
    fleet: Fleet, receiver: Receiver
) -> None:
    sid = str((await fleet.link())["id"])
    sent = {
        "image": (a_file("image", 40_000), "a photo ✓", None),
        "document": (a_file("document", 6 * 1024 * 1024), "the contract", "contract v2.pdf"),
        "voice": (a_file("voice", 9_000), None, None),
        "video": (a_file("video", 300_000), "", None),
    }
    ids = {
        kind: await send_file(fleet, kind, data, caption, name)
        for kind, (data, caption, name) in sent.items()
    }

    async def all_arrived() -> bool | None:
        return set(ids.values()) <= set(arrived(receiver)) or None

    await eventually(all_arrived, 60, "every file at the operator")
    got = arrived(receiver)
    for kind, (data, caption, name) in sent.items():
        shown = got[ids[kind]]
        assert shown["from"] == OUTSIDE
        assert shown["text"] == (caption or "")
        media = shown["media"]
        assert media["kind"] == kind
        assert media["size"] == len(data)
        assert media["sha256"] == hashlib.sha256(data).hexdigest()
        assert media.get("filename") == name
        if kind in MIMES:
            assert media["mime"] == MIMES[kind]
        status, body, content_type = await fetch(fleet, media["url"])
        assert status == 200
        assert body == data
        assert content_type == media["mime"]
    # The worker let go of its copies once serve had the events; the network has its acks.
    await eventually(emptied(fleet, sid), 20, "media-in emptied")
    device = await fleet.device(sid)
    assert device["unacked"] == 0


async def test_a_file_over_its_kinds_limit_is_told_not_stored_and_blocks_nothing(
    fleet: Fleet, receiver: Receiver
) -> None:
    sid = str((await fleet.link())["id"])
    big = a_file("video", VIDEO_LIMIT + 1)
    over = await send_file(fleet, "video", big, "too long a clip")
    after = await send_file(fleet, "image", a_file("image", 2_000), "and a photo")

    async def both() -> bool:
        texts = {h.body["data"]["messageId"] for h in receiver.hits if h.status == 200}
        return {over, after} <= texts

    await eventually(both, 30, "both messages at the operator")
    shown = {h.body["data"]["messageId"]: h.body["data"] for h in receiver.hits}
    assert "media" not in shown[over]
    assert shown[over]["text"] == "too long a clip"
    assert shown[over]["mediaRefused"] == {
        "kind": "video",
        "size": VIDEO_LIMIT + 1,
        "sha256": hashlib.sha256(big).hexdigest(),
        "reason": "refused",
    }
    assert "url" in shown[after]["media"]
    assert stored_files(fleet) == [shown[after]["media"]["sha256"]]
    await eventually(emptied(fleet, sid), 20, "media-in emptied")


async def test_a_worker_killed_between_taking_a_file_and_uploading_it_sends_it_after(
    fleet: Fleet, receiver: Receiver
) -> None:
    """serve away: the worker takes the file (on disk, event in the outbox, acknowledged to
    the network) but cannot upload it; killed then, the next process finds both and sends."""
    sid = str((await fleet.link())["id"])
    fleet.kill()
    data = a_file("image", 50_000)
    mid = await send_file(fleet, "image", data, "while serve was away")

    async def acked() -> bool:
        return (await fleet.device(sid))["unacked"] == 0 and media_in(fleet, sid) != []

    await eventually(acked, 20, "the file taken and acknowledged")
    sha = hashlib.sha256(data).hexdigest()
    assert media_in(fleet, sid) == [sha]
    assert sha.encode() in (fleet.sessions_dir / sid / "outbox.jsonl").read_bytes()
    killed = fleet.workers()[sid]
    os.kill(killed, signal.SIGKILL)
    fleet.start()  # its start-up reconcile starts the worker again

    async def delivered() -> bool:
        return mid in arrived(receiver)

    await eventually(delivered, 60, "the file at the operator")
    assert fleet.workers()[sid] != killed
    status, body, _ = await fetch(fleet, arrived(receiver)[mid]["media"]["url"])
    assert (status, body) == (200, data)
    await eventually(emptied(fleet, sid), 20, "media-in emptied")


async def test_simwa_refuses_bad_media_and_sends_nothing(fleet: Fleet) -> None:
    sid = str((await fleet.link())["id"])
    for media in (
        {"kind": "sticker", "data": "AAAA"},
        {"kind": "image", "data": "not base64!"},
        {"kind": "image", "data": ""},
        {"kind": "document", "data": "AAAA", "filename": ""},
        "a string",
    ):
        body = {"from": OUTSIDE, "to": PHONE, "media": media}
        async with fleet.http.post(fleet.simwa + "/control/message", json=body) as answer:
            assert answer.status == 400, media
    device = await fleet.device(sid)
    assert device["unacked"] == 0 and device["acked"] == 0


@pytest.mark.timeout(600)
async def test_a_burst_of_files_survives_serve_a_worker_and_redis_dying(
    fleet: Fleet, receiver: Receiver, aof_redis: AofRedis
) -> None:
    sid = str((await fleet.link())["id"])
    count = 24
    rng = random.Random()
    kill_serve, kill_worker, kill_redis = rng.sample(range(2, count - 2), 3)
    kinds = ("image", "document", "voice", "audio", "video")
    sent: dict[str, bytes] = {}
    # The operator refuses for a while: events are delivered more than once.
    receiver.mode = "fail"
    for n in range(count):
        if n == kill_serve:
            fleet.kill()
            fleet.start()
        if n == kill_worker:
            killed = fleet.workers()[sid]
            os.kill(killed, signal.SIGKILL)
        if n == kill_redis:
            aof_redis.kill()
            aof_redis.start()
        kind = kinds[n % len(kinds)]
        data = a_file(kind, rng.randrange(1_000, 400_000))
        for _ in range(100):  # simwa stays up: only a refused connection would need this
            try:
                sent[await send_file(fleet, kind, data, f"file {n}")] = data
                break
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)

    async def refused_some() -> bool:
        return sum(hit.status == 500 for hit in receiver.hits) >= 3

    await eventually(refused_some, 60, "the operator refusing a few deliveries")
    receiver.mode = "ok"

    async def all_arrived() -> bool | None:
        return set(sent) <= set(arrived(receiver)) or None

    try:
        await eventually(all_arrived, 300, "every file at the operator")
    except AssertionError:
        missing = set(sent) - set(arrived(receiver))
        device = await fleet.device(sid)
        raise AssertionError(
            f"{len(missing)} of {count} missing; unacked at the network: {device['unacked']}"
        ) from None
    got = arrived(receiver)
    for mid, data in sent.items():
        status, body, _ = await fetch(fleet, got[mid]["media"]["url"])
        assert status == 200, mid
        assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest(), mid
    # Every attempt of one event (refused ones included) named the same media id.
    ids_of: dict[str, set[str]] = {}
    for hit in receiver.hits:
        media = hit.body["data"].get("media")
        if media:
            ids_of.setdefault(hit.event_id, set()).add(urlsplit(media["url"]).path)
    assert all(len(paths) == 1 for paths in ids_of.values())
    assert any(sum(h.event_id == event_id for h in receiver.hits) > 1 for event_id in ids_of), (
        "no event was delivered twice"
    )
    await eventually(emptied(fleet, sid), 30, "media-in emptied")
    assert fleet.workers()[sid] != killed  # the files after the kill came through a new one
    print(f"{count} files; kills at serve {kill_serve}, worker {kill_worker}, redis {kill_redis}")


def test_the_frame_cap_fits_the_largest_file() -> None:
    """Both ends of the WebSocket take a frame with a 100 MiB file in base64."""
    from simwa.incoming_media import MAX_MEDIA_BYTES, WS_MAX_MESSAGE
    from worker.drivers import sim

    assert MAX_MEDIA_BYTES == 100 * 1024 * 1024
    biggest = (MAX_MEDIA_BYTES + 2) // 3 * 4 + 64 * 1024  # its base64, and the rest
    assert biggest <= WS_MAX_MESSAGE <= sim.WS_MAX_MESSAGE
