"""Short notices between ``serve`` replicas over Redis pub/sub.

What one process used to tell itself in memory now has to reach the others: a message
accepted on one replica wakes its session's command poll held open by another; an event
appended anywhere wakes the leader's delivery lane; a worker started by a follower is
adopted by the leader, which watches every worker's exit.

Notices are hints, never the state: the state is in Redis already when one is sent, and a
notice lost while a replica reconnects only costs latency (a poll looks again within
``core.commands.RECHECK_S``, a lane at its sweep, the watchdog catches an unwatched worker).
So publishing never blocks the caller: ``post`` queues, one task sends.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from core import keys

log = logging.getLogger("wafleet.bus")

Handler = Callable[[dict[str, Any]], Awaitable[None] | None]
QUEUE_MAX = 10_000  # notices waiting to be sent; past it new ones are dropped (hints only)
RECONNECT_S = (0.2, 5.0)


class ClusterBus:
    def __init__(self, redis: aioredis.Redis, serve_id: str) -> None:
        self.redis = redis
        self.serve_id = serve_id
        self._handlers: dict[str, Handler] = {}
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_MAX)
        self.listening = asyncio.Event()  # set once subscribed (tests wait for it)

    def on(self, kind: str, handler: Handler) -> None:
        """``handler(notice)`` for every ``kind`` notice another replica posts."""
        self._handlers[kind] = handler

    def post(self, kind: str, **fields: Any) -> None:
        """Tell the other replicas, without waiting (dropped if the queue is full)."""
        try:
            self._queue.put_nowait({"kind": kind, "from": self.serve_id, **fields})
        except asyncio.QueueFull:
            log.warning("cluster notices back up; dropping a %s notice", kind)

    async def run(self) -> None:
        """Send and receive until cancelled; reconnects after Redis errors."""
        sender = asyncio.create_task(self._send(), name="bus-send")
        try:
            await self._receive()
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _send(self) -> None:
        while True:
            notice = await self._queue.get()
            pause = RECONNECT_S[0]
            while True:
                try:
                    await self.redis.publish(keys.CLUSTER_BUS, json.dumps(notice))
                    break
                except (aioredis.ConnectionError, aioredis.TimeoutError):
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, RECONNECT_S[1])

    async def _receive(self) -> None:
        pause = RECONNECT_S[0]
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(keys.CLUSTER_BUS)
                self.listening.set()
                pause = RECONNECT_S[0]
                while True:
                    message = await pubsub.get_message(timeout=30.0)
                    if message is not None:
                        await self._dispatch(message.get("data"))
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
                self.listening.clear()
                log.warning("cluster notices: Redis away; subscribing again in %.1f s", pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, RECONNECT_S[1])
            finally:
                await asyncio.shield(pubsub.aclose())

    async def _dispatch(self, raw: object) -> None:
        try:
            notice = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
            kind = str(notice["kind"])
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable cluster notice dropped")
            return
        if notice.get("from") == self.serve_id:
            return  # its own: already acted on where it was posted
        handler = self._handlers.get(kind)
        if handler is None:
            return
        try:
            result = handler(notice)
            if result is not None:
                await result
        except Exception:
            log.exception("handling a %s notice failed", kind)
