"""simwa's control API (``/control/...``): it plays the phones and reports what the network saw.

Scan a QR or enter a pairing code (link a device), log a device out or drop its connection,
write to a device from an outside number (text or a file), lose a device's acknowledgements;
list the devices, what each phone sent and the QR codes still scannable. The network itself
(the devices' side of the protocol) is simwa/server.py's ``SimNetwork``.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from simwa.incoming_media import BadMedia, media_frame
from simwa.models import MAX_MESSAGE_TEXT, PHONE, Device, PendingLink, now_ms

if TYPE_CHECKING:
    from simwa.server import SimNetwork


class Control:
    def __init__(self, network: SimNetwork) -> None:
        self.network = network

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/control/scan", self.scan)
        router.add_post("/control/pair", self.pair)
        router.add_post("/control/logout", self.logout)
        router.add_post("/control/drop", self.drop)
        router.add_get("/control/devices", self.list_devices)
        router.add_post("/control/message", self.message)
        router.add_get("/control/messages", self.list_messages)
        router.add_post("/control/lose_acks", self.lose_acks)
        router.add_get("/control/qrs", self.list_qrs)

    async def scan(self, request: web.Request) -> web.Response:
        body = await _body(request)
        code, phone = body.get("qr"), body.get("phone")
        if not isinstance(phone, str) or not PHONE.fullmatch(phone):
            return _error(400, "phone must be 8-15 digits, country code first")
        issued = self.network.qrs.get(code) if isinstance(code, str) else None
        if issued is None:
            return _error(404, "unknown QR")
        if issued.superseded or time.monotonic() > issued.expires or issued.link.paired.done():
            return _error(410, "this QR has expired")
        return self._link_device(issued.link, phone)

    async def pair(self, request: web.Request) -> web.Response:
        """The phone enters a pairing code (Linked devices → Link with phone number)."""
        body = await _body(request)
        code, phone = body.get("code"), body.get("phone")
        issued = self.network.codes.get(code) if isinstance(code, str) else None
        if issued is None:
            return _error(404, "unknown pairing code")
        if issued.link.paired.done() or issued.link.ws.closed:
            return _error(410, "this pairing code has expired")
        if phone != issued.phone:
            return _error(400, "this code was asked for another phone number")
        return self._link_device(issued.link, issued.phone)

    def _link_device(self, link: PendingLink, phone: str) -> web.Response:
        device = Device(secrets.token_urlsafe(24), phone, link.session_id)
        self.network.devices[device.token] = device
        link.paired.set_result(device)
        for other in self.network.qrs.values():
            if other.link is link:
                other.superseded = True
        return web.json_response({"paired": True, "sessionId": device.session_id})

    def _matching(self, body: dict[str, Any]) -> list[Device]:
        phone, session_id = body.get("phone"), body.get("sessionId")
        return [
            d
            for d in self.network.devices.values()
            if d.phone == phone and not d.logged_out and session_id in (None, d.session_id)
        ]

    async def logout(self, request: web.Request) -> web.Response:
        devices = self._matching(await _body(request))
        if not devices:
            return _error(404, "no linked device for that phone")
        for device in devices:
            device.logged_out = True
            if device.ws is not None and not device.ws.closed:
                with contextlib.suppress(ConnectionError):
                    await device.ws.send_json({"op": "logged_out"})
                await device.ws.close()
        return web.json_response({"loggedOut": len(devices)})

    async def drop(self, request: web.Request) -> web.Response:
        devices = [d for d in self._matching(await _body(request)) if d.ws and not d.ws.closed]
        if not devices:
            return _error(404, "no connected device for that phone")
        for device in devices:
            assert device.ws is not None
            await device.ws.close()
        return web.json_response({"dropped": len(devices)})

    async def message(self, request: web.Request) -> web.Response:
        """An outside number writes to the device whose phone is ``to``."""
        body = await _body(request)
        sender, to, text = body.get("from"), body.get("to"), body.get("text")
        if not isinstance(sender, str) or not PHONE.fullmatch(sender):
            return _error(400, "from must be 8-15 digits, country code first")
        media = body.get("media")
        if media is not None and text is None:
            text = ""  # a file without a caption
        elif not isinstance(text, str) or len(text) > MAX_MESSAGE_TEXT or not (text or media):
            return _error(400, "text must be a non-empty string")
        frame: dict[str, Any] = {"op": "message_in", "from": sender, "text": text}
        if media is not None:
            try:
                frame["media"] = media_frame(media)
            except BadMedia as exc:
                return _error(400, str(exc))
        devices = self.network.devices_of(to) if isinstance(to, str) else []
        if not devices:
            return _error(404, "no linked device for that phone")
        mid = "SIM" + secrets.token_hex(10).upper()
        frame["id"] = mid
        for device in devices:
            await self.network.deliver(device, {**frame, "timestamp": now_ms()})
        return web.json_response({"id": mid})

    async def lose_acks(self, request: web.Request) -> web.Response:
        """Lose (or keep again) the acknowledgements of ``phone``'s devices: what the network
        sees of a device that wrote a frame down and died before its ack left."""
        body = await _body(request)
        devices = self._matching(body)
        if not devices:
            return _error(404, "no linked device for that phone")
        for device in devices:
            device.lose_acks = body.get("lose") is True
        return web.json_response({"devices": len(devices), "lose": body.get("lose") is True})

    async def list_messages(self, request: web.Request) -> web.Response:
        """What a phone sent, one entry per message id the network accepted."""
        sent = self.network.sent.get(request.query.get("phone", ""), {})
        return web.json_response(list(sent.values()))

    async def list_devices(self, request: web.Request) -> web.Response:
        return web.json_response([d.view() for d in self.network.devices.values()])

    async def list_qrs(self, request: web.Request) -> web.Response:
        """The QR codes currently scannable, per session (a convenience for the demo)."""
        now = time.monotonic()
        live = [
            {"qr": code, "sessionId": i.link.session_id}
            for code, i in self.network.qrs.items()
            if not i.superseded and i.expires > now and not i.link.paired.done()
        ]
        return web.json_response(live)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
