"""The leader's lease: which one of several ``serve`` replicas runs the work that must run once.

The lease is one Redis key, ``"<token> <SERVE_ID>"``, that expires ``LEADER_LEASE_MS`` after
its last renewal. A replica wins it only when nobody holds it, and each win takes the next
value of a counter: the **fencing token**. The holder renews it every third of a lease with a
script that extends it only if it still holds it, so a replica that lost it (frozen, cut off
from Redis) can never take it back by renewing.

Redis alone cannot tell a frozen leader that it lost: after a ``SIGSTOP`` its code runs on as
if nothing happened. So the holder also keeps a local deadline on the monotonic clock,
counted from *before* it sent the renewal that Redis accepted, minus a safety margin: its
own idea of the lease ends before Redis's does, whatever the delays. Leader-only work asks
``is_leader()`` before each action, and the leader's Redis writes that matter (taking a
session's lock, claiming a scheduled run) go through scripts that check the token is still
the current one (the fence): a thawed old leader's write is refused, its work cancelled,
and it carries on as a follower.

Leader-only work runs inside ``acting_as_leader``: a context variable holding the token,
inherited by every task it spawns, so a helper deep down (the session locks, the runner)
knows it acts for the leader and fences itself without being told.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Iterator

import redis.asyncio as aioredis

from core import keys
from core.store import load_script

log = logging.getLogger("wafleet.leadership")

# The value of the lease key this task acts for ("<token> <id>"), None outside leader work.
_ACTING: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "wafleet_leader", default=None
)


class LostLeadership(Exception):  # noqa: N818 (what happened, not an error of the caller)
    """Leader-only work tried to act after its lease ran out (or another replica won)."""


def acting_value() -> str | None:
    """The lease value of the leader work running in this task, None outside it."""
    return _ACTING.get()


@contextlib.contextmanager
def acting_as_leader(value: str) -> Iterator[None]:
    """Run (and spawn tasks) as the leader holding ``value``: fenced helpers check it."""
    reset = _ACTING.set(value)
    try:
        yield
    finally:
        _ACTING.reset(reset)


Listener = Callable[[bool], Awaitable[None]]


class Leadership:
    def __init__(
        self,
        redis: aioredis.Redis,
        serve_id: str,
        lease_ms: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.serve_id = serve_id
        self.lease_ms = lease_ms
        # A fifth of the lease: room for the clock rates of two machines to differ and for
        # the loop to be late; the Telegram poll keeps one more second (bot/app.py).
        self.margin_s = lease_ms / 5000
        self.renew_every_s = lease_ms / 3000
        self._monotonic = monotonic
        self._value: str | None = None  # "<token> <id>" while this replica leads
        self._valid_until = 0.0
        self._listeners: list[Listener] = []
        # False until the first round asked Redis: till then nobody knows whether this
        # replica will lead (and reconcile), so it does not say it has settled.
        self.decided = False
        self._acquire = redis.register_script(load_script("leader_acquire.lua"))
        self._renew = redis.register_script(load_script("lease_renew.lua"))
        self._release = redis.register_script(load_script("lease_release.lua"))
        self._check = redis.register_script(load_script("leader_check.lua"))
        self._claim = redis.register_script(load_script("fenced_claim.lua"))

    # what the rest asks ------------------------------------------------------------------

    def is_leader(self) -> bool:
        """True while this replica holds the lease by its own clock (checked locally: cheap
        enough to ask before every action)."""
        return self._value is not None and self._monotonic() < self._valid_until

    def left_s(self) -> float:
        """Seconds this replica may still act as leader without another renewal (0: none)."""
        if self._value is None:
            return 0.0
        return max(0.0, self._valid_until - self._monotonic())

    @property
    def value(self) -> str | None:
        """``"<token> <id>"`` while leading: what leader work runs under."""
        return self._value if self.is_leader() else None

    @property
    def token(self) -> int | None:
        value = self.value
        return int(value.split(" ", 1)[0]) if value else None

    def on_change(self, listener: Listener) -> None:
        """``listener(True)`` once this replica won the lease, ``listener(False)`` once it
        lost it (before anything else can act on the loss): start and stop leader work."""
        self._listeners.append(listener)

    def ensure(self) -> None:
        """Raise ``LostLeadership`` when the work of this task runs for a lease that is no
        longer held by this replica's own clock (no Redis round trip)."""
        acting = _ACTING.get()
        if acting is not None and (acting != self._value or not self.is_leader()):
            raise LostLeadership(f"{self.serve_id} no longer leads (lease lost)")

    async def fence(self) -> None:
        """``ensure``, then the same question to Redis: is this task's token still current?"""
        self.ensure()
        acting = _ACTING.get()
        if acting is not None and not await self._check(keys=[keys.LEADER], args=[acting]):
            raise LostLeadership(f"{self.serve_id}'s fencing token is stale")

    async def claim_once(self, what: str, ttl_s: int) -> bool:
        """Claim one run of leader work named ``what`` (a scheduled backup's fire time), at
        most once over every replica and every leader; fenced by the token."""
        value = self.value
        if value is None:
            return False
        got = int(await self._claim(keys=[what, keys.LEADER], args=[value, ttl_s]))
        if got < 0:
            raise LostLeadership(f"{self.serve_id}'s fencing token is stale")
        return got == 1

    async def current(self) -> str | None:
        """The SERVE_ID of the leader as Redis says now (None: no leader)."""
        raw = await self.redis.get(keys.LEADER)
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return text.split(" ", 1)[1] if " " in text else None

    # the lease ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Hold or seek the lease until cancelled; then give it back if held."""
        try:
            while True:
                try:
                    await self.step()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # Redis away: the local deadline still decides
                    log.warning("leader lease: %s", type(exc).__name__)
                    if self._value is not None and not self.is_leader():
                        await self._lose("its lease ran out while Redis could not be reached")
                pause = self.renew_every_s
                if self._value is not None:
                    pause = min(pause, max(0.01, self.left_s()))
                await asyncio.sleep(pause)
        finally:
            await asyncio.shield(self.resign())

    async def step(self) -> None:
        """One round: renew while leading, else try to win."""
        if self._value is not None:
            if not self.is_leader():  # frozen or starved past the local deadline
                await self._lose("its lease ran out before it was renewed")
                return
            sent = self._monotonic()
            if await self._renew(keys=[keys.LEADER], args=[self._value, self.lease_ms]):
                self._valid_until = sent + self.lease_ms / 1000 - self.margin_s
            else:
                await self._lose("another replica holds the lease")
            return
        sent = self._monotonic()
        token = int(
            await self._acquire(
                keys=[keys.LEADER, keys.LEADER_EPOCH], args=[self.serve_id, self.lease_ms]
            )
        )
        if token:
            self._value = f"{token} {self.serve_id}"
            self._valid_until = sent + self.lease_ms / 1000 - self.margin_s
            log.warning("%s is the leader now (fencing token %d)", self.serve_id, token)
            await self._tell(True)
        self.decided = True

    async def resign(self) -> None:
        """A clean stop: leader work stops first, then the lease is freed, so another
        replica takes over at once instead of after a whole lease."""
        value = self._value
        if value is None:
            return
        await self._lose("it is stopping")
        with contextlib.suppress(Exception):
            await self._release(keys=[keys.LEADER], args=[value])

    async def _lose(self, why: str) -> None:
        log.warning("%s is no longer the leader: %s", self.serve_id, why)
        self._value = None
        self._valid_until = 0.0
        await self._tell(False)

    async def _tell(self, leading: bool) -> None:
        for listener in self._listeners:
            try:
                await listener(leading)
            except Exception:
                log.exception("a leadership listener failed")
