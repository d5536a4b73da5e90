"""The ``neonize`` driver: real WhatsApp through whatsmeow (neonize 0.5.2's Go core).

Facts this file relies on, read from neonize 0.5.2's source and its Go core (``goneonize``),
and checked against the installed library where it can be done offline:

* ``NewClient(name)``: ``name`` is the SQLite path of whatsmeow's store (``neonize.db`` in the
  session folder). The Go ``Neonize`` call opens it, resumes the stored device (or starts a new
  one), applies the proxy and blocks for the whole life of the connection; it returns only
  when the Go client is stopped (``Stop``), or at once with an error string when the first
  dial fails ("...socks connect tcp P->web.whatsapp.com:443: ...").
* While the device is unpaired, ``Neonize`` loops over whatsmeow's QR channel: every code
  reaches the ``qr`` C callback (first code of a round valid 60 s, the next ones 20 s), other
  channel items ("success", "timeout", "err-...") reach the login-status callback. Events
  (Connected, LoggedOut, ...) are queued in Go and delivered only after that loop ends.
* A channel item "timeout" means either every code expired or the socket dropped while
  waiting (whatsmeow maps ``Disconnected`` to it); the elapsed time tells the two apart.
* whatsmeow accepts only ``socks5://`` (``socks5h`` is refused: "unsupported proxy scheme");
  its SOCKS5 dialer sends the host name to the proxy, so DNS is resolved there anyway.
* The Go core keeps its clients in a plain map: a call for a client that is not in it
  (never started, or stopped) dereferences nil and kills the process, and concurrent
  writes to the map are fatal too. So every call into it goes through one lock, and only
  while our attempt is live.
* neonize's own ``connect()`` runs ``Neonize`` in a *non-daemon* thread and waits on it
  forever; a Go call that never returns (a stop during the QR loop leaves whatsmeow's QR
  channel open) would then keep the worker from exiting. This driver therefore makes the
  ``Neonize`` call itself, from a daemon thread, with the same arguments ``connect()`` uses
  (the ABI is pinned by ``neonize==0.5.2``; a different version fails the tests).

* Every ``Neonize`` call opens the SQLite store anew and never closes it: one file handle
  and ~225 kB of RSS per call (measured: 179 calls, +179 fds, +40 MB). So the driver
  proves the path first (our SOCKS5 greeting + auth, then a bare TCP connect to
  web.whatsapp.com:443 through the proxy) and starts the Go core only when WhatsApp is
  reachable; a worker retrying a dead proxy or a dead network stays flat.

neonize itself comes through ``neonize_slim``: its package ``__init__`` (PIL, requests,
phonenumbers, ...) never runs, and ``SlimClient`` stands in for ``NewClient`` with the same
Go calls. Each driver also drops the Go library's start-up pages from the process (~15 MB).

The asyncio loop never waits on the Go core without a deadline: blocking calls run in
daemon threads and their results, like every callback from Go, come back through
``loop.call_soon_threadsafe``; the one exception is an incoming message or receipt, which is
written to the worker's outbox in Go's thread before the callback returns (whatsmeow
acknowledges it to WhatsApp after that, so nothing acknowledged can be lost; the event id is
derived from WhatsApp's message id, so one WhatsApp delivers again is the same event).
Only the events below are subscribed, so messages and
history-sync blobs never cross into Python; history sync is also reduced at the source
(``requireFullSync`` off, one-day/one-megabyte limits in the device properties).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError, ProxyType
from python_socks.async_.asyncio import Proxy as SocksProxy

from core.proxy_probe import probe
from core.proxy_url import ProxyUrl
from worker.drivers import neonize_slim
from worker.drivers.base import (
    ConnectionLost,
    Disconnect,
    DriverListener,
    LoggedOut,
    NoAutoReconnect,
    NotConnected,
    ProxyFailure,
    QrTimeout,
    SendFailed,
)
from worker.drivers.neonize_slim import (
    JID,
    ChatPresence,
    ChatPresenceMedia,
    ClientName,
    ClientOutdatedEv,
    ClientType,
    ConnectedEv,
    ConnectFailureEv,
    ConnectFailureReason,
    ContextInfo,
    DeviceProps,
    DisconnectedEv,
    ExtendedTextMessage,
    KeepAliveRestoredEv,
    KeepAliveTimeoutEv,
    LoggedOutEv,
    MessageEv,
    PairStatusEv,
    Presence,
    ProxySettings,
    ReceiptEv,
    SlimClient,
    StreamErrorEv,
    StreamReplacedEv,
    TemporaryBanEv,
    func_callback_bytes,
    func_callback_bytes2,
    func_string,
    gocode,
    log_whatsmeow,
)
from worker.drivers.neonize_slim import NEONIZE_VERSION as NEONIZE_VERSION  # the pinned one
from worker.drivers.neonize_slim import Message as WAMessage
from worker.message_ids import message_id_of, wa_id
from worker.send_journal import SendJournal

log = logging.getLogger("wafleet.worker.neonize")

DB_FILE = "neonize.db"
DB_SUFFIXES = ("", "-wal", "-shm", "-journal")
USER_SERVER = "s.whatsapp.net"
WA_HOST, WA_PORT = "web.whatsapp.com", 443  # where whatsmeow's websocket goes

FIRST_QR_TTL_MS = 60_000  # whatsmeow's QR channel: the first code of a round...
NEXT_QR_TTL_MS = 20_000  # ...and every later one
CONNECT_TIMEOUT_S = 60.0  # no QR and no login by then: the path is dead
CALL_TIMEOUT_S = 30.0  # one blocking call into the Go core
STOP_TIMEOUT_S = 10.0
REACH_TIMEOUT_S = 15.0  # the pre-flight TCP connect to WhatsApp through the proxy
KEEPALIVE_FAILURES_LOST = 3  # whatsmeow pings every 20-30 s: ~1.5 min without an answer

DEVICE_PROPS = DeviceProps(
    os="Linux",
    platformType=DeviceProps.CHROME,
    requireFullSync=False,
    historySyncConfig=DeviceProps.HistorySyncConfig(
        fullSyncDaysLimit=1,
        fullSyncSizeMbLimit=1,
        storageQuotaMb=1,
        recentSyncDaysLimit=1,
    ),
)
SUBSCRIBED: tuple[Any, ...] = (
    PairStatusEv,
    ConnectedEv,
    KeepAliveTimeoutEv,
    KeepAliveRestoredEv,
    LoggedOutEv,
    StreamReplacedEv,
    TemporaryBanEv,
    ConnectFailureEv,
    ClientOutdatedEv,
    StreamErrorEv,
    DisconnectedEv,
    MessageEv,
    ReceiptEv,
)
# whatsmeow's receipt types that mean what our statuses mean (the rest: retries, our own
# other devices, played media, history sync; not about the recipient reading our text).
RECEIPT_STATUS = {ReceiptEv.DELIVERED: "delivered", ReceiptEv.READ: "read"}
# Messages and receipts are taken in whatsmeow's own event thread (see ``_Attempt._forward``).
TAKEN_IN_GO_THREAD = (MessageEv, ReceiptEv)
FULL_RETRY_S = 1.0  # how often a full outbox is asked again while whatsmeow waits
_LOGOUT_REASONS = {
    ConnectFailureReason.LOGGED_OUT,
    ConnectFailureReason.MAIN_DEVICE_GONE,
    ConnectFailureReason.UNKNOWN_LOGOUT,
}

T = TypeVar("T")
_now = time.monotonic  # the driver's clock (tests move it)


def core_address(proxy: ProxyUrl) -> str:
    """The proxy as whatsmeow takes it: ``socks5://`` (it resolves names at the proxy)."""
    return "socks5://" + proxy.url.removeprefix("socks5h://")


def _go_log_level() -> bytes:
    level = logging.getLogger("whatsmeow").getEffectiveLevel()
    if level <= logging.DEBUG:
        return b"DEBUG"
    if level <= logging.INFO:
        return b"INFO"
    return b"WARN" if level <= logging.WARNING else b"ERROR"


def _text(raw: object) -> str:
    if isinstance(raw, bytes):
        return raw.decode(errors="replace")
    if isinstance(raw, int) and raw:  # a bare ``*C.char``: copy it, then free it
        try:
            return ctypes.string_at(raw).decode(errors="replace")
        finally:
            gocode.FreeString(raw)
    return ""


class _Attempt:
    """One ``Neonize`` call: its client, its C callbacks and the queue back to the loop.

    The C callbacks must outlive every call Go can still make into them, so the
    attempt stays referenced by its (daemon) thread until ``Neonize`` returns.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: SlimClient,
        take: Callable[[Any], bool] = lambda _event: True,
    ) -> None:
        self.loop = loop
        self.client = client
        self.take = take
        self.uuid: str = client.uuid.decode()
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.closed = False
        self.tasks: set[asyncio.Task[None]] = set()
        # when a QR or a login must have come by (None: the QR round has its own clock)
        self.expect_by: float | None = _now() + CONNECT_TIMEOUT_S
        self.codes = 0
        self.qr_expiry = 0.0  # monotonic time when the last shown code expires
        self.pairing_requested = False
        self.qr_cb = func_string(self._on_qr)
        self.status_cb = func_string(self._on_status)
        self.event_cb = func_callback_bytes(client.event.execute)
        self.log_cb = func_callback_bytes2(log_whatsmeow)
        for event_type in SUBSCRIBED:
            client.event(event_type)(self._forward)

    def post(self, kind: str, payload: Any) -> None:
        """From any thread: hand an item to the asyncio side (dropped once the attempt ended)."""
        if self.closed:
            return
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, payload))

    def _forward(self, _client: SlimClient, message: Any) -> None:
        if isinstance(message, TAKEN_IN_GO_THREAD):
            self._take(message)
        else:
            self.post("event", message)

    def _take(self, message: Any) -> None:
        """A message or a receipt, written to the outbox here, in whatsmeow's thread:
        whatsmeow acknowledges it to WhatsApp once this returns, so it must be on disk
        first. A full outbox holds the thread (no acknowledgement: WhatsApp keeps it)."""
        try:
            while not self.take(message):
                if self.closed:
                    return  # the connection is gone: no acknowledgement can leave anyway
                time.sleep(FULL_RETRY_S)
        except Exception:  # never into Go; the event is not acknowledged-lost silently
            log.exception("an incoming %s could not be taken", type(message).__name__)

    def _on_qr(self, _uuid: int | None, code: int | None) -> None:
        if code:
            self.post("qr", ctypes.string_at(code).decode(errors="replace"))

    def _on_status(self, _uuid: int | None, status: int | None) -> None:
        if status:
            self.post("status", ctypes.string_at(status).decode(errors="replace"))


class NeonizeDriver:
    def __init__(
        self, session_id: str, session_dir: Path, proxy_url: str, phone: str | None
    ) -> None:
        self.session_id = session_id
        self.session_dir = session_dir
        self.proxy = ProxyUrl.parse(proxy_url)
        self.phone = phone
        self.db_path = session_dir / DB_FILE
        self._gate = threading.Lock()  # one call into the Go core at a time
        self._live: str | None = None  # uuid of the Go client that exists right now
        self._attempts = 0
        self._attempt: _Attempt | None = None
        self._me: str | None = None
        self._connected = False
        self._sent: SendJournal | None = None  # read on first use
        # the Go runtime has started (loading the library did it): its start-up pages can go
        neonize_slim.drop_clean_library_pages(neonize_slim.GO_LIBRARY)

    # building ---------------------------------------------------------------------------

    def build_client(self) -> SlimClient:
        """A fresh neonize client for the next attempt; touches neither network nor disk."""
        client = SlimClient(str(self.db_path), props=DEVICE_PROPS, uuid=self._next_uuid())
        # neonize would Stop(uuid) from the garbage collector, outside our lock: we stop it.
        client._stop_finalizer.detach()
        return client

    def _next_uuid(self) -> str:
        self._attempts += 1
        return f"{self.session_id}#{self._attempts}"

    def _start_core(self, attempt: _Attempt) -> None:
        """Run ``Neonize`` for ``attempt`` in a daemon thread (replaced in tests)."""
        self.session_dir.mkdir(parents=True, exist_ok=True)
        threading.Thread(
            target=self._core_main, args=(attempt,), name=f"neonize-{attempt.uuid}", daemon=True
        ).start()

    def _core_main(self, attempt: _Attempt) -> None:
        props = DEVICE_PROPS.SerializeToString()
        subscribers = bytes(sorted(attempt.client.event.list_func))
        proxy = ProxySettings(proxy_address=core_address(self.proxy))._to_c_struct()
        error = "the WhatsApp client stopped"
        try:
            raw = gocode.Neonize(
                str(self.db_path).encode(),
                attempt.uuid.encode(),
                b"",  # no JID: resume the one device of this database, or pair a new one
                0,
                0,  # not new_device
                _go_log_level(),
                attempt.qr_cb,
                attempt.status_cb,
                attempt.event_cb,
                attempt.log_cb,
                subscribers,
                len(subscribers),
                props,
                len(props),
                b"",  # no pairing by phone here: PairPhone is called on the live client
                0,
                ctypes.byref(proxy),
            )
            error = _text(raw) or error
        except Exception as exc:  # surfaced on the loop, never lost in this thread
            error = f"{type(exc).__name__}: {exc}"
        attempt.post("returned", error)

    # the attempt --------------------------------------------------------------------------

    async def run(self, listener: DriverListener) -> None:
        await self._preflight()
        await self._stop_core()  # a previous attempt that is somehow still registered
        attempt = _Attempt(
            asyncio.get_running_loop(),
            self.build_client(),
            lambda event: self._take(listener, event),
        )
        self._attempt = attempt
        self._live = attempt.uuid
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

    async def _pump(self, attempt: _Attempt, listener: DriverListener) -> None:
        while True:
            limit = None
            if attempt.expect_by is not None:
                limit = max(0.0, attempt.expect_by - _now())
            try:
                kind, payload = await asyncio.wait_for(attempt.queue.get(), limit)
            except TimeoutError:
                raise await self._dead_path(
                    f"no answer from WhatsApp within {CONNECT_TIMEOUT_S:.0f} s"
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
                raise await self._dead_path(payload)

    async def _on_qr(self, attempt: _Attempt, listener: DriverListener, code: str) -> None:
        ttl_ms = FIRST_QR_TTL_MS if attempt.codes == 0 else NEXT_QR_TTL_MS
        attempt.codes += 1
        attempt.qr_expiry = _now() + ttl_ms / 1000
        await listener.on_qr(code, ttl_ms)
        if self.phone and not attempt.pairing_requested:
            attempt.pairing_requested = True  # the socket is up now: PairPhone may be asked
            task = asyncio.create_task(self._request_pairing_code(attempt, self.phone))
            attempt.tasks.add(task)
            task.add_done_callback(attempt.tasks.discard)

    async def _request_pairing_code(self, attempt: _Attempt, phone: str) -> None:
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

    def _on_status(self, attempt: _Attempt, status: str) -> None:
        """The QR channel's other items: "success", "timeout", "err-...", "error"."""
        if status == "success":
            log.info("device paired")
            attempt.expect_by = _now() + CONNECT_TIMEOUT_S  # now the login
            return
        if status == "timeout":
            if attempt.codes and _now() >= attempt.qr_expiry - 5:
                raise QrTimeout("qr_timeout")
            raise ConnectionLost("the connection dropped while waiting for the QR scan")
        if status == "err-client-outdated":
            raise NoAutoReconnect("WhatsApp says this client is outdated", "client_outdated")
        if status == "err-scanned-without-multidevice":
            log.warning("the QR was scanned by a phone without multi-device")
            return
        raise ConnectionLost(f"pairing failed ({status})")

    async def _on_event(self, listener: DriverListener, event: Any) -> None:
        if isinstance(event, ConnectedEv):
            phone = await self._whoami()
            self._me = phone
            self._connected = True
            await listener.on_connected(phone)
        elif isinstance(event, PairStatusEv):
            if event.Status == PairStatusEv.ERROR:
                raise ConnectionLost(f"pairing failed: {event.Error or 'unknown error'}")
            log.info("paired as %s", event.ID.User)
        elif isinstance(event, LoggedOutEv):
            await self._logged_out(event.Reason)
        elif isinstance(event, StreamReplacedEv):
            raise NoAutoReconnect(
                "another client connected with this session", "stream_replaced", None
            )
        elif isinstance(event, TemporaryBanEv):
            expire = int(event.Expire)
            reason = TemporaryBanEv.TempBanReason.Name(event.Code) if event.Code else "unknown"
            raise NoAutoReconnect(
                f"temporarily banned ({reason.lower()}), {expire} s left",
                "temporary_ban",
                float(expire) if expire > 0 else None,
            )
        elif isinstance(event, ClientOutdatedEv):
            raise NoAutoReconnect("WhatsApp says this client is outdated", "client_outdated")
        elif isinstance(event, ConnectFailureEv):
            await self._connect_failure(event)
        elif isinstance(event, DisconnectedEv):
            raise ConnectionLost("the connection to WhatsApp was lost")
        elif isinstance(event, StreamErrorEv):
            raise ConnectionLost(f"WhatsApp stream error {event.Code or '?'}")
        elif isinstance(event, KeepAliveTimeoutEv):
            log.info("keep-alive unanswered (%d in a row)", event.ErrorCount)
            if event.ErrorCount >= KEEPALIVE_FAILURES_LOST:
                raise ConnectionLost("keep-alive timed out")
        elif isinstance(event, KeepAliveRestoredEv):
            log.info("keep-alive answered again")

    def _take(self, listener: DriverListener, event: Any) -> bool:
        """A message or a receipt to the listener (from whatsmeow's thread); False while the
        outbox refuses it. Receipts of ids not ours (the self-message) are taken as nothing."""
        if isinstance(event, MessageEv):
            return self._on_message(listener, event)
        status = RECEIPT_STATUS.get(event.Type)
        taken = True
        if status is not None:
            journal = self._journal()
            for wa_message_id in event.MessageIDs:
                mid = journal.by_wa_id.get(wa_message_id)
                if mid is not None:
                    taken = listener.on_receipt(wa_id(mid), status) and taken
        return taken

    def _on_message(self, listener: DriverListener, event: Any) -> bool:
        """A text that arrived from someone else, as ``MESSAGE_IN`` (media, reactions,
        protocol messages and our own other devices' messages are not forwarded)."""
        source = event.Info.MessageSource
        if source.IsFromMe:
            return True
        text = event.Message.conversation or event.Message.extendedTextMessage.text
        if not text:
            return True
        return listener.on_message_in(
            event.Info.ID, source.Sender.User, text, int(event.Info.Timestamp) * 1000
        )

    async def _connect_failure(self, event: Any) -> None:
        reason = int(event.Reason)
        if reason in _LOGOUT_REASONS:
            await self._logged_out(reason)
        name = ConnectFailureReason.Name(reason).lower() if reason else "generic"
        if reason == ConnectFailureReason.TEMP_BANNED:
            raise NoAutoReconnect("temporarily banned", "temporary_ban", None)
        if reason == ConnectFailureReason.CLIENT_OUTDATED:
            raise NoAutoReconnect("WhatsApp says this client is outdated", "client_outdated")
        if reason == ConnectFailureReason.BAD_USER_AGENT:
            raise NoAutoReconnect("WhatsApp refused this client", "bad_user_agent")
        raise ConnectionLost(f"WhatsApp refused the connection ({name}: {event.Message})")

    async def _logged_out(self, reason: int) -> None:
        await self._stop_core()  # the Go client must let go of the database first
        self.forget_auth()
        if reason in (0, ConnectFailureReason.LOGGED_OUT):
            raise LoggedOut("logged_out")
        raise LoggedOut(ConnectFailureReason.Name(reason).lower())

    async def _preflight(self) -> None:
        """Prove the path before starting the Go core: every ``Neonize`` call leaks one
        SQLite handle (neonize opens the store per call and never closes it), so a worker
        retrying a dead path must not make them. First our SOCKS5 greeting + auth (the
        proxy itself), then a bare TCP connect to WhatsApp through it (the path beyond)."""
        problem = await probe(self.proxy)
        if problem is not None:
            raise ProxyFailure(f"proxy {problem}")
        socks = SocksProxy(
            ProxyType.SOCKS5,
            self.proxy.host,
            self.proxy.port,
            self.proxy.username or None,
            self.proxy.password or None,
            rdns=True,
        )
        try:
            sock = await socks.connect(WA_HOST, WA_PORT, timeout=REACH_TIMEOUT_S)
        except ProxyConnectionError:
            raise ProxyFailure("proxy unreachable") from None
        except ProxyTimeoutError:
            raise await self._dead_path("timed out reaching WhatsApp through the proxy") from None
        except ProxyError as exc:
            if "auth" in str(exc).lower():
                raise ProxyFailure("proxy refused our credentials") from None
            raise ConnectionLost(f"WhatsApp unreachable through the proxy: {exc}") from None
        except OSError as exc:
            raise ConnectionLost(f"WhatsApp unreachable through the proxy: {exc}") from None
        sock.close()

    async def _dead_path(self, detail: str) -> Disconnect:
        """Why the path to WhatsApp failed: the proxy (fail over) or beyond it (reconnect)."""
        where = f"dial tcp {self.proxy.host}:{self.proxy.port}:"
        if "username/password authentication failed" in detail:
            return ProxyFailure("proxy refused our credentials")
        if where in detail:
            return ProxyFailure("proxy unreachable")
        problem = await probe(self.proxy)
        if problem is not None:
            return ProxyFailure(f"proxy {problem}")
        return ConnectionLost(_redact(detail, self.proxy))

    async def _whoami(self) -> str:
        device = await self._call(self._attempt_client().get_me)
        return str(device.JID.User or self.phone or "")

    def _attempt_client(self) -> SlimClient:
        if self._attempt is None:
            raise RuntimeError("no connection attempt is running")
        return self._attempt.client

    # calls into the Go core ---------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in a daemon thread under the gate, with a deadline for the loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        uuid = self._live
        timeout = CALL_TIMEOUT_S

        def settle(result: T | None, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]

        def work() -> None:
            result: T | None = None
            error: BaseException | None = None
            if not self._gate.acquire(timeout=timeout):
                error = TimeoutError("the WhatsApp client is busy")
            else:
                try:
                    if uuid is None or self._live != uuid:
                        raise RuntimeError("the WhatsApp client is not running")
                    result = fn(*args)
                except Exception as exc:
                    error = exc
                finally:
                    self._gate.release()
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, result, error)

        threading.Thread(target=work, name="neonize-call", daemon=True).start()
        return await asyncio.wait_for(future, timeout)

    async def _stop_core(self) -> None:
        """Stop the live Go client (closing its socket and ending ``Neonize``), bounded."""
        uuid = self._live
        if uuid is None:
            return
        self._live = None  # no more calls for it from now on

        def stop() -> None:
            with self._gate:
                gocode.Stop(uuid.encode())

        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def settle() -> None:
            if not future.done():
                future.set_result(None)

        def work() -> None:
            try:
                stop()
            finally:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(settle)

        threading.Thread(target=work, name="neonize-stop", daemon=True).start()
        try:
            await asyncio.wait_for(future, STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("the WhatsApp client did not stop within %.0f s", STOP_TIMEOUT_S)

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
            raise SendFailed(_redact(f"not sent: {exc}", self.proxy)) from None
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


def _redact(detail: str, proxy: ProxyUrl) -> str:
    if proxy.password:
        detail = detail.replace(proxy.password, "***")
    return detail
