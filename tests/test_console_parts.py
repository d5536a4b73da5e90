"""The parts behind ``/stats`` and the digest, in process: the picture, the journal, the history.

The picture is drawn for real (Pillow, the DejaVu font of ``scripts/setup.sh``) and read
back pixel by pixel; the journal and the history run against the real redis-server.
"""

from __future__ import annotations

import io
import time

import pytest
import redis.asyncio as aioredis
from PIL import Image, ImageFont

from bot import charts, texts
from bot.i18n import build_i18n
from core.clock import ManualClock
from core.fleet_stats import FleetStats, ProxyLoad
from core.history import DAY_MS, ConnectedHistory, Sample
from core.journal import Happened, Journal, JournalNotifier
from core.models import ProxyStatus, Status
from core.notifier import Alert, AlertKind, Move
from core.runner import NodeInfo

GREEN = charts.STATUS_COLOURS["connected"]


def _fleet(nodes: tuple[NodeInfo, ...] = ()) -> FleetStats:
    return FleetStats(
        {"pending": 1, "qr_ready": 2, "connected": 5, "disconnected": 0, "failed": 1},
        [
            ProxyLoad("a1b2c3d4e5f6", ProxyStatus.ACTIVE, 4),
            ProxyLoad("0f9e8d7c6b5a", ProxyStatus.ACTIVE, 3),
            ProxyLoad("123456789abc", ProxyStatus.BAD, 0),
        ],
        1,
        8,
        nodes,
    )


def _png(lang: str, fleet: FleetStats, history: list[Sample] | None = None) -> Image.Image:
    now = 1_700_000_000_000
    samples = history if history is not None else [Sample(now - 3_600_000, 4, 9)]
    i18n = build_i18n()
    with i18n.context(), i18n.use_locale(lang):
        png = charts.render(texts.stats_picture(fleet, samples, now, 4))
    image = Image.open(io.BytesIO(png))
    image.load()
    return image.convert("RGB")


def _box_of(image: Image.Image, colour: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """The bounding box of every pixel of exactly ``colour``."""
    raw = image.tobytes()
    hits = [i for i in range(0, len(raw), 3) if (raw[i], raw[i + 1], raw[i + 2]) == colour]
    assert hits, f"no pixel of {colour}"
    xs = [(i // 3) % image.width for i in hits]
    ys = [(i // 3) // image.width for i in hits]
    return min(xs), min(ys), max(xs) + 1, max(ys) + 1


def test_every_font_of_the_picture_reads_on_a_phone() -> None:
    """Telegram shows a photo ~320 px wide on a narrow phone: letters stay >= 11 px there."""
    image = _png("en", _fleet())
    assert image.width == charts.WIDTH
    scale = charts.PHONE_WIDTH / image.width
    for size in charts.FONT_SIZES:
        face = charts.font(size)
        assert isinstance(face, ImageFont.FreeTypeFont) and "DejaVu" in str(face.path)
        left, top, right, bottom = face.getbbox("Hg")  # ascender to descender
        assert (bottom - top) * scale >= charts.MIN_TEXT_PX, (size, bottom - top, scale)
        # a capital alone (the smallest thing that must still read) is not far under it
        cap = face.getbbox("H")
        assert (cap[3] - cap[1]) * scale >= charts.MIN_TEXT_PX - 2, size


def test_hebrew_font_has_hebrew_letters() -> None:
    face = charts.font(charts.BODY_SIZE)
    # A font without a glyph draws the same "missing" box for every letter.
    shapes = {face.getmask(letter).getbbox() for letter in "אבגדהוזחט"}
    assert len(shapes) > 3


@pytest.mark.parametrize(
    ("logical", "shown"),
    [
        ("Connected", "Connected"),  # no Hebrew: as it is
        ("מחובר", "רבוחמ"),
        ("חיבורים: 3", "3 :םירוביח"),
        ("לפני 12 שעות", "תועש 12 ינפל"),
        ("host-abc · מושבת", "תבשומ · host-abc"),
        ("עומס פרוקסי: חיבורים / מקסימום", "םומיסקמ / םירוביח :יסקורפ סמוע"),
    ],
)
def test_hebrew_labels_are_put_in_visual_order(logical: str, shown: str) -> None:
    assert charts.visual(logical) == shown


def test_the_picture_is_not_blank_and_shows_each_panel() -> None:
    nodes = (
        NodeInfo("n1", "host-aaaaaa", "ready", "active", ("worker_1", "worker_2")),
        NodeInfo("n2", "host-bbbbbb", "down", "active", ("worker_3",)),
    )
    with_nodes = _png("en", _fleet(nodes))
    without = _png("en", _fleet())
    assert with_nodes.height > without.height  # the nodes panel only when there are nodes
    colours = {c for _, c in with_nodes.getcolors(1 << 20) or []}
    for wanted in (
        GREEN,
        charts.STATUS_COLOURS["qr_ready"],
        charts.STATUS_COLOURS["pending"],
        charts.STATUS_COLOURS["failed"],  # the failed session's bar
        charts.PROXY_FULL,  # the proxy at its cap
        charts.PROXY_ACTIVE,
        charts.NODE_UP,
        charts.AREA,  # the 24-hour curve
    ):
        assert wanted in colours, wanted
    assert charts.NODE_UP not in {c for _, c in without.getcolors(1 << 20) or []}
    # a status with no session draws no bar: nothing of "disconnected"'s colour
    assert charts.STATUS_COLOURS["disconnected"] not in colours


def test_hebrew_mirrors_the_bars_and_keeps_time_left_to_right() -> None:
    english, hebrew = _png("en", _fleet()), _png("he", _fleet())
    assert english.size == hebrew.size
    # The connected bar (the longest status) starts after the labels on the left in English,
    # and ends before the labels on the right in Hebrew.
    track0 = charts.MARGIN + charts.LABEL_W
    en_box = _box_of(english.crop((0, 0, charts.WIDTH, 300)), GREEN)
    he_box = _box_of(hebrew.crop((0, 0, charts.WIDTH, 300)), GREEN)
    assert en_box[0] == track0
    assert abs(he_box[2] - (charts.WIDTH - track0)) <= 1  # Pillow fills both edges
    # The curve: the newest sample is on the right in both.
    en_line = _box_of(english, charts.LINE)
    he_line = _box_of(hebrew, charts.LINE)
    assert en_line[2] == he_line[2] > charts.WIDTH * 0.9


async def test_the_journal_is_taken_and_reset_at_once(redis_client: aioredis.Redis) -> None:
    clock = ManualClock()
    journal = Journal(redis_client, clock)
    counter = JournalNotifier(journal)
    moves = (Move("worker_1", None, "a", "b"), Move("worker_2", None, "a", None))
    for alert in (
        Alert(AlertKind.PROXY_BAD, moves=moves),  # one moved, one had nowhere to go
        Alert(AlertKind.WATCHDOG_RESTART, "worker_1"),
        Alert(AlertKind.WORKER_CRASHED, "worker_1"),
        Alert(AlertKind.CRASH_LOOP, "worker_1"),
        Alert(AlertKind.LOGGED_OUT, "worker_2"),
        Alert(AlertKind.BACKUP_DONE),
        Alert(AlertKind.CONNECTED, "worker_2"),  # not something the digest counts
    ):
        await counter.notify(alert)
    await journal.count(Happened.SESSIONS_ADDED, 2)
    await journal.count(Happened.SESSIONS_REMOVED)

    taken = await journal.take()
    assert taken.since_ms is None  # never reset before
    assert dict(taken.counts) == {
        Happened.FAILOVERS: 1,
        Happened.WATCHDOG_RESTARTS: 1,
        Happened.CRASHES: 2,
        Happened.LOGOUTS: 1,
        Happened.BACKUPS: 1,
        Happened.SESSIONS_ADDED: 2,
        Happened.SESSIONS_REMOVED: 1,
    }
    clock.advance(60)
    again = await journal.take()
    assert again.empty and again.since_ms == clock.now_ms() - 60_000
    # a digest that could not be sent gives its counts back to the next one
    await journal.give_back(taken)
    assert (await journal.peek())[Happened.CRASHES] == 2


async def test_history_keeps_a_bounded_day(redis_client: aioredis.Redis) -> None:
    clock = ManualClock()
    history = ConnectedHistory(redis_client, clock, keep=10)
    for n in range(25):
        await history.record(n, 30)
        clock.advance(3600)  # an hour apart
    assert await redis_client.llen("wafleet:history:connected") == 10
    samples = await history.since()
    # only the last day's, oldest first: the ten kept are all within it
    assert [s.connected for s in samples] == list(range(15, 25))
    assert all(clock.now_ms() - s.at_ms <= DAY_MS for s in samples)
    clock.advance(20 * 3600)  # a day ago is now between the 21st and 22nd sample
    assert [s.connected for s in await history.since()] == [21, 22, 23, 24]


def test_rendering_a_big_fleet_stays_quick() -> None:
    """Hundreds of proxies collapse into MAX_ROWS rows and one summary line."""
    proxies = [ProxyLoad(f"{n:012x}", ProxyStatus.ACTIVE, n % 5) for n in range(300)]
    fleet = FleetStats({"connected": 600}, proxies, 0, 1200)
    history = [Sample(1_700_000_000_000 - n * 300_000, 600, 600) for n in range(288)]
    start = time.perf_counter()
    image = _png("he", fleet, history)
    assert time.perf_counter() - start < 5
    assert image.height < 2000


def test_swarm_nodes_are_named_so_two_on_one_host_differ() -> None:
    from core.swarm_watch import node_names

    def node(node_id: str, host: str, label: str | None = None) -> dict[str, object]:
        labels = {"wafleet": label} if label else {}
        return {"ID": node_id, "Description": {"Hostname": host}, "Spec": {"Labels": labels}}

    names = node_names(
        [
            node("aaaaaaaaaaaa1", "box"),
            node("bbbbbbbbbbbb2", "box"),
            node("cccccccccccc3", "box", "edge"),
            node("dddddddddddd4", "box", "worker"),
            node("eeeeeeeeeeee5", "box", "worker"),
        ]
    )
    assert names == {
        "aaaaaaaaaaaa1": "box-aaaaaa",
        "bbbbbbbbbbbb2": "box-bbbbbb",
        "cccccccccccc3": "edge",  # its own label, unique
        "dddddddddddd4": "worker-dddddd",  # a shared label needs the id too
        "eeeeeeeeeeee5": "worker-eeeeee",
    }


def test_digest_settings_are_checked_at_start() -> None:
    from core.errors import ConfigError
    from core.settings import Settings
    from tests.fleet import API_KEY, WEBHOOK_SECRET

    env = {"API_KEY": API_KEY, "WEBHOOK_SECRET": WEBHOOK_SECRET}
    default = Settings.from_env(env)
    assert (default.digest_cron, default.digest_skip_empty) == ("0 9 * * *", False)
    chosen = Settings.from_env(env | {"DIGEST_CRON": "30 8 * * 1-5", "DIGEST_SKIP_EMPTY": "yes"})
    assert (chosen.digest_cron, chosen.digest_skip_empty) == ("30 8 * * 1-5", True)
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env | {"DIGEST_CRON": "every morning", "DIGEST_SKIP_EMPTY": "maybe"})
    assert "DIGEST_CRON" in str(refused.value) and "DIGEST_SKIP_EMPTY" in str(refused.value)


def test_every_session_status_has_its_own_colour_in_the_picture() -> None:
    """A status added later (``stopped`` came with messages) must not break ``/stats``."""
    assert set(charts.STATUS_COLOURS) == {s.value for s in Status}
    assert len(set(charts.STATUS_COLOURS.values())) == len(Status)
