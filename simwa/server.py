"""``wafleet simwa``: a stand-in for WhatsApp's servers, speaking a fixed protocol (below).

Devices connect by WebSocket to ``/ws`` (through their SOCKS5 proxy, so the address we
see is the proxy's). JSON messages, one per frame:

client → server
  ``{"op": "hello", "sessionId", "creds": {...} | null, "phone"}``
  ``{"op": "presence", "state": "available"}``
  ``{"op": "message", "to": "self", "text", "ephemeral"}``
  ``{"op": "pair_phone", "phone"}`` during a QR round: link by code instead of a scan
  ``{"op": "presence", "state": "composing" | "paused", "to"}`` "typing..." towards ``to``
  ``{"op": "send", "id", "to", "text"}`` a message with the sender's chosen id; a resend of
  an id the network already accepted from that phone is the same message (answered, not
  recorded or carried again)
  ``{"op": "send_media", ...}`` then binary frames: a file, as simwa/sent_media.py says
  ``{"op": "ack", "id"}`` the device has a ``receipt`` or ``message_in`` frame for good
  (``id`` is the frame's ``frame``); until then the network keeps it (below)
server → client
  ``{"op": "qr", "qr": "2@...", "ttlMs"}``  rotating like WhatsApp's: the first lives
  ``qr_first_ttl_ms``, each next ``qr_next_ttl_ms``, ``qr_count`` in all, then
  ``{"op": "qr_timeout"}`` and the connection closes;
  ``{"op": "paired", "phone", "creds"}`` then ``{"op": "connected", "phone"}`` on a scan;
  ``{"op": "connected", "phone"}`` straight away for valid saved creds;
  ``{"op": "logged_out"}`` for void creds or a logout, then the connection closes;
  ``{"op": "pairing_code", "code": "ABCD-EFGH"}`` after a ``pair_phone``;
  ``{"op": "replaced"}`` then a close with code ``REPLACED_CLOSE`` when a newer connection of
  the same paired device takes over (WhatsApp's "stream replaced": the old one must not come
  back by itself, or two copies of a worker would throw each other off forever).
  ``{"op": "sent", "id"}`` the network accepted a message (``send_error`` with a ``reason``
  if it refused it); then ``{"op": "receipt", "id", "status": "delivered" | "read"}`` after
  short delays; ``{"op": "message_in", "id", "from", "text", "timestamp", "media"?}`` a
  message for it (``media``: a file, ``text`` its caption; simwa/incoming_media.py).
  Both carry a ``frame`` (unique in the network) and stay in the device's queue until the
  device acknowledges that frame, as WhatsApp's offline queue does: frames for a device that
  is not connected, and frames it was sent but never acknowledged (it died first), go out
  again in order when it connects again, or to a new link of the same phone once the old
  one is logged out. A frame may therefore arrive twice; the device tells by its ids.

The control API (``/control/...``, simwa/control.py) plays the phone: scan a QR, enter a
pairing code (``POST /control/pair {"code", "phone"}``), logout, drop; and reports what the
network saw of every device. ``POST /control/message {"from", "to", "text", "media"?}``
plays an outside number writing to a device (``media``: ``{"kind", "data": <base64>,
"filename"?}``, ``text`` its caption); ``GET /control/messages?phone=`` lists what a phone
sent, once per id. ``POST /control/lose_acks {"phone", "lose": bool}`` makes the network
lose (or keep again) a phone's acknowledgements: a device that wrote a frame down but died
before its ack left.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import os
import secrets
import time
from typing import Any

from aiohttp import WSMsgType, web

from simwa.incoming_media import WS_MAX_MESSAGE
from simwa.models import (
    MAX_MESSAGE_TEXT,
    PHONE,
    Device,
    IssuedCode,
    IssuedQr,
    PendingLink,
    QrTimings,
    now_ms,
)
from simwa.sent_media import MediaReceiver, Upload, record

log = logging.getLogger("wafleet.simwa")

# The WebSocket close code of a connection a newer one of the same device replaced
# (4000-4999 is the application's range).
REPLACED_CLOSE = 4001
# Receipts of a message: delivered this long after it was accepted, read as long again.
RECEIPT_DELAY_S = int(os.environ.get("SIMWA_RECEIPT_MS", "200")) / 1000


class SimNetwork:
    def __init__(self, timings: QrTimings) -> None:
        self.timings = timings
        self.devices: dict[str, Device] = {}  # by token
        self.qrs: dict[str, IssuedQr] = {}
        self.codes: dict[str, IssuedCode] = {}
        # What each phone sent, by message id (insertion order): one entry per id.
        self.sent: dict[str, dict[str, dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._frame_ids = itertools.count(1)

    # the device side --------------------------------------------------------------------

    async def ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=WS_MAX_MESSAGE)
        await ws.prepare(request)
        ip = request.remote
        try:
            hello = await ws.receive_json(timeout=10)
        except (TypeError, ValueError, TimeoutError):
            await ws.close()
            return ws
        creds = hello.get("creds") if isinstance(hello, dict) else None
        session_id = str(hello.get("sessionId", "")) if isinstance(hello, dict) else ""
        if creds:
            device = self.devices.get(str(creds.get("token", "")))
            if device is None or device.logged_out:
                await ws.send_json({"op": "logged_out"})
                await ws.close()
                return ws
        else:
            found = await self._link(ws, session_id, ip)
            if found is None:
                return ws
            device = found
            await ws.send_json(
                {
                    "op": "paired",
                    "phone": device.phone,
                    "creds": {"token": device.token, "phone": device.phone},
                }
            )
        await self._serve_device(ws, device, ip)
        return ws

    async def _link(
        self, ws: web.WebSocketResponse, session_id: str, ip: str | None
    ) -> Device | None:
        link = PendingLink(session_id, ws, ip, asyncio.get_running_loop().create_future())
        reader = asyncio.create_task(self._drain_until_paired(ws, link))
        try:
            for n in range(self.timings.count):
                ttl = self.timings.first_ttl_ms if n == 0 else self.timings.next_ttl_ms
                code = _new_qr()
                for issued in self.qrs.values():
                    if issued.link is link:
                        issued.superseded = True
                self._prune()
                self.qrs[code] = IssuedQr(link, time.monotonic() + ttl / 1000)
                await ws.send_json({"op": "qr", "qr": code, "ttlMs": ttl})
                waiting: set[asyncio.Future[Any]] = {link.paired, reader}
                done, _ = await asyncio.wait(
                    waiting, timeout=ttl / 1000, return_when=asyncio.FIRST_COMPLETED
                )
                if link.paired in done:
                    return link.paired.result()
                if reader in done:  # the device went away mid-round
                    return None
            await ws.send_json({"op": "qr_timeout"})
            await ws.close()
            return None
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            for issued in self.qrs.values():
                if issued.link is link:
                    issued.superseded = True

    def _prune(self) -> None:
        """Forget codes of finished rounds, so a long demo does not grow without end.

        A superseded or expired QR is kept a minute longer, so its scan still answers 410."""
        now = time.monotonic()
        self.qrs = {
            code: issued
            for code, issued in self.qrs.items()
            if not issued.link.ws.closed or now - issued.expires < 60
        }
        self.codes = {c: i for c, i in self.codes.items() if not i.link.ws.closed}

    async def _drain_until_paired(self, ws: web.WebSocketResponse, link: PendingLink) -> None:
        """Read the device's frames during its QR round; it may ask to pair by code."""
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                break
            try:
                event = message.json()
            except ValueError:
                continue
            phone = event.get("phone") if isinstance(event, dict) else None
            if event.get("op") == "pair_phone" and isinstance(phone, str):
                code = _new_pairing_code()
                self.codes[code] = IssuedCode(link, phone)
                await ws.send_json({"op": "pairing_code", "code": code})

    async def _serve_device(
        self, ws: web.WebSocketResponse, device: Device, ip: str | None
    ) -> None:
        async with device.sending:
            old = device.ws
            device.ws = ws  # one connection per device, the newest wins
            device.connect_count += 1
            if old is not None and not old.closed:
                device.replaced_count += 1
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await old.send_json({"op": "replaced"})
                await old.close(code=REPLACED_CLOSE, message=b"replaced")
            device.ip = ip
            if ip and (not device.ip_history or device.ip_history[-1] != ip):
                device.ip_history.append(ip)
            await ws.send_json({"op": "connected", "phone": device.phone})
            log.info("device %s (%s) connected from %s", device.session_id, device.phone, ip)
            self._inherit(device)
            for frame_id, frame in list(device.pending.items()):
                await self._send_frame(device, ws, frame_id, frame)
        uploads = MediaReceiver()
        async for message in ws:
            if message.type is WSMsgType.BINARY:
                if (upload := uploads.feed(message.data)) is not None:
                    await self._accept_media(device, ws, upload)
                continue
            if message.type is not WSMsgType.TEXT:
                break
            try:
                event = message.json()
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if event.get("op") == "presence" and event.get("state") == "composing":
                device.typing_count += 1
            elif event.get("op") == "presence":
                device.presence_count += 1
            elif event.get("op") == "send":
                await self._accept(device, ws, event)
            elif event.get("op") == "send_media" and (refused := uploads.start(event)):
                await ws.send_json({"op": "send_error", "id": event.get("id"), "reason": refused})
            elif event.get("op") == "message" and event.get("to") == "self":
                device.self_messages += 1
            elif event.get("op") == "ack" and not device.lose_acks:
                if device.pending.pop(str(event.get("id")), None) is not None:
                    device.acked += 1
                device.sent_on.pop(str(event.get("id")), None)
        if device.ws is ws:
            device.ws = None

    async def _accept(
        self, device: Device, ws: web.WebSocketResponse, event: dict[str, Any]
    ) -> None:
        mid, to, body = event.get("id"), event.get("to"), event.get("text")
        if not isinstance(mid, str) or not 1 <= len(mid) <= 128:
            return
        if not isinstance(to, str) or not PHONE.fullmatch(to):
            await ws.send_json({"op": "send_error", "id": mid, "reason": "invalid_recipient"})
            return
        if not isinstance(body, str) or not body or len(body) > MAX_MESSAGE_TEXT:
            await ws.send_json({"op": "send_error", "id": mid, "reason": "invalid_text"})
            return
        sent = self.sent.setdefault(device.phone, {})
        fresh = mid not in sent
        if fresh:
            sent[mid] = {"id": mid, "to": to, "text": body, "timestamp": now_ms()}
        await ws.send_json({"op": "sent", "id": mid})
        if fresh:
            self._spawn(self._carry(device, mid, to, body))

    async def _accept_media(
        self, device: Device, ws: web.WebSocketResponse, upload: Upload
    ) -> None:
        """A file came whole: recorded once per id, as a text is."""
        if not PHONE.fullmatch(upload.to):
            reply = {"op": "send_error", "id": upload.id, "reason": "invalid_recipient"}
            await ws.send_json(reply)
            return
        fresh = record(self.sent.setdefault(device.phone, {}), upload, now_ms())
        await ws.send_json({"op": "sent", "id": upload.id})
        if fresh:
            self._spawn(self._carry(device, upload.id, upload.to, upload.caption))

    async def _carry(self, sender: Device, mid: str, to: str, body: str) -> None:
        """Bring the message to a device of ``to`` (if the network has one), then the
        sender's receipts: delivered, then read."""
        frame = {"op": "message_in", "id": mid, "from": sender.phone, "text": body}
        for device in self.devices_of(to):
            await self.deliver(device, {**frame, "timestamp": now_ms()})
        await asyncio.sleep(RECEIPT_DELAY_S)
        await self.deliver(sender, {"op": "receipt", "id": mid, "status": "delivered"})
        await asyncio.sleep(RECEIPT_DELAY_S)
        await self.deliver(sender, {"op": "receipt", "id": mid, "status": "read"})

    def devices_of(self, phone: str) -> list[Device]:
        return [d for d in self.devices.values() if d.phone == phone and not d.logged_out]

    def _inherit(self, device: Device) -> None:
        """A new link of a phone takes over what its logged-out links never acknowledged."""
        for other in self.devices.values():
            if other is not device and other.phone == device.phone and other.logged_out:
                device.pending.update(other.pending)
                other.pending.clear()
                other.sent_on.clear()

    async def deliver(self, device: Device, frame: dict[str, Any]) -> None:
        """Queue ``frame`` for ``device`` until it is acknowledged; send it now if connected."""
        frame_id = str(next(self._frame_ids))
        device.pending[frame_id] = {**frame, "frame": frame_id}
        async with device.sending:
            ws, found = device.ws, device.pending.get(frame_id)
            if ws is not None and found is not None:
                await self._send_frame(device, ws, frame_id, found)

    async def _send_frame(
        self, device: Device, ws: web.WebSocketResponse, frame_id: str, frame: dict[str, Any]
    ) -> None:
        if ws.closed or device.sent_on.get(frame_id) is ws:
            return
        try:
            await ws.send_json(frame)
        except (ConnectionError, RuntimeError):
            return  # stays pending: the next connection gets it
        device.sent_on[frame_id] = ws

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _new_pairing_code() -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTVWXYZ23456789"  # WhatsApp's codes: 8 characters, no 0/O/1/I
    raw = "".join(secrets.choice(alphabet) for _ in range(8))
    return f"{raw[:4]}-{raw[4:]}"


def _new_qr() -> str:
    parts = [secrets.token_urlsafe(18)] + [
        base64.b64encode(secrets.token_bytes(32)).decode() for _ in range(3)
    ]
    return "2@" + ",".join(parts)
