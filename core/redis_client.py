"""The one place a Redis client is made: one Redis at ``REDIS_URL``, or the current primary
of a Sentinel-watched group (``REDIS_SENTINELS``).

Through Sentinel, every new connection asks the Sentinels where the primary is, so a
promotion is followed without a restart: connections to a dead primary fail and reconnect
to the one the Sentinels now name; a connection still open to a primary that was demoted
gets ``READONLY`` (or ``UNBLOCKED`` on a blocking command), which redis-py turns into a
``ConnectionError`` that drops it, and the retry reconnects. While no primary is known (the
few seconds between a primary's death and its replica's promotion) calls fail after the
retries below and the API answers 503 ``redis_unavailable`` (``switching`` tells which
errors mean that).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MasterDownError, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.settings import Settings

log = logging.getLogger("wafleet.redis")

# After a Redis restart every pooled connection is dead: a call that meets one reconnects and
# tries again (0.05 s, 0.1 s, 0.2 s, 0.4 s, 0.5 s apart) instead of failing the request; while
# Redis stays down the caller gets the error after about 1.3 s and the API answers 503.
REDIS_RETRIES = 5
REDIS_BACKOFF = ExponentialBackoff(cap=0.5, base=0.05)
# At once; more callers wait up to REDIS_POOL_WAIT_S for one. A burst of 200 provisions with
# their workers' events and polls exhausted 100 connections and a 5 s wait (503s in
# bench/fleet_bench.py); Redis takes 10,000 clients.
REDIS_CONNECTIONS = 400
REDIS_POOL_WAIT_S = 20.0
# A Sentinel answers "where is the primary" from memory: a second is long.
SENTINEL_TIMEOUT_S = 1.0
# Through Sentinel, a reply may take this long (plus REDIS_WAIT_MS) before the connection is
# given up: a primary frozen or cut off by the network sends no reset, and without a limit
# every request on it would hang while the Sentinels promote its replica. The longest wait
# asked of Redis on purpose is the bot's outbox read (1.5 s) or a WAIT.
REPLY_TIMEOUT_S = 5.0
# How stale the pool's idea of the primary may get: a read on a connection to a primary the
# Sentinels have replaced can answer with old data for at most this long.
REDISCOVER_S = 0.5
# Replies that mean "this node cannot take the command now, another will soon": a replica
# whose primary is gone (MASTERDOWN), a node still loading its data (LOADING), a demoted
# primary (READONLY, UNBLOCKED).
SWITCHING_REPLIES = ("MASTERDOWN", "LOADING", "READONLY", "UNBLOCKED")


def switching(exc: BaseException) -> bool:
    """Whether ``exc`` means Redis is away or changing primary (answer 503, retry later),
    rather than a bug. redis-py makes ``LOADING`` a ``ConnectionError`` (BusyLoadingError)
    and ``MASTERDOWN`` a ``MasterDownError``, and strips the code from the message of the
    replies it knows; one it does not know keeps its code as the message's first word."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | ReadOnlyError | MasterDownError):
        return True
    if not isinstance(exc, ResponseError):
        return False
    code = getattr(exc, "status_code", None) or str(exc).split(" ", 1)[0]
    return code in SWITCHING_REPLIES


def connect(settings: Settings) -> aioredis.Redis:
    """The client ``serve`` uses for everything: through Sentinel when it is configured."""
    if settings.redis_sentinels:
        return via_sentinel(
            settings.redis_sentinels,
            settings.redis_sentinel_master,
            settings.redis_url,
            settings.redis_sentinel_password,
            reply_timeout_s=REPLY_TIMEOUT_S + settings.redis_wait_ms / 1000,
        )
    return from_url(settings.redis_url)


def _pool_options() -> dict[str, Any]:
    """A client that survives a Redis restart (and a switch of primary).

    A retry resends a command when its connection failed, perhaps after Redis ran it.
    Every write of the store is a ``SET``/``DEL`` of a whole value or an atomic script that
    checks its own precondition (core/store.py), so running one twice changes nothing more.
    ``ReadOnlyError`` is retried too: a demoted primary refused the write, so it did not run.
    """
    # A burst (hundreds of messages, their workers' events and polls at once) needs more
    # than the pool's connections at a time: wait for a free one rather than fail.
    return {
        "max_connections": REDIS_CONNECTIONS,
        "timeout": REDIS_POOL_WAIT_S,
        "decode_responses": True,
        "retry": Retry(REDIS_BACKOFF, REDIS_RETRIES),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError, ReadOnlyError],
        "health_check_interval": 10,  # a connection idle that long is pinged before use
        "socket_keepalive": True,
        "socket_connect_timeout": 2,
    }


def from_url(url: str) -> aioredis.Redis:
    """One Redis at ``url`` (``REDIS_URL`` without Sentinels): today's single host."""
    pool = BlockingConnectionPool.from_url(url, **_pool_options())
    return aioredis.Redis.from_pool(pool)  # closing the client closes the pool


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (find the primary on every connect) with the blocking pool's wait for
    a free connection: redis-py ships the two apart, and a burst must wait, not fail.

    It counts the times the primary changed (``primary_switches``): a request during which it
    changed may have written to the old primary what the new one never got.
    """

    switches = 0
    _last: Any = None
    _asked = 0.0  # when the Sentinels were last asked who the primary is (monotonic)

    async def ensure_connection(self, connection: Any) -> None:
        # redis-py asks the Sentinels only when it makes a new connection. A primary frozen
        # and thawed (or cut off and back) keeps answering on the connections made to it
        # before the switch, with data the promoted replica has moved past, and nothing else
        # would make the pool ask: a read there answers "no such message" for one accepted a
        # second ago. So the Sentinels are asked again at most every REDISCOVER_S, and a
        # connection that is not to the primary they name is made anew before it is used.
        now = time.monotonic()
        if self.is_master and now - self._asked >= REDISCOVER_S:
            self._asked = now
            with contextlib.suppress(Exception):  # no answer: keep the primary known so far
                await self.get_master_address()
        known = self.master_address
        if (
            self.is_master
            and known is not None
            and connection.is_connected
            and (connection.host, connection.port) != tuple(known)
        ):
            await connection.disconnect()
        await super().ensure_connection(connection)

    async def get_master_address(self) -> Any:
        # Typed here: redis-py annotates this method in some releases and not in others.
        discover: Callable[[], Awaitable[Any]] = super().get_master_address
        address = await discover()
        if address != self._last:
            if self._last is not None:
                self.switches += 1
                log.warning("Redis primary is now %s:%s (was %s:%s)", *address, *self._last)
            self._last = address
        return address


def primary_switches(client: aioredis.Redis) -> int:
    """How many times ``client`` saw the primary change (always 0 without Sentinel)."""
    return int(getattr(client.connection_pool, "switches", 0))


class SentinelRedis(aioredis.Redis):
    """The primary's client; closing it also closes its connections to the Sentinels."""

    watchers: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.watchers is not None:
            await self.watchers.aclose()


def via_sentinel(
    sentinels: tuple[tuple[str, int], ...],
    master: str,
    url: str,
    sentinel_password: str = "",
    reply_timeout_s: float = REPLY_TIMEOUT_S + 1,
) -> aioredis.Redis:
    """The current primary of ``master`` as the Sentinels at ``sentinels`` name it; ``url``
    (``REDIS_URL``) gives the password, user name, database and TLS of the Redis nodes."""
    parts = urlsplit(url)
    db = parts.path.lstrip("/") or "0"
    node: dict[str, Any] = {
        "db": int(db) if db.isdigit() else 0,
        "socket_timeout": reply_timeout_s,
    }
    if parts.password is not None:
        node["password"] = unquote(parts.password)
    if parts.username:
        node["username"] = unquote(parts.username)
    if parts.scheme == "rediss":
        node["ssl"] = True
    watchers: dict[str, Any] = {
        "socket_timeout": SENTINEL_TIMEOUT_S,
        "socket_connect_timeout": SENTINEL_TIMEOUT_S,
    }
    if sentinel_password:
        watchers["password"] = sentinel_password
    sentinel = Sentinel(list(sentinels), sentinel_kwargs=watchers)
    client: SentinelRedis = sentinel.master_for(
        master,
        redis_class=SentinelRedis,
        connection_pool_class=_BlockingSentinelPool,
        **node,
        **_pool_options(),
    )
    client.watchers = sentinel
    return client


async def primary_view(client: aioredis.Redis) -> tuple[str, int]:
    """``("host:port" of the primary, how many replicas it has connected)``: what a cluster
    view shows. Through Sentinel, the address is the one the Sentinels named last."""
    info = await client.info("replication")
    pool = client.connection_pool
    known = getattr(pool, "master_address", None)
    if known:
        where = f"{known[0]}:{known[1]}"
    elif "path" in pool.connection_kwargs:
        where = str(pool.connection_kwargs["path"])
    else:
        where = f"{pool.connection_kwargs.get('host')}:{pool.connection_kwargs.get('port')}"
    return where, int(info.get("connected_slaves", 0))
