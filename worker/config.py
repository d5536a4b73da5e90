"""The worker's environment (fixed names: SESSION_ID, PROXY_URL, ...), read once at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from core.proxy_url import ProxyUrl
from worker.outbox import DEFAULT_MAX_BYTES


class WorkerConfigError(Exception):
    pass


@dataclass(frozen=True)
class WorkerConfig:
    session_id: str
    proxy_url: str = field(repr=False)
    webhook_url: str
    webhook_secret: str = field(repr=False)
    session_dir: Path
    driver: str
    simwa_url: str
    phone: str | None
    presence_interval_s: float
    self_message_interval_s: float
    attempts_per_process: int
    outbox_max_bytes: int
    log_level: str
    log_format: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerConfig:
        e = os.environ if env is None else env
        missing = [
            n for n in ("SESSION_ID", "PROXY_URL", "WEBHOOK_URL", "WEBHOOK_SECRET") if not e.get(n)
        ]
        if missing:
            raise WorkerConfigError(f"worker cannot start: {', '.join(missing)} not set")
        for url in e["WEBHOOK_URL"].split(","):
            parts = urlsplit(url.strip())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise WorkerConfigError(
                    f"worker cannot start: WEBHOOK_URL: {url.strip()!r} is not an http(s) URL"
                )
        try:
            ProxyUrl.parse(e["PROXY_URL"])
        except ValueError as exc:
            raise WorkerConfigError(f"worker cannot start: PROXY_URL: {exc}") from None
        try:
            presence = int(e.get("WORKER_PRESENCE_INTERVAL_MS", "15000")) / 1000
            self_message = int(e.get("WORKER_SELF_MESSAGE_INTERVAL_MS", "600000")) / 1000
            attempts = int(e.get("WORKER_ATTEMPTS_PER_PROCESS", "50"))
            outbox_max = int(e.get("WORKER_OUTBOX_MAX_BYTES", str(DEFAULT_MAX_BYTES)))
        except ValueError:
            raise WorkerConfigError("WORKER_* settings must be whole numbers") from None
        return cls(
            session_id=e["SESSION_ID"],
            proxy_url=e["PROXY_URL"],
            webhook_url=e["WEBHOOK_URL"],
            webhook_secret=e["WEBHOOK_SECRET"],
            session_dir=Path(e.get("SESSION_DIR", "/app/session")),
            driver=e.get("WA_DRIVER", "sim"),
            simwa_url=e.get("SIMWA_URL", "ws://localhost:8765/ws"),
            phone=e.get("SESSION_PHONE") or None,
            presence_interval_s=presence,
            self_message_interval_s=self_message,
            attempts_per_process=max(attempts, 1),
            outbox_max_bytes=max(outbox_max, 64 * 1024),
            log_level=e.get("LOG_LEVEL", "INFO"),
            log_format=e.get("LOG_FORMAT", "text"),
        )
