"""The contract between the worker's session loop and a WhatsApp driver.

A driver owns exactly one connection attempt at a time. The session loop, not the
driver, decides what happens after a disconnect (report, back off, reconnect), so
every driver ends an attempt by raising one of the ``Disconnect`` subclasses below.
That keeps the classification of a disconnect in one place for every driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from core.runner import EXIT_RECYCLE
from worker.media_inbox import IncomingFile
from worker.outbox import OUTBOX_FILE

__all__ = ["EXIT_RECYCLE"]


class Disconnect(Exception):  # noqa: N818 - these are outcomes, not failures of the code
    """An attempt ended. ``code`` is a stable machine-readable reason for the webhook."""

    code: str = "connection_lost"

    def __init__(self, reason: str, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if code is not None:
            self.code = code


class ProxyFailure(Disconnect):
    """The proxy is down, refuses our credentials or times out: the orchestrator fails over."""

    code = "proxy_error"


class LoggedOut(Disconnect):
    """The account removed this device: auth is void, a new QR is needed."""

    code = "logged_out"


class QrTimeout(Disconnect):
    """Every QR of a linking round expired unscanned: wait for the operator to ask again."""

    code = "qr_timeout"


class ConnectionLost(Disconnect):
    """The network path broke; the session loop reconnects with backoff."""

    code = "connection_lost"


class NoAutoReconnect(Disconnect):
    """The server told us not to come back by ourselves (stream replaced, banned, outdated).

    ``retry_after_s`` is set when the server named a time after which trying again is safe
    (a temporary ban); ``None`` means wait for the operator (restart).
    """

    def __init__(self, reason: str, code: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason, code)
        self.retry_after_s = retry_after_s


class Recycle(Disconnect):  # noqa: N818
    """Time for a fresh process: native WhatsApp libraries leak a little per connection
    (neonize keeps a database handle and ~225 kB per attempt).

    The worker exits with ``EXIT_RECYCLE`` and the orchestrator starts it again at once,
    without counting a crash or alerting: the session keeps its auth and its proxy.
    """

    code = "recycle"


class SendFailed(Exception):  # noqa: N818 - an outcome reported as ``failed``
    """WhatsApp refused the message for good (not a lost connection: that is retried)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotConnected(Exception):  # noqa: N818
    """The message could not leave: no live connection. The command waits for the next."""


@dataclass(frozen=True)
class OutgoingMedia:
    """A file the worker fetched and checked (size, SHA-256), to send to ``to``."""

    to: str
    kind: str  # image | document | audio | voice | video
    path: Path
    mime: str
    size: int
    sha256: str
    filename: str | None = None
    caption: str = ""


class DriverListener(Protocol):
    """What a driver tells the session loop while an attempt is running."""

    async def on_qr(self, qr: str, ttl_ms: int) -> None: ...

    async def on_pairing_code(self, code: str) -> None: ...

    async def on_connected(self, phone: str) -> None: ...

    def on_message_in(
        self,
        message_id: str,
        sender: str,
        text: str,
        timestamp: int,
        media: IncomingFile | None = None,
    ) -> bool:
        """A message arrived at the session's phone (timestamp in ms); ``media``: the file it
        carries (``text`` is then its caption, maybe empty), written to disk before it is taken.

        True once it is durably queued: only then may the driver acknowledge it to the
        network. False: not taken (the outbox is full); do not acknowledge, so the network
        keeps it and delivers it again. Callable from any thread (whatsmeow's event thread).
        """
        ...

    def on_receipt(self, wa_message_id: str, status: str) -> bool:
        """``delivered`` or ``read`` for a message this session sent (WhatsApp's id); the
        answer means what ``on_message_in``'s does."""
        ...


class Driver(Protocol):
    """One WhatsApp client bound to one session folder and one proxy."""

    async def run(self, listener: DriverListener) -> None:
        """Connect (pairing first if the folder holds no auth) and stay connected.

        Never returns normally: it raises a ``Disconnect`` when the attempt ends.
        """
        ...

    async def send_presence(self) -> None:
        """Mark the account ``available``; only called while connected."""
        ...

    async def send_self_message(self, text: str, ephemeral_s: int) -> None:
        """Send ``text`` to the account's own chat with a disappearing timer."""
        ...

    async def send_typing(self, to: str, duration_ms: int) -> None:
        """Show "typing..." to ``to`` for ``duration_ms``, then stop; ``NotConnected``."""
        ...

    async def send_text(self, to: str, text: str, wa_message_id: str) -> None:
        """Send ``text`` to the phone ``to`` with the given WhatsApp id; returns once WhatsApp
        accepted it. ``NotConnected`` (try again later) or ``SendFailed`` (for good)."""
        ...

    async def send_media(self, media: OutgoingMedia, wa_message_id: str) -> None:
        """Send a file (image, document, voice, audio, video) with its optional caption,
        as ``send_text`` sends a text: the same id, the same outcomes."""
        ...

    def forget_auth(self) -> None:
        """Delete the auth files so the next attempt starts with a new QR."""
        ...

    async def close(self) -> None: ...


def auth_files(
    session_dir: Path, keep: frozenset[str] = frozenset({"session.json", OUTBOX_FILE})
) -> list[Path]:
    """The files of ``session_dir`` that belong to the driver (everything but wafleet's own:
    a logout must not throw away the messages that arrived before it, still in the outbox)."""
    if not session_dir.is_dir():
        return []
    return [
        p
        for p in session_dir.iterdir()
        if p.is_file() and p.name not in keep and not p.name.endswith(".log")
    ]
