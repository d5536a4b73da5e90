"""The command channel serve -> worker: the worker asks, serve answers (a long poll).

The worker makes every connection, as it already does for its webhook events, so the
channel works wherever the worker runs (another Swarm node, behind NAT) with nothing to
open towards it, and it is authenticated exactly as the webhook is: each request is signed
with the session's derived secret, so a worker can read and acknowledge only its own
session's commands. Commands live in Redis until acknowledged (``keys.session_commands``),
so neither a restart of serve nor the death of the worker loses one: every poll answers
the unacknowledged ones again.

A message costs the channel one request: the worker's acknowledgement of what it carried out
rides on its next poll (``acks``), and ``serve`` makes the message's ``sent``/``failed``
status event for the operator from it, the same event (same id) an older worker posts
itself. So a message's way from the worker is one request, not three (an ack, the status
event, the next poll).

A waiting poll costs nothing: it looks at Redis only when something can have changed for
its session, and everything that can happens inside this one serve process, which wakes
the session's event (``MessageService.wake``): a message accepted, an acknowledgement,
the session connected, its limits changed. A limit window or the random pause passing is
the ``wait_ms`` that ``take`` answers. A stop needs no wake: a stopped session has nothing
to hand out, and its started worker's first poll looks at once. An idle fleet of N
workers is then N requests per poll length (25 s), not N Redis scripts a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from core import keys
from core.errors import NotFound
from core.events import EventKind, event_id
from core.messages import MessageService

# Applies a worker event as if the worker had posted it (the session service's
# ``handle_event``): (session id, kind, data, event id).
Report = Callable[[str, str, dict[str, Any], str], Awaitable[None]]


@dataclass(frozen=True)
class Ack:
    """A worker's outcome for one command: ``sent``, or ``failed`` with a reason."""

    message_id: str
    status: str
    reason: str | None = None


# The safety net: a waiting poll looks at Redis again at least this often even when no
# event woke it (a write no code path here wakes for, made by hand or by a future feature).
# Rare on purpose: at 1 s it was a Lua script per worker per second, 6 % of a core for an
# idle fleet of 200. With the default poll length (25 s) the poll's own end comes first.
RECHECK_S = 30.0


class CommandChannel:
    def __init__(
        self,
        messages: MessageService,
        report: Report,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """``report``: applies the status event an acknowledgement stands for;
        ``registry``: where the channel's two counters are exported (``/metrics``)."""
        self.messages = messages
        self.report = report
        self._closing = False
        self.polls = Counter(
            "wafleet_command_polls_total",
            "Polls of the command channel by workers (requests)",
            registry=registry,
        )
        self.looks = Counter(
            "wafleet_command_looks_total",
            "Times the command channel looked at Redis for a session's commands",
            registry=registry,
        )

    async def poll(self, session_id: str, wait_s: float) -> list[dict[str, Any]]:
        """The session's commands, waiting up to ``wait_s`` for one when there are none;
        NotFound for a session that does not exist (deleted: its worker should stop asking).

        One ``EXISTS``, not the whole session record: with hundreds of idle workers this
        request is most of what an idle ``serve`` does."""
        self.polls.inc()
        if not await self.messages.redis.exists(keys.session(session_id, "status")):
            raise NotFound(f"no session {session_id!r}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        waker = self.messages.waker(session_id)
        while not self._closing:
            waker.clear()  # before looking: a wake after this point is not missed
            self.looks.inc()
            commands, wait_ms = await self.messages.take(session_id)
            remaining = deadline - loop.time()
            if commands or remaining <= 0:
                return commands
            pause = min(remaining, RECHECK_S)
            if wait_ms >= 0:
                pause = min(pause, max(wait_ms / 1000, 0.001))
            try:
                await asyncio.wait_for(waker.wait(), pause)
            except TimeoutError:
                if pause >= remaining:
                    # The poll's time is up and nothing woke it: no last look, the worker's
                    # next poll looks first thing (one look per idle poll, not two).
                    return []
        return []

    def close(self) -> None:
        """``serve`` is stopping: every waiting poll answers now (nothing) instead of holding
        the web server's shutdown until its time is up. The workers poll again, and the next
        ``serve`` answers them; their commands stay in Redis meanwhile."""
        self._closing = True
        self.messages.wake_all()

    async def ack(self, session_id: str, acks: Sequence[Ack]) -> bool:
        """Apply the worker's acknowledgements of its session's commands (their outcomes),
        in order; False, and nothing changes, when any of them is not this session's.

        Each is applied whole before the next: the command leaves the channel and the
        message gets its status, then the operator's status event is written (its id is the
        one the worker would give it, so an older worker's own event is the same one). A
        crash between the two is healed by the worker's retry, since it saw no answer:
        both steps apply once.
        """
        if not await self.messages.all_of(session_id, [a.message_id for a in acks]):
            return False
        for one in acks:
            await self.messages.update(
                session_id, one.message_id, one.status, one.reason, ack=True
            )
            data: dict[str, Any] = {"messageId": one.message_id, "status": one.status}
            if one.reason:
                data["reason"] = one.reason
            kind = EventKind.MESSAGE_STATUS
            await self.report(session_id, kind, data, event_id(kind, data))
        return True
