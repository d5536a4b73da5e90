"""A promise waits for a replica: what a 2xx answered is on a second Redis node first.

Redis replicates asynchronously; a primary that dies loses what it had not sent yet, and
Sentinel promotes a replica without it. So before a 201/202/2xx is answered (the caller then
forgets its request; a worker deletes the event from its outbox), the write must have
reached ``replicas`` replicas: Redis ``WAIT replicas ms``. Not acknowledged in time: the
caller gets 503 ``redis_unavailable`` and asks again (an idempotency key, an event id or a
command id makes the second time the same as the first).

``WAIT`` waits for the writes *of the connection it runs on*. A pooled client may run it on
a connection that wrote nothing (or wrote long ago): that ``WAIT`` answers at once that
every replica has "everything", and the promise would be empty. So one pipeline, on one
connection, writes (``INCR`` of ``keys.PROMISE``) and then waits; the replication stream is
ordered, so a replica that has this write has every write made before it on any
connection.

A request during which the primary changed (Sentinel promoted a replica) answers 503 too,
whatever it was going to answer: part of its writes may have gone to the old primary after
its replica's last copy, and the rest to the new one, so its outcome (a 201, or a 404 for
what it wrote itself a moment before) describes a state that no longer exists.

Concurrent promises share one ``WAIT`` (a group commit): a promise asked while another
``WAIT`` runs joins the next one, which starts after the running one ends, so it covers
every write finished before it was asked, and a burst of answers costs one ``WAIT`` per
replica round trip rather than one per answer.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from core import keys
from core.errors import WafleetError
from core.redis_client import primary_switches

log = logging.getLogger("wafleet.promise")


class NotReplicated(WafleetError):
    """The write is on the primary but not (yet) on enough replicas: no promise made."""

    code = "redis_unavailable"


class Promises:
    def __init__(self, redis: aioredis.Redis, replicas: int, wait_ms: int) -> None:
        self.redis = redis
        self.replicas = replicas
        self.wait_ms = wait_ms
        self._next: asyncio.Future[None] | None = None
        self._one_at_a_time = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.waits = 0  # WAITs run (the group commit's effect, seen in tests)

    def switches(self) -> int:
        """A mark to give ``keep``/``check`` at the end of the request."""
        return primary_switches(self.redis)

    def check(self, since: int) -> None:
        """``NotReplicated`` when the primary changed after ``since`` (``switches()``)."""
        if primary_switches(self.redis) != since:
            raise NotReplicated("Redis changed primary while the request ran: retry")

    async def keep(self, since: int) -> None:
        """Return once every write made before this call is on ``replicas`` replicas, and
        the primary is the one it was at ``since``; ``NotReplicated`` (or the client's own
        Redis error) when not."""
        self.check(since)
        if self.replicas > 0:
            await self._replicated()
        self.check(since)  # the WAIT itself may have met the new primary

    async def _replicated(self) -> None:
        batch = self._next
        if batch is None:
            batch = self._next = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(self._run(batch), name="redis-wait")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.shield(batch)  # a caller that gives up does not cancel the others'

    async def _run(self, batch: asyncio.Future[None]) -> None:
        try:
            async with self._one_at_a_time:
                if self._next is batch:
                    self._next = None  # from here on, a new promise waits for the next WAIT
                failed = await self._failure()
            if failed is None:
                batch.set_result(None)
            else:
                batch.set_exception(failed)
                batch.exception()  # retrieved: a batch whose callers all left logs nothing
        finally:
            if not batch.done():  # cancelled (serve stopping): its callers stop waiting too
                batch.cancel()

    async def _failure(self) -> Exception | None:
        """Why this batch's promise cannot be made, or None when it can."""
        try:
            acked = await self.wait_once()
        except Exception as exc:  # every promise of the batch fails the same way
            return exc
        if acked >= self.replicas:
            return None
        log.warning(
            "Redis WAIT: %d of %d replicas within %d ms; answering 503",
            acked,
            self.replicas,
            self.wait_ms,
        )
        return NotReplicated(
            f"the write reached {acked} of {self.replicas} Redis replicas within "
            f"{self.wait_ms} ms: retry"
        )

    async def wait_once(self) -> int:
        """How many replicas have every write made so far: a write and ``WAIT`` on one
        connection (a pipeline is one connection), so the ``WAIT`` has something to wait for."""
        self.waits += 1
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(keys.PROMISE)
        pipe.wait(self.replicas, self.wait_ms)
        _, acked = await pipe.execute()
        return int(acked)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
