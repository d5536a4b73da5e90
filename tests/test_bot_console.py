"""The console one level up: alerts you can act on, find by phone, viewers, topics, long lists.

As in ``test_bot.py``: aiogram's real client talks to the fake Bot API; Redis, microsocks,
worker processes and the simulated network are real. Alerts of kinds that need a swarm or
fake minutes to happen for real are put into the bot's outbox (the Redis stream the
notifier reads), so they reach the chat along the same path as any other alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from redis.exceptions import ResponseError

from bot.app import build_bot, build_dispatcher
from bot.i18n import CatalogueI18n, build_i18n
from bot.keyboards import (
    AskCb,
    BackupAction,
    BackupCb,
    LangCb,
    PageCb,
    ProxyCb,
    SessionAction,
    SessionCb,
    View,
    ViewCb,
)
from bot.notifier import TelegramNotifier
from bot.outbox import AlertOutbox
from bot.roles import READ_ONLY_BUTTONS, READ_ONLY_COMMANDS, button_reads_only
from core.backups import BackupService
from core.clock import ManualClock, SystemClock
from core.errors import ConfigError
from core.metrics import Metrics
from core.models import Status
from core.notifier import Alert, AlertKind, Done, LogNotifier, Move
from core.process_runner import ProcessRunner, find_workers
from core.proxies import ProxyPool
from core.proxy_url import ProxyUrl
from core.sessions import SessionService
from core.settings import Settings
from core.store import Store
from tests import fake_telegram
from tests.fake_telegram import (
    ADMIN,
    CHAT,
    VIEWER,
    Call,
    FakeTelegram,
    StoredMessage,
    bot_env,
)
from tests.fleet import API_KEY, PHONE, WEBHOOK_SECRET, Fleet, eventually
from tests.test_bot import assert_no_secrets, qr_text, telegram_quiet

telegram = fake_telegram.telegram  # the fixture

VIEWER_NO = "you are a viewer here"
LIMIT_TEXT = 4096
LIMIT_BUTTONS = 100
LIMIT_DATA = 64


@pytest.fixture
def fleet_options(telegram: FakeTelegram, request: pytest.FixtureRequest) -> dict[str, Any]:
    return bot_env(telegram, **dict(getattr(request, "param", {})))


def newest(fake: FakeTelegram, chat: int) -> StoredMessage:
    return max((m for m in fake.messages.values() if m.chat == chat), key=lambda m: m.message_id)


def data_of(message: StoredMessage) -> list[str]:
    return [b["callback_data"] for b in message.buttons()]


def to(chat: int, *words: str) -> Callable[[Call], bool]:
    return lambda c: c.chat == chat and all(w in c.text for w in words)


async def answered(fake: FakeTelegram, mark: int, chat: int) -> Call:
    """The bot's next message (text or picture) to ``chat``."""

    async def found() -> Call | None:
        for call in fake.calls[mark:]:
            sent = call.method in ("sendMessage", "sendPhoto") and call.status == 200
            if sent and call.chat == chat:
                return call
        return None

    return await eventually(found, 15, f"an answer in {chat}")


# roles ----------------------------------------------------------------------------------


async def test_a_viewer_reads_and_is_refused_every_action(
    fleet: Fleet, telegram: FakeTelegram
) -> None:
    sid = (await fleet.link())["id"]
    await telegram.wait_call("editMessageMedia", lambda c: "connected as" in c.text)
    await telegram_quiet(telegram, 1.6)
    pid = fleet.workers()[sid]
    before = await fleet.snapshot()

    # what a viewer may do: every read-only command, and the read-only buttons
    reads = {
        "/help": "/find",
        "/start": "/sessions",
        "/sessions": sid,
        "/sessions connected": sid,
        f"/status {sid}": "Phone: +972501234567",
        "/status +972501234567": f"<b>{sid}</b>: connected",
        "/find 50123": sid,
        "/proxies": "load in sessions / cap",
        "/stats": "",  # a picture or a text: another part of the console says what
        "/backups": "No backups yet",
    }
    for command, expected in reads.items():
        mark = len(telegram.calls)
        telegram.send(command, user=VIEWER)
        reply = await answered(telegram, mark, VIEWER)
        assert VIEWER_NO not in reply.text and expected in reply.text, (command, reply.text)
    listing = next(m for m in telegram.messages.values() if m.chat == VIEWER and sid in m.text)
    read_buttons = {
        SessionCb(action=SessionAction.STATUS, sid=sid).pack(): "Phone: +972501234567",
        ViewCb(what=View.PROXIES).pack(): "load in sessions / cap",
        ViewCb(what=View.SESSIONS).pack(): "Sessions (1), page 1 of 1",
    }
    for data, expected in read_buttons.items():
        mark = len(telegram.calls)
        telegram.press(listing, data, user=VIEWER)
        await telegram.wait_call("sendMessage", to(VIEWER, expected), after=mark)
    mark = len(telegram.calls)
    telegram.press(listing, PageCb(page=0).pack(), user=VIEWER)

    async def tried_edit() -> bool:  # the page it shows: Telegram answers "not modified"
        return any(c.method == "editMessageText" for c in telegram.calls[mark:])

    await eventually(tried_edit, what="the page shown again")
    await telegram.wait_call("answerCallbackQuery", after=mark)

    # every action, as a command (an unknown command counts as one) ...
    proxy_id = ProxyUrl.parse(fleet.proxies[0].url).id
    actions = [
        "/provision 972509999999",
        f"/qr {sid}",
        f"/restart {sid}",
        f"/delete {sid}",
        "/addproxy socks5h://a:b@127.0.0.1:9",
        "/backup",
        "/restore backup_2026-01-01",
        "/nosuchcommand",
    ]
    # ... and as every button that is not read-only
    presses = [
        SessionCb(action=a, sid=sid).pack() for a in SessionAction if a != SessionAction.STATUS
    ]
    presses += [ProxyCb(pid=proxy_id).pack(), AskCb(what="proxy").pack()]
    presses += [BackupCb(action=a, id="backup_2026-01-01").pack() for a in BackupAction]
    assert not [p for p in presses if button_reads_only(p)]
    mark = len(telegram.calls)
    sent = {command: telegram.send(command, user=VIEWER) for command in actions}
    for data in presses:
        telegram.press(listing, data, user=VIEWER)
    # a named viewer is a viewer in the alert chat too, where others may act
    telegram.send(f"/restart {sid}", user=VIEWER, chat=CHAT)
    telegram.send("just chatting in the group", user=VIEWER, chat=CHAT)

    async def refusals() -> list[Call] | None:
        replies = [
            c
            for c in telegram.calls[mark:]
            if c.method == "sendMessage" and c.chat in (VIEWER, CHAT)
        ]
        return replies if len(replies) >= len(actions) + 1 else None

    replies = await eventually(refusals, what="a refusal per command")
    await telegram_quiet(telegram, 1.0)
    replies = [
        c for c in telegram.calls[mark:] if c.method == "sendMessage" and c.chat in (VIEWER, CHAT)
    ]
    assert len(replies) == len(actions) + 1, [c.text for c in replies]  # none to the chatter
    assert all(VIEWER_NO in c.text for c in replies), [c.text for c in replies]
    popups = [c for c in telegram.calls[mark:] if c.method == "answerCallbackQuery"]
    assert len(popups) == len(presses)
    assert all(VIEWER_NO in c.params.get("text", "") for c in popups)
    assert not [
        c
        for c in telegram.calls[mark:]
        if c.method in ("sendPhoto", "editMessageMedia", "editMessageText")
    ]
    # the one message deleted: the refused /addproxy, whose URL holds a password
    deleted = [int(c.params["message_id"]) for c in telegram.calls_of("deleteMessage", VIEWER)]
    assert deleted == [sent["/addproxy socks5h://a:b@127.0.0.1:9"]]
    assert await fleet.snapshot() == before
    assert fleet.workers()[sid] == pid
    assert fleet.log().count(f"refused viewer {VIEWER}") == len(actions) + len(presses) + 1


def test_the_role_table_names_only_what_exists() -> None:
    """A typo in the table would silently refuse a read (or, worse, pass an action)."""
    commands = {"start", "help", "sessions", "status", "find", "proxies", "backups", "lang"}
    commands |= {"stats", "nodes"}  # built in another part of the console
    assert commands == READ_ONLY_COMMANDS
    assert button_reads_only(LangCb(code="he").pack())
    assert button_reads_only(PageCb(page=3, status="failed").pack())
    assert {"pg", "lang", "s:status", "view:proxies", "view:sessions"} == READ_ONLY_BUTTONS


# alerts you can act on --------------------------------------------------------------------

SID = "<sid>"  # stands for the linked session in the table below

BUTTONS: dict[AlertKind, list[str]] = {
    AlertKind.LOGGED_OUT: [f"s:newqr:{SID}"],
    AlertKind.QR_EXPIRED: [f"s:newqr:{SID}"],
    AlertKind.CRASH_LOOP: [f"s:restart:{SID}", f"s:status:{SID}"],
    AlertKind.WORKER_CRASHED: [f"s:restart:{SID}", f"s:status:{SID}"],
    AlertKind.WATCHDOG_RESTART: [f"s:restart:{SID}", f"s:status:{SID}"],
    AlertKind.UNSCHEDULABLE: [f"s:restart:{SID}", f"s:status:{SID}"],
    AlertKind.PROXY_BAD: ["view:proxies"],
    AlertKind.FAILOVER_IMPOSSIBLE: ["view:proxies", "ask:proxy"],
    AlertKind.CAPACITY_LOW: ["ask:proxy"],
    AlertKind.NODE_LOST: [f"s:status:{SID}", "view:sessions"],
}
TITLES = {
    AlertKind.LOGGED_OUT: "Logged out on the phone",
    AlertKind.QR_EXPIRED: "QR codes expired unscanned",
    AlertKind.CRASH_LOOP: "Worker keeps crashing",
    AlertKind.WORKER_CRASHED: "Worker crashed",
    AlertKind.WATCHDOG_RESTART: "No keep-alive ping",
    AlertKind.UNSCHEDULABLE: "No node has room",
    AlertKind.PROXY_BAD: "Proxy dead",
    AlertKind.FAILOVER_IMPOSSIBLE: "Failover impossible",
    AlertKind.CAPACITY_LOW: "Proxy capacity running low",
    AlertKind.NODE_LOST: "Swarm node lost",
}


def sample(kind: AlertKind, sid: str, proxy: str) -> Alert:
    every: dict[AlertKind, dict[str, str | int]] = {
        AlertKind.CRASH_LOOP: {"exits": 6, "minutes": 5},
        AlertKind.WORKER_CRASHED: {"exit_code": 137},
        AlertKind.WATCHDOG_RESTART: {"seconds": 200},
        AlertKind.FAILOVER_IMPOSSIBLE: {"sessions": 1},
        AlertKind.CAPACITY_LOW: {"free": 1, "total": 8},
        AlertKind.NODE_LOST: {"node": "n1", "sessions": 1, "sessionIds": sid, "notMoved": 0},
    }
    facts = every.get(kind, {})
    fleet_wide = kind in (
        AlertKind.PROXY_BAD,
        AlertKind.FAILOVER_IMPOSSIBLE,
        AlertKind.CAPACITY_LOW,
        AlertKind.NODE_LOST,
    )
    return Alert(
        kind,
        None if fleet_wide else sid,
        None if fleet_wide else PHONE,
        facts=facts,
        proxy=proxy if kind is AlertKind.PROXY_BAD else None,
    )


@pytest.mark.parametrize("fleet_options", [{"proxies": 2}], indirect=True)
async def test_every_alert_carries_its_buttons_and_each_does_what_it_says(
    fleet: Fleet, telegram: FakeTelegram
) -> None:
    sid = (await fleet.link())["id"]
    await telegram.wait_call("editMessageMedia", lambda c: "connected as" in c.text)
    await telegram_quiet(telegram, 1.6)
    outbox = AlertOutbox(fleet.redis)
    masked = (await fleet.status(sid))["proxy"]
    alerts: dict[AlertKind, StoredMessage] = {}
    for kind, wanted in BUTTONS.items():
        mark = len(telegram.calls)
        await outbox.put(sample(kind, sid, masked))
        await telegram.wait_call("sendMessage", to(CHAT, TITLES[kind]), after=mark)
        alerts[kind] = newest(telegram, CHAT)
        assert data_of(alerts[kind]) == [w.replace(SID, sid) for w in wanted], kind

    # Restart: a new worker, and the session links again with its saved credentials
    old = fleet.workers()[sid]
    mark = len(telegram.calls)
    telegram.press(alerts[AlertKind.CRASH_LOOP], f"s:restart:{sid}")
    await telegram.wait_call("sendMessage", to(CHAT, "Restarting", sid), after=mark)
    await eventually(lambda: _new_worker(fleet, sid, old), what="a new worker")
    await fleet.wait_status(sid, "connected")
    # Status: the session as it is now
    mark = len(telegram.calls)
    telegram.press(alerts[AlertKind.WATCHDOG_RESTART], f"s:status:{sid}")
    await telegram.wait_call(
        "sendMessage", to(CHAT, f"<b>{sid}</b>: connected", "Phone: +972501234567"), after=mark
    )
    # Proxies: the pool with its load
    mark = len(telegram.calls)
    telegram.press(alerts[AlertKind.PROXY_BAD], "view:proxies")
    pool = await telegram.wait_call("sendMessage", to(CHAT, "load in sessions / cap"), after=mark)
    assert "1/4" in pool.text and "0/4" in pool.text
    # Sessions (a node lost): the list
    mark = len(telegram.calls)
    telegram.press(alerts[AlertKind.NODE_LOST], "view:sessions")
    await telegram.wait_call("sendMessage", to(CHAT, "Sessions (1)", sid), after=mark)

    # Add proxy: asks; the admin's next message in that chat is the URL, deleted once read
    spare = fleet.proxies[0].url.replace(str(fleet.proxies[0].port), "1")
    mark = len(telegram.calls)
    telegram.press(alerts[AlertKind.CAPACITY_LOW], "ask:proxy")
    await telegram.wait_call("sendMessage", to(CHAT, "Send the proxy URL"), after=mark)
    sent = telegram.send(spare, chat=CHAT)
    added = await telegram.wait_call("sendMessage", to(CHAT, "Added"), after=mark)
    assert "wa:***@127.0.0.1:1" in added.text
    gone = await telegram.wait_call("deleteMessage", after=mark)
    assert int(gone.params["message_id"]) == sent and gone.chat == CHAT
    assert spare in await fleet.members("wafleet:proxies")
    # a bad URL: a clear error, deleted all the same, nothing added, and the wait is over
    mark = len(telegram.calls)
    telegram.press(alerts[AlertKind.FAILOVER_IMPOSSIBLE], "ask:proxy")
    await telegram.wait_call("sendMessage", to(CHAT, "Send the proxy URL"), after=mark)
    sent = telegram.send("http://wa:s3cret-pw@127.0.0.1:2", chat=CHAT)
    refused = await telegram.wait_call("sendMessage", to(CHAT, "❌"), after=mark)
    assert "socks5h://" in refused.text and "Nothing was changed" in refused.text
    gone = await telegram.wait_call("deleteMessage", after=mark)
    assert int(gone.params["message_id"]) == sent
    assert len(await fleet.members("wafleet:proxies")) == 3
    mark = len(telegram.calls)
    telegram.send("socks5h://wa:pw@127.0.0.1:3", chat=CHAT)  # no longer awaited: ignored
    await telegram_quiet(telegram, 1.0)
    answers = [
        c
        for c in telegram.calls[mark:]
        if c.method == "deleteMessage"
        or (c.method == "sendMessage" and ("Added" in c.text or "❌" in c.text))
    ]
    assert not answers  # (an alert of the restart above may still come: not an answer)
    assert len(await fleet.members("wafleet:proxies")) == 3

    # New QR, on a real logout: the alert carries it and it starts a new round
    mark = len(telegram.calls)
    assert await fleet.control("logout", phone=PHONE) == 200
    await telegram.wait_call("sendMessage", to(CHAT, "Logged out", sid), timeout=20, after=mark)
    logged_out = newest(telegram, CHAT)
    if "Logged out" not in logged_out.text:  # the new round's QR photo came after it
        logged_out = next(
            m
            for m in telegram.messages.values()
            if m.chat == CHAT
            and "Logged out" in m.text
            and m.message_id > alerts[AlertKind.NODE_LOST].message_id
        )
    assert data_of(logged_out) == [f"s:newqr:{sid}"]
    old = fleet.workers()[sid]
    mark = len(telegram.calls)
    telegram.press(logged_out, f"s:newqr:{sid}")
    await eventually(lambda: _new_worker(fleet, sid, old), what="a new worker for a new round")
    shown = await telegram.wait_call(
        "editMessageMedia", lambda c: qr_text(c.photo) is not None, timeout=20, after=mark
    )
    assert shown.chat == CHAT
    # and a real crash carries Restart and Status
    await telegram_quiet(telegram, 1.6)
    mark = len(telegram.calls)
    fleet.kill_workers()
    await telegram.wait_call("sendMessage", to(CHAT, "Worker crashed", sid), after=mark)
    assert data_of(newest(telegram, CHAT)) == [f"s:restart:{sid}", f"s:status:{sid}"]
    assert_no_secrets(telegram)


async def _new_worker(fleet: Fleet, sid: str, old: int) -> bool:
    return fleet.workers().get(sid) not in (None, old)


# a disconnect and the failover that fixed it ------------------------------------------------


@pytest.mark.parametrize("fleet_options", [{"proxies": 2}], indirect=True)
async def test_a_proxy_dying_under_a_session_reads_as_the_move_only(
    fleet: Fleet, telegram: FakeTelegram
) -> None:
    dying, spare = fleet.proxies
    status, body = await fleet.call(
        "POST", "/api/sessions/provision", {"phone": PHONE, "proxy": dying.url}
    )
    assert status == 201, body
    sid = body["id"]
    assert await fleet.scan(await fleet.qr(sid), PHONE) == 200
    await fleet.wait_status(sid, "connected")
    await telegram_quiet(telegram, 2.0)
    mark = len(telegram.calls)
    dying.proc.kill()
    moved = await telegram.wait_call(
        "sendMessage", to(CHAT, "→", f":{spare.port}"), timeout=30, after=mark
    )
    assert sid in moved.text
    await fleet.wait_status(sid, "connected", timeout=20)
    await telegram_quiet(telegram, 2.5)
    told = [c.text for c in telegram.calls[mark:] if c.method == "sendMessage" and c.chat == CHAT]
    assert not [t for t in told if "reconnects by itself" in t], told
    assert not [t for t in told if "Disconnected" in t], told
    assert len([t for t in told if "Proxy dead" in t]) == 1, told


async def test_a_disconnect_waits_for_the_failover_that_explains_it(
    telegram: FakeTelegram, redis_client: aioredis.Redis
) -> None:
    """The failover comes seconds after the disconnect (the worker's next try, then our own
    probe): longer than one burst. Told apart, the chat read "reconnects by itself" and
    then "moved to another proxy" about the same session."""
    old, new = "socks5h://wa:***@127.0.0.1:1", "socks5h://wa:***@127.0.0.1:2"
    clock = ManualClock()
    bot = Bot(
        telegram.token,
        session=AiohttpSession(api=TelegramAPIServer.from_base(telegram.url)),
        default=DefaultBotProperties(parse_mode=ParseMode.HTML),
    )
    notifier = TelegramNotifier(bot, redis_client, build_i18n(), CHAT, clock, window_s=0.3)

    def lost(sid: str, proxy: str) -> Alert:
        return Alert(
            AlertKind.DISCONNECTED,
            sid,
            PHONE,
            proxy=proxy,
            facts={"code": "connection_lost"},
            done=Done.RECONNECTING,
        )

    async def read(n: int) -> bool:
        """``n`` alerts taken by the notifier (read, not yet acknowledged)."""
        try:
            pending = await redis_client.xpending("wafleet:bot:outbox", "telegram")
        except ResponseError:  # the notifier has not made its group yet
            return False
        return int(pending["pending"]) >= n

    notifier.start()
    try:
        await notifier.notify(lost("worker_1", old))  # its proxy died
        await notifier.notify(lost("worker_2", new))  # a real blip: nothing follows
        await eventually(lambda: read(2), what="the disconnects read")
        clock.advance(1.0)  # the burst window is over
        await notifier.deliver(lambda: bot.send_message(ADMIN, "meanwhile"))
        await telegram_quiet(telegram, seconds=1.0)
        assert not telegram.calls_of("sendMessage", CHAT)  # held, not told yet
        await notifier.notify(
            Alert(
                AlertKind.PROXY_BAD,
                proxy=old,
                facts={"error": "ProxyConnectionError"},
                done=Done.MOVED_SESSIONS,
                moves=(Move("worker_1", PHONE, old, new),),
            )
        )
        await eventually(lambda: read(3), what="the failover read")
        clock.advance(10.0)  # past the hold: the rest is told as it is
        sent = await telegram.wait_call("sendMessage", lambda c: c.chat == CHAT)
        await telegram_quiet(telegram, seconds=1.0)
    finally:
        await notifier.close()
        await bot.session.close()
    assert len(telegram.calls_of("sendMessage", CHAT)) == 1
    assert sent.text.count("worker_1") == 1 and "moved its sessions" in sent.text, sent.text
    assert sent.text.count("worker_2") == 1, sent.text
    assert sent.text.count("reconnects by itself") == 1, sent.text  # worker_2's only


# find by what you know ----------------------------------------------------------------------


async def test_find_and_status_and_qr_by_phone(fleet: Fleet, telegram: FakeTelegram) -> None:
    first = (await fleet.link())["id"]
    second = await fleet.provision_settled(PHONE)  # the same phone, a second session
    other = await fleet.provision_settled("972509876543")
    await telegram_quiet(telegram, 1.6)

    async def ask(command: str) -> StoredMessage:
        mark = len(telegram.calls)
        telegram.send(command)
        await answered(telegram, mark, ADMIN)
        return newest(telegram, ADMIN)

    found = await ask("/find 1234")
    assert "(2)" in found.text and first in found.text and second in found.text
    assert other not in found.text
    assert data_of(found)[:3] == [f"s:qr:{first}", f"s:restart:{first}", f"s:delete:{first}"]
    found = await ask("/find +972 50 987")
    assert other in found.text and first not in found.text
    assert "No session has a phone or id containing" in (await ask("/find 5555555")).text

    one = await ask("/status 972509876543")
    assert f"<b>{other}</b>:" in one.text and "Phone: +972509876543" in one.text
    assert data_of(one) == [f"s:qr:{other}", f"s:restart:{other}", f"s:delete:{other}"]
    assert f"<b>{first}</b>: connected" in (await ask(f"/status {first}")).text
    both = await ask("/status +972501234567")
    assert "2 sessions have the phone +972501234567" in both.text
    assert {f"s:qr:{first}", f"s:qr:{second}"} <= set(data_of(both))
    none = await ask("/status +972500000000")
    assert none.text.startswith("❌") and "972500000000" in none.text

    mark = len(telegram.calls)
    telegram.send("/qr +972509876543")
    photo = await telegram.wait_call("sendPhoto", lambda c: c.chat == ADMIN, after=mark)
    assert qr_text(photo.photo) == await fleet.qr(other)
    assert "2 sessions have the phone" in (await ask("/qr 972501234567")).text


# alerts to a group, each kind to its own topic ------------------------------------------------


@pytest.mark.parametrize(
    "fleet_options",
    [{"TELEGRAM_ALERT_TOPICS": "default=1, worker_crashed=7,proxy_bad=9"}],
    indirect=True,
)
async def test_each_alert_kind_goes_to_its_topic(fleet: Fleet, telegram: FakeTelegram) -> None:
    sid = (await fleet.link())["id"]
    photo = await telegram.wait_call("sendPhoto", lambda c: c.chat == CHAT)
    assert photo.thread == 1  # QR photos: no topic of their own here, so the default
    await telegram_quiet(telegram, 1.6)
    outbox = AlertOutbox(fleet.redis)
    masked = (await fleet.status(sid))["proxy"]
    mark = len(telegram.calls)
    for kind in (AlertKind.WORKER_CRASHED, AlertKind.LOGGED_OUT, AlertKind.PROXY_BAD):
        await outbox.put(sample(kind, sid, masked))  # one burst

    async def three() -> list[Call] | None:
        sent = [c for c in telegram.calls[mark:] if c.method == "sendMessage" and c.chat == CHAT]
        return sent if len(sent) >= 3 else None

    sent = await eventually(three, what="three topic messages")
    by_thread = {c.thread: c.text for c in sent}
    assert len(sent) == 3 and set(by_thread) == {1, 7, 9}
    assert "Worker crashed" in by_thread[7] and "Logged out" not in by_thread[7]
    assert "Logged out" in by_thread[1] and "Proxy dead" not in by_thread[1]
    assert "Proxy dead" in by_thread[9] and "Worker crashed" not in by_thread[9]
    stored = {m.thread: m for m in telegram.messages.values() if m.chat == CHAT and m.thread}
    assert data_of(stored[7]) == [f"s:restart:{sid}", f"s:status:{sid}"]
    assert data_of(stored[1]) == [f"s:newqr:{sid}"]
    assert data_of(stored[9]) == ["view:proxies"]


def test_bad_alert_topics_or_roles_are_refused_at_start() -> None:
    base = {"API_KEY": API_KEY, "WEBHOOK_SECRET": WEBHOOK_SECRET}
    ok = Settings.from_env({**base, "TELEGRAM_ALERT_TOPICS": " default=3 , capacity_low=12 "})
    assert ok.telegram_alert_topics == {"default": 3, "capacity_low": 12}
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(
            {
                **base,
                "TELEGRAM_ALERT_TOPICS": "default=1,proxy_bad,proxydead=4,logged_out=-2,default=5",
                "TELEGRAM_ADMIN_IDS": "1,2",
                "TELEGRAM_VIEWER_IDS": "2,3",
            }
        )
    message = str(refused.value)
    assert message.count("\n  - ") == 5, message
    assert "TELEGRAM_ALERT_TOPICS must be kind=topic_id pairs" in message
    assert "'proxy_bad'" in message and "'logged_out=-2'" in message
    assert "unknown alert kind 'proxydead'" in message
    assert "names 'default' twice" in message
    assert "TELEGRAM_VIEWER_IDS and TELEGRAM_ADMIN_IDS both name 2" in message


# long lists ---------------------------------------------------------------------------------


@dataclass
class Console:
    """The bot's dispatcher in this process over a real store: 500 sessions without 500
    workers (nothing here starts one)."""

    store: Store
    bot: Bot
    dp: Dispatcher
    service: SessionService
    pool: ProxyPool
    notifier: TelegramNotifier
    i18n: CatalogueI18n


@pytest.fixture
async def console(
    tmp_path: Path, telegram: FakeTelegram, redis_client: aioredis.Redis, redis_server: str
) -> AsyncIterator[Console]:
    env = {
        "API_KEY": API_KEY,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "REDIS_URL": redis_server,
        "SESSIONS_DIR": str(tmp_path / "sessions"),
        "BACKUPS_DIR": str(tmp_path / "backups"),
        "HTTP_HOST": "127.0.0.1",
        "TELEGRAM_BOT_TOKEN": telegram.token,
        "TELEGRAM_API_URL": telegram.url,
        "TELEGRAM_CHAT_ID": str(CHAT),
        "TELEGRAM_ADMIN_IDS": str(ADMIN),
        "TELEGRAM_VIEWER_IDS": str(VIEWER),
    }
    settings = Settings.from_env(env)
    store = Store(redis_client)
    pool = ProxyPool(store, LogNotifier(), settings.max_sessions_per_proxy)
    instance = f"test-{os.getpid()}-{tmp_path.name}"
    runner = ProcessRunner(instance, stop_grace_s=1.0)
    clock = SystemClock()
    service = SessionService(settings, store, pool, runner, LogNotifier(), clock, Metrics())
    backups = BackupService(settings, store, service, runner, LogNotifier(), clock)
    bot = build_bot(settings)
    i18n = build_i18n()
    notifier = TelegramNotifier(bot, redis_client, i18n, CHAT, clock)
    dp = build_dispatcher(settings, redis_client, i18n, service, pool, backups, notifier)
    polling = dp.start_polling(bot, handle_signals=False, close_bot_session=False)
    task = asyncio.create_task(polling)
    try:
        yield Console(store, bot, dp, service, pool, notifier, i18n)
    finally:
        with contextlib.suppress(RuntimeError):
            await dp.stop_polling()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await notifier.close(grace_s=0.5)
        await service.close()
        # A button may start a worker (a restart, a start): none outlives the test.
        await asyncio.gather(*(runner.stop(sid) for sid in find_workers(instance)))
        await runner.close()
        await bot.session.close()


STATUS_MIX = [Status.CONNECTED] * 6 + [Status.DISCONNECTED] * 2 + [Status.FAILED, Status.QR_READY]


async def test_500_sessions_page_within_telegrams_limits_and_filter(
    console: Console, telegram: FakeTelegram
) -> None:
    status_of: dict[str, str] = {}
    for n in range(500):
        url = f"socks5h://wa:s3cret-pw@127.0.0.1:{20000 + n // 4}"  # never connected to
        await console.store.add_proxy(url)
        sid, _ = await console.store.reserve(f"9725{n:08d}", url, 4, 4, int(time.time() * 1000))
        status_of[sid] = STATUS_MIX[n % len(STATUS_MIX)]
        await console.store.set_fields(sid, status=status_of[sid])
    assert len(status_of) == 500

    async def walk(command: str) -> tuple[list[str], list[float]]:
        """Every page from the first by the ▶ button; the sessions listed, in order."""
        mark = len(telegram.calls)
        started = time.monotonic()
        telegram.send(command)
        await telegram.wait_call("sendMessage", lambda c: c.chat == ADMIN, after=mark)
        took = [time.monotonic() - started]
        listed: list[str] = []
        page = newest(telegram, ADMIN)
        while True:
            assert len(page.text) <= LIMIT_TEXT
            data = data_of(page)
            assert len(data) <= LIMIT_BUTTONS
            assert all(len(d.encode()) <= LIMIT_DATA for d in data)
            listed += [d.removeprefix("s:qr:") for d in data if d.startswith("s:qr:")]
            after = [d for d in data if d.startswith("pg:")]
            forward = [d for d in after if int(d.split(":")[1]) > _page_no(page)]
            if not forward:
                return listed, took
            mark = len(telegram.calls)
            edits = page.edits
            started = time.monotonic()
            telegram.press(page, min(forward, key=lambda d: int(d.split(":")[1])))
            await telegram.wait_call("editMessageText", after=mark)
            took.append(time.monotonic() - started)
            assert page.edits == edits + 1

    everything, took = await walk("/sessions")
    assert sorted(everything) == sorted(status_of) and len(everything) == len(set(everything))
    assert "Sessions (500), page 1 of 63" in next(
        c.text for c in telegram.calls_of("sendMessage", ADMIN)
    )
    median = sorted(took)[len(took) // 2]
    print(
        f"\n/sessions with 500: {len(took)} pages, median {median * 1000:.0f} ms, "
        f"slowest {max(took) * 1000:.0f} ms per page"
    )
    for status in (Status.DISCONNECTED, Status.FAILED):
        listed, took = await walk(f"/sessions {status.value}")
        wanted = sorted(s for s, st in status_of.items() if st == status)
        assert sorted(listed) == wanted and len(listed) == len(set(listed))
        print(f"/sessions {status.value}: {len(listed)} in {len(took)} pages")
    # the last-page button, and a filter that does not exist
    mark = len(telegram.calls)
    telegram.send("/sessions")
    await telegram.wait_call("sendMessage", lambda c: c.chat == ADMIN, after=mark)
    first = newest(telegram, ADMIN)
    last = next(b for b in first.buttons() if b["text"] == "⏭")
    telegram.press(first, last["callback_data"])
    end = await telegram.wait_call("editMessageText", after=mark)
    assert "page 63 of 63" in end.text
    mark = len(telegram.calls)
    telegram.send("/sessions sleeping")
    nope = await telegram.wait_call("sendMessage", lambda c: c.chat == ADMIN, after=mark)
    assert "There is no status" in nope.text and "disconnected" in nope.text
    assert_no_secrets(telegram)


def _page_no(message: StoredMessage) -> int:
    """The 0-based page a listing shows, from its "page N of M"."""
    words = message.text.split("page ", 1)[1].split()
    return int(words[0]) - 1
