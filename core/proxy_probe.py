"""A real SOCKS5 handshake (RFC 1928 greeting + RFC 1929 user/password) against a proxy.

It proves the proxy is up and accepts our credentials without asking it to connect
anywhere, so probing a bad proxy every few seconds costs the proxy nothing.
"""

from __future__ import annotations

import asyncio
import contextlib

from core.proxy_url import ProxyUrl

NO_AUTH, USER_PASS, NO_ACCEPTABLE = 0x00, 0x02, 0xFF


async def probe(proxy: ProxyUrl, limit_s: float = 3.0) -> str | None:
    """``None`` when healthy, else a short reason with no secret in it."""
    try:
        return await asyncio.wait_for(_handshake(proxy), limit_s)
    except TimeoutError:
        return "timed out"
    except OSError as exc:
        return f"unreachable ({exc.strerror or type(exc).__name__})"


async def _handshake(proxy: ProxyUrl) -> str | None:
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    try:
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
    except asyncio.IncompleteReadError:
        return "proxy closed the connection during the handshake"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
