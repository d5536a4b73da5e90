"""How each kind of setting is read from its environment text, and checked.

``core.settings`` declares every setting once with one of these kinds; this is the reading
half. Each kind adds a sentence to ``problems`` instead of raising, so one start-up message
names every mistake in an operator's ``.env`` at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from core import endpoint_url
from core.errors import InvalidInput
from core.notifier import AlertKind
from core.proxy_policy import ProxyPolicy, Rules
from core.proxy_url import ProxyUrl
from core.runner_registry import is_runner, runner_names

PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "secret", "<random-32>", "replace-me", "xxx"}
)
MIN_SECRET_LEN = 16


# How a kind reads one setting: (the collector, the environment name, the default, options).
Kind = Callable[..., Any]


def setting(
    env: str | tuple[str, ...],
    kind: Kind,
    default: Any = None,
    *,
    factory: Callable[[], Any] | None = None,
    secret: bool = False,
    **options: Any,
) -> Any:
    """Declares one setting: the field's default, and what reading it needs in its metadata.

    ``secret`` keeps the value out of ``repr`` (so out of logs); ``options`` go to the kind
    (``minimum=1``, ``allowed=(...)``). Typed ``Any`` so that a field's own annotation rules.
    """
    meta = {"env": env, "kind": kind, "options": options}
    if factory is not None:
        return field(default_factory=factory, repr=not secret, metadata=meta)
    return field(default=default, repr=not secret, metadata=meta)


class Kinds:
    """Reads the kinds and gathers every problem, so one start-up message names them all."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []
        self.values: dict[str, Any] = {}  # what is read so far, for checks that need it

    def text(self, name: str, default: str) -> str:
        return self.env.get(name, default).strip()

    def path(self, name: str, default: Path) -> Path:
        return Path(self.text(name, str(default))).resolve()

    def words(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """Comma-separated values, blanks dropped."""
        raw = self.text(name, ",".join(default))
        return tuple(part.strip() for part in raw.split(",") if part.strip())

    def secret(self, name: str, default: str) -> str:
        value = self.env.get(name, default).strip()
        if value.lower() in PLACEHOLDER_SECRETS:
            self.problems.append(f"{name} is not set (or still a placeholder): set a random value")
        elif len(value) < MIN_SECRET_LEN:
            self.problems.append(f"{name} is too short: use at least {MIN_SECRET_LEN} characters")
        return value

    def optional_secret(self, name: str, default: str) -> str:
        """Empty turns the protection off; a value set must be as strong as ``secret``'s."""
        value = self.env.get(name, default).strip()
        if value and (value.lower() in PLACEHOLDER_SECRETS or len(value) < MIN_SECRET_LEN):
            self.problems.append(
                f"{name} is too weak: use at least {MIN_SECRET_LEN} random characters, or leave "
                "it empty"
            )
        return value

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        raw = self.env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name} must be a whole number, got {raw!r}")
            return default
        if value < minimum:
            self.problems.append(f"{name} must be at least {minimum}, got {value}")
        return value

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name, default)
        if value not in allowed:
            self.problems.append(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def runner(self, name: str, default: str) -> str:
        """A runner's name: built in, or added from outside (``core/runner_registry.py``)."""
        value = self.text(name, default)
        if not is_runner(value):
            names = ", ".join(runner_names())
            self.problems.append(f"{name} must be one of {names}, got {value!r}")
        return value

    def size(self, name: str, default: str) -> str:
        """Docker's size syntax (``96m``, ``1g``, bytes): checked here, parsed by the runner."""
        value = self.text(name, default).lower()
        if not re.fullmatch(r"\d+[bkmg]?", value):
            self.problems.append(f"{name} must be a size like 96m or 1g, got {value!r}")
        return value

    def cron(self, name: str, default: str) -> str:
        """Five crontab fields, or six with seconds first (``s m h dom mon dow``), each one
        checked now, with the rest, instead of failing later when the scheduler starts."""
        value = self.text(name, default)
        parts = value.split()
        if len(parts) not in (5, 6):
            self.problems.append(
                f"{name} must be a crontab line of 5 fields (or 6, seconds first), got {value!r}"
            )
            return value
        problem = _cron_problem(parts)
        if problem is not None:
            self.problems.append(f"{name} is not a valid crontab line ({problem}): {value!r}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.text(name, "").lower()
        if not value:
            return default
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        self.problems.append(f"{name} must be true or false, got {value!r}")
        return default

    def int_set(self, name: str, default: frozenset[int]) -> frozenset[int]:
        raw = self.text(name, "")
        ids: set[int] = set()
        for part in filter(None, (p.strip() for p in raw.split(","))):
            try:
                ids.add(int(part))
            except ValueError:
                self.problems.append(f"{name} must be comma-separated numeric ids, got {part!r}")
        return frozenset(ids) if raw else default

    def topics(self, name: str, default: Mapping[str, int]) -> Mapping[str, int]:
        """``kind=thread_id,...`` (``default`` for every kind not named): each alert kind in
        its own topic of a forum group. A typo would send alerts where no one looks, or make
        Telegram refuse them, so every part is checked now."""
        known = {k.value for k in AlertKind} | {"default"}
        found: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in self.text(name, "").split(","))):
            kind, sep, raw = (s.strip() for s in part.partition("="))
            if not sep or not raw.isascii() or not raw.isdigit() or int(raw) < 1:
                self.problems.append(
                    f"{name} must be kind=topic_id pairs (e.g. default=1,proxy_bad=5), "
                    f"got {part!r}"
                )
            elif kind not in known:
                self.problems.append(
                    f"{name}: unknown alert kind {kind!r} (one of: {', '.join(sorted(known))})"
                )
            elif kind in found:
                self.problems.append(f"{name} names {kind!r} twice")
            else:
                found[kind] = int(raw)
        return found or default

    def chat_id(self, name: str, default: int | None) -> int | None:
        raw = self.text(name, "")
        if not raw:
            return default
        try:
            return int(raw)
        except ValueError:
            self.problems.append(f"{name} must be a numeric chat id, got {raw!r}")
            return default

    def policy(self, names: tuple[str, str], default: ProxyPolicy) -> ProxyPolicy:
        """Where a URL may point: an allow list and a deny list (``Rules``), deny winning."""
        allow, deny = (self._rules(name) for name in names)
        return ProxyPolicy(allow, deny)

    def _rules(self, name: str) -> Rules:
        try:
            return Rules.parse(self.text(name, ""))
        except ValueError as exc:
            self.problems.append(f"{name}: {exc}")
            return Rules()

    def addresses(
        self, name: str, default: tuple[tuple[str, int], ...]
    ) -> tuple[tuple[str, int], ...]:
        """Comma-separated ``host:port`` (``[v6]:port`` for an IPv6 address); empty: none."""
        found: list[tuple[str, int]] = []
        for part in self.text(name, "").split(","):
            if not (part := part.strip()):
                continue
            host, _, port = part.rpartition(":")
            host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
            if not host or not port.isdigit() or not 0 < int(port) < 65536 or " " in host:
                self.problems.append(f"{name}: {part!r} is not host:port")
                continue
            found.append((host, int(port)))
        return tuple(found) or default

    def webhook_urls(self, name: str, default: str) -> str:
        """Empty, or comma-separated http(s) URLs (one per ``serve`` replica), kept as given."""
        raw = self.text(name, default)
        urls = [u.strip() for u in raw.split(",")] if raw else []
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                self.problems.append(f"{name}: {url!r} is not an http(s) URL")
        return ",".join(urls)

    def events_url(self, name: str, default: str, policy: str) -> str:
        """Empty (no global endpoint), or an http(s) URL the destination ``policy`` (the name
        of a setting read before) admits."""
        raw = self.text(name, default)
        if not raw:
            return ""
        try:
            return endpoint_url.parse(raw, self.values[policy], what=name)
        except InvalidInput as exc:
            self.problems.append(exc.message)
            return ""

    def proxies(
        self, pattern: str, default: tuple[ProxyUrl, ...], policy: str
    ) -> tuple[ProxyUrl, ...]:
        """``PROXY_URL_1``, ``PROXY_URL_2``, ... in number order, each held against the
        destination ``policy`` (the name of a setting read before)."""
        found: list[tuple[int, ProxyUrl]] = []
        for name, raw in self.env.items():
            match = re.fullmatch(pattern.replace("<n>", r"(\d+)"), name)
            if not match or not raw.strip():
                continue
            try:
                url = ProxyUrl.parse(raw)
            except ValueError as exc:
                self.problems.append(f"{name}: {exc}")
                continue
            refused = self.values[policy].problem(url.host)
            if refused is not None:
                self.problems.append(f"{name}: {refused}")
                continue
            found.append((int(match.group(1)), url))
        return tuple(url for _, url in sorted(found, key=lambda item: item[0])) or default


def _cron_problem(fields: list[str]) -> str | None:
    """Why these crontab fields cannot run, or None: the scheduler's own parser decides."""
    from core.cron import cron_trigger  # APScheduler: only serve's start needs it

    try:
        cron_trigger(" ".join(fields))
    except ValueError as exc:
        return str(exc)
    return None
