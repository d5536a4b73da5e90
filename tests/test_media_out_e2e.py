"""Files out through the whole path: REST -> Redis -> command channel -> worker -> network.

The worker fetches each file from serve by its signed link, checks its size and SHA-256,
and sends it through its SOCKS5 proxy to the simulated network, which hashes what arrived:
each file must be there byte for byte, once per message, whatever is killed meanwhile
(serve, a worker, Redis with its append-only file). Real serve, Redis, microsocks, simwa
and worker processes.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import random
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests import media_samples as samples
from tests.aof_redis import AofRedis, redis_client, redis_server  # noqa: F401 (fixtures)
from tests.fleet import API_KEY, PHONE, Fleet, eventually
from tests.messaging import FAST, OUTSIDE, sent_by, wait_message

pytestmark = pytest.mark.asyncio


@pytest.fixture
def fleet_options() -> dict[str, Any]:
    return dict(FAST) | {"PING_TIMEOUT_MS": "15000"}


async def post(fleet: Fleet, sid: str, kind: str, data: bytes, how: str, **extra: Any) -> Any:
    """One media message, by JSON or multipart; (status, answer). Raises when serve is away."""
    url, key = f"{fleet.api}/api/sessions/{sid}/messages", {"X-API-Key": API_KEY}
    if how == "json":
        media: dict[str, Any] = {"kind": kind, "data": samples.b64(data)}
        if "filename" in extra:
            media["filename"] = extra.pop("filename")
        raw = json.dumps({"to": OUTSIDE, "media": media, **extra}).encode()
        headers = key | {"Content-Type": "application/json"}
        async with fleet.http.post(url, data=io.BytesIO(raw), headers=headers) as answer:
            return answer.status, await answer.json()
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("to", OUTSIDE)
    form.add_field("kind", kind)
    for name, value in extra.items():
        form.add_field(name, value)
    form.add_field("file", io.BytesIO(data), filename=extra.get("filename", "file.bin"))
    async with fleet.http.post(url, data=form, headers=key) as answer:
        return answer.status, await answer.json()


def leftovers(fleet: Fleet, sid: str) -> list[str]:
    folder = fleet.sessions_dir / sid / ".media"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


async def test_each_kind_reaches_the_network_byte_for_byte_by_json_and_multipart(
    fleet: Fleet,
) -> None:
    sid = (await fleet.link())["id"]
    files = [
        ("image", samples.image("JPEG", (640, 480), noise=True), "json", {"caption": "shelf 4"}),
        ("document", samples.pdf(300_000), "multipart", {"filename": "invoice.pdf"}),
        ("voice", samples.ogg_opus(50_000), "json", {}),
        ("video", samples.mp4(2_000_000), "multipart", {"caption": "unboxing"}),
        ("audio", samples.mp4(100_000, brand=b"M4A "), "multipart", {}),
        ("image", samples.image("PNG", (300, 200)), "multipart", {"filename": "scan.pdf"}),
        ("document", samples.pdf(1000), "json", {"filename": "terms.pdf", "caption": "read"}),
    ]
    mids = []
    for kind, data, how, extra in files:
        status, answer = await post(fleet, sid, kind, data, how, **dict(extra))
        assert status == 202, answer
        mids.append(answer["id"])
    for mid in mids:
        await wait_message(fleet, sid, mid, {"sent", "delivered", "read"}, timeout=60)
    by_id = {m["id"]: m for m in await sent_by(fleet, PHONE)}
    assert len(by_id) == len(files)
    for mid, (kind, data, how, extra) in zip(mids, files, strict=True):
        entry = by_id["3EB0" + mid.upper()]
        wanted = {"kind": kind, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        if "filename" in extra or how == "multipart":  # a file part's own name counts too
            wanted["filename"] = extra.get("filename", "file.bin")
        assert entry["media"] == wanted, (kind, entry)
        assert entry["text"] == extra.get("caption", "")
        assert entry["to"] == OUTSIDE

    async def cleaned() -> bool:
        return leftovers(fleet, sid) == []

    await eventually(cleaned, 10, "the worker's copies removed once acknowledged")
    # Final messages give their media the message's retention.
    for key in [k async for k in fleet.redis.scan_iter(match="wafleet:media:md_*")]:
        assert 0 < await fleet.redis.ttl(key) <= 7 * 24 * 3600


async def _accept(fleet: Fleet, sid: str, n: int, data: bytes) -> str:
    """Until a 202: the idempotency key makes every retry the same message (one file)."""
    kind, how = ("document", "multipart") if n % 2 else ("image", "json")
    for _ in range(600):
        try:
            status, answer = await post(fleet, sid, kind, data, how, idempotencyKey=f"m-{n}")
        except (aiohttp.ClientError, OSError):
            await asyncio.sleep(0.05)  # serve was killed: the client tries again
            continue
        if status == 202:
            return str(answer["id"])
        assert status == 503, answer
        assert answer["error"]["code"] == "redis_unavailable", answer
        await asyncio.sleep(0.05)
    raise AssertionError(f"media message {n} never accepted")


@pytest.mark.timeout(600)
async def test_a_burst_of_files_arrives_once_each_while_serve_a_worker_and_redis_die(
    fleet: Fleet, aof_redis: AofRedis
) -> None:
    burst = int(os.environ.get("WAFLEET_MEDIA_KILL_MESSAGES", "24"))
    sid = (await fleet.link())["id"]
    rng = random.Random()
    kill_at = dict(
        zip(("serve", "worker", "redis"), rng.sample(range(3, burst - 3), 3), strict=True)
    )
    files = {}
    accepted = []
    for n in range(burst):
        if n == kill_at["serve"]:
            fleet.kill()
            fleet.start()
        if n == kill_at["worker"]:
            os.kill(fleet.workers()[sid], signal.SIGKILL)
        if n == kill_at["redis"]:
            aof_redis.kill()
            aof_redis.start()
        data = (
            samples.pdf(rng.randrange(50_000, 600_000))
            if n % 2
            else samples.image("JPEG", (320, 240), noise=True)
        )
        mid = await _accept(fleet, sid, n, data)
        accepted.append(mid)
        files[mid] = data

    async def all_sent() -> bool:
        pipe = fleet.redis.pipeline(transaction=False)
        for mid in accepted:
            pipe.hget(f"wafleet:message:{mid}", "status")
        found = await pipe.execute()
        return set(found) <= {"sent", "delivered", "read"}

    await eventually(all_sent, 300, "every media message sent")
    at_network = await sent_by(fleet, PHONE)
    ids = [m["id"] for m in at_network]
    assert len(ids) == len(set(ids)) == burst, (len(ids), len(set(ids)))
    by_id = {m["id"]: m for m in at_network}
    for mid in accepted:
        entry = by_id["3EB0" + mid.upper()]
        assert entry["media"]["sha256"] == hashlib.sha256(files[mid]).hexdigest()
        assert entry["media"]["size"] == len(files[mid])
    print(f"{burst} files, kills at {kill_at}: each at the network once, hashes match")


async def test_a_file_gone_from_media_dir_fails_its_message_instead_of_hanging(
    fleet: Fleet,
) -> None:
    """Accepted while the session is not linked; its file then disappears (a wiped volume):
    the worker's fetch is answered 404, and the message fails ``media_unavailable``, once,
    while the next message still goes."""
    sid = (await fleet.provision())["id"]
    pdf = samples.pdf(20_000)
    status, lost = await post(fleet, sid, "document", pdf, "multipart")
    assert status == 202, lost
    status, kept = await post(fleet, sid, "image", samples.image(), "json")
    assert status == 202, kept
    sha = hashlib.sha256(pdf).hexdigest()
    (Path(fleet.env["MEDIA_DIR"]) / sha[:2] / sha).unlink()
    await fleet.scan(await fleet.qr(sid))
    failed = await wait_message(fleet, sid, lost["id"], {"failed"}, timeout=30)
    assert failed["reason"] == "media_unavailable"
    await wait_message(fleet, sid, kept["id"], {"sent", "delivered", "read"}, timeout=30)
    assert [m["media"]["kind"] for m in await sent_by(fleet, PHONE)] == ["image"]
