"""A real operator endpoint on loopback: an aiohttp server that records every delivery.

It answers as told (``ok`` or ``fail`` = 500; not started = connection refused), can hold
a path's answers for a while (a slow endpoint), and checks each delivery's signature the
way an operator's code would, with ``core.signing`` and the events secret.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from core.deliveries import ATTEMPT_HEADER, EVENT_ID_HEADER, SESSION_HEADER
from core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from wafleet import devstack

EVENTS_SECRET = "test-events-secret-0123456789abcdef"


@dataclass(frozen=True)
class Hit:
    path: str
    event_id: str
    session_id: str
    status: int  # what the receiver answered
    signed: bool  # the signature checked out
    attempt: int
    body: dict[str, Any]
    at: float  # time.monotonic() when it arrived
    authorization: str | None


@dataclass
class Receiver:
    secret: str = EVENTS_SECRET
    port: int = field(default_factory=devstack.free_port)
    mode: str = "ok"  # ok | fail
    slow: dict[str, float] = field(default_factory=dict)  # path -> seconds before answering
    hits: list[Hit] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    def url(self, path: str = "/hook", userinfo: str = "") -> str:
        return f"http://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        problem = verify(
            self.secret,
            request.headers.get(TIMESTAMP_HEADER, ""),
            request.headers.get(SIGNATURE_HEADER, ""),
            raw,
            time.time_ns() // 1_000_000,
        )
        body = json.loads(raw)
        delay = self.slow.get(request.path, 0.0)
        if delay:
            await asyncio.sleep(delay)  # plays a slow endpoint, not a wait for a condition
        status = 200 if self.mode == "ok" and problem is None else 500
        self.hits.append(
            Hit(
                path=request.path,
                event_id=request.headers.get(EVENT_ID_HEADER, ""),
                session_id=request.headers.get(SESSION_HEADER, ""),
                status=status,
                signed=problem is None,
                attempt=int(request.headers.get(ATTEMPT_HEADER, "0")),
                body=body,
                at=time.monotonic(),
                authorization=request.headers.get("Authorization"),
            )
        )
        return web.json_response({"ok": status == 200}, status=status)

    # what arrived -----------------------------------------------------------------------

    def accepted(self, session_id: str | None = None) -> list[str]:
        """Ids answered 2xx, in arrival order (a repeat of an accepted id is dropped, as a
        receiver that deduplicates on the id does)."""
        seen: set[str] = set()
        ids = []
        for hit in self.hits:
            mine = session_id is None or hit.session_id == session_id
            if hit.status == 200 and mine and hit.event_id not in seen:
                seen.add(hit.event_id)
                ids.append(hit.event_id)
        return ids

    def accepted_twice(self) -> list[str]:
        counts = Counter(h.event_id for h in self.hits if h.status == 200)
        return [event_id for event_id, n in counts.items() if n > 1]


def events_fleet_options(receiver: Receiver) -> dict[str, str]:
    """``serve``'s settings to deliver to ``receiver``, retrying quickly (the e2e tests)."""
    return {
        "EVENTS_WEBHOOK_URL": receiver.url(),
        "EVENTS_WEBHOOK_SECRET": EVENTS_SECRET,
        "EVENTS_RETRY_BASE_MS": "40",
        "EVENTS_RETRY_MAX_MS": "250",
    }
