"""What may not interleave: the work on one session, and the failover off one proxy.

A failover, a restart, a delete and a worker's event of the same session never run at the
same time; every room of the session service takes its locks here and nowhere else, so a
lock that several ``serve`` processes share can take the place of these in-process ones
without any room changing.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from contextlib import AbstractAsyncContextManager


class Locks:
    """In-process locks, one per session and one per proxy."""

    def __init__(self) -> None:
        self._sessions: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._proxies: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def session(self, session_id: str) -> AbstractAsyncContextManager[None]:
        """Held while anything reads a session to decide what to do with it, and does it."""
        return self._sessions[session_id]

    def proxy(self, url: str) -> AbstractAsyncContextManager[None]:
        """Held while one failover confirms a proxy dead and moves its sessions off it."""
        return self._proxies[url]

    def forget(self, session_id: str) -> None:
        """The session is deleted: its lock goes with it."""
        self._sessions.pop(session_id, None)
