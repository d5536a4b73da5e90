"""Settings from the environment: the only module that reads it.

Each setting is declared once, as a field of ``Settings``: its environment name, its kind
(how the text is read and checked), its default and, beside it, a comment. Reading walks the
fields in order, so a setting whose check needs another (the proxies need the destination
policy) is declared after it. Validation happens once, at start, and collects every problem
into one ``ConfigError`` so an operator fixes their ``.env`` in one pass.

A table of our own rather than pydantic-settings: the kinds here are the product's own (proxy
URLs held against a destination policy, crontab lines checked by the scheduler that will run
them, alert topics checked against the alert kinds), and the messages an operator reads at
start are part of the product; pydantic-settings would wrap each kind in a validator and
rewrite each message, for one more dependency in every image.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from core.errors import ConfigError
from core.proxy_policy import ProxyPolicy
from core.proxy_url import ProxyUrl
from core.settings_kinds import Kinds, setting

# A worker pings every presence interval; the watchdog restarts a session whose last ping is
# older than PING_TIMEOUT_MS. Below this many intervals, one late or lost ping (a slow
# reconnect, a busy orchestrator) restarts a healthy worker, in a loop.
MIN_PINGS_PER_TIMEOUT = 3
# The leader's Telegram long poll must end inside its lease with a second to spare, and a
# poll waits whole seconds: below this a lease leaves no room for one.
MIN_LEADER_LEASE_MS = 3_000
MAX_LEADER_LEASE_MS = 600_000
SERVE_ID = re.compile(r"[A-Za-z0-9._:@-]{1,100}")


C = Kinds
_EVENTS_POLICY = ("EVENTS_WEBHOOK_ALLOW_NETWORKS", "EVENTS_WEBHOOK_DENY_NETWORKS")


@dataclass(frozen=True)
class Settings:
    # The REST API's key, and the master secret every worker's own signing key derives from.
    api_key: str = setting("API_KEY", C.secret, "", secret=True)
    webhook_secret: str = setting("WEBHOOK_SECRET", C.secret, "", secret=True)
    redis_url: str = setting("REDIS_URL", C.text, "redis://127.0.0.1:6379/0", secret=True)
    # Redis Sentinel (core/redis_client.py): when set, the primary is asked of them, and
    # REDIS_URL gives only the password and database. A promise waits for REDIS_WAIT_REPLICAS
    # replicas to have the write, up to REDIS_WAIT_MS (core/promise.py).
    redis_sentinels: tuple[tuple[str, int], ...] = setting("REDIS_SENTINELS", C.addresses, ())
    redis_sentinel_master: str = setting("REDIS_SENTINEL_MASTER", C.text, "wafleet")
    redis_sentinel_password: str = setting("REDIS_SENTINEL_PASSWORD", C.text, "", secret=True)
    redis_wait_replicas: int = setting("REDIS_WAIT_REPLICAS", C.integer, 1, minimum=0)
    redis_wait_ms: int = setting("REDIS_WAIT_MS", C.integer, 1000, minimum=1)
    max_sessions_per_proxy: int = setting("MAX_SESSIONS_PER_PROXY", C.integer, 4, minimum=1)
    max_sessions_per_phone: int = setting("MAX_SESSIONS_PER_PHONE", C.integer, 4, minimum=1)
    watchdog_interval_ms: int = setting("WATCHDOG_INTERVAL_MS", C.integer, 60_000, minimum=100)
    ping_timeout_ms: int = setting("PING_TIMEOUT_MS", C.integer, 180_000, minimum=100)
    # Where proxies may point (PROXY_ALLOW_NETWORKS / PROXY_DENY_NETWORKS); metadata never.
    proxy_policy: ProxyPolicy = setting(
        ("PROXY_ALLOW_NETWORKS", "PROXY_DENY_NETWORKS"), C.policy, ProxyPolicy()
    )
    proxy_urls: tuple[ProxyUrl, ...] = setting(
        "PROXY_URL_<n>", C.proxies, (), policy="proxy_policy"
    )
    telegram_bot_token: str = setting("TELEGRAM_BOT_TOKEN", C.text, "", secret=True)
    telegram_chat_id: int | None = setting("TELEGRAM_CHAT_ID", C.chat_id, None)
    telegram_admin_ids: frozenset[int] = setting("TELEGRAM_ADMIN_IDS", C.int_set, frozenset())
    # Read-only operators: they see status, lists and alerts, and every action is refused.
    telegram_viewer_ids: frozenset[int] = setting("TELEGRAM_VIEWER_IDS", C.int_set, frozenset())
    # A forum group's topic (message_thread_id) per alert kind; "default" for the rest.
    telegram_alert_topics: Mapping[str, int] = setting(
        "TELEGRAM_ALERT_TOPICS", C.topics, factory=dict
    )
    telegram_api_url: str = setting("TELEGRAM_API_URL", C.text, "https://api.telegram.org")
    sessions_dir: Path = setting("SESSIONS_DIR", C.path, Path("./sessions"))
    backups_dir: Path = setting("BACKUPS_DIR", C.path, Path("./backups"))
    max_backups: int = setting("MAX_BACKUPS", C.integer, 7, minimum=1)
    backup_cron: str = setting("BACKUP_CRON", C.cron, "0 3 * * *")
    # The chat's daily digest (server local time); skip_empty: no message on a quiet day.
    digest_cron: str = setting("DIGEST_CRON", C.cron, "0 9 * * *")
    digest_skip_empty: bool = setting("DIGEST_SKIP_EMPTY", C.flag, False)
    # rolling: pause one worker at a time while its folder is copied; stop-all: every worker
    # stopped for the whole backup.
    backup_mode: str = setting("BACKUP_MODE", C.choice, "rolling", allowed=("rolling", "stop-all"))
    # What a restore accepts from an archive: a crafted one (a zip bomb) is refused unread.
    backup_max_bytes: int = setting("BACKUP_MAX_BYTES", C.integer, 512 * 1024 * 1024, minimum=1024)
    backup_max_files: int = setting("BACKUP_MAX_FILES", C.integer, 100_000, minimum=2)
    backup_max_manifest_bytes: int = setting(
        "BACKUP_MAX_MANIFEST_BYTES", C.integer, 16 * 1024 * 1024, minimum=1024
    )
    # process, docker, swarm, or a runner added from outside (core/runner_registry.py).
    runner: str = setting("RUNNER", C.runner, "process")
    worker_image: str = setting("WORKER_IMAGE", C.text, "wafleet-worker:latest")
    worker_network: str = setting("WORKER_NETWORK", C.text, "host")
    wa_driver: str = setting("WA_DRIVER", C.choice, "sim", allowed=("sim", "neonize"))
    simwa_url: str = setting("SIMWA_URL", C.text, "ws://localhost:8765/ws")
    http_host: str = setting("HTTP_HOST", C.text, "0.0.0.0")
    http_port: int = setting("HTTP_PORT", C.integer, 3000, minimum=0)
    # Where workers post; comma-separated when it lists several serve replicas.
    public_webhook_url: str = setting("PUBLIC_WEBHOOK_URL", C.webhook_urls, "")
    # Empty: /metrics is open (for a scraper on a private network); set: Bearer <token> needed.
    metrics_token: str = setting("METRICS_TOKEN", C.optional_secret, "", secret=True)
    # The worker's clocks (tests and the demo shorten them).
    worker_presence_interval_ms: int = setting(
        "WORKER_PRESENCE_INTERVAL_MS", C.integer, 15_000, minimum=50
    )
    worker_self_message_interval_ms: int = setting(
        "WORKER_SELF_MESSAGE_INTERVAL_MS", C.integer, 600_000, minimum=50
    )
    worker_attempts_per_process: int = setting(
        "WORKER_ATTEMPTS_PER_PROCESS", C.integer, 50, minimum=1
    )
    proxy_probe_interval_ms: int = setting(
        "PROXY_PROBE_INTERVAL_MS", C.integer, 30_000, minimum=50
    )
    worker_stop_grace_ms: int = setting("WORKER_STOP_GRACE_MS", C.integer, 5_000, minimum=0)
    # A worker's unsent events on disk (worker/outbox.py): past it, it stops taking messages.
    worker_outbox_max_bytes: int = setting(
        "WORKER_OUTBOX_MAX_BYTES", C.integer, 64 * 1024 * 1024, minimum=64 * 1024
    )
    log_level: str = setting(
        "LOG_LEVEL", C.choice, "INFO", allowed=("DEBUG", "INFO", "WARNING", "ERROR")
    )
    log_format: str = setting("LOG_FORMAT", C.choice, "text", allowed=("text", "json"))
    # RUNNER=swarm: Docker size syntax; comma-separated Swarm placement constraints.
    worker_memory_reservation: str = setting("WORKER_MEMORY_RESERVATION", C.size, "96m")
    worker_memory_limit: str = setting("WORKER_MEMORY_LIMIT", C.size, "256m")
    worker_constraints: tuple[str, ...] = setting("WORKER_CONSTRAINTS", C.words, ())
    # How long a worker Swarm cannot place may wait before the session says so.
    worker_unschedulable_ms: int = setting(
        "WORKER_UNSCHEDULABLE_MS", C.integer, 30_000, minimum=100
    )
    # How many workers a bulk start (reconcile, restore) starts at once: 8 suits 2 cores.
    worker_start_concurrency: int = setting("WORKER_START_CONCURRENCY", C.integer, 8, minimum=1)
    # Incoming messages and receipts for the operator (core/deliveries.py): where they go
    # (a session's eventsWebhookUrl wins), the key they are signed with, where that endpoint
    # may point, the retry schedule, when an event becomes a dead letter, and how long a
    # delivered event stays replayable.
    events_webhook_policy: ProxyPolicy = setting(_EVENTS_POLICY, C.policy, ProxyPolicy())
    events_webhook_url: str = setting(
        "EVENTS_WEBHOOK_URL", C.events_url, "", secret=True, policy="events_webhook_policy"
    )
    events_webhook_secret: str = setting(
        "EVENTS_WEBHOOK_SECRET", C.optional_secret, "", secret=True
    )
    events_webhook_timeout_ms: int = setting(
        "EVENTS_WEBHOOK_TIMEOUT_MS", C.integer, 10_000, minimum=100
    )
    events_retry_base_ms: int = setting("EVENTS_RETRY_BASE_MS", C.integer, 1_000, minimum=1)
    events_retry_max_ms: int = setting("EVENTS_RETRY_MAX_MS", C.integer, 300_000, minimum=1)
    events_max_attempts: int = setting("EVENTS_MAX_ATTEMPTS", C.integer, 25, minimum=1)
    events_max_age_ms: int = setting("EVENTS_MAX_AGE_MS", C.integer, 24 * 3600 * 1000, minimum=1)
    events_retention_ms: int = setting(
        "EVENTS_RETENTION_MS", C.integer, 7 * 24 * 3600 * 1000, minimum=0
    )
    # Messages: how long an accepted message may wait for its session to send it, and
    # careful sending: per-session limits (0 = none; a session's own override wins), a
    # warm-up ramp for new numbers, a random pause between messages, "typing..." per character.
    message_ttl_s: int = setting("MESSAGE_TTL_S", C.integer, 86_400, minimum=1)
    # How long a finished message's record (and its idempotency key) is kept for GET and
    # resends. Redis holds every finished message this long: docs/performance.md sizes it.
    message_retention_days: int = setting("MESSAGE_RETENTION_DAYS", C.integer, 7, minimum=1)
    messages_per_minute: int = setting("MESSAGES_PER_MINUTE", C.integer, 10)
    messages_per_day: int = setting("MESSAGES_PER_DAY", C.integer, 500)
    message_warmup_days: int = setting("MESSAGE_WARMUP_DAYS", C.integer, 7)
    message_pause_min_ms: int = setting("MESSAGE_PAUSE_MIN_MS", C.integer, 2_000)
    message_pause_max_ms: int = setting("MESSAGE_PAUSE_MAX_MS", C.integer, 8_000)
    typing_ms_per_char: int = setting("TYPING_MS_PER_CHAR", C.integer, 40)
    typing_max_ms: int = setting("TYPING_MAX_MS", C.integer, 6_000)
    # How long a worker's poll of its command channel is held open when there is nothing.
    command_poll_ms: int = setting("COMMAND_POLL_MS", C.integer, 25_000, minimum=100)
    # Several serve replicas: this one's name ("" = <hostname>:<HTTP_PORT>), and how long the
    # leader's lease in Redis lasts without a renewal (core/leadership.py).
    serve_id: str = setting("SERVE_ID", C.text, "")
    leader_lease_ms: int = setting(
        "LEADER_LEASE_MS", C.integer, 5_000, minimum=MIN_LEADER_LEASE_MS
    )
    # Issued API keys: the old key of a rotation stays valid this long; each key's requests
    # per second (a token bucket) and the burst it may spend at once.
    key_rotate_grace_s: int = setting("KEY_ROTATE_GRACE_S", C.integer, 3_600, minimum=0)
    key_rate_per_s: int = setting("KEY_RATE_PER_S", C.integer, 20, minimum=1)
    key_rate_burst: int = setting("KEY_RATE_BURST", C.integer, 40, minimum=1)
    # The audit trail of every action that changes the fleet is trimmed to this many days.
    audit_retention_days: int = setting("AUDIT_RETENTION_DAYS", C.integer, 90, minimum=1)
    # Media: where files live (the shared storage with RUNNER=swarm), how long a signed link
    # lasts, and what a file of each kind may weigh (WhatsApp's own limits; voice is audio)
    # and, for an image, how many pixels it may decode to.
    media_dir: Path = setting("MEDIA_DIR", C.path, Path("./media"))
    media_url_ttl_s: int = setting("MEDIA_URL_TTL_S", C.integer, 3_600, minimum=1)
    media_max_bytes_image: int = setting(
        "MEDIA_MAX_BYTES_IMAGE", C.integer, 5 * 1024 * 1024, minimum=1
    )
    media_max_bytes_audio: int = setting(
        "MEDIA_MAX_BYTES_AUDIO", C.integer, 16 * 1024 * 1024, minimum=1
    )
    media_max_bytes_video: int = setting(
        "MEDIA_MAX_BYTES_VIDEO", C.integer, 16 * 1024 * 1024, minimum=1
    )
    media_max_bytes_document: int = setting(
        "MEDIA_MAX_BYTES_DOCUMENT", C.integer, 100 * 1024 * 1024, minimum=1
    )
    media_max_image_pixels: int = setting(
        "MEDIA_MAX_IMAGE_PIXELS", C.integer, 50_000_000, minimum=1
    )

    def media_max_bytes(self, kind: str) -> int:
        """The size limit of one media kind (``voice`` is ``audio``); KeyError for no kind."""
        return {
            "image": self.media_max_bytes_image,
            "audio": self.media_max_bytes_audio,
            "voice": self.media_max_bytes_audio,
            "video": self.media_max_bytes_video,
            "document": self.media_max_bytes_document,
        }[kind]

    @property
    def public_base_url(self) -> str:
        """This fleet's address as workers reach it: the first ``PUBLIC_WEBHOOK_URL`` without
        its ``/webhook`` (media links are made on it; any replica serves them)."""
        first = self.webhook_url.split(",")[0].strip()
        return first.rsplit("/webhook", 1)[0] if first.endswith("/webhook") else first

    @property
    def webhook_url(self) -> str:
        """Where workers post events; ``PUBLIC_WEBHOOK_URL`` wins when the host is not local.

        Comma-separated when it lists several ``serve`` replicas: the worker's ``WEBHOOK_URL``
        carries the list as it is (worker/endpoints.py picks one)."""
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


def env_names() -> list[str]:
    """Every environment name a setting is read from, in declaration order."""
    names: list[str] = []
    for f in fields(Settings):
        env = f.metadata["env"]
        names.extend(env if isinstance(env, tuple) else (env,))
    return names


def _parse(env: Mapping[str, str]) -> Settings:
    c = Kinds(env)
    for f in fields(Settings):
        meta = f.metadata
        default = f.default_factory() if callable(f.default_factory) else f.default
        c.values[f.name] = meta["kind"](c, meta["env"], default, **meta["options"])
    settings = Settings(**c.values)
    c.problems.extend(_pair_problems(settings))
    c.problems.extend(_timing_problems(settings))
    if c.problems:
        raise ConfigError("wafleet cannot start:\n  - " + "\n  - ".join(c.problems))
    return settings


def _pair_problems(settings: Settings) -> list[str]:
    """Settings that are each valid but need another, or a place that must exist."""
    problems = []
    if settings.events_webhook_url and not settings.events_webhook_secret:
        problems.append(
            "EVENTS_WEBHOOK_SECRET must be set when EVENTS_WEBHOOK_URL is set: every event is "
            "signed with it (openssl rand -hex 32)"
        )
    if settings.events_retry_max_ms < settings.events_retry_base_ms:
        problems.append(
            f"EVENTS_RETRY_MAX_MS ({settings.events_retry_max_ms}) must be at least "
            f"EVENTS_RETRY_BASE_MS ({settings.events_retry_base_ms})"
        )
    if settings.telegram_bot_token and settings.telegram_chat_id is None:
        problems.append("TELEGRAM_CHAT_ID must be set when TELEGRAM_BOT_TOKEN is set")
    if both := settings.telegram_admin_ids & settings.telegram_viewer_ids:
        problems.append(
            "TELEGRAM_VIEWER_IDS and TELEGRAM_ADMIN_IDS both name "
            + ", ".join(str(n) for n in sorted(both))
            + ": a user is an admin or a viewer, not both"
        )
    if settings.runner == "swarm" and not settings.sessions_dir.is_dir():
        # Not created here: on a swarm it is a shared mount (NFS, CephFS...) that every node
        # sees; a folder made on the manager alone would hide a missing mount.
        problems.append(
            f"SESSIONS_DIR {settings.sessions_dir} does not exist: with RUNNER=swarm it must be "
            "the same shared path on every node (mount it first)"
        )
    if not settings.redis_url.startswith(("redis://", "rediss://", "unix://")):
        problems.append("REDIS_URL must start with redis://, rediss:// or unix://")
    elif settings.redis_sentinels and settings.redis_url.startswith("unix://"):
        problems.append(
            "REDIS_URL must be redis:// or rediss:// when REDIS_SENTINELS is set (it gives the "
            "password and database; the Sentinels name the primary's address)"
        )
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", settings.redis_sentinel_master):
        problems.append(
            "REDIS_SENTINEL_MASTER must be the name Sentinel monitors: 1-64 letters, digits, "
            f"'.', '_' or '-', got {settings.redis_sentinel_master!r}"
        )
    if settings.serve_id and not SERVE_ID.fullmatch(settings.serve_id):
        problems.append(
            "SERVE_ID must be 1 to 100 of A-Z a-z 0-9 . _ : @ - (it names this replica in Redis)"
        )
    if settings.leader_lease_ms > MAX_LEADER_LEASE_MS:
        problems.append(
            f"LEADER_LEASE_MS must be at most {MAX_LEADER_LEASE_MS}: a dead leader's work waits "
            "that long for another replica"
        )
    if settings.message_pause_max_ms < settings.message_pause_min_ms:
        problems.append(
            f"MESSAGE_PAUSE_MAX_MS ({settings.message_pause_max_ms}) must not be below "
            f"MESSAGE_PAUSE_MIN_MS ({settings.message_pause_min_ms})"
        )
    return problems


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
