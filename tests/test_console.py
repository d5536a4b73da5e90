"""The console's fleet view end to end: ``/stats`` as a picture, the nodes view, the digest.

aiogram's real client → the fake Bot API → ``wafleet serve`` → real Redis, microsocks,
worker processes and the simulated network (``RUNNER=process``: one node, this host).
"""

from __future__ import annotations

import io
import re
import socket
from typing import Any

import pytest
from PIL import Image

from bot import charts
from tests import fake_telegram
from tests.fake_telegram import ADMIN, CHAT, Call, FakeTelegram, bot_env
from tests.fleet import PHONE, Fleet, eventually

telegram = fake_telegram.telegram  # the fixture

OTHER_PHONE = "972507654321"


@pytest.fixture
def fleet_options(telegram: FakeTelegram, request: pytest.FixtureRequest) -> dict[str, Any]:
    return bot_env(telegram, **dict(getattr(request, "param", {})))


def _picture(call: Call) -> Image.Image:
    assert call.photo is not None
    image = Image.open(io.BytesIO(call.photo))
    assert image.format == "PNG"
    image.load()
    return image.convert("RGB")


def _colours(image: Image.Image) -> set[object]:
    return {c for _, c in image.getcolors(1 << 20) or []}


async def test_stats_is_a_picture_captioned_with_the_fleets_numbers(
    fleet: Fleet, telegram: FakeTelegram
) -> None:
    linked = (await fleet.link(PHONE))["id"]
    waiting = (await fleet.provision(OTHER_PHONE))["id"]
    await fleet.wait_status(waiting, "qr_ready")

    telegram.send("/stats")
    english = await telegram.wait_call("sendPhoto", lambda c: c.chat == ADMIN)
    image = _picture(english)
    assert image.width == charts.WIDTH and 600 < image.height < 2000
    colours = _colours(image)
    assert len(colours) > 20  # text, bars, the curve: far from blank
    assert charts.STATUS_COLOURS["connected"] in colours  # worker_1's bar
    assert charts.STATUS_COLOURS["qr_ready"] in colours  # worker_2's bar
    assert charts.STATUS_COLOURS["failed"] not in colours  # no failed session, no bar
    assert charts.NODE_UP in colours  # this host, with both sessions
    caption = english.text
    assert "Sessions: 2" in caption
    assert "• connected: 1" in caption and "• waiting for a scan: 1" in caption
    assert "Free slots: 6 of 8" in caption  # two proxies of 4, two sessions on them
    assert "s3cret" not in caption and "socks5h://" not in caption
    assert {linked, waiting} == {"worker_1", "worker_2"}

    telegram.send("/lang he")
    await telegram.wait_call("sendMessage", lambda c: "בעברית" in c.text)
    mark = len(telegram.calls)
    telegram.send("/stats")
    hebrew = await telegram.wait_call("sendPhoto", lambda c: c.chat == ADMIN, after=mark)
    picture = _picture(hebrew)
    assert picture.size == image.size and picture.tobytes() != image.tobytes()
    assert "חיבורים: 2" in hebrew.text and "מקומות פנויים: 6 מתוך 8" in hebrew.text
    # Mirrored: the "connected" bar (third row, full length: the busiest status) starts
    # after the labels on the left in English and ends before them on the right in Hebrew.
    track0 = charts.MARGIN + charts.LABEL_W
    row = charts.MARGIN + charts.TITLE_SIZE + 16 + 2 * charts.ROW + charts.ROW // 2
    assert _green_span(image, row) == (track0, charts.WIDTH - charts.MARGIN - charts.COUNT_W)
    start, end = _green_span(picture, row)
    assert abs(end - (charts.WIDTH - track0)) <= 1 and start < charts.WIDTH / 2


def _green_span(image: Image.Image, y: int) -> tuple[int, int]:
    """Where the pixels of the "connected" colour run on row ``y``."""
    green = charts.STATUS_COLOURS["connected"]
    xs = [x for x in range(image.width) if image.getpixel((x, y)) == green]
    assert xs, f"no bar on row {y}"
    return xs[0], xs[-1]


async def test_nodes_in_rest_metrics_and_chat_match_the_fleet(
    fleet: Fleet, telegram: FakeTelegram
) -> None:
    sids = [(await fleet.provision(p))["id"] for p in (PHONE, OTHER_PHONE, "972509999999")]
    for sid in sids:
        await fleet.wait_status(sid, "qr_ready")
    host = socket.gethostname()

    async def listing() -> list[dict[str, Any]]:
        status, body = await fleet.call("GET", "/api/v1/nodes")
        assert status == 200
        nodes: list[dict[str, Any]] = body["nodes"]
        return nodes

    nodes = await listing()
    assert nodes == [
        {
            "name": host,
            "id": host,
            "state": "ready",
            "availability": "active",
            "sessions": 3,
            "sessionIds": sorted(sids),
        }
    ]
    status, stats = await fleet.call("GET", "/api/v1/dashboard/stats")
    assert status == 200 and stats["nodes"] == nodes
    assert stats["sessions"]["total"] == 3  # the old fields are still there

    async def node_metric() -> str | None:
        _, body = await fleet.call("GET", "/metrics")
        found = re.search(
            rf'^wafleet_node_sessions{{node="{re.escape(host)}"}} (\S+)$', body.decode(), re.M
        )
        return found.group(1) if found else None

    assert await node_metric() == "3.0"

    status, _ = await fleet.call("DELETE", f"/api/sessions/{sids[0]}")
    assert status == 200

    async def two_left() -> bool:
        return [n["sessions"] for n in await listing()] == [2]

    await eventually(two_left, what="the node's count after a delete")
    assert await node_metric() == "2.0"
    assert (await listing())[0]["sessionIds"] == sorted(sids[1:])

    telegram.send("/nodes")
    reply = await telegram.wait_call("sendMessage", lambda c: c.chat == ADMIN)
    assert host in reply.text and "ready · 2 sessions" in reply.text
    telegram.send("/lang he")
    await telegram.wait_call("sendMessage", lambda c: "בעברית" in c.text)
    mark = len(telegram.calls)
    telegram.send("/nodes")
    hebrew = await telegram.wait_call("sendMessage", lambda c: c.chat == ADMIN, after=mark)
    assert host in hebrew.text and "פעיל · שני חיבורים" in hebrew.text


async def test_the_api_refuses_the_nodes_listing_without_the_key(fleet: Fleet) -> None:
    status, body = await fleet.call("GET", "/api/v1/nodes", headers={"X-API-Key": "nope"})
    assert status == 401 and body["error"]["code"] == "unauthorized"


def _digest_counts(calls: list[Call]) -> dict[str, int]:
    """What every digest sent so far says, summed (a digest may fall between two events)."""
    totals = {"added": 0, "removed": 0, "logouts": 0, "failovers": 0}
    patterns = {
        "added": r"Sessions added: (\d+)",
        "removed": r"removed: (\d+)",
        "logouts": r"Logged out on the phone: (\d+)",
        "failovers": r"Failovers to another proxy: (\d+)",
    }
    for call in calls:
        for name, pattern in patterns.items():
            found = re.search(pattern, call.text)
            totals[name] += int(found.group(1)) if found else 0
    return totals


@pytest.mark.parametrize(
    "fleet_options", [{"DIGEST_CRON": "*/2 * * * * *", "DIGEST_SKIP_EMPTY": "true"}], indirect=True
)
async def test_the_digest_fires_on_its_schedule_with_what_happened(
    fleet: Fleet, telegram: FakeTelegram
) -> None:
    def digests() -> list[Call]:
        # the chat also gets the sessions' QR photos: the digests are the captioned ones
        return [c for c in telegram.calls_of("sendPhoto", chat=CHAT) if "Daily digest" in c.text]

    def skipped() -> int:
        return fleet.log().count("digest skipped: nothing happened")

    async def quiet_ticks(n: int) -> bool:
        return skipped() >= n

    await eventually(lambda: quiet_ticks(1), timeout=20, what="a digest skipped when empty")
    assert not digests()  # nothing happened: nothing sent

    await fleet.link(PHONE)
    other = (await fleet.provision(OTHER_PHONE))["id"]
    await fleet.wait_status(other, "qr_ready")
    assert await fleet.control("logout", phone=PHONE) == 200
    status, _ = await fleet.call("DELETE", f"/api/sessions/{other}")
    assert status == 200

    async def told() -> dict[str, int] | None:
        counts = _digest_counts(digests())
        return counts if counts["added"] >= 2 and counts["removed"] and counts["logouts"] else None

    counts = await eventually(told, timeout=30, what="digests telling every event")
    assert counts == {"added": 2, "removed": 1, "logouts": 1, "failovers": 0}
    sent = digests()
    for call in sent:
        assert "Sessions: " in call.text
        image = _picture(call)
        assert image.width == charts.WIDTH and len(_colours(image)) > 20
    # Quiet again: the next ticks are skipped and send nothing more.
    after = skipped()
    await eventually(lambda: quiet_ticks(after + 2), timeout=20, what="two more quiet ticks")
    assert len(digests()) == len(sent)
    assert await fleet.redis.hget("wafleet:digest:journal", "sessions_added") is None
