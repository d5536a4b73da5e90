"""Which ``serve`` replica the worker talks to: ``WEBHOOK_URL`` may list several.

Every replica answers ``/webhook`` and the command channel alike, so the worker uses one,
the current, until it fails (refused, reset, timed out, or a gateway's 502/504 in front of
it) and then moves on to the next in the list, in the same request: a killed replica costs a
refused connection, not a retry delay. The events and the command channel share one
``Endpoints``, so what one of them learnt the other does not have to find out again. A 503
is not a reason to move: ``redis_unavailable`` is the same at every replica (they share
Redis), and the caller's own backoff handles it. With one URL this is exactly one poster.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from worker.http_post import Answer, HttpError, HttpPoster

log = logging.getLogger("wafleet.worker.endpoints")

# Answers that say "the replica behind me is away", from a proxy or load balancer.
GATEWAY_FAILURES = frozenset({502, 504})


class Endpoints:
    """The replicas' webhook URLs, in the operator's order, and the one in use."""

    def __init__(self, webhook_urls: str) -> None:
        self.urls = [u.strip() for u in webhook_urls.split(",") if u.strip()]
        if not self.urls:
            raise ValueError("no webhook URL")
        self.current = 0

    def failed(self, index: int) -> None:
        """The replica at ``index`` did not answer: the next one becomes current (unless
        another request moved on already)."""
        if index == self.current and len(self.urls) > 1:
            self.current = (index + 1) % len(self.urls)
            log.warning(
                "serve replica %d of %d unreachable; moving to the next",
                index + 1,
                len(self.urls),
            )

    def poster(self, path: Callable[[str], str], timeout_s: float = 10.0) -> FailoverPoster:
        """A poster to ``path(webhook URL)`` at whichever replica is current."""
        return FailoverPoster(self, [HttpPoster(path(u), timeout_s) for u in self.urls])


class FailoverPoster:
    def __init__(self, endpoints: Endpoints, posters: list[HttpPoster]) -> None:
        self.endpoints = endpoints
        self.posters = posters

    async def post(self, body: bytes, headers: dict[str, str]) -> Answer:
        """One POST at the current replica, then each next one in turn while they fail; the
        last failure (``HttpError``, or a gateway's answer) when every one did."""
        failure: HttpError | None = None
        answer: Answer | None = None
        for _ in self.posters:
            index = self.endpoints.current
            try:
                answer = await self.posters[index].post(body, headers)
            except HttpError as exc:
                failure = exc
            else:
                if answer.status not in GATEWAY_FAILURES:
                    return answer
            self.endpoints.failed(index)
        if answer is not None:
            return answer
        assert failure is not None
        raise failure

    async def close(self) -> None:
        for poster in self.posters:
            await poster.close()
