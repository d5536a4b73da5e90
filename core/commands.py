"""The command channel serve -> worker: the worker asks, serve answers (a long poll).

The worker makes every connection, as it already does for its webhook events, so the
channel works wherever the worker runs (another Swarm node, behind NAT) with nothing to
open towards it, and it is authenticated exactly as the webhook is: each request is signed
with the session's derived secret, so a worker can read and acknowledge only its own
session's commands. Commands live in Redis until acknowledged (``keys.session_commands``),
so neither a restart of serve nor the death of the worker loses one: every poll answers
the unacknowledged ones again.

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
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from core import keys
from core.errors import NotFound
from core.messages import MessageService

# The safety net: a waiting poll looks at Redis again at least this often even when no
# event woke it (a write no code path here wakes for, made by hand or by a future feature).
# Rare on purpose: at 1 s it was a Lua script per worker per second, 6 % of a core for an
# idle fleet of 200. With the default poll length (25 s) the poll's own end comes first.
RECHECK_S = 30.0


class CommandChannel:
    def __init__(
        self, messages: MessageService, registry: CollectorRegistry | None = None
    ) -> None:
        """``registry``: where the channel's two counters are exported (``/metrics``)."""
        self.messages = messages
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

    async def ack(self, session_id: str, message_id: str, status: str, reason: str | None) -> bool:
        """Apply the worker's acknowledgement of one command (its outcome); False, and nothing
        changes, when that command is not this session's."""
        return await self.messages.update(session_id, message_id, status, reason, ack=True)
