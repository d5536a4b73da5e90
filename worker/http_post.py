"""A minimal HTTP/1.1 POST client on asyncio streams, for the worker's webhook.

The worker posts small JSON events to an orchestrator URL and nothing else; a full HTTP
client library costs ~10 MB of RSS in every one of hundreds of worker processes, which is
a sixth of a real (neonize) worker's budget. This speaks just enough HTTP/1.1 for that:
one kept-alive connection, ``Content-Length`` bodies, http or https.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

# A replica that does not even take the connection in this long is away: move on (the
# answer itself may take longer, so the whole request has its own, longer, limit).
CONNECT_TIMEOUT_S = 2.0


class HttpError(OSError):
    """The request did not get an answer (refused, reset, timed out, malformed)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


class HttpPoster:
    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = ssl.create_default_context() if parts.scheme == "https" else None
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.host_header = parts.netloc.rpartition("@")[2]
        self.timeout_s = timeout_s
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, body: bytes, headers: dict[str, str]) -> Answer:
        """One POST; a kept-alive connection that went stale is retried once on a new one."""
        for fresh in (self._conn is None, True):
            try:
                return await asyncio.wait_for(self._exchange(body, headers), self.timeout_s)
            except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
                await self.close()
                if fresh:
                    raise HttpError(f"{type(exc).__name__}: {exc}") from None
        raise AssertionError("unreachable")

    async def _exchange(self, body: bytes, headers: dict[str, str]) -> Answer:
        if self._conn is None:
            self._conn = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, ssl=self.tls),
                min(CONNECT_TIMEOUT_S, self.timeout_s),
            )
        reader, writer = self._conn
        head = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {self.host_header}",
            f"Content-Length: {len(body)}",
            "Connection: keep-alive",
        ]
        head += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
        status_line = await reader.readuntil(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length, close = 0, False
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            key = name.strip().lower()
            if key == "content-length":
                length = int(value.strip())
            elif key == "connection" and value.strip().lower() == "close":
                close = True
            elif key == "transfer-encoding":
                raise ValueError("chunked answers are not expected from the orchestrator")
        answer = Answer(status, await reader.readexactly(length))
        if close:
            await self.close()
        return answer

    async def close(self) -> None:
        if self._conn is not None:
            _, writer = self._conn
            self._conn = None
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
