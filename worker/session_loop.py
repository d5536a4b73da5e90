"""One session's life inside its worker: connect, link, keep alive, classify, reconnect.

What a disconnect means is decided here for every driver alike: a proxy failure is reported (the
orchestrator fails over), a logout wipes auth and starts a new QR round, a lost
connection reconnects with capped, jittered backoff. A finished QR round or a server
that forbids reconnecting leaves the worker idle (still pinging) until the operator acts,
so nothing ever spins in a silent loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from worker.drivers.base import (
    ConnectionLost,
    Driver,
    LoggedOut,
    NoAutoReconnect,
    ProxyFailure,
    QrTimeout,
    Recycle,
)
from worker.media_inbox import IncomingFile, MediaInbox
from worker.message_ids import message_id_of
from worker.webhook_client import WebhookClient

log = logging.getLogger("wafleet.worker")

BACKOFF_BASE_S, BACKOFF_CAP_S = 1.0, 60.0
STABLE_AFTER_S = 30.0  # a connection that lived this long resets the backoff
SELF_MESSAGE_TEXT = "🔄"
SELF_MESSAGE_EPHEMERAL_S = 86_400


class SessionLoop:
    def __init__(
        self,
        driver: Driver,
        webhook: WebhookClient,
        presence_interval_s: float,
        self_message_interval_s: float,
        attempts_per_process: int = 50,
        proxy_id: str | None = None,
        inbox: MediaInbox | None = None,
    ) -> None:
        self.driver = driver
        self.inbox = inbox  # where incoming files wait until serve has them
        self.webhook = webhook
        self.presence_interval_s = presence_interval_s
        self.self_message_interval_s = self_message_interval_s
        self.connected = False
        # Set while connected: the command channel (worker/commands.py) polls only then.
        self.online = asyncio.Event()
        self._connected_since = 0.0
        self._failures = 0
        self.attempts_per_process = attempts_per_process
        self.proxy_id = proxy_id
        self._attempts = 0

    # DriverListener ---------------------------------------------------------------------

    async def on_qr(self, qr: str, ttl_ms: int) -> None:
        log.info("new QR (valid %d s)", ttl_ms // 1000)
        self.webhook.send("QR_CODE", {"qr": qr, "ttlMs": ttl_ms})

    async def on_pairing_code(self, code: str) -> None:
        self.webhook.send("PAIRING_CODE", {"code": code})

    async def on_connected(self, phone: str) -> None:
        log.info("connected")
        self.connected = True
        self.online.set()
        self._connected_since = time.monotonic()
        self.webhook.send("CONNECTED", {"phoneNumber": phone})

    def on_message_in(
        self,
        message_id: str,
        sender: str,
        text: str,
        timestamp: int,
        media: IncomingFile | None = None,
    ) -> bool:
        """Durably queued (True), or refused because the outbox is full or the disk refused
        the file (False); any thread. A file is on disk before its event is taken."""
        data: dict[str, Any] = {
            "messageId": message_id,
            "from": sender,
            "text": text,
            "timestamp": timestamp,
        }
        if media is not None:
            if self.inbox is None:
                log.error("a file arrived but this worker has no session folder to keep it")
                return False
            try:
                data["media"] = self.inbox.keep(media)
            except OSError as exc:
                log.error("incoming %s not kept (%s): not acknowledged", media.kind, exc)
                return False
        return self.webhook.take("MESSAGE_IN", data)

    def on_receipt(self, wa_message_id: str, status: str) -> bool:
        message_id = message_id_of(wa_message_id)
        if message_id is None:  # not one of ours (the keep-alive self-message): nothing to keep
            return True
        return self.webhook.take("MESSAGE_STATUS", {"messageId": message_id, "status": status})

    # the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        keepalive = asyncio.create_task(self._keepalive(), name="keepalive")
        self_messages = asyncio.create_task(self._self_messages(), name="self-messages")
        try:
            while True:
                wait = await self._attempt()
                if wait is None:
                    log.info("waiting for the operator (restart or a new QR)")
                    await asyncio.Event().wait()  # idle; PINGs continue
                elif wait > 0:
                    await asyncio.sleep(wait)
        finally:
            for task in (keepalive, self_messages):
                task.cancel()
            await asyncio.gather(keepalive, self_messages, return_exceptions=True)

    async def _attempt(self) -> float | None:
        """Run one connection; return the delay before the next one, or None to wait."""
        if self._attempts >= self.attempts_per_process:
            raise Recycle(f"{self._attempts} connection attempts in this process")
        self._attempts += 1
        try:
            await self.driver.run(self)
            raise ConnectionLost("driver returned")  # a driver must not return; treat as lost
        except QrTimeout:
            self._disconnected()
            self.webhook.send("AUTH_FAILURE", {"reason": "qr_timeout"})
            return None
        except LoggedOut as exc:
            self._disconnected()
            self.driver.forget_auth()
            self.webhook.send("AUTH_FAILURE", {"reason": exc.reason or "logged_out"})
            self._failures = 0
            return 0.0  # straight into a new QR round
        except ProxyFailure as exc:
            self._disconnected()
            report = {"error": exc.reason}
            if self.proxy_id:
                report["proxyId"] = self.proxy_id
            self.webhook.send("PROXY_ERROR", report)
            return self._backoff()
        except NoAutoReconnect as exc:
            self._disconnected()
            self.webhook.send("DISCONNECTED", {"reason": exc.reason, "code": exc.code})
            return exc.retry_after_s
        except ConnectionLost as exc:
            was_connected = self._disconnected()
            if was_connected:
                self.webhook.send("DISCONNECTED", {"reason": exc.reason, "code": exc.code})
            return self._backoff()

    def _disconnected(self) -> bool:
        was = self.connected
        if was and time.monotonic() - self._connected_since > STABLE_AFTER_S:
            self._failures = 0
        self.connected = False
        self.online.clear()
        return was

    def _backoff(self) -> float:
        self._failures += 1
        delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0 ** min(self._failures - 1, 10))
        return delay * random.uniform(0.5, 1.0)  # jitter: 200 workers must not retry in step

    async def _keepalive(self) -> None:
        """PING always (the worker is alive); presence only while connected."""
        while True:
            self.webhook.send("PING", {"timestamp": time.time_ns() // 1_000_000})
            if self.connected:
                try:
                    await self.driver.send_presence()
                except Exception as exc:
                    log.warning("presence failed: %s", type(exc).__name__)
            await asyncio.sleep(self.presence_interval_s)

    async def _self_messages(self) -> None:
        while True:
            await asyncio.sleep(self.self_message_interval_s)
            if not self.connected:
                continue
            try:
                await self.driver.send_self_message(SELF_MESSAGE_TEXT, SELF_MESSAGE_EPHEMERAL_S)
            except Exception as exc:
                log.warning("self-message failed: %s", type(exc).__name__)
