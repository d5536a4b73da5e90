"""The worker's side of ``/webhook``: signed, retried with backoff, durable while down.

Every event but ``PING`` goes through the outbox (worker/outbox.py): on disk before it
counts as taken, sent in order, removed once ``serve`` answered, replayed by the next
process if this one dies first. What queued up while a request was out leaves together in
the next one (``{"sessionId", "events": [...]}``): a burst of receipts costs ``serve`` one
request, not one each, and an idle worker's single event goes as it always did. Only the
newest ``PING`` is kept, in memory: an old ping carries no information, and it goes out
ahead of a backlog (it only says "alive").

Each event's ``id`` stays the same across retries and restarts, and for a message event it
is derived from what the network said (the message id; for a receipt, with its status): the
network sends a frame again until the worker acknowledged it, and the second copy must be
the same event to ``serve``, which applies an id once.

Every event's ``data`` carries the ``bootId`` of the process that took it (random per
process start); a replayed event keeps the one it was written with. Two copies of one Swarm
task run with the same environment, so only the boot id tells the orchestrator which copy an
event came from: a "stream replaced" from the copy that lost must not mark the session
disconnected while the newer copy is connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import threading
import time
from pathlib import Path
from typing import Any

from core.events import event_id
from core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from worker.endpoints import Endpoints
from worker.http_post import HttpError
from worker.outbox import DEFAULT_MAX_BYTES, Outbox

log = logging.getLogger("wafleet.worker.webhook")

MESSAGE_EVENTS = frozenset({"MESSAGE_IN", "MESSAGE_STATUS"})
# What the orchestrator refuses in any string (core/text.py): C0/C1 controls and surrogates.
_UNSENDABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
RETRY_BASE_S, RETRY_CAP_S = 0.2, 5.0
# What one request may carry: the events queued while the last request was out go together
# (a burst of receipts is one request, not one each), under serve's body limit (64 KiB).
BATCH_EVENTS, BATCH_BYTES = 100, 48 * 1024


class WebhookClient:
    def __init__(
        self,
        url: str,
        session_id: str,
        secret: str,
        boot_id: str | None = None,
        outbox_dir: Path | None = None,
        outbox_max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.url = url
        # One or several serve replicas (comma-separated): the command channel shares it.
        self.endpoints = Endpoints(url)
        self.session_id = session_id
        self.secret = secret
        self.boot_id = boot_id
        self.outbox = Outbox(outbox_dir, session_id, outbox_max_bytes)
        self._ping: dict[str, Any] | None = None
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._http = self.endpoints.poster(lambda webhook_url: webhook_url)
        self._sender: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._sender = asyncio.create_task(self._send_loop(), name="webhook-sender")
        self._notify()  # what an earlier process left in the outbox goes first

    def send(self, kind: str, data: dict[str, Any]) -> None:
        """Queue a life-cycle event (or a ping); never blocks the session loop for long."""
        event = self._event(kind, data)
        if kind == "PING":
            self._ping = event
        else:
            self.outbox.put(event, bounded=False)
        self._notify()

    def take(self, kind: str, data: dict[str, Any]) -> bool:
        """Queue a message event durably; True once it is on disk (the network may then be
        told it arrived), False when the outbox is full (do not acknowledge: the network
        keeps it and sends it again). Callable from any thread."""
        taken = self.outbox.put(self._event(kind, data), bounded=True)
        if taken:
            self._notify()
        return taken

    def _event(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        if self.boot_id is not None:
            data = {**data, "bootId": self.boot_id}
        return {
            "id": event_id(kind, data),
            "sessionId": self.session_id,
            "type": kind,
            "data": sendable(data),
            "timestamp": time.time_ns() // 1_000_000,
        }

    def _notify(self) -> None:
        """Wake the sender; from another thread (whatsmeow's), through the loop."""
        if self._loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._drained.clear()
            self._wake.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed: the file keeps it
                self._loop.call_soon_threadsafe(self._notify)

    async def flush(self, limit_s: float) -> None:
        """Give queued events a chance to leave before the worker exits (the outbox keeps
        what does not: the next process sends it)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained.wait(), limit_s)

    async def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)
        await self._http.close()

    async def _send_loop(self) -> None:
        attempt = 0
        alone = False  # after a batch was refused whole: the next request carries one event
        while True:
            ping = self._ping
            if ping is not None:
                body, count, what = _encode(ping), 0, "PING"
            else:
                lines = self.outbox.head_lines(1 if alone else BATCH_EVENTS, BATCH_BYTES)
                if not lines:
                    self._drained.set()
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                body, count = self._body(lines), len(lines)
                what = "a batch of events" if count > 1 else "an event"
            outcome = await self._post(body, what, batch=count > 1)
            if outcome == "retry":
                attempt += 1
                delay = min(RETRY_CAP_S, RETRY_BASE_S * 2 ** min(attempt, 10))
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                continue
            attempt = 0
            if outcome == "alone":
                alone = True  # each of them on its own, so one bad event cannot take the rest
                continue
            alone = False
            if ping is not None:
                if self._ping is ping:  # a newer ping may have come meanwhile
                    self._ping = None
            else:
                self.outbox.pop(count)

    def _body(self, lines: list[bytes]) -> bytes:
        """One event as it is, several as ``{"sessionId", "events": [...]}``: the outbox's
        lines are already JSON, so a batch is joined, not encoded again."""
        if len(lines) == 1:
            return lines[0]
        head = json.dumps({"sessionId": self.session_id}, separators=(",", ":"))[:-1]
        return head.encode() + b',"events":[' + b",".join(lines) + b"]}"

    async def _post(self, body: bytes, what: str, batch: bool) -> str:
        """``sent``, ``retry``, ``dropped`` (refused for good) or ``alone`` (a batch refused
        whole: send its events one by one)."""
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
            if batch:
                _log_refused(answer.body)
            return "sent"
        if answer.status in (408, 429) or answer.status >= 500:
            log.warning("webhook answered %d to %s; retrying", answer.status, what)
            return "retry"
        text = answer.body[:200].decode(errors="replace")
        if batch and answer.status not in (401, 404):
            log.warning(
                "webhook refused %s (%d): %s; sending them one by one", what, answer.status, text
            )
            return "alone"
        log.error("webhook refused %s (%d): %s", what, answer.status, text)
        return "dropped"


def _encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def _log_refused(answer: bytes) -> None:
    """The events of a batch ``serve`` refused (each logged, as a single refusal is)."""
    try:
        refused = json.loads(answer).get("refused") or []
    except (ValueError, AttributeError):
        return
    for item in refused if isinstance(refused, list) else []:
        log.error("webhook refused event %s: %s", item.get("id"), item.get("error"))


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
