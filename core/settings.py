"""Settings from the environment: the only module that reads it.

Every name is DESIGN.md's contract. Validation happens once, at start, and collects
every problem into one ``ConfigError`` so an operator fixes their ``.env`` in one pass.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core import endpoint_url
from core.errors import ConfigError, InvalidInput
from core.notifier import AlertKind
from core.proxy_policy import ProxyPolicy, Rules
from core.proxy_url import ProxyUrl

PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "secret", "<random-32>", "replace-me", "xxx"}
)
MIN_SECRET_LEN = 16
# A worker pings every presence interval; the watchdog restarts a session whose last ping is
# older than PING_TIMEOUT_MS. Below this many intervals, one late or lost ping (a slow
# reconnect, a busy orchestrator) restarts a healthy worker, in a loop.
MIN_PINGS_PER_TIMEOUT = 3
# The leader's Telegram long poll must end inside its lease with a second to spare, and a
# poll waits whole seconds: below this a lease leaves no room for one.
MIN_LEADER_LEASE_MS = 3_000
MAX_LEADER_LEASE_MS = 600_000
SERVE_ID = re.compile(r"[A-Za-z0-9._:@-]{1,100}")


@dataclass(frozen=True)
class Settings:
    api_key: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    redis_url: str = field(repr=False)
    max_sessions_per_proxy: int = 4
    max_sessions_per_phone: int = 4
    watchdog_interval_ms: int = 60_000
    ping_timeout_ms: int = 180_000
    proxy_urls: tuple[ProxyUrl, ...] = ()
    telegram_bot_token: str = field(default="", repr=False)
    telegram_chat_id: int | None = None
    telegram_admin_ids: frozenset[int] = frozenset()
    # Read-only operators: they see status, lists and alerts, and every action is refused.
    telegram_viewer_ids: frozenset[int] = frozenset()
    # A forum group's topic (message_thread_id) per alert kind; "default" for the rest.
    telegram_alert_topics: Mapping[str, int] = field(default_factory=dict)
    telegram_api_url: str = "https://api.telegram.org"
    sessions_dir: Path = Path("./sessions")
    backups_dir: Path = Path("./backups")
    max_backups: int = 7
    backup_cron: str = "0 3 * * *"
    # The chat's daily digest (server local time); skip_empty: no message on a quiet day.
    digest_cron: str = "0 9 * * *"
    digest_skip_empty: bool = False
    # rolling: pause one worker at a time while its folder is copied; stop-all: SPEC.md's way.
    backup_mode: str = "rolling"
    # What a restore accepts from an archive: a crafted one (a zip bomb) is refused unread.
    backup_max_bytes: int = 512 * 1024 * 1024
    backup_max_files: int = 100_000
    backup_max_manifest_bytes: int = 16 * 1024 * 1024
    runner: str = "process"
    worker_image: str = "wafleet-worker:latest"
    worker_network: str = "host"
    wa_driver: str = "sim"
    simwa_url: str = "ws://localhost:8765/ws"
    http_host: str = "0.0.0.0"
    http_port: int = 3000
    public_webhook_url: str = ""
    # Empty: /metrics is open (for a scraper on a private network); set: Bearer <token> needed.
    metrics_token: str = field(default="", repr=False)
    # Not in SPEC.md: knobs that let tests and the demo shorten the worker's clocks.
    worker_presence_interval_ms: int = 15_000
    worker_self_message_interval_ms: int = 600_000
    worker_attempts_per_process: int = 50
    proxy_probe_interval_ms: int = 30_000
    worker_stop_grace_ms: int = 5_000
    # A worker's unsent events on disk (worker/outbox.py): past it, it stops taking messages.
    worker_outbox_max_bytes: int = 64 * 1024 * 1024
    log_level: str = "INFO"
    log_format: str = "text"
    # Where proxies may point (PROXY_ALLOW_NETWORKS / PROXY_DENY_NETWORKS); metadata never.
    proxy_policy: ProxyPolicy = ProxyPolicy()
    # RUNNER=swarm: Docker size syntax; comma-separated Swarm placement constraints.
    worker_memory_reservation: str = "96m"
    worker_memory_limit: str = "256m"
    worker_constraints: tuple[str, ...] = ()
    # How long a worker Swarm cannot place may wait before the session says so.
    worker_unschedulable_ms: int = 30_000
    # How many workers a bulk start (reconcile, restore) starts at once: 8 suits 2 cores.
    worker_start_concurrency: int = 8
    # Incoming messages and receipts for the operator (core/deliveries.py): where they go
    # (a session's eventsWebhookUrl wins), the key they are signed with, where that endpoint
    # may point, the retry schedule, when an event becomes a dead letter, and how long a
    # delivered event stays replayable.
    events_webhook_url: str = field(default="", repr=False)
    events_webhook_secret: str = field(default="", repr=False)
    events_webhook_policy: ProxyPolicy = ProxyPolicy()
    events_webhook_timeout_ms: int = 10_000
    events_retry_base_ms: int = 1_000
    events_retry_max_ms: int = 300_000
    events_max_attempts: int = 25
    events_max_age_ms: int = 24 * 3600 * 1000
    events_retention_ms: int = 7 * 24 * 3600 * 1000
    # Messages (issue 12): how long an accepted message may wait for its session to send it,
    # and careful sending: per-session limits (0 = none; a session's own override wins), a
    # warm-up ramp for new numbers, a random pause between messages, "typing..." per character.
    message_ttl_s: int = 86_400
    messages_per_minute: int = 10
    messages_per_day: int = 500
    message_warmup_days: int = 7
    message_pause_min_ms: int = 2_000
    message_pause_max_ms: int = 8_000
    typing_ms_per_char: int = 40
    typing_max_ms: int = 6_000
    # How long a worker's poll of its command channel is held open when there is nothing.
    command_poll_ms: int = 25_000
    # Several serve replicas: this one's name ("" = <hostname>:<HTTP_PORT>), and how long the
    # leader's lease in Redis lasts without a renewal (core/leadership.py).
    serve_id: str = ""
    leader_lease_ms: int = 5_000

    @property
    def webhook_url(self) -> str:
        """Where workers post events; ``PUBLIC_WEBHOOK_URL`` wins when the host is not local."""
        if self.public_webhook_url:
            return self.public_webhook_url
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::", "") else self.http_host
        return f"http://{host}:{self.http_port}/webhook"

    @property
    def replica_id(self) -> str:
        """``SERVE_ID``, or ``<hostname>:<HTTP_PORT>``: how this replica is named in Redis."""
        return self.serve_id or f"{socket.gethostname()}:{self.http_port}"

    @property
    def replica_url(self) -> str:
        """This replica's own base URL, as ``GET /api/v1/cluster`` lists it."""
        return f"http://{self.http_host}:{self.http_port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        return _parse(os.environ if env is None else env)


class _Collector:
    """Gathers every problem so one start-up message names them all."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def text(self, name: str, default: str) -> str:
        return self.env.get(name, default).strip()

    def secret(self, name: str) -> str:
        value = self.env.get(name, "").strip()
        if value.lower() in PLACEHOLDER_SECRETS:
            self.problems.append(f"{name} is not set (or still a placeholder): set a random value")
        elif len(value) < MIN_SECRET_LEN:
            self.problems.append(f"{name} is too short: use at least {MIN_SECRET_LEN} characters")
        return value

    def optional_secret(self, name: str) -> str:
        """Empty turns the protection off; a value set must be as strong as ``secret``'s."""
        value = self.env.get(name, "").strip()
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
        fields = value.split()
        if len(fields) not in (5, 6):
            self.problems.append(
                f"{name} must be a crontab line of 5 fields (or 6, seconds first), got {value!r}"
            )
            return value
        problem = _cron_problem(fields)
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

    def int_set(self, name: str) -> frozenset[int]:
        raw = self.text(name, "")
        ids: set[int] = set()
        for part in filter(None, (p.strip() for p in raw.split(","))):
            try:
                ids.add(int(part))
            except ValueError:
                self.problems.append(f"{name} must be comma-separated numeric ids, got {part!r}")
        return frozenset(ids)

    def topics(self, name: str) -> dict[str, int]:
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
        return found

    def optional_int(self, name: str) -> int | None:
        raw = self.text(name, "")
        if not raw:
            return None
        try:
            return int(raw)
        except ValueError:
            self.problems.append(f"{name} must be a numeric chat id, got {raw!r}")
            return None

    def rules(self, name: str) -> Rules:
        try:
            return Rules.parse(self.text(name, ""))
        except ValueError as exc:
            self.problems.append(f"{name}: {exc}")
            return Rules()

    def events_url(self, name: str, policy: ProxyPolicy) -> str:
        """Empty (no global endpoint), or an http(s) URL the destination policy admits."""
        raw = self.text(name, "")
        if not raw:
            return ""
        try:
            return endpoint_url.parse(raw, policy, what=name)
        except InvalidInput as exc:
            self.problems.append(exc.message)
            return ""

    def proxies(self, policy: ProxyPolicy) -> tuple[ProxyUrl, ...]:
        found: list[tuple[int, ProxyUrl]] = []
        for name, raw in self.env.items():
            match = re.fullmatch(r"PROXY_URL_(\d+)", name)
            if not match or not raw.strip():
                continue
            try:
                url = ProxyUrl.parse(raw)
            except ValueError as exc:
                self.problems.append(f"{name}: {exc}")
                continue
            refused = policy.problem(url.host)
            if refused is not None:
                self.problems.append(f"{name}: {refused}")
                continue
            found.append((int(match.group(1)), url))
        return tuple(url for _, url in sorted(found, key=lambda item: item[0]))


def _parse(env: Mapping[str, str]) -> Settings:
    c = _Collector(env)
    policy = ProxyPolicy(c.rules("PROXY_ALLOW_NETWORKS"), c.rules("PROXY_DENY_NETWORKS"))
    events_policy = ProxyPolicy(
        c.rules("EVENTS_WEBHOOK_ALLOW_NETWORKS"), c.rules("EVENTS_WEBHOOK_DENY_NETWORKS")
    )
    settings = Settings(
        api_key=c.secret("API_KEY"),
        webhook_secret=c.secret("WEBHOOK_SECRET"),
        redis_url=c.text("REDIS_URL", "redis://127.0.0.1:6379/0"),
        max_sessions_per_proxy=c.integer("MAX_SESSIONS_PER_PROXY", 4, minimum=1),
        max_sessions_per_phone=c.integer("MAX_SESSIONS_PER_PHONE", 4, minimum=1),
        watchdog_interval_ms=c.integer("WATCHDOG_INTERVAL_MS", 60_000, minimum=100),
        ping_timeout_ms=c.integer("PING_TIMEOUT_MS", 180_000, minimum=100),
        proxy_urls=c.proxies(policy),
        telegram_bot_token=c.text("TELEGRAM_BOT_TOKEN", ""),
        telegram_chat_id=c.optional_int("TELEGRAM_CHAT_ID"),
        telegram_admin_ids=c.int_set("TELEGRAM_ADMIN_IDS"),
        telegram_viewer_ids=c.int_set("TELEGRAM_VIEWER_IDS"),
        telegram_alert_topics=c.topics("TELEGRAM_ALERT_TOPICS"),
        telegram_api_url=c.text("TELEGRAM_API_URL", "https://api.telegram.org"),
        sessions_dir=Path(c.text("SESSIONS_DIR", "./sessions")).resolve(),
        backups_dir=Path(c.text("BACKUPS_DIR", "./backups")).resolve(),
        max_backups=c.integer("MAX_BACKUPS", 7, minimum=1),
        backup_cron=c.cron("BACKUP_CRON", "0 3 * * *"),
        digest_cron=c.cron("DIGEST_CRON", "0 9 * * *"),
        digest_skip_empty=c.flag("DIGEST_SKIP_EMPTY", False),
        backup_mode=c.choice("BACKUP_MODE", "rolling", ("rolling", "stop-all")),
        backup_max_bytes=c.integer("BACKUP_MAX_BYTES", 512 * 1024 * 1024, minimum=1024),
        backup_max_files=c.integer("BACKUP_MAX_FILES", 100_000, minimum=2),
        backup_max_manifest_bytes=c.integer(
            "BACKUP_MAX_MANIFEST_BYTES", 16 * 1024 * 1024, minimum=1024
        ),
        runner=c.choice("RUNNER", "process", ("process", "docker", "swarm")),
        worker_image=c.text("WORKER_IMAGE", "wafleet-worker:latest"),
        worker_network=c.text("WORKER_NETWORK", "host"),
        wa_driver=c.choice("WA_DRIVER", "sim", ("sim", "neonize")),
        simwa_url=c.text("SIMWA_URL", "ws://localhost:8765/ws"),
        http_host=c.text("HTTP_HOST", "0.0.0.0"),
        http_port=c.integer("HTTP_PORT", 3000, minimum=0),
        public_webhook_url=c.text("PUBLIC_WEBHOOK_URL", ""),
        metrics_token=c.optional_secret("METRICS_TOKEN"),
        worker_presence_interval_ms=c.integer("WORKER_PRESENCE_INTERVAL_MS", 15_000, minimum=50),
        worker_self_message_interval_ms=c.integer(
            "WORKER_SELF_MESSAGE_INTERVAL_MS", 600_000, minimum=50
        ),
        worker_attempts_per_process=c.integer("WORKER_ATTEMPTS_PER_PROCESS", 50, minimum=1),
        proxy_probe_interval_ms=c.integer("PROXY_PROBE_INTERVAL_MS", 30_000, minimum=50),
        worker_stop_grace_ms=c.integer("WORKER_STOP_GRACE_MS", 5_000, minimum=0),
        worker_outbox_max_bytes=c.integer(
            "WORKER_OUTBOX_MAX_BYTES", 64 * 1024 * 1024, minimum=64 * 1024
        ),
        log_level=c.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        log_format=c.choice("LOG_FORMAT", "text", ("text", "json")),
        proxy_policy=policy,
        worker_memory_reservation=c.size("WORKER_MEMORY_RESERVATION", "96m"),
        worker_memory_limit=c.size("WORKER_MEMORY_LIMIT", "256m"),
        worker_constraints=tuple(
            part.strip() for part in c.text("WORKER_CONSTRAINTS", "").split(",") if part.strip()
        ),
        worker_unschedulable_ms=c.integer("WORKER_UNSCHEDULABLE_MS", 30_000, minimum=100),
        worker_start_concurrency=c.integer("WORKER_START_CONCURRENCY", 8, minimum=1),
        events_webhook_url=c.events_url("EVENTS_WEBHOOK_URL", events_policy),
        events_webhook_secret=c.optional_secret("EVENTS_WEBHOOK_SECRET"),
        events_webhook_policy=events_policy,
        events_webhook_timeout_ms=c.integer("EVENTS_WEBHOOK_TIMEOUT_MS", 10_000, minimum=100),
        events_retry_base_ms=c.integer("EVENTS_RETRY_BASE_MS", 1_000, minimum=1),
        events_retry_max_ms=c.integer("EVENTS_RETRY_MAX_MS", 300_000, minimum=1),
        events_max_attempts=c.integer("EVENTS_MAX_ATTEMPTS", 25, minimum=1),
        events_max_age_ms=c.integer("EVENTS_MAX_AGE_MS", 24 * 3600 * 1000, minimum=1),
        events_retention_ms=c.integer("EVENTS_RETENTION_MS", 7 * 24 * 3600 * 1000, minimum=0),
        message_ttl_s=c.integer("MESSAGE_TTL_S", 86_400, minimum=1),
        messages_per_minute=c.integer("MESSAGES_PER_MINUTE", 10),
        messages_per_day=c.integer("MESSAGES_PER_DAY", 500),
        message_warmup_days=c.integer("MESSAGE_WARMUP_DAYS", 7),
        message_pause_min_ms=c.integer("MESSAGE_PAUSE_MIN_MS", 2_000),
        message_pause_max_ms=c.integer("MESSAGE_PAUSE_MAX_MS", 8_000),
        typing_ms_per_char=c.integer("TYPING_MS_PER_CHAR", 40),
        typing_max_ms=c.integer("TYPING_MAX_MS", 6_000),
        command_poll_ms=c.integer("COMMAND_POLL_MS", 25_000, minimum=100),
        serve_id=c.text("SERVE_ID", ""),
        leader_lease_ms=c.integer("LEADER_LEASE_MS", 5_000, minimum=MIN_LEADER_LEASE_MS),
    )
    if settings.events_webhook_url and not settings.events_webhook_secret:
        c.problems.append(
            "EVENTS_WEBHOOK_SECRET must be set when EVENTS_WEBHOOK_URL is set: every event is "
            "signed with it (openssl rand -hex 32)"
        )
    if settings.events_retry_max_ms < settings.events_retry_base_ms:
        c.problems.append(
            f"EVENTS_RETRY_MAX_MS ({settings.events_retry_max_ms}) must be at least "
            f"EVENTS_RETRY_BASE_MS ({settings.events_retry_base_ms})"
        )
    if settings.telegram_bot_token and settings.telegram_chat_id is None:
        c.problems.append("TELEGRAM_CHAT_ID must be set when TELEGRAM_BOT_TOKEN is set")
    if both := settings.telegram_admin_ids & settings.telegram_viewer_ids:
        c.problems.append(
            "TELEGRAM_VIEWER_IDS and TELEGRAM_ADMIN_IDS both name "
            + ", ".join(str(n) for n in sorted(both))
            + ": a user is an admin or a viewer, not both"
        )
    if settings.runner == "swarm" and not settings.sessions_dir.is_dir():
        # Not created here: on a swarm it is a shared mount (NFS, CephFS...) that every node
        # sees; a folder made on the manager alone would hide a missing mount.
        c.problems.append(
            f"SESSIONS_DIR {settings.sessions_dir} does not exist: with RUNNER=swarm it must be "
            "the same shared path on every node (mount it first)"
        )
    if not settings.redis_url.startswith(("redis://", "rediss://", "unix://")):
        c.problems.append("REDIS_URL must start with redis://, rediss:// or unix://")
    if settings.message_pause_max_ms < settings.message_pause_min_ms:
        c.problems.append(
            f"MESSAGE_PAUSE_MAX_MS ({settings.message_pause_max_ms}) must not be below "
            f"MESSAGE_PAUSE_MIN_MS ({settings.message_pause_min_ms})"
        )
    if settings.serve_id and not SERVE_ID.fullmatch(settings.serve_id):
        c.problems.append(
            "SERVE_ID must be 1 to 100 of A-Z a-z 0-9 . _ : @ - (it names this replica in Redis)"
        )
    if settings.leader_lease_ms > MAX_LEADER_LEASE_MS:
        c.problems.append(
            f"LEADER_LEASE_MS must be at most {MAX_LEADER_LEASE_MS}: a dead leader's work waits "
            "that long for another replica"
        )
    c.problems.extend(_timing_problems(settings))
    if c.problems:
        raise ConfigError("wafleet cannot start:\n  - " + "\n  - ".join(c.problems))
    return settings


def _timing_problems(s: Settings) -> list[str]:
    """Pairs of settings that are each valid but cannot work together."""
    problems = []
    least = MIN_PINGS_PER_TIMEOUT * s.worker_presence_interval_ms
    if s.ping_timeout_ms < least:
        problems.append(
            f"PING_TIMEOUT_MS ({s.ping_timeout_ms}) must be at least {MIN_PINGS_PER_TIMEOUT} "
            f"times WORKER_PRESENCE_INTERVAL_MS ({s.worker_presence_interval_ms}), so {least}: "
            "workers ping once per interval, and healthy ones would be restarted in a loop"
        )
    if s.watchdog_interval_ms > s.ping_timeout_ms:
        problems.append(
            f"WATCHDOG_INTERVAL_MS ({s.watchdog_interval_ms}) must not exceed PING_TIMEOUT_MS "
            f"({s.ping_timeout_ms}): a stuck worker would go unnoticed for more than a timeout"
        )
    # A restart stops the old worker (up to the grace) after the session's ping clock was
    # reset; the new worker then needs a ping or two before the watchdog looks again.
    budget = s.worker_stop_grace_ms + 2 * s.worker_presence_interval_ms
    if budget > s.ping_timeout_ms:
        problems.append(
            f"WORKER_STOP_GRACE_MS ({s.worker_stop_grace_ms}) plus two "
            f"WORKER_PRESENCE_INTERVAL_MS ({2 * s.worker_presence_interval_ms}) must fit in "
            f"PING_TIMEOUT_MS ({s.ping_timeout_ms}): every restart would look stuck"
        )
    return problems


def _cron_problem(fields: list[str]) -> str | None:
    """Why these crontab fields cannot run, or None: the scheduler's own parser decides."""
    from core.cron import cron_trigger  # APScheduler: only serve's start needs it

    try:
        cron_trigger(" ".join(fields))
    except ValueError as exc:
        return str(exc)
    return None
