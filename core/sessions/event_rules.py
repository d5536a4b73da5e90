"""What each kind of worker event means: the shape of its data, and what it does.

Every kind is read here and nowhere else: its check (``CHECKS``), run before anything is
written so that a malformed event changes nothing, and its effect (the tables of
``EventRules``; a ``PING`` has ``on_ping``). The checks cover every string in ``data``
(core/text.py): a reason or a pairing code with a NUL or a lone surrogate could not be
written to the event stream nor shown in the chat. How an event is taken in (once, in
order, under the session's lock) is core/sessions/worker_events.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from core import session_files, text
from core.errors import InvalidInput, NotFound
from core.events import BOOT_ID, EventKind, boot_id
from core.models import Reason, SessionRecord, Status
from core.notifier import Alert, AlertKind, Done
from core.phone import normalize as normalize_phone
from core.proxy_url import ProxyUrl
from core.sessions.context import Context, session_log
from core.sessions.failover import Failover
from core.store import NoSuchSession

MAX_TEXT = 2048
MAX_MESSAGE_TEXT = 16 * 1024  # an incoming message; the webhook's body cap bounds it anyway
MESSAGE_STATUSES = frozenset({"sent", "delivered", "read", "failed"})

# the shape of each kind's data -----------------------------------------------------------


def _text(data: dict[str, Any], name: str, required: bool) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise InvalidInput(f"data.{name} must be a non-empty string")
    return value


def _code(data: dict[str, Any]) -> None:
    value = data.get("code")
    if value is not None and not isinstance(value, str | int):
        raise InvalidInput("data.code must be a string or a number")


def _timestamp(data: dict[str, Any]) -> None:
    ts = data.get("timestamp")
    if ts is not None and (not isinstance(ts, int) or isinstance(ts, bool) or ts < 0):
        raise InvalidInput("data.timestamp must be milliseconds since the epoch")


def _qr(data: dict[str, Any]) -> dict[str, Any]:
    _text(data, "qr", required=True)
    ttl = data.get("ttlMs")
    if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool) or ttl <= 0):
        raise InvalidInput("data.ttlMs must be a positive whole number of milliseconds")
    return data


def _pairing(data: dict[str, Any]) -> dict[str, Any]:
    _text(data, "code", required=True)
    return data


def _connected(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "phoneNumber": normalize_phone(data.get("phoneNumber"))}


def _disconnected(data: dict[str, Any]) -> dict[str, Any]:
    _text(data, "reason", required=False)
    _code(data)
    return data


def _ping(data: dict[str, Any]) -> dict[str, Any]:
    ts = data.get("timestamp")
    if ts is not None and (not isinstance(ts, int) or isinstance(ts, bool)):
        raise InvalidInput("data.timestamp must be milliseconds since the epoch")
    return data


def _proxy_error(data: dict[str, Any]) -> dict[str, Any]:
    _text(data, "error", required=False)
    _text(data, "proxyId", required=False)  # which proxy the worker used (never its URL)
    return data


def _auth_failure(data: dict[str, Any]) -> dict[str, Any]:
    _text(data, "reason", required=False)
    return data


def _message_in(data: dict[str, Any]) -> dict[str, Any]:
    """A message that arrived at the session's phone (streamed to the operator)."""
    _text(data, "messageId", required=True)
    _text(data, "from", required=True)
    body = data.get("text")
    if not isinstance(body, str) or len(body) > MAX_MESSAGE_TEXT:
        raise InvalidInput(f"data.text must be a string of at most {MAX_MESSAGE_TEXT} characters")
    _timestamp(data)
    return data


def _message_status(data: dict[str, Any]) -> dict[str, Any]:
    """About a message this session sent; ``messageId`` is OUR id (core/messages.py)."""
    _text(data, "messageId", required=True)
    if data.get("status") not in MESSAGE_STATUSES:
        raise InvalidInput(f"data.status must be one of {', '.join(sorted(MESSAGE_STATUSES))}")
    _text(data, "reason", required=False)
    return data


CHECKS: dict[EventKind, Callable[[dict[str, Any]], dict[str, Any]]] = {
    EventKind.QR_CODE: _qr,
    EventKind.PAIRING_CODE: _pairing,
    EventKind.CONNECTED: _connected,
    EventKind.DISCONNECTED: _disconnected,
    EventKind.PING: _ping,
    EventKind.PROXY_ERROR: _proxy_error,
    EventKind.AUTH_FAILURE: _auth_failure,
    EventKind.MESSAGE_IN: _message_in,
    EventKind.MESSAGE_STATUS: _message_status,
}


def check(kind: object, data: object) -> tuple[EventKind, dict[str, Any]]:
    """Validated ``(type, data)``; ``InvalidInput`` names the first problem."""
    if not isinstance(kind, str) or kind not in CHECKS:
        raise InvalidInput(f"type must be one of {', '.join(sorted(CHECKS))}")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInput("data must be a JSON object")
    text.check_tree(data, "data")
    boot = data.get("bootId")
    if boot is not None and (not isinstance(boot, str) or not BOOT_ID.fullmatch(boot)):
        raise InvalidInput("data.bootId must be 8-64 letters, digits, '_' or '-'")
    event_kind = EventKind(kind)
    return event_kind, CHECKS[event_kind](data)


# what each kind does ---------------------------------------------------------------------

LifeCycleRule = Callable[[SessionRecord, dict[str, Any], int], Awaitable[None]]
MessageRule = Callable[[str, dict[str, Any]], Awaitable[None]]


class EventRules:
    def __init__(self, ctx: Context, failover: Failover) -> None:
        """``failover``: a confirmed ``PROXY_ERROR`` moves every session off the proxy."""
        self.ctx = ctx
        self.failover = failover
        # Applied under the session's lock, after the event went into the session's history.
        self.life_cycle: dict[EventKind, LifeCycleRule] = {
            EventKind.QR_CODE: self.on_qr_code,
            EventKind.PAIRING_CODE: self.on_pairing_code,
            EventKind.CONNECTED: self.on_connected,
            EventKind.DISCONNECTED: self.on_disconnected,
            EventKind.AUTH_FAILURE: self.on_auth_failure,
            EventKind.PROXY_ERROR: self.on_proxy_error,
        }
        # Applied after the event went into the operator's stream (core/event_log.py).
        self.message: dict[EventKind, MessageRule] = {
            EventKind.MESSAGE_IN: self.on_message_in,
            EventKind.MESSAGE_STATUS: self.on_message_status,
        }

    async def on_ping(self, session_id: str, now: int) -> None:
        """Alive now: coalesced with the other pings into one write (core/pings.py)."""
        if not await self.ctx.pings.record(session_id, now):
            raise NotFound(f"no session {session_id!r}")

    async def on_qr_code(self, record: SessionRecord, data: dict[str, Any], now: int) -> None:
        ctx = self.ctx
        ttl_ms = int(data.get("ttlMs") or 60_000)
        await ctx.store.set_qr(record.id, data["qr"], now + ttl_ms, ttl_ms)
        took = await ctx.provisioned_for(record.id)
        if took is not None:
            ctx.metrics.provision_to_qr.observe(took)
        await ctx.notifier.notify(
            Alert(
                AlertKind.QR_READY,
                record.id,
                record.phone,
                qr=data["qr"],
                qr_expires=now + ttl_ms,
            )
        )

    async def on_pairing_code(self, record: SessionRecord, data: dict[str, Any], now: int) -> None:
        await self.ctx.store.set_fields(record.id, pairingCode=data["code"])
        await self.ctx.notifier.notify(
            Alert(AlertKind.PAIRING_CODE, record.id, record.phone, facts={"code": data["code"]})
        )

    async def on_connected(self, record: SessionRecord, data: dict[str, Any], now: int) -> None:
        ctx = self.ctx
        phone = data["phoneNumber"]
        try:
            expected = await ctx.store.mark_connected(record.id, phone, now)
        except NoSuchSession:
            raise NotFound(f"no session {record.id!r}") from None
        await ctx.crashes.clear(record.id)
        await ctx.store.set_fields(record.id, bootId=boot_id(data))
        await session_files.write_record_meta(ctx.settings.sessions_dir, record, phone=phone)
        if expected:
            session_log(record.id).warning(
                "provisioned for +%s but linked by +%s", expected, phone
            )
            await ctx.notifier.notify(
                Alert(
                    AlertKind.PHONE_MISMATCH,
                    record.id,
                    phone,
                    facts={"expected": expected, "linked": phone},
                    done=Done.KEPT_LINK,
                )
            )
        await ctx.notifier.notify(
            Alert(
                AlertKind.CONNECTED,
                record.id,
                phone,
                proxy=record.proxy_masked,
                done=Done.NOTHING_NEEDED,
            )
        )
        await ctx.messages.connected(record.id)

    async def on_disconnected(self, record: SessionRecord, data: dict[str, Any], now: int) -> None:
        code = str(data.get("code") or Reason.CONNECTION_LOST)
        if _stale_disconnect(data, record.status, record.boot_id):
            session_log(record.id).info(
                "ignoring DISCONNECTED (%s) from worker boot %s: boot %s is connected",
                code,
                boot_id(data),
                record.boot_id,
            )
            return
        await self.ctx.store.set_fields(record.id, status=Status.DISCONNECTED, reason=code)
        await self.ctx.notifier.notify(
            Alert(
                AlertKind.DISCONNECTED,
                record.id,
                record.phone,
                proxy=record.proxy_masked,
                facts={"code": code, "reason": str(data.get("reason") or "")},
                done=_disconnect_action(code),
            )
        )

    async def on_auth_failure(self, record: SessionRecord, data: dict[str, Any], now: int) -> None:
        ctx = self.ctx
        reason = str(data.get("reason") or "logged_out")
        if reason == "qr_timeout":
            await ctx.store.set_fields(
                record.id, status=Status.FAILED, reason=Reason.QR_EXPIRED, qr=None, qrExpires=None
            )
            await ctx.notifier.notify(
                Alert(
                    AlertKind.QR_EXPIRED,
                    record.id,
                    record.phone,
                    done=Done.WAITING_FOR_NEW_QR,
                )
            )
            return
        # Logged out: the credentials are void. The worker deleted them and is already in a
        # new QR round; deleting here could remove that round's fresh auth, so we don't.
        await ctx.store.set_fields(record.id, status=Status.PENDING, reason=Reason.LOGGED_OUT)
        await ctx.notifier.notify(
            Alert(
                AlertKind.LOGGED_OUT,
                record.id,
                record.phone,
                facts={"reason": reason},
                done=Done.NEW_QR_ROUND,
            )
        )
        await ctx.messages.logged_out(record.id)

    async def on_proxy_error(self, record: SessionRecord, data: dict[str, Any], now: int) -> None:
        reported = data.get("proxyId")
        if reported is not None and reported != _proxy_id(record.proxy):
            # A worker already replaced by a failover, flushing its last events on the way
            # out: its proxy is not this session's any more.
            session_log(record.id).info("ignoring a PROXY_ERROR about a proxy it no longer uses")
            return
        await self.ctx.store.set_fields(
            record.id, status=Status.DISCONNECTED, reason=Reason.PROXY_ERROR
        )
        # Answer the worker now; the probe and failover may take seconds.
        self.ctx.tasks.spawn(
            self.failover.handle_proxy_failure(
                record.proxy, str(data.get("error", "")), record.id
            ),
            name=f"proxy-error-{record.id}",
        )

    async def on_message_in(self, session_id: str, data: dict[str, Any]) -> None:
        await self.ctx.messages.count_received(session_id)

    async def on_message_status(self, session_id: str, data: dict[str, Any]) -> None:
        await self.ctx.messages.update(
            session_id, data["messageId"], data["status"], data.get("reason"), ack=False
        )


def _stale_disconnect(data: dict[str, Any], status: str, connected_boot: str | None) -> bool:
    """True for a ``DISCONNECTED`` from another process than the one now connected.

    After a split brain two copies of a worker run; the newer connection replaces the older
    one, whose "stream replaced" can reach ``serve`` after the newer copy's ``CONNECTED``.
    Applied, it would show the session disconnected although a worker is connected. A worker
    reports ``DISCONNECTED`` only for a connection it held, so one from a process other than
    the last to report ``CONNECTED``, while the session is connected, is about a connection
    that was already superseded. Events without boot ids (older workers) are applied as before.
    """
    if status != "connected" or connected_boot is None:
        return False
    sender = boot_id(data)
    return sender is not None and sender != connected_boot


def _proxy_id(url: str) -> str | None:
    try:
        return ProxyUrl.parse(url).id
    except ValueError:
        return None


def _disconnect_action(code: str) -> Done:
    return {
        "stream_replaced": Done.NOT_RECONNECTING_REPLACED,
        "temporary_ban": Done.WAITING_OUT_BAN,
        "client_outdated": Done.NOT_RECONNECTING_OUTDATED,
    }.get(code, Done.RECONNECTING)


_GRANTS_ACCESS: dict[EventKind, tuple[str, ...]] = {
    EventKind.QR_CODE: ("qr",),
    EventKind.PAIRING_CODE: ("code",),
}


def loggable(kind: EventKind, data: dict[str, Any]) -> dict[str, Any]:
    """What goes into the event history: never a QR or a pairing code (they grant access).
    The sender's ``bootId`` neither: it only tells copies of one worker apart."""
    hidden: Iterable[str] = _GRANTS_ACCESS.get(kind, ())
    return {k: ("…" if k in hidden else v) for k, v in data.items() if k != "bootId"}
