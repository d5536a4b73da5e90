"""whatsmeow's events, as the driver's outcomes and listener calls.

What whatsmeow reports, and how (neonize 0.5.2):

* While the device is unpaired, the Go core loops over whatsmeow's QR channel: every code
  reaches the ``qr`` C callback (the first code of a round is valid 60 s, the next ones 20 s),
  the channel's other items ("success", "timeout", "err-...") reach the login-status
  callback. Events (Connected, LoggedOut, ...) are queued in Go and delivered only after that
  loop ends.
* A channel item "timeout" means either every code expired or the socket dropped while
  waiting (whatsmeow maps ``Disconnected`` to it); only the elapsed time tells them apart.
* An incoming message or receipt is acknowledged to WhatsApp once the event callback returns,
  so it is handed to the listener (the worker's outbox) in Go's thread, before that; its
  event id is derived from WhatsApp's message id, so one WhatsApp delivers again is the same
  event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from worker.drivers.base import (
    ConnectionLost,
    Disconnect,
    DriverListener,
    LoggedOut,
    NoAutoReconnect,
    QrTimeout,
)
from worker.drivers.neonize_slim import (
    ClientOutdatedEv,
    ConnectedEv,
    ConnectFailureEv,
    ConnectFailureReason,
    DisconnectedEv,
    DownloadError,
    KeepAliveRestoredEv,
    KeepAliveTimeoutEv,
    LoggedOutEv,
    MessageEv,
    PairStatusEv,
    ReceiptEv,
    StreamErrorEv,
    StreamReplacedEv,
    TemporaryBanEv,
)
from worker.media_inbox import IncomingFile
from worker.message_ids import wa_id
from worker.send_journal import SendJournal

log = logging.getLogger("wafleet.worker.neonize")

FIRST_QR_TTL_MS = 60_000  # whatsmeow's QR channel: the first code of a round...
NEXT_QR_TTL_MS = 20_000  # ...and every later one
KEEPALIVE_FAILURES_LOST = 3  # whatsmeow pings every 20-30 s: ~1.5 min without an answer

# The events asked of whatsmeow: the ones below that decide an attempt, and messages and
# receipts. History sync is not among them, so its blobs never cross into Python.
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
# Messages and receipts are taken in whatsmeow's own event thread (see ``take``).
TAKEN_IN_GO_THREAD = (MessageEv, ReceiptEv)

# whatsmeow's receipt types that mean what our statuses mean (the rest: retries, our own
# other devices, played media, history sync; not about the recipient reading our text).
RECEIPT_STATUS = {ReceiptEv.DELIVERED: "delivered", ReceiptEv.READ: "read"}
_LOGOUT_REASONS = {
    ConnectFailureReason.LOGGED_OUT,
    ConnectFailureReason.MAIN_DEVICE_GONE,
    ConnectFailureReason.UNKNOWN_LOGOUT,
}


def qr_status_outcome(status: str, codes_expired: bool) -> Disconnect | None:
    """The QR channel's other items ("success", "timeout", "err-...", "error"): how the
    attempt ends, or None when it goes on. ``codes_expired``: every code shown has expired."""
    if status == "success":
        log.info("device paired")
        return None
    if status == "timeout":
        if codes_expired:
            return QrTimeout("qr_timeout")
        return ConnectionLost("the connection dropped while waiting for the QR scan")
    if status == "err-client-outdated":
        return NoAutoReconnect("WhatsApp says this client is outdated", "client_outdated")
    if status == "err-scanned-without-multidevice":
        log.warning("the QR was scanned by a phone without multi-device")
        return None
    return ConnectionLost(f"pairing failed ({status})")


def event_outcome(event: Any) -> Disconnect | None:
    """How an event other than ``Connected`` ends the attempt, or None when it goes on.
    A ``LoggedOut`` outcome means the device is gone: its database must go too."""
    if isinstance(event, PairStatusEv):
        if event.Status == PairStatusEv.ERROR:
            return ConnectionLost(f"pairing failed: {event.Error or 'unknown error'}")
        log.info("paired as %s", event.ID.User)
    elif isinstance(event, LoggedOutEv):
        return _logged_out(event.Reason)
    elif isinstance(event, StreamReplacedEv):
        return NoAutoReconnect(
            "another client connected with this session", "stream_replaced", None
        )
    elif isinstance(event, TemporaryBanEv):
        expire = int(event.Expire)
        reason = TemporaryBanEv.TempBanReason.Name(event.Code) if event.Code else "unknown"
        return NoAutoReconnect(
            f"temporarily banned ({reason.lower()}), {expire} s left",
            "temporary_ban",
            float(expire) if expire > 0 else None,
        )
    elif isinstance(event, ClientOutdatedEv):
        return NoAutoReconnect("WhatsApp says this client is outdated", "client_outdated")
    elif isinstance(event, ConnectFailureEv):
        return _connect_failure(event)
    elif isinstance(event, DisconnectedEv):
        return ConnectionLost("the connection to WhatsApp was lost")
    elif isinstance(event, StreamErrorEv):
        return ConnectionLost(f"WhatsApp stream error {event.Code or '?'}")
    elif isinstance(event, KeepAliveTimeoutEv):
        log.info("keep-alive unanswered (%d in a row)", event.ErrorCount)
        if event.ErrorCount >= KEEPALIVE_FAILURES_LOST:
            return ConnectionLost("keep-alive timed out")
    elif isinstance(event, KeepAliveRestoredEv):
        log.info("keep-alive answered again")
    return None


def _connect_failure(event: Any) -> Disconnect:
    reason = int(event.Reason)
    if reason in _LOGOUT_REASONS:
        return _logged_out(reason)
    name = ConnectFailureReason.Name(reason).lower() if reason else "generic"
    if reason == ConnectFailureReason.TEMP_BANNED:
        return NoAutoReconnect("temporarily banned", "temporary_ban", None)
    if reason == ConnectFailureReason.CLIENT_OUTDATED:
        return NoAutoReconnect("WhatsApp says this client is outdated", "client_outdated")
    if reason == ConnectFailureReason.BAD_USER_AGENT:
        return NoAutoReconnect("WhatsApp refused this client", "bad_user_agent")
    return ConnectionLost(f"WhatsApp refused the connection ({name}: {event.Message})")


def _logged_out(reason: int) -> LoggedOut:
    if reason in (0, ConnectFailureReason.LOGGED_OUT):
        return LoggedOut("logged_out")
    return LoggedOut(ConnectFailureReason.Name(reason).lower())


def take(
    listener: DriverListener,
    event: Any,
    journal: Callable[[], SendJournal],
    download: Callable[[Any], bytes],
) -> bool:
    """A message or a receipt to the listener (from whatsmeow's thread); False while the
    outbox refuses it. Receipts of ids not ours (the self-message) are taken as nothing;
    ``journal`` maps WhatsApp's ids of our sends back to ours; ``download`` fetches the file
    of a media message (whatsmeow's ``DownloadAny``)."""
    if isinstance(event, MessageEv):
        return _message_in(listener, event, download)
    status = RECEIPT_STATUS.get(event.Type)
    taken = True
    if status is not None:
        sent = journal()
        for wa_message_id in event.MessageIDs:
            mid = sent.by_wa_id.get(wa_message_id)
            if mid is not None:
                taken = listener.on_receipt(wa_id(mid), status) and taken
    return taken


def _message_in(listener: DriverListener, event: Any, download: Callable[[Any], bytes]) -> bool:
    """A text, an image, a document, a voice note or a video that arrived from someone
    else, as ``MESSAGE_IN`` (reactions, stickers, protocol messages and our own other
    devices' messages are not forwarded). A file is downloaded here, before the event is
    taken, so it is acknowledged only once it is on disk."""
    source = event.Info.MessageSource
    if source.IsFromMe:
        return True
    timestamp = int(event.Info.Timestamp) * 1000
    found = media_part(event.Message)
    if found is not None:
        kind, part = found
        caption = str(getattr(part, "caption", "") or "")
        try:
            data = download(event.Message)
        except (TimeoutError, RuntimeError) as exc:  # the client is busy or gone: again
            log.warning("an incoming %s is not downloaded yet: %s", kind, exc)
            return False
        except DownloadError as exc:
            # WhatsApp no longer has it (expired, deleted): retrying cannot help, and
            # holding the event would hold every message behind it. The caption still goes.
            log.error(
                "an incoming %s could not be downloaded (%s): its caption goes alone", kind, exc
            )
            return listener.on_message_in(event.Info.ID, source.Sender.User, caption, timestamp)
        file = IncomingFile(
            kind=kind,
            data=data,
            filename=str(getattr(part, "fileName", "") or "") or None,
            mime=str(part.mimetype or "").split(";")[0].strip() or None,
        )
        return listener.on_message_in(event.Info.ID, source.Sender.User, caption, timestamp, file)
    text = event.Message.conversation or event.Message.extendedTextMessage.text
    if not text:
        return True
    return listener.on_message_in(event.Info.ID, source.Sender.User, text, timestamp)


def media_part(message: Any) -> tuple[str, Any] | None:
    """``(kind, the part)`` of a media message (a document with a caption comes wrapped),
    or None. A voice note is an audio message marked PTT."""
    wrapped = message.documentWithCaptionMessage.message
    if message.HasField("documentWithCaptionMessage") and wrapped.HasField("documentMessage"):
        return "document", wrapped.documentMessage
    for name, kind in _MEDIA_PARTS:
        if message.HasField(name):
            part = getattr(message, name)
            if kind == "audio" and getattr(part, "PTT", False):
                return "voice", part
            return kind, part
    return None


_MEDIA_PARTS = (
    ("imageMessage", "image"),
    ("documentMessage", "document"),
    ("audioMessage", "audio"),
    ("videoMessage", "video"),
)
