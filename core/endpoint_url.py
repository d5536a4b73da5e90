"""The operator's events endpoint (``EVENTS_WEBHOOK_URL``, a session's ``eventsWebhookUrl``).

serve POSTs every incoming message and receipt there, so the URL is a way to make this
machine send requests somewhere: it gets the same kind of destination policy as a proxy
(``core/proxy_policy.py``: metadata and link-local never, ``EVENTS_WEBHOOK_ALLOW_NETWORKS`` /
``EVENTS_WEBHOOK_DENY_NETWORKS`` on top). Here the URL's host is checked as written; a host
*name* is checked again against the addresses it resolves to at each connect
(``wafleet/event_post.py``), since what a name points at can change after provision.

A URL may carry credentials (``https://user:pass@host/...``, basic auth at the receiver):
``mask`` hides them wherever the URL is shown or logged.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

from core import text
from core.errors import InvalidInput
from core.proxy_policy import ProxyPolicy

MAX_LENGTH = 2048
SCHEMES = ("http", "https")


def policy_problem(policy: ProxyPolicy, host: str) -> str | None:
    """``ProxyPolicy.problem`` worded for this endpoint: its messages name proxies and the
    ``PROXY_*`` settings, and the operator must be told which setting refused the host."""
    problem = policy.problem(host)
    if problem is None:
        return None
    return problem.replace("proxy host", "endpoint host").replace("PROXY_", "EVENTS_WEBHOOK_")


def parse(raw: object, policy: ProxyPolicy, what: str = "eventsWebhookUrl") -> str:
    """The URL as given, or ``InvalidInput`` naming the first problem (nothing is written)."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput(f"{what} must be a non-empty http:// or https:// URL")
    value = raw.strip()
    text.check(value, what)
    if len(value) > MAX_LENGTH:
        raise InvalidInput(f"{what} is longer than {MAX_LENGTH} characters")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a port that is not a number in range
    except ValueError:
        raise InvalidInput(f"{what} is not a valid URL") from None
    if parts.scheme.lower() not in SCHEMES:
        raise InvalidInput(f"{what} must start with http:// or https://")
    host = parts.hostname
    if not host:
        raise InvalidInput(f"{what} has no host")
    if port == 0:
        raise InvalidInput(f"{what} has port 0")
    if parts.fragment:
        raise InvalidInput(f"{what} must not have a #fragment")
    problem = policy_problem(policy, host)
    if problem is not None:
        raise InvalidInput(f"{what}: {problem}")
    return value


def mask(url: str) -> str:
    """The URL without its password (or user), for logs and API answers."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid url>"
    if parts.username is None and parts.password is None:
        return url
    netloc = ("***@" if parts.username or parts.password else "") + _host_port(host, port)
    return SplitResult(parts.scheme, netloc, parts.path, parts.query, "").geturl()


def _host_port(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"
