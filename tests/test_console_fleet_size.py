"""The whole console at the documented fleet size: 10,000 sessions on 2,500 proxies.

The bot's dispatcher runs in this process over a real Redis filled through the store's own
write paths (no worker is started); aiogram's real client talks to the fake Bot API, which
refuses what Telegram refuses (``tests/telegram_limits.py``). Every command and button of
the console is driven, in English and Hebrew, by an admin and a viewer, with alert bursts
and a digest; each answer must be accepted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable

import pytest

from bot.digest import Digest
from bot.keyboards import PageCb, ProxyCb, View
from core.journal import Happened, Journal
from core.models import ProxyStatus, Status
from core.notifier import Alert, AlertKind, Done, Move
from core.proxy_url import ProxyUrl
from tests import fake_telegram, test_bot_console
from tests import telegram_limits as limits
from tests.fake_telegram import ADMIN, CHAT, STRANGER, VIEWER, Call, FakeTelegram, StoredMessage
from tests.fleet import eventually
from tests.test_bot import PASSWORD, assert_no_secrets
from tests.test_bot_console import Console, newest

console = test_bot_console.console  # the fixtures
telegram = fake_telegram.telegram

SESSIONS = 10_000
PROXIES = 2_500
CAP = 4
MIX = [Status.CONNECTED] * 7 + [Status.DISCONNECTED, Status.FAILED, Status.QR_READY]


def proxy_url(n: int) -> str:
    return f"socks5h://wa:{PASSWORD}@127.0.0.{1 + n % 8}:{20_000 + n}"  # never connected to


async def fill(app: Console) -> list[str]:
    """2,500 proxies, 10,000 sessions (4 a proxy, the phone 972500000001 on 4), 10 bad."""
    store = app.store
    for at in range(0, PROXIES, 50):
        await asyncio.gather(*(store.add_proxy(proxy_url(n)) for n in range(at, at + 50)))
    now = int(time.time() * 1000)

    async def one(n: int) -> str:
        phone = "972500000001" if n < 4 else f"9725{n:08d}"
        sid, _ = await store.reserve(phone, proxy_url(n // CAP), CAP, 4, now)
        await store.set_fields(sid, status=MIX[n % len(MIX)])
        return sid

    sids: list[str] = []
    for at in range(0, SESSIONS, 50):
        sids += await asyncio.gather(*(one(n) for n in range(at, at + 50)))
    for n in range(0, PROXIES, PROXIES // 10):
        await store.set_proxy_status(proxy_url(n), ProxyStatus.BAD)
    await store.set_qr(sids[0], "2@fleet-size-qr", now + 60_000, 60_000)
    return sids


class Chat:
    """The operator's side: say or press something, get the bot's answer."""

    def __init__(self, fake: FakeTelegram) -> None:
        self.fake = fake
        self.took: dict[str, float] = {}  # how long each answer took, by what was said

    async def say(self, text: str, user: int = ADMIN, photo: bool = False) -> Call:
        mark = len(self.fake.calls)
        started = time.monotonic()
        self.fake.send(text, user=user)
        method = "sendPhoto" if photo else "sendMessage"
        answer = await self.fake.wait_call(method, lambda c: c.chat == user, 60, mark)
        self.took[text] = answer.at - started
        return answer

    async def press(self, shown: StoredMessage, data: str, user: int = ADMIN) -> Call:
        """The edit or message the button leads to (any status: the caller checks)."""
        mark = len(self.fake.calls)
        started = time.monotonic()
        self.fake.press(shown, data, user=user)

        async def answer() -> Call | None:
            for call in self.fake.calls[mark:]:
                if call.method in ("editMessageText", "sendMessage"):
                    return call
            return None

        found = await eventually(answer, 60, f"the answer to {data}")
        self.took[data] = found.at - started
        return found

    def last(self, chat: int = ADMIN) -> StoredMessage:
        return newest(self.fake, chat)


def in_chat(chat: int) -> Callable[[Call], bool]:
    return lambda c: c.chat == chat


def nav(message: StoredMessage, symbol: str) -> str:
    return next(b["callback_data"] for b in message.buttons() if b["text"] == symbol)


async def test_every_answer_of_the_console_fits_telegram_at_10000_sessions_on_2500_proxies(
    console: Console, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "wafleet")
    started = time.monotonic()
    sids = await fill(console)
    filled = time.monotonic() - started
    chat = Chat(telegram)
    first_call = len(telegram.calls)

    # read-only commands, admin then viewer
    assert "/proxies" in (await chat.say("/help")).text
    await chat.say("/start")
    first = await chat.say("/sessions")
    assert "Sessions (10000), page 1 of 1250" in first.text
    listing = chat.last()
    for symbol, page in (("▶", 2), ("⏭", 1250), ("◀", 1249), ("⏮", 1)):
        edit = await chat.press(listing, nav(listing, symbol))
        assert f"page {page} of 1250" in edit.text, edit.text
    failed = await chat.say("/sessions failed")
    assert "Sessions failed (1000), page 1 of 125" in failed.text
    found = await chat.say("/find 9725")
    assert "Sessions matching" in found.text and "more: type more of the number" in found.text
    assert "Phone: +9725" in (await chat.say("/status worker_5000")).text
    shared = await chat.say("/status 972500000001")
    assert "4 sessions have the phone +972500000001" in shared.text
    qr = await chat.say(f"/qr {sids[0]}", photo=True)
    assert sids[0] in qr.text
    pool = await chat.say("/proxies")
    assert "Proxies (2500), page 1 of 250" in pool.text
    assert "1. <code>socks5h://wa:***@127.0.0.1:20000</code> · bad · 4/4" in pool.text
    pool_message = chat.last()
    assert len(pool_message.buttons()) == 10 + 2
    for symbol, page in (("▶", 2), ("⏭", 250), ("◀", 249)):
        edit = await chat.press(pool_message, nav(pool_message, symbol))
        assert f"page {page} of 250" in edit.text, edit.text
    bad = await chat.say("/proxies bad")
    assert "Proxies bad (10), page 1 of 1" in bad.text and "· active ·" not in bad.text
    assert "There is no proxy status" in (await chat.say("/proxies sleeping")).text
    stats = await chat.say("/stats", photo=True)
    assert "Sessions: 10000" in stats.text
    assert "Nodes and their sessions" in (await chat.say("/nodes")).text
    assert "No backups yet" in (await chat.say("/backups")).text
    for command in ("/sessions", "/find 97250000", "/proxies"):
        assert "you are a viewer" not in (await chat.say(command, user=VIEWER)).text
    viewer_pool = chat.last(VIEWER)
    edit = await chat.press(viewer_pool, nav(viewer_pool, "⏭"), user=VIEWER)
    assert "page 250 of 250" in edit.text

    # actions an admin takes at that size
    refused = await chat.say("/provision 972509999999")
    assert "No proxy capacity" in refused.text  # every slot of 2,500 proxies is taken
    carrying = await chat.press(pool_message, ProxyCb(pid=ProxyUrl.parse(proxy_url(5)).id).pack())
    assert "still carries 4 session" in carrying.text
    confirm = await chat.say(f"/delete {sids[-1]}")
    assert "Delete" in confirm.text
    cancelled = await chat.press(chat.last(), f"s:cancel:{sids[-1]}")
    assert "Cancelled" in cancelled.text
    await chat.say(f"/delete {sids[-2]}")
    deleted = await chat.press(chat.last(), f"s:del!:{sids[-2]}")
    assert "deleted" in deleted.text
    stopped = await chat.say(f"/stop {sids[-3]}")
    assert "stopped" in stopped.text
    await chat.say(f"/send {sids[7]} 972501234567 hello")  # queued, or why not: an answer
    listing = chat.last()  # the /sessions page of an earlier answer has every session button
    await chat.say(f"/status {sids[7]}")
    one = chat.last()
    assert "Phone:" in (await chat.press(one, f"s:status:{sids[7]}")).text
    mark = len(telegram.calls)
    telegram.press(one, f"s:qr:{sids[0]}")
    await telegram.wait_call("sendPhoto", lambda c: c.chat == ADMIN, 60, mark)
    mark = len(telegram.calls)
    telegram.press(one, f"s:newqr:{sids[8]}")
    await telegram.wait_call("answerCallbackQuery", after=mark, timeout=60)
    asked = await chat.press(one, "ask:proxy")
    assert "Send the proxy URL" in asked.text
    given = await chat.say(proxy_url(PROXIES + 1))
    assert "Added" in given.text
    backup = await chat.say("/backup")
    done = await telegram.wait_call("editMessageText", lambda c: "💾 Backup" in c.text, 120)
    assert "10000" not in backup.text and "9999 sessions" in done.text, done.text
    backups = await chat.say("/backups")
    assert "9999 sessions" in backups.text
    backup_id = chat.last().buttons()[0]["callback_data"].split(":", 2)[2]
    confirm_restore = await chat.press(chat.last(), f"b:restore:{backup_id}")
    assert "Restore" in confirm_restore.text  # asked, not done: a restore of 9,999 is a test
    del listing

    # Hebrew
    await chat.say("/lang he")
    for command in ("/sessions", "/proxies", "/status 972500000001", "/find 9725", "/nodes"):
        assert re.search("[\u0590-\u05ff]", (await chat.say(command)).text), command
    hebrew_stats = await chat.say("/stats", photo=True)
    assert "חיבורים: 9999" in hebrew_stats.text
    languages = await chat.say("/lang")
    assert "English" in json.dumps(languages.buttons(), ensure_ascii=False)
    assert "English" in (await chat.press(chat.last(), "lang:en")).text

    # alerts: bursts naming thousands of sessions
    console.notifier.start()
    crashed = [
        Alert(AlertKind.WORKER_CRASHED, sid, facts={"exit_code": 137}, done=Done.RESTARTED_WORKER)
        for sid in sids[:600]
    ]
    logged_out = [
        Alert(AlertKind.LOGGED_OUT, sid, "972500000001", done=Done.WAITING_FOR_NEW_QR)
        for sid in sids[600:700]
    ]
    dead = [
        Alert(
            AlertKind.PROXY_BAD,
            proxy=ProxyUrl.parse(proxy_url(n)).masked,
            done=Done.MOVED_SESSIONS,
            moves=tuple(
                Move(sids[n * CAP + i], "972500000001", ProxyUrl.parse(proxy_url(n)).masked, None)
                for i in range(CAP)
            ),
        )
        for n in range(0, PROXIES, 25)
    ]
    fleet_wide = [
        Alert(AlertKind.FAILOVER_IMPOSSIBLE, facts={"sessions": 400}),
        Alert(AlertKind.CAPACITY_LOW, facts={"free": 1, "total": PROXIES * CAP}),
        Alert(
            AlertKind.NODE_LOST,
            facts={"node": "n1", "sessions": SESSIONS, "sessionIds": ",".join(sids)},
        ),
    ]
    alert_mark = len(telegram.calls)
    for alert in [*crashed, *logged_out, *dead, *fleet_wide]:
        await console.notifier.notify(alert)

    async def drained() -> bool:
        return await console.notifier.outbox.waiting() == 0

    await eventually(drained, 120, "every alert sent")
    alerts = [
        c for c in telegram.calls[alert_mark:] if c.method == "sendMessage" and c.chat == CHAT
    ]
    told = "\n".join(c.text for c in alerts)
    assert all(sid in told for sid in (sids[0], sids[599], sids[600], sids[699]))
    with_buttons = [c for c in alerts if c.buttons()]
    assert with_buttons, "the burst's last message carries its buttons"
    burst_message = max(
        (m for m in telegram.messages.values() if m.chat == CHAT and m.buttons()),
        key=lambda m: m.message_id,
    )
    from_alert = await chat.press(burst_message, "view:proxies")
    assert "Proxies (2501), page 1 of 251" in from_alert.text

    # the digest: the picture and its caption
    journal = Journal(console.store.redis, console.service.clock)
    for what in Happened:
        await journal.count(what, 1234)
    digest = Digest(
        console.bot,
        console.store.redis,
        console.i18n,
        CHAT,
        console.notifier,
        console.service,
        console.pool,
        journal,
        skip_empty=False,
    )
    assert await digest.send()

    # an admin's /addproxy is added and deleted; nothing refused anywhere
    added = await chat.say(f"/addproxy {proxy_url(PROXIES)}")
    assert "Added" in added.text
    # ... and removed from its page of the listing, which then shows that page again
    at = sorted(proxy_url(n) for n in range(PROXIES + 2)).index(proxy_url(PROXIES))
    await chat.say("/proxies")
    listing = chat.last()
    its_page = PageCb(page=at // 10, what=View.PROXIES).pack()
    assert f"page {at // 10 + 1} of 251" in (await chat.press(listing, its_page)).text
    remove = next(b for b in listing.buttons() if b["text"] == f"Remove #{at + 1}")
    assert remove["callback_data"].endswith(f":{at // 10}:")
    mark_remove = len(telegram.calls)
    telegram.press(listing, remove["callback_data"])
    again = await telegram.wait_call("editMessageText", after=mark_remove, timeout=60)
    assert f"Proxies (2501), page {at // 10 + 1} of 251" in again.text
    assert "127.0.0.5:22500" not in again.text
    calls = telegram.calls[first_call:]
    over = [(c.method, c.refused) for c in calls if c.refused and c.refused != limits.NOT_MODIFIED]
    assert not over, over
    assert not [r for r in caplog.records if "Telegram refused" in r.getMessage()]
    assert_no_secrets(telegram)

    sent = [c for c in calls if not c.refused]
    texts = [c for c in sent if c.method in ("sendMessage", "editMessageText")]
    captions = [c for c in sent if c.method in ("sendPhoto", "editMessageMedia")]
    widest = max(texts, key=lambda c: len(c.shown))
    most = max(calls, key=lambda c: len(c.buttons()))
    data = max(len(b.get("callback_data", "").encode()) for c in calls for b in c.buttons())
    assert len(widest.shown) <= limits.MAX_TEXT and len(most.buttons()) <= limits.MAX_BUTTONS
    assert max(len(c.shown) for c in captions) <= limits.MAX_CAPTION
    assert data <= limits.MAX_CALLBACK_DATA
    print(
        f"\nfilled {SESSIONS} sessions on {PROXIES} proxies in {filled:.1f} s; "
        f"{len(calls)} Bot API calls, {len(alerts)} alert messages; largest text "
        f"{len(widest.shown)} chars ({widest.shown.splitlines()[0][:40]!r}), largest caption "
        f"{max(len(c.shown) for c in captions)} chars, most buttons {len(most.buttons())}, "
        f"longest callback data {data} bytes"
    )
    slowest = sorted(chat.took.items(), key=lambda t: -t[1])[:5]
    print(
        "pages: "
        + ", ".join(
            f"{w} {s * 1000:.0f} ms"
            for w, s in chat.took.items()
            if w.startswith(("pg:", "/sessions"))
        )
    )
    print("slowest answers: " + ", ".join(f"{what} {s:.1f} s" for what, s in slowest))


async def test_a_proxy_url_typed_by_anyone_leaves_the_chat_and_the_log(
    console: Console, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    """A viewer or a stranger is refused ``/addproxy``; the message with the password is
    deleted all the same, as an admin's is, and the log names the command only."""
    caplog.set_level(logging.INFO, "wafleet")
    for n, user in enumerate((VIEWER, STRANGER, ADMIN)):
        url = f"socks5h://wa:{PASSWORD}@127.0.0.{2 + n}:{30_000 + n}"
        mark = len(telegram.calls)
        sent = telegram.send(f"/addproxy {url}", user=user)
        answer = await telegram.wait_call("sendMessage", in_chat(user), 15, mark)
        gone = await telegram.wait_call("deleteMessage", in_chat(user), 15, mark)
        assert int(gone.params["message_id"]) == sent
        if user == ADMIN:
            assert "Added" in answer.text
        else:
            assert "Nothing was done" in answer.text
    assert len(await console.pool.all_proxies()) == 1  # the admin's only
    # a whole message of a query that names nothing: the answer says so, and fits
    mark = len(telegram.calls)
    telegram.send("/status " + "x" * 4080 + "!")  # 4,089 characters: Telegram takes it
    answer = await telegram.wait_call("sendMessage", in_chat(ADMIN), 15, mark)
    assert answer.text.startswith("❌ Not found.") and answer.text.endswith("Nothing was changed.")
    # a viewer's /provision with a proxy: refused, deleted too
    mark = len(telegram.calls)
    sent = telegram.send(f"/provision socks5h://wa:{PASSWORD}@127.0.0.9:1", user=VIEWER)
    gone = await telegram.wait_call("deleteMessage", lambda c: c.chat == VIEWER, 15, mark)
    assert int(gone.params["message_id"]) == sent
    assert_no_secrets(telegram)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert PASSWORD not in logged
    assert f"refused viewer {VIEWER}" in logged and "/addproxy <a URL, not logged>" in logged
    assert f"refused user {STRANGER}" in logged
