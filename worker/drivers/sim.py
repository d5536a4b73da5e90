"""The ``sim`` driver: talks to ``wafleet simwa`` exactly as the real driver talks to WhatsApp.

It goes out through the session's SOCKS5 proxy with DNS resolved at the proxy (``SIMWA_URL``
names a host), so proxy failures, IP changes and drops are real network events here too.
The protocol is JSON over one WebSocket; see ``simwa.server`` for the other side.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp_socks import (
    ProxyConnectionError,
    ProxyConnector,
    ProxyError,
    ProxyTimeoutError,
    ProxyType,
)

from core.proxy_url import ProxyUrl
from worker.drivers.base import (
    ConnectionLost,
    DriverListener,
    LoggedOut,
    NoAutoReconnect,
    NotConnected,
    OutgoingMedia,
    ProxyFailure,
    QrTimeout,
    SendFailed,
    auth_files,
)
from worker.media_inbox import IncomingFile

log = logging.getLogger("wafleet.worker.sim")

CREDS_FILE = "creds.json"
# simwa's close code for a connection a newer one of the same device replaced (its
# ``REPLACED_CLOSE``; the worker does not import the simulator).
REPLACED_CLOSE = 4001
# How long a message may wait for the network's acceptance before it counts as not sent.
SEND_TIMEOUT_S = 15.0
# The largest frame: a message with a 100 MiB file in base64 (simwa's ``WS_MAX_MESSAGE``).
WS_MAX_MESSAGE = 140 * 1024 * 1024
# A file goes to the network in binary frames of this size after its send_media frame.
MEDIA_FRAME = 256 * 1024
# How often a frame the full outbox refused is offered again.
FULL_RETRY_S = 1.0


class SimDriver:
    def __init__(
        self,
        session_id: str,
        session_dir: Path,
        proxy_url: str,
        simwa_url: str,
        phone: str | None,
    ) -> None:
        self.session_id = session_id
        self.session_dir = session_dir
        self.proxy = ProxyUrl.parse(proxy_url)
        self.simwa_url = simwa_url
        self.phone = phone
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        # Messages sent on this connection, waiting for the network's "sent" (by WhatsApp id).
        self._accepting: dict[str, asyncio.Future[str | None]] = {}

    def _creds(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.session_dir / CREDS_FILE).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _save_creds(self, creds: dict[str, Any]) -> None:
        self.session_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.session_dir / f".{CREDS_FILE}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(creds, handle)
        tmp.replace(self.session_dir / CREDS_FILE)

    def forget_auth(self) -> None:
        for path in auth_files(self.session_dir):
            path.unlink(missing_ok=True)

    async def run(self, listener: DriverListener) -> None:
        connector = ProxyConnector(
            host=self.proxy.host,
            port=self.proxy.port,
            proxy_type=ProxyType.SOCKS5,
            username=self.proxy.username or None,
            password=self.proxy.password or None,
            rdns=True,
        )
        async with aiohttp.ClientSession(connector=connector) as http:
            ws = await self._connect(http)
            self._ws = ws
            try:
                await ws.send_json(
                    {
                        "op": "hello",
                        "sessionId": self.session_id,
                        "creds": self._creds(),
                        "phone": self.phone,
                    }
                )
                await self._receive(ws, listener)
            finally:
                self._ws = None
                for waiting in self._accepting.values():
                    if not waiting.done():
                        waiting.set_exception(NotConnected("the connection closed"))
                self._accepting.clear()
                await ws.close()

    async def _connect(self, http: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
        try:
            # The heartbeat notices a path that died silently (a frozen proxy) in ~20 s.
            return await http.ws_connect(self.simwa_url, heartbeat=20, max_msg_size=WS_MAX_MESSAGE)
        except (ProxyConnectionError, ProxyTimeoutError) as exc:
            raise ProxyFailure(f"proxy unreachable: {type(exc).__name__}") from None
        except ProxyError as exc:
            if "auth" in str(exc).lower():
                raise ProxyFailure("proxy refused our credentials") from None
            # The proxy works but cannot reach WhatsApp: a network problem, not the proxy's.
            raise ConnectionLost(f"network unreachable through the proxy: {exc}") from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ConnectionLost(f"connect failed: {type(exc).__name__}") from None

    async def _receive(
        self, ws: aiohttp.ClientWebSocketResponse, listener: DriverListener
    ) -> None:
        asked_for_code = False
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            event = json.loads(message.data)
            op = event.get("op")
            if op == "qr":
                await listener.on_qr(event["qr"], int(event["ttlMs"]))
                if self.phone and not asked_for_code:
                    # As the real driver does: a known phone may link by code instead.
                    asked_for_code = True
                    await ws.send_json({"op": "pair_phone", "phone": self.phone})
            elif op == "pairing_code":
                await listener.on_pairing_code(event["code"])
            elif op == "paired":
                self._save_creds(event["creds"])
            elif op == "connected":
                await listener.on_connected(event["phone"])
            elif op == "logged_out":
                raise LoggedOut("logged_out")
            elif op == "qr_timeout":
                raise QrTimeout("qr_timeout")
            elif op == "replaced":
                raise _replaced()
            elif op in ("sent", "send_error"):
                waiting = self._accepting.pop(str(event.get("id")), None)
                if waiting is not None and not waiting.done():
                    waiting.set_result(None if op == "sent" else str(event.get("reason")))
            elif op in ("receipt", "message_in"):
                await self._take(ws, listener, event)
        if ws.close_code == REPLACED_CLOSE:
            raise _replaced()
        raise ConnectionLost("the network closed the connection")

    async def _take(
        self, ws: aiohttp.ClientWebSocketResponse, listener: DriverListener, event: dict[str, Any]
    ) -> None:
        """Hand a message or a receipt to the listener, then acknowledge the frame: only once
        it is in the outbox (on disk), so a worker that dies in between gets it again. While
        the outbox is full the frame is not acknowledged, and nothing after it is read."""
        while not self._offer(listener, event):  # noqa: ASYNC110 - the outbox is not async
            await asyncio.sleep(FULL_RETRY_S)  # back-pressure: the network holds the rest
        if "frame" in event:
            await ws.send_json({"op": "ack", "id": event["frame"]})

    @staticmethod
    def _offer(listener: DriverListener, event: dict[str, Any]) -> bool:
        if event["op"] == "receipt":
            return listener.on_receipt(str(event["id"]), str(event["status"]))
        return listener.on_message_in(
            str(event["id"]),
            str(event["from"]),
            str(event.get("text") or ""),
            int(event["timestamp"]),
            _file_of(event.get("media")),
        )

    async def send_presence(self) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.send_json({"op": "presence", "state": "available"})

    async def send_self_message(self, text: str, ephemeral_s: int) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.send_json(
                {"op": "message", "to": "self", "text": text, "ephemeral": ephemeral_s}
            )

    async def send_typing(self, to: str, duration_ms: int) -> None:
        ws = self._live()
        await ws.send_json({"op": "presence", "state": "composing", "to": to})
        await asyncio.sleep(duration_ms / 1000)
        ws = self._live()
        await ws.send_json({"op": "presence", "state": "paused", "to": to})

    async def send_text(self, to: str, text: str, wa_message_id: str) -> None:
        frame = {"op": "send", "id": wa_message_id, "to": to, "text": text}

        async def send(ws: aiohttp.ClientWebSocketResponse) -> None:
            await ws.send_json(frame)

        await self._until_accepted(wa_message_id, send)

    async def send_media(self, media: OutgoingMedia, wa_message_id: str) -> None:
        """The file streams from disk in binary frames after its ``send_media`` frame (see
        simwa/sent_media.py); the network's answer is awaited as for a text."""
        shown: dict[str, Any] = {"kind": media.kind, "mime": media.mime, "size": media.size}
        if media.filename:
            shown["filename"] = media.filename
        frame = {"op": "send_media", "id": wa_message_id, "to": media.to, "media": shown}
        if media.caption:
            frame["text"] = media.caption

        async def send(ws: aiohttp.ClientWebSocketResponse) -> None:
            await ws.send_json(frame)
            with media.path.open("rb") as file:
                while chunk := file.read(MEDIA_FRAME):
                    await ws.send_bytes(chunk)

        await self._until_accepted(wa_message_id, send)

    async def _until_accepted(
        self,
        wa_message_id: str,
        send: Callable[[aiohttp.ClientWebSocketResponse], Awaitable[None]],
    ) -> None:
        """Send a message by ``send`` and wait for the network's answer to its id:
        ``NotConnected`` when none comes (it goes again later, same id), ``SendFailed`` when
        the network refused it."""
        ws = self._live()
        accepted = asyncio.get_running_loop().create_future()
        self._accepting[wa_message_id] = accepted
        try:
            await send(ws)
            refused = await asyncio.wait_for(accepted, SEND_TIMEOUT_S)
        except (ConnectionError, RuntimeError, TimeoutError) as exc:
            raise NotConnected(f"not accepted: {type(exc).__name__}") from None
        finally:
            self._accepting.pop(wa_message_id, None)
        if refused is not None:
            raise SendFailed(refused)

    def _live(self) -> aiohttp.ClientWebSocketResponse:
        if self._ws is None or self._ws.closed:
            raise NotConnected("not connected")
        return self._ws

    async def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()


def _file_of(media: object) -> IncomingFile | None:
    """The file a ``message_in`` frame carries (base64 in the frame), or None."""
    if not isinstance(media, dict):
        return None
    filename = media.get("filename")
    return IncomingFile(
        kind=str(media.get("kind")),
        data=base64.b64decode(str(media.get("data", ""))),
        filename=filename if isinstance(filename, str) else None,
    )


def _replaced() -> NoAutoReconnect:
    """Another copy of this worker connected with the same device (WhatsApp's "stream
    replaced"): coming back by itself would throw that one off in turn, forever."""
    return NoAutoReconnect("another client connected with this session", "stream_replaced")
