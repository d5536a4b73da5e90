"""The Telegram console end to end: aiogram's real client → the fake Bot API → serve → fleet.

Everything but Telegram is real: Redis, microsocks, worker processes and the simulated
WhatsApp network. The fake records every Bot API call, so the tests read the chat.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
import zxingcpp
from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.types import Update
from PIL import Image

from bot import texts
from bot.handlers import get_routers
from bot.i18n import RedisI18nMiddleware, build_i18n
from bot.notifier import TelegramNotifier
from core.clock import SystemClock
from core.notifier import Alert, AlertKind, Done, Move
from tests import fake_telegram
from tests.fake_telegram import (
    ADMIN,
    CHAT,
    STRANGER,
    Call,
    FakeTelegram,
    StoredMessage,
    bot_env,
)
from tests.fleet import Fleet, eventually

telegram = fake_telegram.telegram  # the fixture

PASSWORD = "s3cret-pw"  # every test proxy's password: must never reach the chat


@pytest.fixture
def fleet_options(telegram: FakeTelegram, request: pytest.FixtureRequest) -> dict[str, Any]:
    options = dict(getattr(request, "param", {}))
    if not options.pop("bot", True):
        return options
    return bot_env(telegram, **options)


def qr_text(png: bytes | None) -> str | None:
    assert png is not None
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    return found[0].text if found else None


def assert_no_secrets(fake: FakeTelegram) -> None:
    for call in fake.calls:
        dumped = json.dumps(call.params, ensure_ascii=False)
        assert PASSWORD not in dumped, (call.method, dumped)
        assert fake.token not in dumped


async def test_provision_in_chat_qr_photo_scans_and_turns_connected(
    fleet: Fleet, telegram: FakeTelegram
) -> None:
    start = time.monotonic()
    telegram.send("/provision 972501234567")
    starting = await telegram.wait_call("sendMessage", lambda c: c.chat == ADMIN)
    answered = starting.at - start
    assert "worker_1" in starting.text and "***" in starting.text

    photo = await telegram.wait_call("sendPhoto", lambda c: c.chat == ADMIN)
    to_photo = photo.at - start
    assert "worker_1" in photo.text
    assert "Expires in" in photo.text
    code = qr_text(photo.photo)
    assert code is not None and code.startswith("2@")
    assert code == await fleet.qr("worker_1")
    assert await fleet.scan(code, "972501234567") == 200
    await fleet.wait_status("worker_1", "connected")

    stored = next(m for m in telegram.messages.values() if m.kind == "photo")
    edit = await telegram.wait_call(
        "editMessageMedia", lambda c: "connected as +972501234567" in c.text
    )
    assert int(edit.params["message_id"]) == stored.message_id
    assert edit.chat == ADMIN
    assert qr_text(edit.photo) is None  # the QR is gone from the message, not just captioned
    assert qr_text(stored.photo) is None
    assert len(telegram.calls_of("sendPhoto")) == 1
    # the session's QR message is remembered in Redis (it survives a restart of serve)
    saved = await fleet.redis.hgetall("wafleet:bot:qr:worker_1")
    assert saved["chat"] == str(ADMIN)
    assert_no_secrets(telegram)
    print(
        f"\n/provision → 'starting' {answered * 1000:.0f} ms, → QR photo {to_photo * 1000:.0f} ms"
    )
    assert to_photo < 10


@pytest.mark.parametrize(
    "fleet_options",
    [{"simwa": {"first_ttl_ms": 1500, "next_ttl_ms": 1500, "count": 3}}],
    indirect=True,
)
async def test_qr_rotation_edits_the_same_photo_then_offers_a_new_round(
    fleet: Fleet, telegram: FakeTelegram
) -> None:
    telegram.send("/provision 972501234567")
    photo = await telegram.wait_call("sendPhoto")
    first = qr_text(photo.photo)
    stored = next(m for m in telegram.messages.values() if m.kind == "photo")

    rotated = await telegram.wait_call(
        "editMessageMedia", lambda c: qr_text(c.photo) not in (None, first)
    )
    assert int(rotated.params["message_id"]) == stored.message_id
    # all three QRs of the round expire unscanned: the photo turns into "expired" + button
    expired = await telegram.wait_call(
        "editMessageMedia", lambda c: "expired unscanned" in c.text, timeout=20
    )
    assert int(expired.params["message_id"]) == stored.message_id
    assert qr_text(expired.photo) is None
    assert len(telegram.calls_of("sendPhoto")) == 1  # never a second photo
    button = next(b for b in stored.buttons() if "New QR" in b["text"])
    alert = await telegram.wait_call("sendMessage", lambda c: c.chat == CHAT)
    assert "worker_1" in alert.text and "QR codes expired" in alert.text

    mark = len(telegram.calls)
    telegram.press(stored, button["callback_data"])
    await telegram.wait_call("answerCallbackQuery", after=mark)
    again = await telegram.wait_call(
        "editMessageMedia", lambda c: qr_text(c.photo) is not None, after=mark
    )
    assert int(again.params["message_id"]) == stored.message_id
    code = qr_text(again.photo)
    assert code is not None
    assert await fleet.scan(code, "972501234567") == 200
    await telegram.wait_call(
        "editMessageMedia", lambda c: "connected as +972501234567" in c.text, after=mark
    )
    assert len(telegram.calls_of("sendPhoto")) == 1


@pytest.mark.parametrize("fleet_options", [{"proxies": 2}], indirect=True)
async def test_a_dead_proxy_under_three_sessions_is_one_grouped_alert(
    fleet: Fleet, telegram: FakeTelegram
) -> None:
    dead, alive = fleet.proxies
    sids = []
    for n in range(1, 4):
        phone = f"97250123456{n}"
        status, body = await fleet.call(
            "POST", "/api/sessions/provision", {"phone": phone, "proxy": dead.url}
        )
        assert status == 201, body
        sids.append(body["id"])
        assert await fleet.scan(await fleet.qr(body["id"]), phone) == 200
    for sid in sids:
        await fleet.wait_status(sid, "connected")
        # their QR photos went to the alert chat (no one asked in a private chat)

        def shows(c: Call, s: str = sid) -> bool:
            return s in c.text

        await telegram.wait_call("editMessageMedia", shows)
    mark = len(telegram.calls)
    dead.proc.kill()

    def names_moves(c: Call) -> bool:
        return c.chat == CHAT and "→" in c.text and str(alive.port) in c.text

    alert = await telegram.wait_call("sendMessage", names_moves, timeout=30, after=mark)
    for n, sid in enumerate(sids, 1):
        assert sid in alert.text and f"+97250123456{n}" in alert.text
    assert f"wa:***@127.0.0.1:{dead.port}" in alert.text
    assert f"wa:***@127.0.0.1:{alive.port}" in alert.text
    for sid in sids:
        await fleet.wait_status(sid, "connected", timeout=20)
    await telegram_quiet(telegram, seconds=2.5)
    moved = [c for c in telegram.calls[mark:] if c.method == "sendMessage" and names_moves(c)]
    assert len(moved) == 1, [c.text for c in moved]
    assert_no_secrets(telegram)


async def telegram_quiet(fake: FakeTelegram, seconds: float) -> None:
    """Wait until no call reached the fake for ``seconds`` (the notifier's bursts are out)."""

    async def quiet() -> bool:
        return not fake.calls or time.monotonic() - fake.calls[-1].at > seconds

    await eventually(quiet, timeout=30, what="Telegram to go quiet")


async def test_strangers_get_a_refusal_and_nothing_runs(
    fleet: Fleet, telegram: FakeTelegram
) -> None:
    sid = (await fleet.link())["id"]
    await telegram.wait_call("editMessageMedia", lambda c: "connected as" in c.text)
    await telegram_quiet(telegram, 1.6)
    before = await fleet.snapshot()
    mark = len(telegram.calls)

    telegram.send("/provision 972509999999", user=STRANGER)
    telegram.send(f"/restart {sid}", user=STRANGER)
    telegram.send("/addproxy socks5h://a:b@127.0.0.1:9", user=STRANGER)
    telegram.send(f"/delete {sid}", user=STRANGER)
    # buttons replayed in the stranger's own chat (in the operators' group, members may act)
    fake_message = StoredMessage(STRANGER, 999, "text", "old keyboard")
    telegram.press(fake_message, f"s:del!:{sid}", user=STRANGER)
    telegram.press(fake_message, f"s:restart:{sid}", user=STRANGER)

    async def refusals() -> list[Call] | None:
        replies = [
            c for c in telegram.calls[mark:] if c.method == "sendMessage" and c.chat == STRANGER
        ]
        return replies if len(replies) >= 4 else None

    replies = await eventually(refusals, what="four refusals")
    assert all("only answers its operators" in c.text for c in replies)
    await telegram_quiet(telegram, 1.0)
    popups = [c for c in telegram.calls[mark:] if c.method == "answerCallbackQuery"]
    assert len(popups) == 2
    assert all("only answers its operators" in c.params.get("text", "") for c in popups)
    after = await fleet.snapshot()
    assert after == before
    assert len(replies) == 4  # one refusal per attempt, nothing else
    assert not [c for c in telegram.calls[mark:] if c.method in ("sendPhoto", "editMessageMedia")]
    assert (await fleet.status(sid))["status"] == "connected"
    assert fleet.log().count(f"refused user {STRANGER}") == 6


async def test_lang_switches_to_hebrew_per_user(fleet: Fleet, telegram: FakeTelegram) -> None:
    telegram.send("/lang he")
    reply = await telegram.wait_call("sendMessage", lambda c: c.chat == ADMIN)
    assert "מעכשיו אענה לך בעברית" in reply.text
    commands = await telegram.wait_call("setMyCommands", lambda c: c.get("scope") is not None)
    assert commands.get("scope") == {"type": "chat", "chat_id": ADMIN}
    assert any("חיבור" in c["description"] for c in commands.get("commands"))
    assert await fleet.redis.get(f"wafleet:lang:{ADMIN}") == "he"

    mark = len(telegram.calls)
    telegram.send("/stats")
    stats = await telegram.wait_call("sendPhoto", lambda c: c.chat == ADMIN, after=mark)
    assert "חיבורים: 0" in stats.text and "מקומות פנויים: 8 מתוך 8" in stats.text
    # another admin keeps English
    telegram.send("/stats", user=4242)
    other = await telegram.wait_call("sendPhoto", lambda c: c.chat == 4242, after=mark)
    assert "Sessions: 0" in other.text and "Free slots: 8 of 8" in other.text
    # the menu was registered in both languages at start
    menus = telegram.calls_of("setMyCommands")
    assert {c.params.get("language_code") for c in menus} >= {None, "he"}


async def test_bad_arguments_get_a_clear_message_and_change_nothing(
    fleet: Fleet, telegram: FakeTelegram
) -> None:
    await telegram.wait_call("setMyCommands")
    before = await fleet.snapshot()
    cases = {
        "/provision abc": "phone must be 8-15 digits",
        "/qr nosuch": "no session 'nosuch'",
        "/addproxy http://x": "must start with socks5h://",
        "/restart": "Example: <code>/restart worker_1</code>",
        "/provision 972501234567 socks5://wa:pw@127.0.0.1:1": "must start with socks5h://",
    }
    for command, expected in cases.items():
        mark = len(telegram.calls)
        telegram.send(command)
        reply = await telegram.wait_call("sendMessage", lambda c: c.chat == ADMIN, after=mark)
        assert expected in reply.text, (command, reply.text)
        if not command.startswith("/restart"):
            assert reply.text.startswith("❌") and "Nothing was changed" in reply.text
    assert await fleet.snapshot() == before
    assert not telegram.calls_of("sendPhoto")
    assert_no_secrets(telegram)


async def test_flood_limit_is_waited_out_and_the_alert_still_arrives(
    fleet: Fleet, telegram: FakeTelegram
) -> None:
    sid = (await fleet.provision(None))["id"]  # no phone: no pairing-code message
    await telegram.wait_call("sendPhoto")
    old = fleet.workers()[sid]
    telegram.fail_next("sendMessage", times=2, retry_after=2)
    mark = len(telegram.calls)
    fleet.kill_workers()

    alert = await telegram.wait_call(
        "sendMessage", lambda c: c.chat == CHAT and "Worker crashed" in c.text, after=mark
    )
    refused = [c for c in telegram.calls[mark:] if c.status == 429]
    assert len(refused) == 2
    assert alert.at - refused[0].at >= 3.9  # 2 s + 2 s: waited both times, then resent
    assert sid in alert.text and "restarted the worker" in alert.text
    await eventually(lambda: _differs(fleet, sid, old), what="a new worker")


async def _differs(fleet: Fleet, sid: str, old: int) -> bool:
    return fleet.workers().get(sid) not in (None, old)


async def test_console_tour_sessions_proxies_status_delete(
    fleet: Fleet, telegram: FakeTelegram
) -> None:
    sid = (await fleet.link())["id"]
    mark = len(telegram.calls)
    telegram.send("/sessions")
    listing = await telegram.wait_call("sendMessage", lambda c: c.chat == ADMIN, after=mark)
    assert sid in listing.text and "+972501234567" in listing.text and "ping" in listing.text
    assert "wa:***@127.0.0.1:" in listing.text
    shown = telegram.message(ADMIN, next(k[1] for k in telegram.messages if k[0] == ADMIN))
    data = [b["callback_data"] for b in shown.buttons()]
    assert data == [f"s:qr:{sid}", f"s:restart:{sid}", f"s:delete:{sid}"]

    mark = len(telegram.calls)
    telegram.send(f"/status {sid}")
    status = await telegram.wait_call("sendMessage", lambda c: c.chat == ADMIN, after=mark)
    assert "connected" in status.text and "CONNECTED" in status.text

    mark = len(telegram.calls)
    telegram.send("/proxies")
    proxies = await telegram.wait_call("sendMessage", lambda c: c.chat == ADMIN, after=mark)
    assert "1/4" in proxies.text and "0/4" in proxies.text and "active" in proxies.text

    extra = fleet.proxies[0].url.replace(str(fleet.proxies[0].port), "1")
    mark = len(telegram.calls)
    telegram.send(f"/addproxy {extra}")
    added = await telegram.wait_call("sendMessage", lambda c: c.chat == ADMIN, after=mark)
    assert "Added" in added.text and "127.0.0.1:1" in added.text
    await telegram.wait_call("deleteMessage", after=mark)  # the command carried a password
    assert len(await fleet.redis.smembers("wafleet:proxies")) == 3

    mark = len(telegram.calls)
    telegram.send("/proxies")
    await telegram.wait_call("sendMessage", lambda c: c.chat == ADMIN, after=mark)
    listed = max(
        (m for m in telegram.messages.values() if m.chat == ADMIN), key=lambda m: m.message_id
    )
    removable = listed.buttons()
    assert len(removable) == 3
    idle = next(b for b in removable if b["text"] == "Remove #1")  # sorted: port 1 first
    mark = len(telegram.calls)
    telegram.press(listed, idle["callback_data"])
    await telegram.wait_call("editMessageText", after=mark)
    assert len(await fleet.redis.smembers("wafleet:proxies")) == 2

    mark = len(telegram.calls)
    telegram.send(f"/delete {sid}")
    await telegram.wait_call("sendMessage", lambda c: "Delete" in c.text, after=mark)
    confirm = max(
        (m for m in telegram.messages.values() if m.chat == ADMIN), key=lambda m: m.message_id
    )
    yes = next(b for b in confirm.buttons() if b["callback_data"].startswith("s:del!"))
    mark = len(telegram.calls)
    telegram.press(confirm, yes["callback_data"])
    await telegram.wait_call("editMessageText", lambda c: "deleted" in c.text, after=mark)
    status_code, _ = await fleet.call("GET", f"/api/sessions/{sid}/status")
    assert status_code == 404
    assert await fleet.redis.exists("wafleet:bot:qr:" + sid) == 0
    assert_no_secrets(telegram)


@pytest.mark.parametrize("fleet_options", [{"bot": False}], indirect=True)
async def test_without_a_token_the_bot_is_off_and_serve_says_so_once(
    fleet: Fleet, telegram: FakeTelegram
) -> None:
    await fleet.link()
    log = fleet.log()
    assert log.count("Telegram bot: off (TELEGRAM_BOT_TOKEN is not set)") == 1
    assert "aiogram" not in log
    assert not telegram.calls and telegram.polls == 0


async def test_backup_list_and_restore_from_the_chat(fleet: Fleet, telegram: FakeTelegram) -> None:
    sid = (await fleet.link())["id"]

    def latest_admin_message() -> StoredMessage:
        return max(
            (m for m in telegram.messages.values() if m.chat == ADMIN),
            key=lambda m: m.message_id,
        )

    mark = len(telegram.calls)
    telegram.send("/backup")
    done = await telegram.wait_call(
        "editMessageText", lambda c: c.chat == ADMIN and "1 session;" in c.text, after=mark
    )
    assert "backup_" in done.text
    # one message: sent once, then edited with progress and the result
    started = [c for c in telegram.calls[mark:] if c.method == "sendMessage" and c.chat == ADMIN]
    edits = [c for c in telegram.calls[mark:] if c.method == "editMessageText"]
    assert len(started) == 1 and len(edits) >= 2
    assert {c.params["message_id"] for c in edits} == {edits[-1].params["message_id"]}

    mark = len(telegram.calls)
    telegram.send("/restore backup_1999-01-01")
    refused = await telegram.wait_call("sendMessage", lambda c: c.chat == ADMIN, after=mark)
    assert refused.text.startswith("❌") and "backup_1999-01-01" in refused.text

    mark = len(telegram.calls)
    telegram.send("/backups")
    await telegram.wait_call(
        "sendMessage", lambda c: "Backups, newest first" in c.text, after=mark
    )
    listing = latest_admin_message()
    restore = listing.buttons()[0]
    assert restore["callback_data"].startswith("b:restore:backup_")
    mark = len(telegram.calls)
    telegram.press(listing, restore["callback_data"])
    await telegram.wait_call("sendMessage", lambda c: "Every worker stops" in c.text, after=mark)
    confirm = latest_admin_message()
    mark = len(telegram.calls)
    telegram.press(confirm, confirm.buttons()[0]["callback_data"])
    report = await telegram.wait_call(
        "editMessageText", lambda c: "Restored 1 session from" in c.text, timeout=45, after=mark
    )
    assert "1 connected" in report.text
    edits = [c for c in telegram.calls[mark:] if c.method == "editMessageText"]
    assert any("checking" in c.text for c in edits)  # progress, in the same message
    assert {c.params["message_id"] for c in edits} == {report.params["message_id"]}
    assert (await fleet.status(sid))["status"] == "connected"


@pytest.mark.parametrize(
    "fleet_options",
    [{"simwa": {"first_ttl_ms": 4000, "next_ttl_ms": 2000, "count": 5}}],
    indirect=True,
)
async def test_the_qr_message_survives_a_restart_of_serve(
    fleet: Fleet, telegram: FakeTelegram
) -> None:
    telegram.send("/provision 972501234567")
    first = await telegram.wait_call("sendPhoto")
    stored = next(m for m in telegram.messages.values() if m.kind == "photo")
    fleet.stop()
    fleet.start()
    mark = len(telegram.calls)
    edit = await telegram.wait_call(
        "editMessageMedia",
        lambda c: qr_text(c.photo) not in (None, qr_text(first.photo)),
        after=mark,
    )
    assert int(edit.params["message_id"]) == stored.message_id
    assert len(telegram.calls_of("sendPhoto")) == 1


async def test_pairing_code_arrives_as_text_and_links_without_a_scan(
    fleet: Fleet, telegram: FakeTelegram
) -> None:
    telegram.send("/provision 972501234567")
    shown = await telegram.wait_call(
        "sendMessage", lambda c: c.chat == ADMIN and "Pairing code" in c.text
    )
    _, answer = await fleet.call("GET", "/api/sessions/worker_1/qr")
    code = answer["pairingCode"]
    assert code and code in shown.text
    async with fleet.http.post(
        fleet.simwa + "/control/pair", json={"code": code, "phone": "972501234567"}
    ) as r:
        assert r.status == 200
    await fleet.wait_status("worker_1", "connected")
    await telegram.wait_call("editMessageMedia", lambda c: "connected as +972501234567" in c.text)
    assert_no_secrets(telegram)


# what the operator reads: every word from the catalogue ----------------------------------

# What may stay Latin in a Hebrew alert: session ids, phone numbers, masked proxy URLs (and
# the pairing code a new linking round shows, and bot commands such as /addproxy).
NOT_WORDS = re.compile(
    r"<[^>]+>|worker_\d+|\+\d+|socks5h://[^\s<]*|\b[A-Z0-9]{4}-[A-Z0-9]{4}\b|/[a-z]+\b"
)
LATIN_WORD = re.compile(r"[A-Za-z]+")
HEBREW = re.compile(r"[\u0590-\u05FF]")


def latin_words(text: str) -> list[str]:
    return LATIN_WORD.findall(NOT_WORDS.sub(" ", html.unescape(text)))


@pytest.mark.parametrize("fleet_options", [{"proxies": 2}], indirect=True)
async def test_hebrew_alerts_have_no_english_words(fleet: Fleet, telegram: FakeTelegram) -> None:
    telegram.send("/lang he", chat=CHAT)
    await telegram.wait_call("sendMessage", lambda c: c.chat == CHAT and "עברית" in c.text)
    dying, spare = fleet.proxies
    phones = {"moved": "972501230001", "logged_out": "972501230002"}
    sids = {}
    for role, proxy in (("moved", dying), ("logged_out", spare)):
        status, body = await fleet.call(
            "POST", "/api/sessions/provision", {"phone": phones[role], "proxy": proxy.url}
        )
        assert status == 201, body
        sids[role] = body["id"]
        assert await fleet.scan(await fleet.qr(body["id"]), phones[role]) == 200
        await fleet.wait_status(body["id"], "connected")
    await telegram_quiet(telegram, seconds=2.0)
    mark = len(telegram.calls)

    def alert(icon: str, sid: str) -> Callable[[Call], bool]:
        return lambda c: c.chat == CHAT and icon in c.text and sid in c.text

    # logged out at the phone
    assert await fleet.control("logout", phone=phones["logged_out"]) == 200
    await telegram.wait_call("sendMessage", alert("🚪", sids["logged_out"]), after=mark)
    # the proxy dies under a session: failover
    dying.proc.kill()
    await telegram.wait_call("sendMessage", alert("🛑", sids["moved"]), timeout=30, after=mark)
    await fleet.wait_status(sids["moved"], "connected", timeout=20)
    # the worker stops answering (frozen, still alive): the watchdog restarts it
    frozen = fleet.workers()[sids["moved"]]
    os.kill(frozen, signal.SIGSTOP)
    try:
        await telegram.wait_call("sendMessage", alert("🐕", sids["moved"]), timeout=30, after=mark)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(frozen, signal.SIGCONT)
    await telegram_quiet(telegram, seconds=2.0)

    alerts = [c for c in telegram.calls[mark:] if c.method == "sendMessage" and c.chat == CHAT]
    for call in alerts:
        assert HEBREW.search(call.text), call.text
        assert latin_words(call.text) == [], call.text
    shown = "\n".join(c.text for c in alerts)
    assert f"wa:***@127.0.0.1:{spare.port}" in shown  # the move names the new proxy
    assert_no_secrets(telegram)


def _render_en(alerts: list[Alert]) -> str:
    i18n = build_i18n()
    with i18n.context(), i18n.use_locale("en"):
        return "\n\n".join(texts.alert_burst(alerts))


def test_a_disconnect_and_the_failover_that_fixed_it_are_told_once() -> None:
    old, new = "socks5h://wa:***@127.0.0.1:1", "socks5h://wa:***@127.0.0.1:2"
    burst = [
        Alert(
            AlertKind.DISCONNECTED,
            "worker_1",
            "972501234567",
            proxy=old,
            facts={"code": "connection_lost"},
            done=Done.RECONNECTING,
        ),
        Alert(
            AlertKind.DISCONNECTED,
            "worker_2",
            "972501234568",
            proxy=new,
            facts={"code": "connection_lost"},
            done=Done.RECONNECTING,
        ),
        Alert(
            AlertKind.PROXY_BAD,
            proxy=old,
            facts={"error": "ProxyConnectionError"},
            done=Done.MOVED_SESSIONS,
            moves=(Move("worker_1", "972501234567", old, new),),
        ),
    ]
    text = _render_en(burst)
    assert text.count("worker_1") == 1, text  # only in the move
    assert "moved its sessions" in text
    # a disconnect the failover did not touch is still told
    assert text.count("worker_2") == 1 and "reconnects by itself" in text
    assert "Disconnected</b> (1)" in text


# routers and the outbox -----------------------------------------------------------------


async def test_two_dispatchers_in_one_process_both_answer(
    telegram: FakeTelegram, redis_client: aioredis.Redis
) -> None:
    bot = Bot(
        telegram.token,
        session=AiohttpSession(api=TelegramAPIServer.from_base(telegram.url)),
        default=DefaultBotProperties(parse_mode=ParseMode.HTML),
    )
    i18n = build_i18n()
    try:
        for n in (1, 2):
            dp = Dispatcher(name=f"wafleet-{n}")
            RedisI18nMiddleware(i18n, redis_client).setup(dp)
            dp.include_routers(*get_routers())
            update = Update.model_validate(
                {
                    "update_id": n,
                    "message": {
                        "message_id": n,
                        "date": int(time.time()),
                        "chat": {"id": ADMIN, "type": "private", "first_name": "op"},
                        "from": {"id": ADMIN, "is_bot": False, "first_name": "op"},
                        "text": "/help",
                        "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
                    },
                }
            )
            await dp.feed_update(bot, update)
    finally:
        await bot.session.close()
    answers = [c for c in telegram.calls_of("sendMessage", ADMIN) if "/provision" in c.text]
    assert len(answers) == 2


def _notifier(telegram: FakeTelegram, redis: aioredis.Redis) -> TelegramNotifier:
    bot = Bot(
        telegram.token,
        session=AiohttpSession(api=TelegramAPIServer.from_base(telegram.url)),
        default=DefaultBotProperties(parse_mode=ParseMode.HTML),
    )
    return TelegramNotifier(bot, redis, build_i18n(), CHAT, SystemClock(), window_s=0.3)


async def test_an_alert_queued_twice_or_again_after_sending_reaches_the_chat_once(
    telegram: FakeTelegram, redis_client: aioredis.Redis
) -> None:
    notifier = _notifier(telegram, redis_client)
    alert = Alert(
        AlertKind.WATCHDOG_RESTART,
        "worker_7",
        "972501234567",
        facts={"seconds": 9},
        done=Done.RESTARTED_WORKER,
    )
    await notifier.notify(alert)
    await notifier.notify(alert)  # raised twice (e.g. a retried call): the same id
    notifier.start()
    try:
        sent = await telegram.wait_call("sendMessage", lambda c: "worker_7" in c.text)
        assert "(1)" in sent.text and sent.text.count("worker_7") == 1, sent.text
        assert "no ping for 9 s" in sent.text and "restarted the worker" in sent.text
        await notifier.notify(alert)  # once more after it went out: a repeat, dropped

        async def drained() -> bool:
            return await redis_client.xlen("wafleet:bot:outbox") == 0

        await eventually(drained, what="the outbox to drain")
        await telegram_quiet(telegram, seconds=1.0)
    finally:
        await notifier.close()
        await notifier.bot.session.close()
    assert len([c for c in telegram.calls_of("sendMessage") if "worker_7" in c.text]) == 1


async def test_an_alert_raised_just_before_serve_is_killed_arrives_after_it_restarts(
    fleet: Fleet, telegram: FakeTelegram
) -> None:
    sid = (await fleet.link())["id"]
    await telegram.wait_call("editMessageMedia", lambda c: "connected as" in c.text)
    await telegram_quiet(telegram, seconds=2.0)
    mark = len(telegram.calls)

    def logged_out(c: Call) -> bool:
        return c.chat == CHAT and "Logged out" in c.text and sid in c.text

    async def queued() -> bool:
        reply = await fleet.redis.xrange("wafleet:bot:outbox")
        # decoded (decode_responses=True), but redis-py types every reply bytes | str
        entries = cast("list[tuple[str, dict[str, str]]]", reply)
        return any('"logged_out"' in fields.get("alert", "") for _, fields in entries)

    assert await fleet.control("logout", phone="972501234567") == 200
    await eventually(queued, what="the logout alert in the outbox")
    fleet.kill()  # SIGKILL: no shutdown, no grace for queued messages
    assert not [c for c in telegram.calls[mark:] if c.method == "sendMessage" and logged_out(c)]

    fleet.start()
    alert = await telegram.wait_call("sendMessage", logged_out, timeout=30, after=mark)
    assert "+972501234567" in alert.text
    await telegram_quiet(telegram, seconds=2.0)
    told = [c for c in telegram.calls[mark:] if c.method == "sendMessage" and logged_out(c)]
    assert len(told) == 1
    assert await fleet.redis.xlen("wafleet:bot:outbox") == 0


SAMPLE_FACTS: dict[AlertKind, dict[str, str | int]] = {
    AlertKind.DISCONNECTED: {"code": "connection_lost", "reason": "websocket closed"},
    AlertKind.LOGGED_OUT: {"reason": "logged_out"},
    AlertKind.PROXY_BAD: {"error": "ProxyConnectionError: refused"},
    AlertKind.FAILOVER_IMPOSSIBLE: {"sessions": 2},
    AlertKind.WATCHDOG_RESTART: {"seconds": 200},
    AlertKind.WORKER_CRASHED: {"exit_code": 137},
    AlertKind.CRASH_LOOP: {"exits": 6, "minutes": 5},
    AlertKind.CAPACITY_LOW: {"free": 1, "total": 8},
    AlertKind.PHONE_MISMATCH: {"expected": "972501234567", "linked": "972501234568"},
    AlertKind.BACKUP_DONE: {"archive": "backup_2026-01-01.zip", "size_bytes": 10, "sessions": 1},
    AlertKind.BACKUP_FAILED: {"code": "disk_full", "error": "OSError: No space left on device"},
    AlertKind.RESTORE_DONE: {"backup": "backup_2026-01-01", "sessions": 1, "connected": 1},
}


@pytest.mark.parametrize("kind", [k for k in AlertKind if k in texts.ALERT_ICONS])
def test_every_alert_kind_reads_in_hebrew_without_english(kind: AlertKind) -> None:
    proxy = "socks5h://wa:***@127.0.0.1:1080"
    alert = Alert(
        kind,
        "worker_3",
        "972501234567",
        proxy=proxy,
        facts=SAMPLE_FACTS.get(kind, {}),
        done=next(iter(Done)),
        moves=(Move("worker_3", "972501234567", proxy, None),),
    )
    i18n = build_i18n()
    for done in Done:
        with i18n.context(), i18n.use_locale("he"):
            text = "\n".join(texts.alert_burst([replace(alert, done=done)]))
        # archive and backup names are ids too
        assert latin_words(re.sub(r"backup_[\d-]+(\.zip)?", " ", text)) == [], text
