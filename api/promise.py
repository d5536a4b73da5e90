"""Every promise the HTTP side makes waits for a Redis replica (core/promise.py says why).

One middleware covers them all: a 2xx to anything but ``GET``/``HEAD``/``OPTIONS`` is a
promise (a provision's 201, a message's 202, a worker's event, an acknowledgement, an
operator's action), so the answer waits until the writes made for it reached the replicas,
or becomes 503 ``redis_unavailable``. Listing endpoints one by one would miss the next one
added; a handler that made no promise says so (``NO_PROMISE``) and skips the wait.
A write during which Redis changed primary answers 503 whatever its outcome was
(core/promise.py says why). Without ``REDIS_SENTINELS`` there is no ``Promises`` in the app
and nothing changes.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from core.errors import WafleetError
from core.promise import Promises

PROMISES = web.AppKey("promises", Promises)
# Set by a handler whose 2xx promises nothing: a PING (buffered in memory, not a promise of
# anything), a poll of the command channel that handed out nothing.
NO_PROMISE = web.RequestKey("no_promise", bool)
READS = frozenset({"GET", "HEAD", "OPTIONS"})


@web.middleware
async def promise_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    promises = request.app.get(PROMISES)
    if promises is None or request.method in READS:
        response: web.StreamResponse = await handler(request)
        return response
    since = promises.switches()
    try:
        response = await handler(request)
    except WafleetError:
        promises.check(since)  # a 404/409 about a state the switch took away is a 503
        raise
    if response.prepared or request.get(NO_PROMISE, False):
        return response  # already streaming (too late to change), or nothing promised
    if not 200 <= response.status < 300:
        promises.check(since)
        return response
    await promises.keep(since)  # NotReplicated or a Redis error: the error middleware's 503
    return response
