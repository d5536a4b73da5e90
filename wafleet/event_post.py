"""The HTTP client behind ``core.deliveries``: the one place serve sends a request to an
operator's endpoint.

It lives here, beside the composition root, rather than in ``core``: core decides *what*
is delivered, when and in which order, and stays free of an HTTP client; this adapter only
turns one POST into a status code or a ``DeliveryError``.

What it guards: a host *name* in an endpoint was checked as a name at provision, but what
it resolves to can change later (DNS rebinding), so the resolver checks every address it
hands aiohttp against the same destination policy (metadata and link-local never, the
``EVENTS_WEBHOOK_*_NETWORKS`` rules); redirects are not followed (a 3xx is a failed
attempt), so an endpoint cannot bounce serve somewhere the policy refuses; proxies from the
environment are not used; and an error's reason names its kind only, never the URL (which
may carry credentials).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from core.deliveries import DeliveryError
from core.endpoint_url import policy_problem
from core.proxy_policy import ProxyPolicy

MAX_ANSWER = 64 * 1024  # what is read of an answer (and dropped): enough to reuse the socket


class PolicyResolver(AbstractResolver):
    """Resolves as usual, then refuses any address the destination policy refuses."""

    def __init__(self, policy: ProxyPolicy) -> None:
        self._policy = policy
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        for entry in found:
            if policy_problem(self._policy, entry["host"]) is not None:
                raise OSError(f"{host} resolves to an address the events policy refuses")
        return found

    async def close(self) -> None:
        await self._inner.close()


class HttpPost:
    """``core.deliveries.Post`` over one aiohttp client session (made on first use, so
    nothing is created before the event loop runs)."""

    def __init__(self, policy: ProxyPolicy, timeout_s: float) -> None:
        self._policy = policy
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # limit=0: each lane has at most one request in flight, so the number of
            # sessions with events bounds the connections; a shared cap would let one slow
            # endpoint hold every slot and stall the others.
            connector = aiohttp.TCPConnector(resolver=PolicyResolver(self._policy), limit=0)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, trust_env=False
            )
        return self._session

    async def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        try:
            async with self._client().post(
                url, data=body, headers=dict(headers), allow_redirects=False
            ) as answer:
                await answer.content.read(MAX_ANSWER)
                return answer.status
        except TimeoutError:
            raise DeliveryError("timed out") from None
        except aiohttp.ClientConnectorError as exc:
            cause = "refused by the events policy" if _policy_refusal(exc) else "cannot connect"
            raise DeliveryError(cause) from None
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            raise DeliveryError(type(exc).__name__) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _policy_refusal(exc: aiohttp.ClientConnectorError) -> bool:
    return "events policy refuses" in str(exc.os_error)
