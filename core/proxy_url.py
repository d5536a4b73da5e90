"""``socks5h://`` proxy URLs: parsing, masking and a stable id that hides the password.

``socks5h`` (DNS resolved at the proxy) is the one format accepted at every edge: a
``socks5://`` proxy would resolve WhatsApp's hosts locally and leak the real location.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from core import text
from core.errors import InvalidInput
from core.proxy_policy import ProxyPolicy

SCHEME = "socks5h"
# No operator rules: a host's syntax and the metadata addresses every policy refuses.
_DEFAULT_POLICY = ProxyPolicy()


@dataclass(frozen=True)
class ProxyUrl:
    host: str
    port: int
    username: str = ""
    password: str = field(default="", repr=False)

    @classmethod
    def parse(cls, raw: str) -> ProxyUrl:
        """Parse and validate; ``ValueError`` says what is wrong without echoing a password.

        Control characters are refused before ``urlsplit`` sees them: it silently drops tabs
        and newlines, and a NUL in a host or password cannot be passed in an environment.
        """
        why = text.problem(raw)
        if why is not None:
            raise ValueError(f"proxy URL {why}")
        stripped = raw.strip()
        try:
            parts = urlsplit(stripped)
            port = parts.port
        except ValueError:
            raise ValueError(
                "proxy URL is malformed (expected socks5h://user:pass@host:port)"
            ) from None
        if parts.scheme != SCHEME:
            raise ValueError(
                f"proxy URL must start with {SCHEME}:// (DNS through the proxy), "
                f"got {parts.scheme or 'no'} scheme"
            )
        if not parts.hostname:
            raise ValueError("proxy URL has no host")
        if port is None or not 0 < port < 65536:
            raise ValueError("proxy URL needs a port between 1 and 65535")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("proxy URL must not have a path, query or fragment")
        try:
            username = unquote(parts.username or "", errors="strict")
            password = unquote(parts.password or "", errors="strict")
        except UnicodeDecodeError:  # its message would quote bytes of the password
            raise ValueError(
                "proxy URL user or password is not valid percent-encoded UTF-8"
            ) from None
        if text.problem(username + password) is not None:
            raise ValueError("proxy URL user or password decodes to a control character")
        return cls(host=parts.hostname, port=port, username=username, password=password)

    @property
    def url(self) -> str:
        """The full URL with the password: for Redis and the worker, never for display."""
        auth = ""
        if self.username or self.password:
            auth = f"{quote(self.username, safe='')}:{quote(self.password, safe='')}@"
        return f"{SCHEME}://{auth}{self.host}:{self.port}"

    @property
    def masked(self) -> str:
        """The URL as operators see it everywhere: the password replaced by ``***``."""
        auth = f"{quote(self.username, safe='')}:***@" if self.username or self.password else ""
        return f"{SCHEME}://{auth}{self.host}:{self.port}"

    @property
    def id(self) -> str:
        """A short stable handle for URLs and buttons, so no request path carries a secret."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:12]

    def __str__(self) -> str:
        return self.masked


def parse_input(
    raw: object, field_name: str = "proxy", policy: ProxyPolicy = _DEFAULT_POLICY
) -> ProxyUrl:
    """An operator-given URL (REST, chat), or ``InvalidInput`` saying what is wrong.

    ``policy`` is the operator's ``PROXY_ALLOW_NETWORKS`` / ``PROXY_DENY_NETWORKS``: checked
    here, where a proxy enters, so a refused host is never stored nor connected to.
    """
    if not isinstance(raw, str):
        raise InvalidInput(f"{field_name} must be a {SCHEME}:// URL")
    try:
        url = ProxyUrl.parse(raw)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    refused = policy.problem(url.host)
    if refused is not None:
        raise InvalidInput(refused)
    return url


def mask(raw: str) -> str:
    """Mask a stored proxy URL for display; unparsable input is hidden entirely."""
    try:
        return ProxyUrl.parse(raw).masked
    except ValueError:
        return "***"
