"""A worker's upload of an incoming file (``PUT /worker/media/<sha256>``) and the
``MESSAGE_IN`` that names it, against a real ``serve``, Redis and operator endpoint.

The uploads go through the worker's own client (worker/media_upload.py: signed descriptor,
``Expect: 100-continue``) or, for the refusals it would never make, a hand-made request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web

from core.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    media_descriptor,
    session_secret,
    sign,
)
from tests.event_receiver import Receiver, events_fleet_options
from tests.fleet import WEBHOOK_SECRET, Fleet, eventually
from wafleet import devstack
from worker.endpoints import Endpoints
from worker.media_inbox import IncomingFile, MediaInbox
from worker.media_upload import MediaStep, MediaUploader, Upload, put_file
from worker.outbox import Outbox
from worker.webhook_client import WebhookClient

IMAGE_LIMIT = 256 * 1024
# A real PNG header and enough bytes after it: libmagic tells image/png.
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + os.urandom(4000)


@pytest.fixture
def fleet_options(receiver: Receiver) -> dict[str, Any]:
    return events_fleet_options(receiver) | {
        "MEDIA_MAX_BYTES_IMAGE": str(IMAGE_LIMIT),
        "MEDIA_URL_TTL_S": "3",
    }


def media_dir(fleet: Fleet) -> Path:
    return Path(fleet.env["MEDIA_DIR"])


def stored_files(fleet: Fleet) -> list[str]:
    """Every file under MEDIA_DIR, temporary ones included."""
    root = media_dir(fleet)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def uploader(fleet: Fleet, sid: str, folder: Path) -> tuple[MediaUploader, MediaInbox]:
    inbox = MediaInbox(folder)
    secret = session_secret(WEBHOOK_SECRET, sid)
    return MediaUploader(Endpoints(fleet.api + "/webhook"), sid, secret, inbox), inbox


def signed_headers(
    sid: str, sha256: str, size: int, kind: str, secret_of: str = ""
) -> dict[str, str]:
    ts = time.time_ns() // 1_000_000
    secret = session_secret(WEBHOOK_SECRET, secret_of or sid)
    return {
        "X-Wafleet-Session": sid,
        "X-Wafleet-Media-Size": str(size),
        "X-Wafleet-Media-Kind": kind,
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: sign(secret, ts, media_descriptor(sid, sha256, size, kind)),
    }


async def put(fleet: Fleet, sha256: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    url = f"{fleet.api}/worker/media/{sha256}"
    async with fleet.http.put(url, data=body, headers=headers) as answer:
        return answer.status, await answer.json()


async def test_refused_uploads_leave_nothing_stored(fleet: Fleet, tmp_path: Path) -> None:
    sid = str((await fleet.provision())["id"])
    other = str((await fleet.provision("972501234599"))["id"])
    data = os.urandom(5000)
    sha = hashlib.sha256(data).hexdigest()

    # Signed with another session's secret: 401.
    status, body = await put(
        fleet, sha, data, signed_headers(sid, sha, len(data), "document", other)
    )
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    # A good signature over the descriptor, but other bytes: 400, and nothing kept.
    forged = os.urandom(5000)
    status, body = await put(fleet, sha, forged, signed_headers(sid, sha, len(data), "document"))
    assert (status, body["error"]["code"]) == (400, "media_mismatch")
    # The signed size is not the body's size.
    status, body = await put(
        fleet, sha, data[:-1], signed_headers(sid, sha, len(data), "document")
    )
    assert (status, body["error"]["code"]) == (400, "media_mismatch")
    # Over the kind's limit (MEDIA_MAX_BYTES_IMAGE): 413 before a byte is read.
    big = os.urandom(IMAGE_LIMIT + 1)
    big_sha = hashlib.sha256(big).hexdigest()
    status, body = await put(fleet, big_sha, big, signed_headers(sid, big_sha, len(big), "image"))
    assert (status, body["error"]["code"]) == (413, "media_too_large")
    # Not a hash in the path.
    status, body = await put(fleet, "../etc", data, signed_headers(sid, sha, len(data), "image"))
    assert status in (400, 404)
    assert stored_files(fleet) == []

    # The worker's own client: the same refusal over the limit, told as never to retry.
    up, inbox = uploader(fleet, sid, tmp_path / "w")
    described = inbox.keep(IncomingFile("image", big))
    assert await up.upload(described) is Upload.REFUSED
    assert stored_files(fleet) == []


async def test_an_upload_is_stored_once_and_answered_at_once_the_second_time(
    fleet: Fleet, tmp_path: Path
) -> None:
    sid = str((await fleet.provision())["id"])
    up, inbox = uploader(fleet, sid, tmp_path / "w")
    data = os.urandom(300_000)
    described = inbox.keep(IncomingFile("document", data, filename="report.pdf"))
    assert described["size"] == len(data)
    assert described["sha256"] == hashlib.sha256(data).hexdigest()
    assert await up.upload(described) is Upload.DONE
    sha = described["sha256"]
    assert stored_files(fleet) == [f"{sha[:2]}/{sha}"]
    assert (media_dir(fleet) / sha[:2] / sha).read_bytes() == data

    # Again: serve has it, and says so before the body is sent (Expect: 100-continue).
    url = f"{fleet.api}/worker/media/{sha}"
    headers = signed_headers(sid, sha, len(data), "document")
    status, _ = await put_file(url, inbox.path_of(sha), len(data), headers)
    assert status == 200
    assert stored_files(fleet) == [f"{sha[:2]}/{sha}"]


def media_event(sid: str, worker_id: str, media: dict[str, Any], caption: str) -> dict[str, Any]:
    return {
        "id": worker_id,
        "sessionId": sid,
        "type": "MESSAGE_IN",
        "data": {
            "messageId": f"wamid-{worker_id[:8]}",
            "from": "972541112233",
            "text": caption,
            "timestamp": time.time_ns() // 1_000_000,
            "media": media,
        },
        "timestamp": time.time_ns() // 1_000_000,
    }


async def test_a_file_reaches_the_operator_by_a_signed_expiring_link(
    fleet: Fleet, receiver: Receiver, tmp_path: Path
) -> None:
    sid = str((await fleet.provision())["id"])
    up, inbox = uploader(fleet, sid, tmp_path / "w")
    described = inbox.keep(IncomingFile("image", PNG))
    assert described["mime"] == "image/png"
    event = media_event(sid, uuid.uuid4().hex, described, "look at this ✓")

    # The event before its file: a refusal the worker retries (503), and nothing stored.
    status, body = await fleet.post_webhook(event)
    assert (status, body["error"]["code"]) == (503, "media_missing")
    assert await fleet.redis.xlen(f"wafleet:events:{sid}") == 0
    assert await fleet.redis.keys("wafleet:media:*") == []

    assert await up.upload(described) is Upload.DONE
    status, _ = await fleet.post_webhook(event)
    assert status == 200
    status, _ = await fleet.post_webhook(event)  # a resend: one event for the operator
    assert status == 200

    async def delivered() -> Any:
        return receiver.accepted(sid) or None

    await eventually(delivered, 20, "the MESSAGE_IN at the operator")
    hit = next(h for h in receiver.hits if h.session_id == sid)
    shown = hit.body["data"]
    assert shown["text"] == "look at this ✓"
    media = shown["media"]
    assert {k: media[k] for k in ("kind", "mime", "size", "sha256")} == {
        "kind": "image",
        "mime": "image/png",
        "size": len(PNG),
        "sha256": hashlib.sha256(PNG).hexdigest(),
    }
    url = media["url"]
    assert url.startswith(fleet.api + "/media/md_")
    async with fleet.http.get(url) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "image/png"
        assert hashlib.sha256(await answer.read()).hexdigest() == media["sha256"]

    # Tampered: another expiry with the same signature is 403, as is no signature.
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    exp, sig = int(query["exp"][0]), query["sig"][0]
    base = f"{fleet.api}{parts.path}"
    async with fleet.http.get(f"{base}?exp={exp + 3600}&sig={sig}") as answer:
        assert answer.status == 403
    async with fleet.http.get(base) as answer:
        assert answer.status == 403

    # The record lives as long as the message (MESSAGE_RETENTION_DAYS, 7 by default).
    media_id = parts.path.rsplit("/", 1)[1]
    ttl = await fleet.redis.ttl(f"wafleet:media:{media_id}")
    assert 7 * 86400 - 60 < ttl <= 7 * 86400
    assert await fleet.redis.hget(f"wafleet:media:{media_id}", "direction") == "in"

    # Replayed with ?since=: the same media id, with a link valid from now.
    status, page = await fleet.call("GET", f"/api/sessions/{sid}/events?since=0")
    assert status == 200
    replayed = page["events"][0]["data"]["media"]["url"]
    assert urlsplit(replayed).path == parts.path

    # The delivered link's time runs out (MEDIA_URL_TTL_S=3): 410.
    await asyncio.sleep(max(0.0, exp + 1.2 - time.time()))
    async with fleet.http.get(url) as answer:
        assert answer.status == 410


async def test_an_event_naming_a_file_of_another_size_is_refused(
    fleet: Fleet, tmp_path: Path
) -> None:
    sid = str((await fleet.provision())["id"])
    up, inbox = uploader(fleet, sid, tmp_path / "w")
    described = inbox.keep(IncomingFile("voice", os.urandom(2000)))
    assert await up.upload(described) is Upload.DONE
    event = media_event(sid, uuid.uuid4().hex, {**described, "size": 1999}, "")
    status, body = await fleet.post_webhook(event)
    assert (status, body["error"]["code"]) == (400, "invalid_input")
    for bad in ({"kind": "sticker"}, {"sha256": "0" * 63}, {"mime": ""}, {"size": 0}):
        event = media_event(sid, uuid.uuid4().hex, {**described, **bad}, "")
        status, body = await fleet.post_webhook(event)
        assert status == 400, bad
    assert await fleet.redis.xlen(f"wafleet:events:{sid}") == 0


async def test_aiohttp_client_without_expect_is_served_too(fleet: Fleet) -> None:
    """An upload without ``Expect`` (another client) is read, checked and stored the same."""
    sid = str((await fleet.provision())["id"])
    data = os.urandom(70_000)
    sha = hashlib.sha256(data).hexdigest()
    status, body = await put(fleet, sha, data, signed_headers(sid, sha, len(data), "video"))
    assert (status, body) == (201, {"stored": True})
    status, body = await put(fleet, sha, data, {})  # no headers at all: a clear 400
    assert (status, body["error"]["code"]) == (400, "invalid_input")


async def test_the_worker_posts_only_what_serve_has_the_file_of(
    fleet: Fleet, receiver: Receiver, tmp_path: Path
) -> None:
    """The webhook client's step before a post: files uploaded first; one over its kind's
    limit can never be, so its event goes without it (``mediaRefused``) rather than block
    the outbox; once the events left, the worker's copies go."""
    sid = str((await fleet.provision())["id"])
    folder = tmp_path / "w"
    up, inbox = uploader(fleet, sid, folder)
    box = Outbox(folder, sid, 1 << 20)
    step = MediaStep(up, box)
    small = inbox.keep(IncomingFile("image", PNG))
    big = inbox.keep(IncomingFile("image", os.urandom(IMAGE_LIMIT + 1)))
    events = [media_event(sid, uuid.uuid4().hex, m, f"n{i}") for i, m in enumerate((small, big))]
    for event in events:
        assert box.put(event, bounded=True)
    lines = box.head_lines(10, 1 << 20)
    ready = await step.ready(lines)
    assert ready is not None and ready[0] == lines[0]
    stripped = json.loads(ready[1])
    assert "media" not in stripped["data"]
    assert stripped["data"]["mediaRefused"] == {
        "kind": "image",
        "size": IMAGE_LIMIT + 1,
        "sha256": big["sha256"],
        "reason": "refused",
    }
    for line in ready:
        status, _ = await fleet.post_webhook(json.loads(line))
        assert status == 200
    box.pop(len(lines))
    step.left(lines)
    assert not inbox.has(small["sha256"]) and not inbox.has(big["sha256"])

    async def both() -> bool:
        return len(receiver.accepted(sid)) == 2

    await eventually(both, 20, "both events at the operator")
    shown = [h.body["data"] for h in receiver.hits if h.session_id == sid]
    assert "url" in shown[0]["media"] and "media" not in shown[1]

    # serve away: not now (the caller retries), and nothing is lost meanwhile.
    again = inbox.keep(IncomingFile("document", b"%PDF-1.4 later"))
    away = MediaStep(MediaUploader(Endpoints("http://127.0.0.1:9/webhook"), sid, "x", inbox), box)
    box.put(media_event(sid, uuid.uuid4().hex, again, ""), bounded=True)
    assert await away.ready(box.head_lines(10, 1 << 20)) is None
    assert inbox.has(again["sha256"])


async def test_pings_go_on_while_a_slow_upload_runs_and_the_event_waits_for_it(
    tmp_path: Path,
) -> None:
    """A large file on a slow link: the worker's pings keep reaching serve meanwhile (the
    watchdog must not take it for dead), and the event goes only after the file is in."""
    seen: list[str] = []
    uploads = asyncio.Event()

    async def upload(request: web.Request) -> web.Response:
        await request.read()
        seen.append("upload started")
        await asyncio.sleep(1.5)  # plays a slow link, not a wait for a condition
        uploads.set()
        seen.append("upload done")
        return web.json_response({"stored": True}, status=201)

    async def webhook(request: web.Request) -> web.Response:
        seen.append(str((await request.json()).get("type")))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_put("/worker/media/{sha}", upload)
    app.router.add_post("/webhook", webhook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = devstack.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    client = WebhookClient(
        f"http://127.0.0.1:{port}/webhook",
        "worker_1",
        "s",
        outbox_dir=tmp_path,
        inbox=MediaInbox(tmp_path),
    )
    try:
        await client.start()
        assert client.media is not None
        described = client.media.uploader.inbox.keep(IncomingFile("document", b"%PDF-1.4 x"))
        assert client.take(
            "MESSAGE_IN", {"messageId": "M1", "from": "1", "text": "", "media": described}
        )
        while not uploads.is_set():
            client.send("PING", {"timestamp": 1})
            await asyncio.sleep(0.2)

        async def event_sent() -> bool:
            return "MESSAGE_IN" in seen and len(client.outbox) == 0

        await eventually(event_sent, 10, "the MESSAGE_IN after its upload")
        during = seen[seen.index("upload started") : seen.index("upload done")]
        assert during.count("PING") >= 3
        assert seen.index("MESSAGE_IN") > seen.index("upload done")
        assert not client.media.uploader.inbox.has(described["sha256"])
    finally:
        await client.close()
        await runner.cleanup()
