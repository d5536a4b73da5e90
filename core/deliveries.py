"""Delivery of the operator streams (``core/event_log.py``) to the operator's endpoint.

One *lane* per session with something to deliver: a task that POSTs the event after the
session's cursor, and only when that one is delivered (a 2xx answer) or dead-lettered moves
on to the next. So order is kept per session, and sessions are independent of each other: a
slow or dead endpoint holds up only the lanes that deliver to it, one request each.

Everything a lane knows lives in Redis (the cursor, the head's attempt count and next
attempt time), so a restarted ``serve`` picks up where the last one stopped, backoff
included. Delivery is **at least once**: a ``serve`` killed after the endpoint answered but
before the cursor moved sends that event again, with the same ``id``; receivers deduplicate
on it (it is stable across attempts, restarts and redeliveries).

Retries: exponential backoff from ``EVENTS_RETRY_BASE_MS`` doubling to ``EVENTS_RETRY_MAX_MS``,
each wait drawn between half and all of that (jitter, so many sessions behind one endpoint
that comes back do not retry in lock step). After ``EVENTS_MAX_ATTEMPTS`` failed attempts,
or a failed attempt of an event older than ``EVENTS_MAX_AGE_MS``, the event becomes a dead
letter and the lane goes on; the age rule keeps a long outage from holding every later event
for a whole retry schedule each.

HTTP is not known here: the composition root injects ``Post`` (``wafleet/event_post.py``),
so the lane's logic runs the same against any transport, and core stays free of a client.
The signing secret is never logged; endpoints are logged without their credentials.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from core import endpoint_url
from core.clock import Clock
from core.event_log import EventLog, StoredEvent
from core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from core.tasks import TaskGroup

log = logging.getLogger("wafleet.deliveries")

EVENT_ID_HEADER = "X-Wafleet-Event-Id"
SESSION_HEADER = "X-Wafleet-Session"
ATTEMPT_HEADER = "X-Wafleet-Attempt"
# How often every stream is looked at again (a lane that stopped on a Redis error, the
# retention trim of idle and pull-only streams); new events wake their lane at once.
SWEEP_S = 30.0
# A lane that met an error of its own (Redis away) waits this long, doubling, before
# looking again.
LANE_ERROR_BACKOFF_S = (0.5, 5.0)


class DeliveryError(Exception):
    """The request did not get an answer (refused, timed out, refused by the destination
    policy). ``reason`` is short and never carries the URL or a secret."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# POST ``body`` to ``url`` with ``headers``; the HTTP status, or ``DeliveryError``.
Post = Callable[[str, bytes, Mapping[str, str]], Awaitable[int]]


@dataclass(frozen=True)
class RetryPolicy:
    base_ms: int = 1_000
    max_ms: int = 300_000
    max_attempts: int = 25
    max_age_ms: int = 24 * 3600 * 1000

    def delay_ms(self, attempts: int, draw: float) -> int:
        """The wait after the ``attempts``-th failure; ``draw`` in [0, 1) is the jitter."""
        full = min(self.max_ms, self.base_ms * 2 ** min(attempts - 1, 62))
        return int(full * (0.5 + 0.5 * draw))

    def gives_up(self, attempts: int, age_ms: int) -> bool:
        return attempts >= self.max_attempts or age_ms >= self.max_age_ms


class Deliveries:
    """The lanes of every session, and the sweep that restarts them."""

    def __init__(
        self,
        events: EventLog,
        post: Post,
        secret: str,
        default_endpoint: str,
        retry: RetryPolicy,
        clock: Clock,
        draw: Callable[[], float] = random.random,
        sweep_s: float = SWEEP_S,
        on_close: Callable[[], Awaitable[None]] | None = None,
        dress: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        """``dress``: what an event's body gets as it leaves (a file's link, made now)."""
        self.events = events
        self._post = post
        self._secret = secret
        self.default_endpoint = default_endpoint
        self.retry = retry
        self.clock = clock
        self._draw = draw
        self._sweep_s = sweep_s
        self._on_close = on_close
        self._dress = dress
        self._lanes: dict[str, asyncio.Event] = {}
        self._unsigned_warned = False
        self._closed = False
        self._tasks = TaskGroup()
        events.on_append(self.wake)

    def wake(self, session_id: str) -> None:
        """A new event (or a redelivery) for this session: its lane starts, or looks again."""
        if self._closed:  # shutting down: the next serve's sweep finds it in Redis
            return
        lane = self._lanes.get(session_id)
        if lane is None:
            lane = self._lanes[session_id] = asyncio.Event()
            self._tasks.spawn(self._lane(session_id, lane), name=f"deliver-{session_id}")
        lane.set()

    async def run(self) -> None:
        """Sweep now (what an earlier ``serve`` left undelivered starts at once), then every
        ``SWEEP_S``; until cancelled."""
        while True:
            try:
                for session_id in await self.events.sessions():
                    self.wake(session_id)
            except Exception:
                log.exception("delivery sweep failed; trying again in %.0f s", self._sweep_s)
            await asyncio.sleep(self._sweep_s)

    async def close(self) -> None:
        """Stop every lane; a request cut off here is sent again after the next start."""
        self._closed = True
        await self._tasks.cancel()
        self._lanes.clear()
        if self._on_close is not None:
            await self._on_close()

    def endpoint_of(self, own: str) -> str | None:
        """Where a session's events go: its own endpoint, else ``EVENTS_WEBHOOK_URL``; None
        when there is none, or when there is no key to sign with (nothing is sent unsigned)."""
        url = own or self.default_endpoint
        if not url:
            return None
        if not self._secret:
            if self._unsigned_warned:
                return None
            self._unsigned_warned = True
            log.warning(
                "events for %s are kept, not delivered: EVENTS_WEBHOOK_SECRET is not set",
                endpoint_url.mask(url),
            )
            return None
        return url

    # one session ------------------------------------------------------------------------

    async def _lane(self, session_id: str, wake: asyncio.Event) -> None:
        pause = LANE_ERROR_BACKOFF_S[0]
        try:
            while True:
                wake.clear()
                try:
                    more = await self._step(session_id)
                    pause = LANE_ERROR_BACKOFF_S[0]
                except Exception:
                    log.exception(
                        "delivery of %s failed; looking again in %.1f s", session_id, pause
                    )
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, LANE_ERROR_BACKOFF_S[1])
                    continue
                # No await between this check and the lane's removal: a wake() either came
                # before (the lane looks again) or finds no lane and starts a new one.
                if not more and not wake.is_set():
                    return
        finally:
            if self._lanes.get(session_id) is wake:
                del self._lanes[session_id]

    async def _step(self, session_id: str) -> bool:
        """Deliver (or fail, or dead-letter) the session's next event; False when there is
        nothing to do now."""
        head = await self.events.head(session_id)
        if not head.session_exists and not head.deleted:
            # A restore is rebuilding the fleet's keys right now: the sweep looks again
            # later. Nothing is dropped here.
            return False
        url = self.endpoint_of(head.endpoint)
        if head.deleted and (head.event is None or url is None):
            # A deleted session's stream is drained (or has nowhere to go, and no session
            # left to replay it from): it goes now.
            if await self.events.forget(session_id):
                log.info("the operator stream of deleted %s is drained and removed", session_id)
            return False
        if head.event is None or url is None:
            # Pull-only (trimmed by age alone) only when there is no endpoint at all: an
            # endpoint that cannot be used now (no key to sign with) keeps what waits for it.
            pull_only = not (head.endpoint or self.default_endpoint)
            await self.events.trim(session_id, self.clock.now_ms(), pull_only=pull_only)
            return False
        event = head.event
        wait_ms = min(head.next_at - self.clock.now_ms(), self.retry.max_ms)
        if wait_ms > 0:
            await asyncio.sleep(wait_ms / 1000)
        attempt = head.attempts + 1
        error = await self._attempt(url, event, attempt)
        now = self.clock.now_ms()
        where = endpoint_url.mask(url)
        if error is None:
            await self.events.delivered(session_id, event.stream_id, now)
            log.debug("delivered %s (%s) to %s, attempt %d", event.id, event.type, where, attempt)
        elif self.retry.gives_up(attempt, now - event.at):
            await self.events.dead_letter(event, attempt, error, now)
            log.warning(
                "event %s of %s is a dead letter after %d attempts (last: %s) to %s",
                event.id,
                session_id,
                attempt,
                error,
                where,
            )
        else:
            delay = self.retry.delay_ms(attempt, self._draw())
            await self.events.failed(session_id, event.stream_id, attempt, now + delay, error)
            log.info(
                "event %s of %s not delivered to %s (attempt %d: %s); next try in %d ms",
                event.id,
                session_id,
                where,
                attempt,
                error,
                delay,
            )
        return True

    async def _attempt(self, url: str, event: StoredEvent, attempt: int) -> str | None:
        """None when the endpoint took it (2xx), else why not."""
        shown = event.body() if self._dress is None else self._dress(event.body())
        body = json.dumps(shown, ensure_ascii=False, separators=(",", ":")).encode()
        ts = self.clock.now_ms()
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(self._secret, ts, body),
            EVENT_ID_HEADER: event.id,
            SESSION_HEADER: event.session_id,
            ATTEMPT_HEADER: str(attempt),
        }
        try:
            status = await self._post(url, body, headers)
        except DeliveryError as exc:
            return exc.reason
        return None if 200 <= status < 300 else f"HTTP {status}"
