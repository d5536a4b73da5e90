"""The Go client's life: start it, call into it, stop it, without ever hurting the process.

What whatsmeow's Go core (neonize 0.5.2's ``goneonize``) does, read from its source and
checked against the installed library where that can be done offline:

* ``Neonize(name, uuid, ...)``: ``name`` is the SQLite path of whatsmeow's store
  (``neonize.db`` in the session folder). The call opens it, resumes the stored device (or
  starts a new one), applies the proxy and blocks for the whole life of the connection; it
  returns only when the client is stopped (``Stop``), or at once with an error string when
  the first dial fails ("...socks connect tcp P->web.whatsapp.com:443: ...").
* The core keeps its clients in a plain map: a call for a client that is not in it (never
  started, or stopped) dereferences nil and kills the process, and concurrent writes to the
  map are fatal too. So every call into it goes through one lock, and only while the
  attempt it belongs to is live.
* neonize's own ``connect()`` runs ``Neonize`` in a *non-daemon* thread and waits on it
  forever; a Go call that never returns (a stop during the QR loop leaves whatsmeow's QR
  channel open) would then keep the worker from exiting. So ``Neonize`` is called here, from
  a daemon thread, with the arguments ``connect()`` uses (the ABI is pinned by
  ``neonize==0.5.2``; a different version fails the tests).

The asyncio loop never waits on the Go core without a deadline: blocking calls run in daemon
threads and their results, like every callback from Go, come back through
``loop.call_soon_threadsafe``. The one exception is an incoming message or receipt, taken in
Go's thread before the callback returns (see ``Attempt._take``). History sync is never
subscribed, and it is also reduced at the source (``requireFullSync`` off, one-day and
one-megabyte limits in ``DEVICE_PROPS``).

neonize itself comes through ``neonize_slim``: its package ``__init__`` (PIL, requests,
phonenumbers, ...) never runs, and ``SlimClient`` stands in for ``NewClient`` with the same
Go calls.
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

from core.proxy_url import ProxyUrl
from worker.drivers import neonize_slim
from worker.drivers.neonize.events import SUBSCRIBED, TAKEN_IN_GO_THREAD
from worker.drivers.neonize_slim import (
    DeviceProps,
    ProxySettings,
    SlimClient,
    func_callback_bytes,
    func_callback_bytes2,
    func_string,
    gocode,
    log_whatsmeow,
)

log = logging.getLogger("wafleet.worker.neonize")

CALL_TIMEOUT_S = 30.0  # one blocking call into the Go core
STOP_TIMEOUT_S = 10.0

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
FULL_RETRY_S = 1.0  # how often a full outbox is asked again while whatsmeow waits

T = TypeVar("T")


def core_address(proxy: ProxyUrl) -> str:
    """The proxy as whatsmeow takes it: ``socks5://``. whatsmeow refuses ``socks5h``
    ("unsupported proxy scheme"), but its SOCKS5 dialer sends the host name to the proxy,
    so DNS is resolved there anyway."""
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


class Attempt:
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
        # the driver's course of the attempt: when a QR or a login must have come by
        # (None: the QR round has its own clock), and the QR round so far
        self.expect_by: float | None = None
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


class GoCore:
    """One session's Go clients, one live at a time, and every call into them."""

    def __init__(self, session_id: str, db_path: Path, proxy: ProxyUrl) -> None:
        self.session_id = session_id
        self.db_path = db_path
        self.proxy = proxy
        self._gate = threading.Lock()  # one call into the Go core at a time
        self.live: str | None = None  # uuid of the Go client that exists right now
        self._attempts = 0
        # the Go runtime has started (loading the library did it): its start-up pages can go
        # (~15 MB; they fault back in from the page cache if ever used)
        neonize_slim.drop_clean_library_pages(neonize_slim.GO_LIBRARY)

    def build_client(self) -> SlimClient:
        """A fresh neonize client for the next attempt; touches neither network nor disk."""
        client = SlimClient(str(self.db_path), props=DEVICE_PROPS, uuid=self._next_uuid())
        # neonize would Stop(uuid) from the garbage collector, outside our lock: we stop it.
        client._stop_finalizer.detach()
        return client

    def _next_uuid(self) -> str:
        self._attempts += 1
        return f"{self.session_id}#{self._attempts}"

    def start(self, attempt: Attempt) -> None:
        """Run ``Neonize`` for ``attempt`` in a daemon thread."""
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        threading.Thread(
            target=self._main, args=(attempt,), name=f"neonize-{attempt.uuid}", daemon=True
        ).start()

    def _main(self, attempt: Attempt) -> None:
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

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in a daemon thread under the gate, with a deadline for the loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        uuid = self.live
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
                    if uuid is None or self.live != uuid:
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

    def call_here(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in this thread under the gate: for whatsmeow's own thread while it
        hands over an event (a media download must finish before the event is taken).
        ``TimeoutError`` when the gate stays taken, ``RuntimeError`` when no client runs."""
        uuid = self.live
        if not self._gate.acquire(timeout=CALL_TIMEOUT_S):
            raise TimeoutError("the WhatsApp client is busy")
        try:
            if uuid is None or self.live != uuid:
                raise RuntimeError("the WhatsApp client is not running")
            return fn(*args)
        finally:
            self._gate.release()

    async def stop(self) -> None:
        """Stop the live Go client (closing its socket and ending ``Neonize``), bounded."""
        uuid = self.live
        if uuid is None:
            return
        self.live = None  # no more calls for it from now on

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
