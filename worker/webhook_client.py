"""The worker's side of ``/webhook``: signed, retried with backoff, buffered while down.

Events queue in a bounded buffer and go out in order. If the orchestrator is away (being
restarted, say), the buffer keeps the latest events instead of losing them, and only the
newest ``PING`` is kept: an old ping carries no information.

Every event's ``data`` carries the process's ``bootId`` (random per process start). Two
copies of one Swarm task run with the same environment, so only the boot id tells the
orchestrator which copy an event came from: a "stream replaced" from the copy that lost
must not mark the session disconnected while the newer copy is connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
import uuid
from collections import deque
from typing import Any

from core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from worker.http_post import HttpError, HttpPoster

log = logging.getLogger("wafleet.worker.webhook")

BUFFER_SIZE = 500
# What the orchestrator refuses in any string (core/text.py): C0/C1 controls and surrogates.
_UNSENDABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
RETRY_BASE_S, RETRY_CAP_S = 0.2, 5.0


class WebhookClient:
    def __init__(self, url: str, session_id: str, secret: str, boot_id: str | None = None) -> None:
        self.url = url
        self.session_id = session_id
        self.secret = secret
        self.boot_id = boot_id
        self._queue: deque[dict[str, Any]] = deque(maxlen=BUFFER_SIZE)
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._http = HttpPoster(url)
        self._sender: asyncio.Task[None] | None = None
        self.dropped = 0

    async def start(self) -> None:
        self._sender = asyncio.create_task(self._send_loop(), name="webhook-sender")

    def send(self, kind: str, data: dict[str, Any]) -> None:
        """Queue an event; never blocks the session loop."""
        if kind == "PING":
            for queued in list(self._queue):
                if queued["type"] == "PING":
                    self._queue.remove(queued)
        if self.boot_id is not None:
            data = {**data, "bootId": self.boot_id}
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
            log.warning("webhook buffer full: dropping the oldest event")
        self._queue.append(
            {
                # One id per event, kept across retries: the orchestrator applies it once.
                "id": uuid.uuid4().hex,
                "sessionId": self.session_id,
                "type": kind,
                "data": sendable(data),
                "timestamp": time.time_ns() // 1_000_000,
            }
        )
        self._drained.clear()
        self._wake.set()

    async def flush(self, limit_s: float) -> None:
        """Give queued events a chance to leave before the worker exits."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained.wait(), limit_s)

    async def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)
        await self._http.close()

    async def _send_loop(self) -> None:
        attempt = 0
        while True:
            if not self._queue:
                self._drained.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            event = self._queue[0]
            outcome = await self._post(event)
            if outcome == "retry":
                attempt += 1
                delay = min(RETRY_CAP_S, RETRY_BASE_S * 2 ** min(attempt, 10))
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                continue
            attempt = 0
            if self._queue and self._queue[0] is event:
                self._queue.popleft()

    async def _post(self, event: dict[str, Any]) -> str:
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
        ts = time.time_ns() // 1_000_000
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(self.secret, ts, body),
        }
        try:
            answer = await self._http.post(body, headers)
        except HttpError as exc:
            log.debug("orchestrator unreachable (%s); retrying", exc)
            return "retry"
        if answer.status < 300:
            return "sent"
        if answer.status in (408, 429) or answer.status >= 500:
            log.warning("webhook %s answered %d; retrying", event["type"], answer.status)
            return "retry"
        text = answer.body[:200].decode(errors="replace")
        log.error("webhook refused %s (%d): %s", event["type"], answer.status, text)
        return "dropped"


def sendable(value: Any) -> Any:
    """``value`` with every control character and lone surrogate in its strings made a space.

    Reasons quote library text (an exception, a server's message) that may hold a newline;
    the orchestrator refuses such a string with a 400 and a 400 is never retried, so the
    event would be lost: the worker cleans what it did not write itself instead.
    """
    if isinstance(value, str):
        return _UNSENDABLE.sub(" ", value)
    if isinstance(value, dict):
        return {sendable(k): sendable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [sendable(v) for v in value]
    return value
