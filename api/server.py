"""The HTTP server around the app: errors raised before the app sees a request, as JSON.

aiohttp answers what its parser refuses (a request line or header too long, a NUL in a
header, a malformed request line) from ``RequestHandler.handle_error``, as ``text/plain``
that echoes the offending input, and logs a traceback for each. Here the connection
handler answers those in the API's JSON error shape, echoes nothing, and logs one line.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from api.errors import protocol_error

log = logging.getLogger("wafleet.api")


class _JsonErrorRequestHandler(RequestHandler):
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            log.error("request failed before the app: %s", type(exc).__name__ if exc else status)
        else:
            log.info("unreadable request refused (%d, %s)", status, type(exc).__name__)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started, cannot send the error")
        response = protocol_error(status)
        response.force_close()
        return response


class _JsonErrorServer(Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class JsonErrorRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer low-level errors as JSON."""

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        # Same object, one method more specific: aiohttp builds the Server in
        # Application._make_handler with private arguments we do not want to copy.
        server.__class__ = _JsonErrorServer
        return server
