"""``wafleet simwa``'s web application: the devices' WebSocket (simwa/server.py) and the
control API that plays the phones (simwa/control.py), over one network."""

from __future__ import annotations

from aiohttp import web

from simwa.control import Control
from simwa.incoming_media import MAX_BODY
from simwa.models import QrTimings
from simwa.server import SimNetwork


def create_app(timings: QrTimings) -> web.Application:
    network = SimNetwork(timings)
    app = web.Application(client_max_size=MAX_BODY)  # a message with the largest file
    app.router.add_get("/ws", network.ws_handler)
    Control(network).add_routes(app.router)
    return app


def run(host: str, port: int, timings: QrTimings) -> None:
    web.run_app(create_app(timings), host=host, port=port, print=None)
