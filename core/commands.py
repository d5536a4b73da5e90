"""The command channel serve -> worker: the worker asks, serve answers (a long poll).

The worker makes every connection, as it already does for its webhook events, so the
channel works wherever the worker runs (another Swarm node, behind NAT) with nothing to
open towards it, and it is authenticated exactly as the webhook is: each request is signed
with the session's derived secret, so a worker can read and acknowledge only its own
session's commands. Commands live in Redis until acknowledged (``keys.session_commands``),
so neither a restart of serve nor the death of the worker loses one: every poll answers
the unacknowledged ones again.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from core.messages import MessageService

# However long a poll may wait, look at Redis again this often: a status change, a limit
# window passing, or a message accepted by another serve process wakes no local event.
RECHECK_S = 1.0


class CommandChannel:
    def __init__(self, messages: MessageService) -> None:
        self.messages = messages

    async def poll(self, session_id: str, wait_s: float) -> list[dict[str, Any]]:
        """The session's commands, waiting up to ``wait_s`` for one when there are none."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        waker = self.messages.waker(session_id)
        while True:
            waker.clear()  # before looking: a wake after this point is not missed
            commands, wait_ms = await self.messages.take(session_id)
            remaining = deadline - loop.time()
            if commands or remaining <= 0:
                return commands
            pause = min(remaining, RECHECK_S)
            if wait_ms >= 0:
                pause = min(pause, max(wait_ms / 1000, 0.001))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waker.wait(), pause)

    async def ack(self, session_id: str, message_id: str, status: str, reason: str | None) -> bool:
        """Apply the worker's acknowledgement of one command (its outcome); False, and nothing
        changes, when that command is not this session's."""
        return await self.messages.update(session_id, message_id, status, reason, ack=True)
