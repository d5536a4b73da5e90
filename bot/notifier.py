"""``TelegramNotifier``: core's alerts in the operators' chat, and the QR photo of each session.

``notify`` never waits on Telegram: core calls it from webhook handlers, and a flood
limit must not slow a worker's event down. Two background loops do the sending:

* the QR loop, in order: a session's QR is one photo message, edited in place as the
  QR rotates and turned into "connected" (a picture without the code) when linked. The
  message id is kept in Redis, so a restart of ``serve`` keeps editing the same message.
* the alert loop, in bursts: alerts arriving within ``window_s`` of the first become
  one message, so a proxy dying under four sessions, or fifty workers failing at once,
  is one message and not a flood. Alerts wait in a Redis stream (``bot/outbox.py``), not
  in memory: one raised just before ``serve`` dies is sent after it comes back.

Telegram's ``RetryAfter`` is waited out and the same request sent again: alerts are
never dropped for a flood limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import redis.asyncio as aioredis
from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import BufferedInputFile, InlineKeyboardMarkup, InputMediaPhoto
from PIL import Image, ImageDraw
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot import keyboards, texts
from bot.i18n import CatalogueI18n, chat_locale
from bot.outbox import AlertOutbox, Entry
from core import keys
from core import qr as qr_render
from core.clock import Clock
from core.notifier import Alert, AlertKind, Done
from core.tasks import TaskGroup

log = logging.getLogger("wafleet.bot.notifier")

T = TypeVar("T")

QR_KINDS = frozenset({AlertKind.QR_READY, AlertKind.PAIRING_CODE, AlertKind.CONNECTED})
NETWORK_RETRIES = 8  # with backoff capped at 30 s: a few minutes of Telegram being away
BURST_ATTEMPTS = 5  # an alert whose burst fails this often (Redis up) is dropped, and logged
# How long a "connection lost" waits for what may explain it: the worker retries within a
# second or two, a dead proxy then fails its connect, our probe takes up to 3 s to confirm.
DISCONNECT_HOLD_S = 8.0


def unexplained_disconnects(burst: list[Alert]) -> bool:
    """A burst holding a "reconnects by itself" that nothing in it answers yet: neither a
    failover that moved (or parked) the session, nor the session connected again."""
    settled = texts.moved_sessions(burst) | {
        a.session_id for a in burst if a.kind is AlertKind.CONNECTED
    }
    return any(
        a.kind is AlertKind.DISCONNECTED
        and a.done is Done.RECONNECTING
        and a.session_id not in settled
        for a in burst
    )


async def _until_cancelled() -> None:
    """Wait for ``follow`` to cancel the alert loop of a replica that lost its lease."""
    await asyncio.Event().wait()


def placeholder_png(colour: str) -> bytes:
    """A plain picture that replaces a QR in place, so the code is no longer scannable."""
    image = Image.new("RGB", (240, 240), colour)
    draw = ImageDraw.Draw(image)
    draw.ellipse((60, 60, 180, 180), outline="white", width=12)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class TelegramNotifier:
    def __init__(
        self,
        bot: Bot,
        redis: aioredis.Redis,
        i18n: CatalogueI18n,
        chat_id: int,
        clock: Clock,
        window_s: float = 1.5,
        topics: Mapping[str, int] | None = None,
        disconnect_hold_s: float = DISCONNECT_HOLD_S,
    ) -> None:
        self.bot = bot
        self.redis = redis
        self.i18n = i18n
        self.chat_id = chat_id
        self.clock = clock
        self.window_s = window_s
        self.disconnect_hold_s = disconnect_hold_s
        # TELEGRAM_ALERT_TOPICS: a forum group's topic per alert kind, "default" for the rest.
        self.topics = dict(topics or {})
        self.outbox = AlertOutbox(redis)
        self._reading: list[Entry] = []  # the burst being read and sent
        self._attempts: dict[str, int] = {}  # failed sends per outbox entry
        self._qr_queue: asyncio.Queue[Alert] = asyncio.Queue()
        self._latest_qr: dict[str, Alert] = {}
        self._tasks = TaskGroup()
        self._qr_lock = asyncio.Lock()
        self._placeholders: dict[str, bytes] = {}
        self._alerts: asyncio.Task[None] | None = None
        self._may_send: Callable[[], bool] = lambda: True

    # core's Notifier --------------------------------------------------------------------

    async def notify(self, alert: Alert) -> None:
        if alert.kind in QR_KINDS and alert.session_id:
            if alert.kind is AlertKind.QR_READY:
                self._latest_qr[alert.session_id] = alert
            self._qr_queue.put_nowait(alert)
        else:
            await self.outbox.put(alert)

    # lifecycle --------------------------------------------------------------------------

    def start(self, alerts: bool = True) -> None:
        """The QR loop runs on every replica (a QR event arrives where its worker posts); the
        alert loop, with several replicas, on the leader only (``lead``): one reader keeps
        a burst one message, and a replica that lost its lease stops sending."""
        self._tasks.spawn(self._qr_loop(), name="telegram-qr")
        if alerts:
            self.lead(lambda: True)

    def lead(self, may_send: Callable[[], bool]) -> None:
        """Send the outbox's alerts while ``may_send()``: asked before every message."""
        self._may_send = may_send
        if self._alerts is None or self._alerts.done():
            self.outbox.recover()  # what a leader before read and never finished
            self._alerts = self._tasks.spawn(self._alert_loop(), name="telegram-alerts")

    async def follow(self) -> None:
        """Stop sending alerts (this replica lost the lease): what was read and not sent
        stays in the outbox, unacknowledged, for the next leader to read again."""
        self._may_send = lambda: False
        if self._alerts is not None:
            self._alerts.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._alerts
            self._alerts = None

    async def close(self, grace_s: float = 5.0) -> None:
        """Give queued messages ``grace_s`` to go out, then stop the loops.

        Alerts still unsent stay in the Redis outbox and go out after the next start.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s):
                await self._qr_queue.join()
                while await self._outbox_waiting():  # noqa: ASYNC110 (the state is in Redis)
                    await asyncio.sleep(0.1)
        if left := self._qr_queue.qsize():
            log.warning("stopping with %d QR message(s) unsent", left)
        if waiting := await self._outbox_waiting():
            log.warning("stopping with %d alert(s) unsent: they go out after a restart", waiting)
        await self._tasks.cancel()

    async def _outbox_waiting(self) -> int:
        try:
            return await self.outbox.waiting()
        except Exception:  # Redis away: nothing to wait for here
            return 0

    # QR messages ------------------------------------------------------------------------

    async def remember_chat(self, session_id: str, chat_id: int) -> None:
        """The chat that asked for this session's QR gets it (else the alert chat)."""
        await self.redis.hset(keys.bot_qr_message(session_id), "chat", chat_id)

    async def forget(self, session_id: str) -> None:
        await self.redis.delete(keys.bot_qr_message(session_id))

    async def show_qr(self, session_id: str, chat_id: int, code: str, expires: int | None) -> None:
        """``/qr``: a fresh photo in this chat, which from now on is the one kept up to date."""
        async with self._qr_lock:
            await self.redis.delete(keys.bot_qr_message(session_id))
            await self.remember_chat(session_id, chat_id)
            await self._show_qr(session_id, code, expires)

    async def _qr_loop(self) -> None:
        while True:
            alert = await self._qr_queue.get()
            try:
                async with self._qr_lock:
                    await self._qr_event(alert)
            except Exception:
                log.exception("could not show %s of %s in Telegram", alert.kind, alert.session_id)
            finally:
                self._qr_queue.task_done()

    async def _qr_event(self, alert: Alert) -> None:
        sid = alert.session_id or ""
        if alert.kind is AlertKind.QR_READY:
            if self._latest_qr.get(sid) is not alert:
                return  # a newer QR is queued: skip the stale one
            del self._latest_qr[sid]
            await self._show_qr(sid, alert.qr or "", alert.qr_expires)
        elif alert.kind is AlertKind.PAIRING_CODE:
            chat, _ = await self._target(sid)
            with self.i18n.use_locale(await chat_locale(self.redis, chat)), self.i18n.context():
                text = texts.pairing_code(sid, str(alert.facts.get("code", "")))
            thread = self._thread(chat, AlertKind.PAIRING_CODE)
            await self.deliver(lambda: self.bot.send_message(chat, text, message_thread_id=thread))
        elif alert.kind is AlertKind.CONNECTED:
            chat, message_id = await self._target(sid)
            if message_id is None:
                await self.outbox.put(alert)  # a reconnect: an ordinary (grouped) alert
                return
            with self.i18n.use_locale(await chat_locale(self.redis, chat)), self.i18n.context():
                caption = texts.connected_caption(sid, alert.phone)
            await self._replace_photo(chat, message_id, self._placeholder("#2e7d32"), caption)
            await self.redis.hdel(keys.bot_qr_message(sid), "message")

    async def _target(self, sid: str) -> tuple[int, int | None]:
        saved = await self.redis.hgetall(keys.bot_qr_message(sid))
        chat = int(saved.get("chat") or self.chat_id)
        message = saved.get("message")
        return chat, int(message) if message else None

    async def _show_qr(self, sid: str, code: str, expires: int | None) -> None:
        chat, message_id = await self._target(sid)
        expires_in = None if expires is None else (expires - self.clock.now_ms()) // 1000
        with self.i18n.use_locale(await chat_locale(self.redis, chat)), self.i18n.context():
            caption = texts.qr_caption(sid, expires_in)
        png = await asyncio.to_thread(qr_render.png, code)
        if message_id is not None and await self._replace_photo(chat, message_id, png, caption):
            return
        thread = self._thread(chat, AlertKind.QR_READY)
        sent = await self.deliver(
            lambda: self.bot.send_photo(
                chat,
                BufferedInputFile(png, filename=f"qr-{sid}.png"),
                caption=caption,
                message_thread_id=thread,
            )
        )
        if sent is not None:
            await self.redis.hset(
                keys.bot_qr_message(sid), mapping={"chat": chat, "message": sent.message_id}
            )

    async def _replace_photo(
        self,
        chat: int,
        message_id: int,
        png: bytes,
        caption: str,
        markup: InlineKeyboardMarkup | None = None,
    ) -> bool:
        """Edit the photo in place; False when the message is gone (the caller sends anew)."""
        media = InputMediaPhoto(media=BufferedInputFile(png, filename="qr.png"), caption=caption)
        try:
            await self.deliver(
                lambda: self.bot.edit_message_media(
                    media=media, chat_id=chat, message_id=message_id, reply_markup=markup
                ),
                quiet=False,
            )
        except TelegramBadRequest as exc:
            if "not modified" in exc.message:
                return True
            log.info("QR message %s in %s cannot be edited (%s)", message_id, chat, exc.message)
            return False
        return True

    async def qr_expired(self, sid: str) -> None:
        """Turn a shown QR into an "expired" picture with the new-QR button."""
        chat, message_id = await self._target(sid)
        if message_id is None:
            return
        with self.i18n.use_locale(await chat_locale(self.redis, chat)), self.i18n.context():
            caption = texts.qr_expired_caption(sid)
            markup = keyboards.new_qr([sid])
        await self._replace_photo(chat, message_id, self._placeholder("#9e9e9e"), caption, markup)

    def _placeholder(self, colour: str) -> bytes:
        if colour not in self._placeholders:
            self._placeholders[colour] = placeholder_png(colour)
        return self._placeholders[colour]

    # alerts -----------------------------------------------------------------------------

    async def _alert_loop(self) -> None:
        """Read the outbox in bursts; acknowledge a burst only once it reached the chat."""
        delay = 1.0
        while True:
            try:
                await self.outbox.ready()
                while True:
                    await self._one_burst()
                    delay = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Redis or Telegram away: what was read stays in the outbox, read it again.
                log.exception("could not send alerts to Telegram; retrying in %.0f s", delay)
                if not isinstance(exc, RedisConnectionError | RedisTimeoutError):
                    await self._give_up_on_poison()
                self.outbox.recover()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _give_up_on_poison(self) -> None:
        """At least once, but not forever: an alert that breaks every send is dropped."""
        hopeless = []
        for entry in self._reading:
            self._attempts[entry.stream_id] = self._attempts.get(entry.stream_id, 0) + 1
            if self._attempts[entry.stream_id] >= BURST_ATTEMPTS:
                hopeless.append(entry)
        if hopeless:
            log.error("dropping %d alert(s) that failed %d sends", len(hopeless), BURST_ATTEMPTS)
            with contextlib.suppress(Exception):
                await self.outbox.done(hopeless)
                for entry in hopeless:
                    self._attempts.pop(entry.stream_id, None)

    async def _one_burst(self) -> None:
        self._reading = []
        burst: list[Entry] = await self.outbox.take(block_ms=1000)
        self._reading = burst
        if not burst:
            return
        window_ms = int(self.window_s * 1000)
        started = self.clock.now_ms()
        deadline = started + window_ms
        while (left := deadline - self.clock.now_ms()) > 0:
            burst += await self.outbox.take(block_ms=min(left, window_ms))
        # A connection lost because its proxy died is followed, seconds later, by the
        # failover (the worker's next try, then our own probe): hold the disconnect that
        # long, so the chat reads the move once instead of "reconnects by itself" first.
        hold_until = started + int(self.disconnect_hold_s * 1000)
        while (left := hold_until - self.clock.now_ms()) > 0 and unexplained_disconnects(
            [e.alert for e in burst if e.alert is not None]
        ):
            burst += await self.outbox.take(block_ms=min(left, window_ms))
        fresh = [e.alert for e in await self.outbox.unsent(burst) if e.alert is not None]
        if not self._may_send():
            # The lease ran out while the burst was read (a frozen leader, thawed): the
            # entries stay unacknowledged and the current leader sends them, once.
            log.warning("not the leader any more: leaving %d alert(s) to it", len(burst))
            self._reading = []
            await _until_cancelled()
        if fresh:
            await self._send_burst(fresh)
        await self.outbox.done(burst)
        for entry in burst:
            self._attempts.pop(entry.stream_id, None)
        self._reading = []

    def _thread(self, chat: int, kind: AlertKind) -> int | None:
        """The forum topic for ``kind`` in the alert chat (None: the chat's general flow).
        A chat that asked for a QR itself gets it there, without a topic."""
        if chat != self.chat_id:
            return None
        return self.topics.get(kind.value, self.topics.get("default"))

    async def _send_burst(self, burst: list[Alert]) -> None:
        for alert in burst:
            if alert.kind is AlertKind.QR_EXPIRED and alert.session_id:
                async with self._qr_lock:
                    await self.qr_expired(alert.session_id)
        chat = self.chat_id
        # Folded over the whole burst first: a failover told in one topic still silences
        # the disconnect it explains in another.
        by_thread: dict[int | None, list[Alert]] = {}
        for alert in texts.fold_burst(burst):
            by_thread.setdefault(self._thread(chat, alert.kind), []).append(alert)
        for thread, alerts in by_thread.items():
            with self.i18n.use_locale(await chat_locale(self.redis, chat)), self.i18n.context():
                messages = texts.alert_burst(alerts)
                markup = keyboards.alert_buttons(alerts)
            for n, text in enumerate(messages, 1):
                if not self._may_send():
                    await _until_cancelled()  # the lease ran out mid-burst: stop here
                await self._send_text(chat, text, markup if n == len(messages) else None, thread)

    async def _send_text(
        self,
        chat: int,
        text: str,
        markup: InlineKeyboardMarkup | None,
        thread: int | None = None,
    ) -> None:
        await self.deliver(
            lambda: self.bot.send_message(
                chat, text, reply_markup=markup, message_thread_id=thread
            )
        )

    # delivery ---------------------------------------------------------------------------

    async def deliver(self, call: Callable[[], Awaitable[T]], quiet: bool = True) -> T | None:
        """Send, waiting out flood limits (never giving up on them) and retrying outages.

        A bad request is a bug or a deleted message, not worth retrying: logged when
        ``quiet``, raised otherwise so the caller can fall back.
        """
        delay = 1.0
        failures = 0
        while True:
            try:
                return await call()
            except TelegramRetryAfter as exc:
                log.warning(
                    "Telegram flood limit: waiting %d s, then sending again", exc.retry_after
                )
                await asyncio.sleep(exc.retry_after)
            except (TelegramNetworkError, TelegramServerError) as exc:
                failures += 1
                if failures > NETWORK_RETRIES:
                    log.error("giving up on a Telegram message after %d tries: %s", failures, exc)
                    return None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
            except TelegramBadRequest as exc:
                if not quiet:
                    raise
                log.error("Telegram refused a message: %s", exc.message)
                return None
