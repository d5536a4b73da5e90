"""Media files (images, documents, voice notes, video) that messages carry, in and out.

``store`` keeps each file once under ``MEDIA_DIR`` by its content hash; ``registry`` names a
stored file for one message in Redis (its kind, type, size); ``links`` signs the expiring
URLs by which workers and the operator's systems fetch one (``GET /media/<id>``).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from core.clock import Clock
from core.media.links import MediaLinks
from core.media.registry import MediaRecord, MediaRegistry
from core.media.store import MediaStore
from core.settings import Settings


@dataclass
class Media:
    """What every replica needs to take, name, serve and link media (one per process)."""

    store: MediaStore
    registry: MediaRegistry
    links: MediaLinks
    clock: Clock
    base_url: str
    url_ttl_s: int

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis, clock: Clock) -> Media:
        return cls(
            store=MediaStore(settings.media_dir),
            registry=MediaRegistry(redis),
            links=MediaLinks(settings.webhook_secret),
            clock=clock,
            base_url=settings.public_base_url,
            url_ttl_s=settings.media_url_ttl_s,
        )

    def url(self, record: MediaRecord, base_url: str | None = None) -> str:
        """A link to ``record`` valid for ``MEDIA_URL_TTL_S`` from now."""
        exp = self.clock.now_ms() // 1000 + self.url_ttl_s
        return self.links.url(base_url or self.base_url, record.id, exp)
