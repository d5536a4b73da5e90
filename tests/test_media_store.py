"""Media files at rest: stored once by their hash, named in Redis, fetched by a signed link.

Against a real ``serve`` (its ``GET /media/<id>``) and a real redis-server; the links are made
with the fleet's own ``WEBHOOK_SECRET``, as a replica makes them. What each test would have
caught is in its name.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from core.clock import SystemClock
from core.media import Media
from core.media.links import MediaLinks, new_media_id, stable_media_id
from core.media.registry import MediaRecord, MediaRegistry
from core.media.store import MediaStore, MediaTooLarge
from tests.fleet import WEBHOOK_SECRET, Fleet


def test_a_file_over_its_limit_leaves_nothing(tmp_path: Path) -> None:
    store = MediaStore(tmp_path)
    writer = store.writer(10)
    writer.write(b"12345")
    with pytest.raises(MediaTooLarge):
        writer.write(b"678901")
    assert not any(p.is_file() for p in tmp_path.rglob("*")), "a refused file left bytes"


def test_the_same_bytes_are_stored_once(tmp_path: Path) -> None:
    store = MediaStore(tmp_path)
    first, second = store.put(b"invoice"), store.put(b"invoice")
    assert first.sha256 == second.sha256 == hashlib.sha256(b"invoice").hexdigest()
    assert list(store.hashes()) == [first.sha256]
    assert b"".join(store.read_chunks(first.sha256)) == b"invoice"
    assert not list((tmp_path / ".incoming").iterdir())


def test_no_name_reaches_outside_the_store(tmp_path: Path) -> None:
    store = MediaStore(tmp_path)
    for bad in ("../../etc/passwd", "ab", "A" * 64, "0" * 63 + "/"):
        with pytest.raises(ValueError):
            store.path_of(bad)


def test_a_crash_leftover_is_swept_and_a_fresh_upload_is_not(tmp_path: Path) -> None:
    store = MediaStore(tmp_path)
    old = store.writer(100)
    old.write(b"half")
    os.utime(old.temp, (time.time() - 7200, time.time() - 7200))
    fresh = store.writer(100)
    fresh.write(b"going on")
    assert store.sweep_incoming(3600) == 1
    assert fresh.temp.exists() and not old.temp.exists()
    old.discard()
    fresh.discard()


def test_a_link_is_bound_to_its_id_and_its_time() -> None:
    links, mid = MediaLinks(WEBHOOK_SECRET), new_media_id()
    sig = links.signature(mid, 2_000)
    assert links.check(mid, "2000", sig, 1_999) is None
    assert links.check(mid, "2000", sig, 2_001) is not None  # past exp
    assert links.check(mid, "2001", sig, 1_000) is not None  # exp moved
    assert links.check(new_media_id(), "2000", sig, 1_000) is not None  # moved to another id
    assert MediaLinks("another secret of sixteen+").check(mid, "2000", sig, 1_000) is not None
    assert stable_media_id(WEBHOOK_SECRET, "e1") == stable_media_id(WEBHOOK_SECRET, "e1")
    assert stable_media_id(WEBHOOK_SECRET, "e1") != stable_media_id(WEBHOOK_SECRET, "e2")


async def test_a_signed_link_serves_the_file_and_nothing_else_does(fleet: Fleet) -> None:
    media = Media(
        store=MediaStore(Path(fleet.env["MEDIA_DIR"])),
        registry=MediaRegistry(fleet.redis),
        links=MediaLinks(WEBHOOK_SECRET),
        clock=SystemClock(),
        base_url=fleet.api,
        url_ttl_s=60,
    )
    data = os.urandom(300_000)
    stored = media.store.put(data)
    record = MediaRecord(
        new_media_id(),
        stored.sha256,
        "document",
        "application/pdf",
        stored.size,
        "worker_1",
        "in",
        0,
        filename='facture "mai".pdf',
    )
    assert await media.registry.add(record) == record
    url = media.url(record)
    async with fleet.http.get(url) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "application/pdf"
        assert "filename*=UTF-8''facture%20%22mai%22.pdf" in answer.headers["Content-Disposition"]
        assert await answer.read() == data

    base, query = url.split("?")
    now = int(time.time())
    refused = {
        base: 403,  # no signature
        url.replace("sig=", "sig=0"): 403,
        url.replace(record.id, new_media_id()): 403,  # a link moved to another id
        f"{base}?exp={now - 5}&sig={media.links.signature(record.id, now - 5)}": 410,
    }
    unknown = new_media_id()
    refused[media.links.url(fleet.api, unknown, now + 60)] = 404
    for link, status in refused.items():
        async with fleet.http.get(link) as answer:
            assert answer.status == status, link
            assert (await answer.json())["error"]["code"]
            assert data[:64] not in await answer.read()


def test_the_type_is_told_by_the_bytes_not_the_name() -> None:
    import io

    from PIL import Image

    from core.media.sniff import mime_of

    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, "PNG")
    assert mime_of(png.getvalue()) == "image/png"
    assert mime_of(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n") == "application/pdf"
    assert mime_of(b"just some words, named photo.jpg") == "text/plain"
