"""Sending a file: what is kept, what is refused, and that a refusal leaves nothing behind.

Against a real ``serve`` and redis-server: JSON (base64) and multipart bodies, the checks in
their order (size 413, kind against the bytes 415, an image's decode 415), the idempotency
key, and the sweep of ``MEDIA_DIR``. The session is provisioned and not linked, so every
accepted message waits in its queue: what is checked here is the acceptance itself
(tests/test_media_out_e2e.py takes the files to the network).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.media.registry import MediaRecord, MediaRegistry
from core.media.store import MediaStore
from core.media.sweep import sweep
from tests import media_samples as samples
from tests.fleet import API_KEY, Fleet
from tests.keyring import OTHER_PHONE, call_as, issue, provision_as
from tests.messaging import OUTSIDE

pytestmark = pytest.mark.asyncio

IMAGE_LIMIT = 1024 * 1024


@pytest.fixture
def fleet_options() -> dict[str, Any]:
    return {"MEDIA_MAX_BYTES_IMAGE": str(IMAGE_LIMIT), "MEDIA_MAX_BYTES_AUDIO": "200000"}


def stored_files(fleet: Fleet) -> list[Path]:
    """Every file under MEDIA_DIR, temporary ones included."""
    root = Path(fleet.env["MEDIA_DIR"])
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def count(fleet: Fleet, pattern: str) -> int:
    return len([k async for k in fleet.redis.scan_iter(match=pattern)])


async def send_json(
    fleet: Fleet, sid: str, kind: str, data: bytes, **extra: Any
) -> tuple[int, Any]:
    media: dict[str, Any] = {"kind": kind, "data": samples.b64(data)}
    if "filename" in extra:
        media["filename"] = extra.pop("filename")
    return await post_json(fleet, sid, {"to": OUTSIDE, "media": media, **extra})


async def post_json(fleet: Fleet, sid: str, body: dict[str, Any]) -> tuple[int, Any]:
    """As ``fleet.call``, with the body as a stream (a file's base64 may be megabytes)."""
    async with fleet.http.post(
        f"{fleet.api}/api/sessions/{sid}/messages",
        data=io.BytesIO(json.dumps(body).encode()),
        headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
    ) as answer:
        return answer.status, await answer.json()


async def send_form(
    fleet: Fleet, sid: str, fields: list[tuple[str, str]], file: bytes | None, name: str = "f.bin"
) -> tuple[int, Any]:
    form = aiohttp.FormData(quote_fields=False)  # names as curl and browsers send them
    for key, value in fields:
        form.add_field(key, value)
    if file is not None:
        form.add_field(
            "file", io.BytesIO(file), filename=name, content_type="application/octet-stream"
        )
    async with fleet.http.post(
        f"{fleet.api}/api/sessions/{sid}/messages", data=form, headers={"X-API-Key": API_KEY}
    ) as answer:
        return answer.status, await answer.json()


async def test_a_file_by_json_and_by_multipart_is_kept_once_and_shown_on_its_message(
    fleet: Fleet,
) -> None:
    sid = (await fleet.provision())["id"]
    png = samples.image()
    status, first = await send_json(fleet, sid, "image", png, caption="the receipt")
    assert status == 202 and first["status"] == "queued", first
    pdf = samples.pdf()
    status, second = await send_form(
        fleet, sid, [("to", OUTSIDE), ("kind", "document")], pdf, name="invoice 7.pdf"
    )
    assert status == 202, second

    _, shown = await fleet.call("GET", f"/api/sessions/{sid}/messages/{first['id']}")
    assert shown["media"] == {
        "kind": "image",
        "mime": "image/png",
        "size": len(png),
        "sha256": hashlib.sha256(png).hexdigest(),
    }
    assert shown["caption"] == "the receipt"
    _, shown = await fleet.call("GET", f"/api/sessions/{sid}/messages/{second['id']}")
    assert shown["media"]["filename"] == "invoice 7.pdf"
    assert shown["media"]["mime"] == "application/pdf"
    assert "caption" not in shown
    store = MediaStore(Path(fleet.env["MEDIA_DIR"]))
    for data in (png, pdf):
        sha = hashlib.sha256(data).hexdigest()
        assert store.path_of(sha).read_bytes() == data
    assert len(stored_files(fleet)) == 2, stored_files(fleet)
    # The record says who sent it; a queued message's media does not expire yet.
    media_keys = [k async for k in fleet.redis.scan_iter(match="wafleet:media:md_*")]
    assert len(media_keys) == 2
    for key in media_keys:
        assert await fleet.redis.hget(key, "direction") == "out"
        assert await fleet.redis.hget(key, "session") == sid
        assert await fleet.redis.ttl(key) == -1


async def test_a_png_named_pdf_is_an_image_but_a_pdf_is_not(fleet: Fleet) -> None:
    sid = (await fleet.provision())["id"]
    status, body = await send_form(
        fleet, sid, [("to", OUTSIDE), ("kind", "image")], samples.image(), name="scan.pdf"
    )
    assert status == 202, body
    status, body = await send_json(fleet, sid, "image", samples.pdf(), filename="photo.png")
    assert (status, body["error"]["code"]) == (415, "media_type_mismatch"), body


async def test_refused_files_leave_nothing_stored_and_no_record(fleet: Fleet) -> None:
    sid = (await fleet.provision())["id"]
    big = samples.image() + os.urandom(IMAGE_LIMIT)  # a PNG's bytes, over the limit
    refusals: list[tuple[str, tuple[int, Any], int, str]] = [
        (
            "pdf as image",
            await send_json(fleet, sid, "image", samples.pdf()),
            415,
            "media_type_mismatch",
        ),
        ("oversize json", await send_json(fleet, sid, "image", big), 413, "media_too_large"),
        (
            "oversize multipart",
            await send_form(fleet, sid, [("to", OUTSIDE), ("kind", "image")], big),
            413,
            "media_too_large",
        ),
        (
            "bomb",
            await send_json(fleet, sid, "image", samples.bomb_png()),
            415,
            "media_unreadable",
        ),
        (
            "bomb under Pillow's own guard",
            await send_json(fleet, sid, "image", samples.bomb_png(8000, 8000)),
            415,
            "media_unreadable",
        ),
        (
            "truncated jpeg",
            await send_json(fleet, sid, "image", samples.truncated_jpeg()),
            415,
            "media_unreadable",
        ),
        (
            "wav as audio",
            await send_json(fleet, sid, "audio", samples.wav()),
            415,
            "media_type_mismatch",
        ),
        (
            "mp4 as voice",
            await send_json(fleet, sid, "voice", samples.mp4()),
            415,
            "media_type_mismatch",
        ),
        (
            "unknown kind",
            await send_json(fleet, sid, "sticker", samples.image()),
            400,
            "invalid_input",
        ),
        (
            "empty file",
            await send_form(fleet, sid, [("to", OUTSIDE), ("kind", "document")], b""),
            400,
            "invalid_input",
        ),
        (
            "file before its kind",
            await send_form(fleet, sid, [("to", OUTSIDE)], samples.pdf()),
            400,
            "invalid_input",
        ),
        (
            "no file part",
            await send_form(fleet, sid, [("to", OUTSIDE), ("kind", "document")], None),
            400,
            "invalid_input",
        ),
    ]
    bad_b64 = await fleet.call(
        "POST",
        f"/api/sessions/{sid}/messages",
        {"to": OUTSIDE, "media": {"kind": "document", "data": "bm90IGJhc2U2NA=!"}},
    )
    refusals.append(("bad base64", bad_b64, 400, "invalid_input"))
    no_boundary = await fleet.call(
        "POST",
        f"/api/sessions/{sid}/messages",
        raw=b'{"to": "14155550123", "text": "hi"}',
        headers={"Content-Type": "multipart/form-data"},
    )
    refusals.append(("multipart without a boundary", no_boundary, 400, "invalid_input"))
    good = await send_json(fleet, sid, "document", samples.pdf())
    for what, (status, body), wanted, code in refusals:
        assert status == wanted, (what, body)
        assert body["error"]["code"] == code, (what, body)
    assert good[0] == 202, good
    # The one accepted document and nothing else under MEDIA_DIR, nor in Redis.
    assert len(stored_files(fleet)) == 1, stored_files(fleet)
    assert await count(fleet, "wafleet:media:md_*") == 1
    assert await count(fleet, "wafleet:message:*") == 1


async def test_a_bad_field_after_the_file_part_leaves_nothing(fleet: Fleet) -> None:
    """The file part arrives whole and passes its checks; a field after it is refused: the
    file, already on disk, is discarded, not kept."""
    sid = (await fleet.provision())["id"]
    for name, value in (("caption", "x" * 2000), ("colour", "red"), ("to", OUTSIDE)):
        form = aiohttp.FormData(quote_fields=False)
        form.add_field("to", OUTSIDE)
        form.add_field("kind", "document")
        form.add_field("file", io.BytesIO(os.urandom(5000)), filename="x.bin")
        form.add_field(name, value)
        async with fleet.http.post(
            f"{fleet.api}/api/sessions/{sid}/messages", data=form, headers={"X-API-Key": API_KEY}
        ) as answer:
            assert answer.status == 400, (name, await answer.text())
    assert stored_files(fleet) == []
    assert await count(fleet, "wafleet:message:*") == 0


async def test_an_oversize_upload_is_refused_before_it_is_read_whole(fleet: Fleet) -> None:
    """Headers promise 64 MiB; 2 MiB past the image limit is all that is ever sent, and the
    413 comes anyway: serve stopped reading at the limit instead of waiting for the rest."""
    sid = (await fleet.provision())["id"]
    boundary = "wafleetboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="to"\r\n\r\n{OUTSIDE}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="kind"\r\n\r\nimage\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    promised = 64 * 1024 * 1024
    request = (
        f"POST /api/sessions/{sid}/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"X-API-Key: {API_KEY}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {promised}\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", fleet.port)
    try:
        writer.write(request + head + samples.image())
        for _ in range(IMAGE_LIMIT // 65536 + 32):  # 2 MiB past the limit, no more
            writer.write(os.urandom(65536))
            await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    assert b" 413 " in status_line, status_line
    await asyncio.sleep(0.2)
    assert stored_files(fleet) == []


async def test_the_same_idempotency_key_is_the_same_message_and_one_file(fleet: Fleet) -> None:
    sid = (await fleet.provision())["id"]
    pdf = samples.pdf(5000)
    fields = [("to", OUTSIDE), ("kind", "document"), ("idempotencyKey", "order-7")]
    status, first = await send_form(fleet, sid, fields, pdf)
    assert status == 202, first
    status, again = await send_form(fleet, sid, fields, pdf)
    assert (status, again["id"]) == (202, first["id"])
    status, by_json = await send_json(fleet, sid, "document", pdf, idempotencyKey="order-7")
    assert (status, by_json["id"]) == (202, first["id"])
    assert len(stored_files(fleet)) == 1
    assert await count(fleet, "wafleet:message:*") == 1
    assert await count(fleet, "wafleet:media:md_*") == 1


async def test_the_sweep_keeps_named_files_and_removes_old_unnamed_ones(
    tmp_path: Path, redis_client: Any
) -> None:
    store, registry = MediaStore(tmp_path), MediaRegistry(redis_client)
    named, orphan, young = store.put(b"named"), store.put(b"orphan"), store.put(b"young")
    await registry.add(
        MediaRecord("md_" + "a" * 32, named.sha256, "document", "text/plain", 5, "s", "out", 0)
    )
    hour_ago = time.time() - 3700
    for stored in (named, orphan):
        os.utime(stored.path, (hour_ago, hour_ago))
    leftover = store.writer(100)
    leftover.write(b"cut short")
    os.utime(leftover.temp, (hour_ago, hour_ago))
    swept = await sweep(store, registry)
    assert (swept.files, swept.partial) == (1, 1)
    assert sorted(store.hashes()) == sorted([named.sha256, young.sha256])
    assert not leftover.temp.exists()
    leftover.discard()
    # Once the record expires (the message's retention ran out), its file goes too.
    await registry.expire("md_" + "a" * 32, 0)
    assert (await sweep(store, registry)).files == 1
    assert sorted(store.hashes()) == [young.sha256]


async def test_a_file_follows_the_texts_owner_and_scope_rules(fleet: Fleet) -> None:
    """A client key sends only through its own sessions (another's is 404), a read key
    sends nothing (403), an unknown session is 404: each before a byte is stored."""
    mine_key = (await issue(fleet, "shop", "client"))["key"]
    reader = (await issue(fleet, "dashboard", "read"))["key"]
    other = (await fleet.provision())["id"]
    mine = await provision_as(fleet, mine_key, OTHER_PHONE)
    pdf = samples.pdf()
    body = {"to": OUTSIDE, "media": {"kind": "document", "data": samples.b64(pdf)}}
    for key, sid, wanted in (
        (mine_key, other, 404),
        (reader, other, 403),
        (API_KEY, "worker_999", 404),
    ):
        status, answer = await call_as(fleet, key, "POST", f"/api/sessions/{sid}/messages", body)
        assert status == wanted, (sid, answer)
    assert stored_files(fleet) == []
    status, answer = await call_as(fleet, mine_key, "POST", f"/api/sessions/{mine}/messages", body)
    assert status == 202, answer
    assert len(stored_files(fleet)) == 1


async def test_deleting_the_session_removes_its_media_records(fleet: Fleet) -> None:
    """The records go with the session's messages; the files follow at the next sweep."""
    sid = (await fleet.provision())["id"]
    status, body = await send_json(fleet, sid, "document", samples.pdf())
    assert status == 202, body
    assert await count(fleet, "wafleet:media:md_*") == 1
    status, _ = await fleet.call("DELETE", f"/api/sessions/{sid}")
    assert status in (200, 204)
    assert await count(fleet, "wafleet:media:md_*") == 0
    assert await count(fleet, "wafleet:message:*") == 0
