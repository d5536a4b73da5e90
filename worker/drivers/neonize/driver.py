"""The ``neonize`` driver: real WhatsApp through whatsmeow (neonize 0.5.2's Go core).

One connection attempt is: the proxy pre-flight (``preflight``), a fresh Go client started
in its own thread (``client``), then the items it posts back (QR codes, the QR channel's
statuses, events, its return) taken one by one on the loop until one of them ends the
attempt with a ``Disconnect`` (``events`` says which). Incoming messages and receipts do not
come this way: they reach the listener in Go's thread (``events.take``).

While the device is unpaired whatsmeow shows QR codes, each with its own lifetime; before
the first code and after a scan, a QR or a login must come within ``CONNECT_TIMEOUT_S`` or
the path is taken as dead. Every call into the Go core goes through ``GoCore.call``, so the
loop never waits on Go without a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from core.proxy_url import ProxyUrl
from worker.drivers.base import (
    ConnectionLost,
    DriverListener,
    LoggedOut,
    NotConnected,
    OutgoingMedia,
    SendFailed,
)
from worker.drivers.neonize import events
from worker.drivers.neonize.client import Attempt, GoCore
from worker.drivers.neonize.media import build_message, upload_type
from worker.drivers.neonize.preflight import dead_path, preflight, redact
from worker.drivers.neonize_slim import (
    JID,
    ChatPresence,
    ChatPresenceMedia,
    ClientName,
    ClientType,
    ConnectedEv,
    ContextInfo,
    ExtendedTextMessage,
    Presence,
    SlimClient,
)
from worker.drivers.neonize_slim import Message as WAMessage
from worker.message_ids import message_id_of
from worker.send_journal import SendJournal

log = logging.getLogger("wafleet.worker.neonize")

DB_FILE = "neonize.db"
DB_SUFFIXES = ("", "-wal", "-shm", "-journal")
USER_SERVER = "s.whatsapp.net"
CONNECT_TIMEOUT_S = 60.0  # no QR and no login by then: the path is dead

T = TypeVar("T")
_now = time.monotonic  # the driver's clock (tests move it)


class NeonizeDriver:
    def __init__(
        self, session_id: str, session_dir: Path, proxy_url: str, phone: str | None
    ) -> None:
        self.session_id = session_id
        self.session_dir = session_dir
        self.proxy = ProxyUrl.parse(proxy_url)
        self.phone = phone
        self.db_path = session_dir / DB_FILE
        self._core = GoCore(session_id, self.db_path, self.proxy)
        self._attempt: Attempt | None = None
        self._me: str | None = None
        self._connected = False
        self._sent: SendJournal | None = None  # read on first use

    # the seams the tests replace: the client, its start, the pre-flight ----------------------

    def build_client(self) -> SlimClient:
        """A fresh neonize client for the next attempt; touches neither network nor disk."""
        return self._core.build_client()

    def _start_core(self, attempt: Attempt) -> None:
        """Run ``Neonize`` for ``attempt`` in a daemon thread."""
        self._core.start(attempt)

    async def _preflight(self) -> None:
        await preflight(self.proxy)

    # the attempt --------------------------------------------------------------------------

    async def run(self, listener: DriverListener) -> None:
        await self._preflight()
        await self._stop_core()  # a previous attempt that is somehow still registered
        attempt = Attempt(
            asyncio.get_running_loop(),
            self.build_client(),
            lambda event: events.take(listener, event, self._journal, self._download),
        )
        attempt.expect_by = _now() + CONNECT_TIMEOUT_S
        self._attempt = attempt
        self._core.live = attempt.uuid
        self._start_core(attempt)
        try:
            await self._pump(attempt, listener)
        finally:
            attempt.closed = True
            for task in attempt.tasks:
                task.cancel()
            self._connected = False
            self._attempt = None
            await self._stop_core()
        raise ConnectionLost("the WhatsApp client stopped")  # _pump only ends by raising

    async def _pump(self, attempt: Attempt, listener: DriverListener) -> None:
        while True:
            limit = None
            if attempt.expect_by is not None:
                limit = max(0.0, attempt.expect_by - _now())
            try:
                kind, payload = await asyncio.wait_for(attempt.queue.get(), limit)
            except TimeoutError:
                raise await dead_path(
                    self.proxy, f"no answer from WhatsApp within {CONNECT_TIMEOUT_S:.0f} s"
                ) from None
            if kind == "qr":
                attempt.expect_by = None
                await self._on_qr(attempt, listener, payload)
            elif kind == "pairing_code":
                await listener.on_pairing_code(payload)
            elif kind == "status":
                self._on_status(attempt, payload)
            elif kind == "event":
                if isinstance(payload, ConnectedEv):
                    attempt.expect_by = None
                await self._on_event(listener, payload)
            elif kind == "returned":
                raise await dead_path(self.proxy, payload)

    async def _on_qr(self, attempt: Attempt, listener: DriverListener, code: str) -> None:
        ttl_ms = events.FIRST_QR_TTL_MS if attempt.codes == 0 else events.NEXT_QR_TTL_MS
        attempt.codes += 1
        attempt.qr_expiry = _now() + ttl_ms / 1000
        await listener.on_qr(code, ttl_ms)
        if self.phone and not attempt.pairing_requested:
            attempt.pairing_requested = True  # the socket is up now: PairPhone may be asked
            task = asyncio.create_task(self._request_pairing_code(attempt, self.phone))
            attempt.tasks.add(task)
            task.add_done_callback(attempt.tasks.discard)

    async def _request_pairing_code(self, attempt: Attempt, phone: str) -> None:
        try:
            code = await self._call(
                attempt.client.PairPhone,
                phone,
                True,  # ask the phone to show a notification
                ClientName.LINUX,
                ClientType.CHROME,
            )
        except Exception as exc:
            log.warning("pairing by code is not available: %s", exc)
            return
        attempt.post("pairing_code", code)

    def _on_status(self, attempt: Attempt, status: str) -> None:
        if status == "success":
            attempt.expect_by = _now() + CONNECT_TIMEOUT_S  # now the login
        expired = bool(attempt.codes) and _now() >= attempt.qr_expiry - 5
        outcome = events.qr_status_outcome(status, expired)
        if outcome is not None:
            raise outcome

    async def _on_event(self, listener: DriverListener, event: Any) -> None:
        if isinstance(event, ConnectedEv):
            phone = await self._whoami()
            self._me = phone
            self._connected = True
            await listener.on_connected(phone)
            return
        outcome = events.event_outcome(event)
        if isinstance(outcome, LoggedOut):
            await self._stop_core()  # the Go client must let go of the database first
            self.forget_auth()
        if outcome is not None:
            raise outcome

    async def _whoami(self) -> str:
        device = await self._call(self._attempt_client().get_me)
        return str(device.JID.User or self.phone or "")

    def _download(self, message: WAMessage) -> bytes:
        """A media message's file, from whatsmeow's thread (the event waits for it)."""
        return self._core.call_here(self._attempt_client().download_any, message)

    def _attempt_client(self) -> SlimClient:
        if self._attempt is None:
            raise RuntimeError("no connection attempt is running")
        return self._attempt.client

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._core.call(fn, *args)

    async def _stop_core(self) -> None:
        await self._core.stop()

    # the Driver protocol ------------------------------------------------------------------

    async def send_presence(self) -> None:
        if not self._connected:
            return
        await self._call(self._attempt_client().send_presence, Presence.AVAILABLE)

    async def send_self_message(self, text: str, ephemeral_s: int) -> None:
        if not self._connected or not self._me:
            return
        await self._call(
            self._attempt_client().send_message,
            own_jid(self._me),
            self_message(text, ephemeral_s),
        )

    async def send_typing(self, to: str, duration_ms: int) -> None:
        chat = user_jid(to)
        for state in (ChatPresence.CHAT_PRESENCE_COMPOSING, ChatPresence.CHAT_PRESENCE_PAUSED):
            if not self._connected:
                raise NotConnected("not connected")
            await self._call(
                self._attempt_client().send_chat_presence,
                chat,
                state,
                ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT,
            )
            if state is ChatPresence.CHAT_PRESENCE_COMPOSING:
                await asyncio.sleep(duration_ms / 1000)

    async def send_text(self, to: str, text: str, wa_message_id: str) -> None:
        """Send through whatsmeow, which picks the WhatsApp id itself (0.5.2 takes none): the
        journal (worker/send_journal.py) keeps a resend after a crash from sending twice."""
        mid = message_id_of(wa_message_id) or wa_message_id
        journal = self._journal()
        if mid in journal.state:
            if journal.state[mid] is not None:
                return  # sent before a crash cut the report short: sent, once
            raise SendFailed("uncertain: the worker stopped while sending; not sent twice")
        if not self._connected:
            raise NotConnected("not connected")
        client = self._attempt_client()
        journal.sending(mid)
        try:
            answer = await self._call(
                client.send_message, user_jid(to), WAMessage(conversation=text)
            )
        except Exception as exc:
            # Refused before it left: nothing reached WhatsApp, so not uncertain.
            raise SendFailed(redact(f"not sent: {exc}", self.proxy)) from None
        journal.sent(mid, str(answer.ID))

    async def send_media(self, media: OutgoingMedia, wa_message_id: str) -> None:
        """Upload the file, then send the message naming it, under the same journal as a
        text. whatsmeow takes the file whole (its ``Upload``): up to the kind's limit in
        memory while it encrypts, for this one send."""
        mid = message_id_of(wa_message_id) or wa_message_id
        journal = self._journal()
        if mid in journal.state:
            if journal.state[mid] is not None:
                return
            raise SendFailed("uncertain: the worker stopped while sending; not sent twice")
        if not self._connected:
            raise NotConnected("not connected")
        client = self._attempt_client()
        data = await asyncio.to_thread(media.path.read_bytes)
        try:
            upload = await self._call(client.upload, data, upload_type(media.kind))
        except Exception as exc:  # an upload that failed sent nothing: try again later
            raise NotConnected(redact(f"upload failed: {exc}", self.proxy)) from None
        del data
        message = build_message(media, upload)
        journal.sending(mid)
        try:
            answer = await self._call(client.send_message, user_jid(media.to), message)
        except Exception as exc:
            raise SendFailed(redact(f"not sent: {exc}", self.proxy)) from None
        journal.sent(mid, str(answer.ID))

    def _journal(self) -> SendJournal:
        if self._sent is None:
            self._sent = SendJournal(self.session_dir)
        return self._sent

    def forget_auth(self) -> None:
        """Delete whatsmeow's database (and its -wal/-shm); never session.json or logs."""
        for suffix in DB_SUFFIXES:
            (self.session_dir / f"{DB_FILE}{suffix}").unlink(missing_ok=True)

    async def close(self) -> None:
        self._connected = False
        await self._stop_core()


def user_jid(phone: str) -> JID:
    """A phone's user JID, whole (see :func:`own_jid`)."""
    return JID(User=phone, Server=USER_SERVER, RawAgent=0, Device=0, Integrator=0, IsEmpty=False)


def own_jid(phone: str) -> JID:
    """The account's own user JID, whole: JID is proto2 and RawAgent, Device and Integrator
    are required, so a JID of User and Server alone cannot be serialised (neonize's
    ``build_jid`` fills them the same way)."""
    return JID(User=phone, Server=USER_SERVER, RawAgent=0, Device=0, Integrator=0, IsEmpty=False)


def self_message(text: str, ephemeral_s: int) -> WAMessage:
    """A text that disappears after ``ephemeral_s``: ``contextInfo.expiration`` (WA Web's way)."""
    return WAMessage(
        extendedTextMessage=ExtendedTextMessage(
            text=text, contextInfo=ContextInfo(expiration=ephemeral_s)
        )
    )
