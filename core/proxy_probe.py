"""A real SOCKS5 session (RFC 1928 greeting, RFC 1929 user/password, CONNECT) with a proxy.

A proxy that shakes hands but cannot reach WhatsApp is as dead to a worker as one that is
down, so the probe asks the proxy to CONNECT to the destination the workers use (WhatsApp's
host, or the simulated network in tests) and counts a refusal as a failure. It closes the
tunnel as soon as the proxy answers: no byte goes to the destination.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.proxy_url import ProxyUrl

NO_AUTH, USER_PASS, NO_ACCEPTABLE = 0x00, 0x02, 0xFF
CONNECT, DOMAIN = 0x01, 0x03
# What the neonize driver dials (whatsmeow's wss://web.whatsapp.com/ws/chat).
WHATSAPP = ("web.whatsapp.com", 443)
REPLIES = {
    1: "general failure",
    2: "not allowed by the proxy's rules",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused by the destination",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


@dataclass(frozen=True)
class Destination:
    """Where a worker's traffic goes; the proxy resolves the host (``socks5h``)."""

    host: str
    port: int

    @classmethod
    def of_workers(cls, wa_driver: str, simwa_url: str) -> Destination:
        """The destination of ``WA_DRIVER``: the simulated network's host:port, or WhatsApp."""
        if wa_driver != "sim":
            return cls(*WHATSAPP)
        url = urlsplit(simwa_url)
        default = 443 if url.scheme in ("wss", "https") else 80
        return cls(url.hostname or "localhost", url.port or default)


async def probe(
    proxy: ProxyUrl, destination: Destination | None = None, limit_s: float = 3.0
) -> str | None:
    """``None`` when healthy, else a short reason with no secret in it.

    Without a ``destination`` only the handshake is checked (a restore's quick look).
    """
    try:
        return await asyncio.wait_for(_session(proxy, destination), limit_s)
    except TimeoutError:
        return "timed out"
    except OSError as exc:
        return f"unreachable ({exc.strerror or type(exc).__name__})"


async def _session(proxy: ProxyUrl, destination: Destination | None) -> str | None:
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    try:
        problem = await _handshake(proxy, reader, writer)
        if problem is None and destination is not None:
            problem = await _connect(destination, reader, writer)
        return problem
    except asyncio.IncompleteReadError:
        return "proxy closed the connection during the handshake"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _handshake(
    proxy: ProxyUrl, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> str | None:
    methods = bytes([USER_PASS]) if proxy.username else bytes([NO_AUTH])
    writer.write(bytes([5, len(methods)]) + methods)
    await writer.drain()
    version, method = await reader.readexactly(2)
    if version != 5:
        return "not a SOCKS5 server"
    if method == NO_ACCEPTABLE:
        return "proxy accepts none of our authentication methods"
    if method == USER_PASS:
        user, password = proxy.username.encode(), proxy.password.encode()
        writer.write(bytes([1, len(user)]) + user + bytes([len(password)]) + password)
        await writer.drain()
        _, status = await reader.readexactly(2)
        if status != 0:
            return "authentication failure"
    return None


async def _connect(
    destination: Destination, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> str | None:
    host = destination.host.encode("idna")
    port = destination.port.to_bytes(2, "big")
    writer.write(bytes([5, CONNECT, 0, DOMAIN, len(host)]) + host + port)
    await writer.drain()
    _, reply = await reader.readexactly(2)
    if reply != 0:
        why = REPLIES.get(reply, f"reply {reply}")
        return f"cannot reach {destination.host}:{destination.port} through it ({why})"
    return None
