"""What each kind of a worker's life-cycle event does to its session."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from core import events as worker_events
from core import session_files
from core.errors import NotFound
from core.models import Reason, SessionRecord, Status
from core.notifier import Alert, AlertKind, Done
from core.proxy_url import ProxyUrl
from core.sessions.context import Context, session_log
from core.sessions.failover import Failover
from core.store import NoSuchSession


class EventRules:
    def __init__(self, ctx: Context, failover: Failover) -> None:
        """``failover``: a confirmed ``PROXY_ERROR`` moves every session off the proxy."""
        self.ctx = ctx
        self.failover = failover

    async def on_qr_code(self, record: SessionRecord, data: dict[str, Any], now: int) -> None:
        ctx = self.ctx
        ttl_ms = int(data.get("ttlMs") or 60_000)
        await ctx.store.set_qr(record.id, data["qr"], now + ttl_ms, ttl_ms)
        started = ctx.provisioned_at.pop(record.id, None)
        if started is not None:
            ctx.metrics.provision_to_qr.observe(ctx.clock.monotonic() - started)
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
        ctx.crashes.pop(record.id, None)
        await ctx.store.set_fields(record.id, bootId=worker_events.boot_id(data))
        path = session_files.folder(ctx.settings.sessions_dir, record.id)
        await asyncio.to_thread(
            session_files.write_meta, path, record.id, phone, record.proxy, record.created
        )
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

    async def on_disconnected(self, record: SessionRecord, data: dict[str, Any], now: int) -> None:
        code = str(data.get("code") or Reason.CONNECTION_LOST)
        if worker_events.stale_disconnect(data, record.status, record.boot_id):
            session_log(record.id).info(
                "ignoring DISCONNECTED (%s) from worker boot %s: boot %s is connected",
                code,
                worker_events.boot_id(data),
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


def loggable(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """What goes into the event history: never a QR or a pairing code (they grant access).
    The sender's ``bootId`` neither: it only tells copies of one worker apart."""
    hidden: Iterable[str] = {"QR_CODE": ("qr",), "PAIRING_CODE": ("code",)}.get(kind, ())
    return {k: ("…" if k in hidden else v) for k, v in data.items() if k != "bootId"}
