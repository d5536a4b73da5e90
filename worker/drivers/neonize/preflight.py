"""The proxy pre-flight: prove the path to WhatsApp before a Go client is started.

Why: every ``Neonize`` call opens whatsmeow's SQLite store anew and never closes it, one file
handle and ~225 kB of RSS per call (measured: 179 calls, +179 fds, +40 MB). A worker that
retried a dead proxy or a dead network through the Go core would grow with every retry; one
that checks the path first (our SOCKS5 greeting + auth, then a bare TCP connect to
web.whatsapp.com:443 through the proxy) starts the core only when WhatsApp is reachable and
stays flat.

The same split decides what a failure means: the proxy itself (``ProxyFailure``: the
session fails over to another proxy) or the path beyond it (``ConnectionLost``: reconnect).
"""

from __future__ import annotations

from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError, ProxyType
from python_socks.async_.asyncio import Proxy as SocksProxy

from core.proxy_probe import probe
from core.proxy_url import ProxyUrl
from worker.drivers.base import ConnectionLost, Disconnect, ProxyFailure

WA_HOST, WA_PORT = "web.whatsapp.com", 443  # where whatsmeow's websocket goes
REACH_TIMEOUT_S = 15.0  # the TCP connect to WhatsApp through the proxy


async def preflight(proxy: ProxyUrl) -> None:
    """Raise the ``Disconnect`` a Go client would meet on this path; return if it is open."""
    problem = await probe(proxy)
    if problem is not None:
        raise ProxyFailure(f"proxy {problem}")
    socks = SocksProxy(
        ProxyType.SOCKS5,
        proxy.host,
        proxy.port,
        proxy.username or None,
        proxy.password or None,
        rdns=True,
    )
    try:
        sock = await socks.connect(WA_HOST, WA_PORT, timeout=REACH_TIMEOUT_S)
    except ProxyConnectionError:
        raise ProxyFailure("proxy unreachable") from None
    except ProxyTimeoutError:
        raise await dead_path(proxy, "timed out reaching WhatsApp through the proxy") from None
    except ProxyError as exc:
        if "auth" in str(exc).lower():
            raise ProxyFailure("proxy refused our credentials") from None
        raise ConnectionLost(f"WhatsApp unreachable through the proxy: {exc}") from None
    except OSError as exc:
        raise ConnectionLost(f"WhatsApp unreachable through the proxy: {exc}") from None
    sock.close()


async def dead_path(proxy: ProxyUrl, detail: str) -> Disconnect:
    """Why the path to WhatsApp failed: the proxy (fail over) or beyond it (reconnect).
    ``detail`` may be the Go core's dial error, which names the proxy it dialled."""
    where = f"dial tcp {proxy.host}:{proxy.port}:"
    if "username/password authentication failed" in detail:
        return ProxyFailure("proxy refused our credentials")
    if where in detail:
        return ProxyFailure("proxy unreachable")
    problem = await probe(proxy)
    if problem is not None:
        return ProxyFailure(f"proxy {problem}")
    return ConnectionLost(redact(detail, proxy))


def redact(detail: str, proxy: ProxyUrl) -> str:
    """``detail`` without the proxy's password: error texts reach logs and the ops chat."""
    if proxy.password:
        detail = detail.replace(proxy.password, "***")
    return detail
