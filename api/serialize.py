"""What the REST API shows of core's records: masked proxies, no QR, no secrets."""

from __future__ import annotations

from typing import Any

from core.bulk_start import BulkStart
from core.models import ProxyRecord, SessionRecord
from core.proxy_url import ProxyUrl
from core.runner import NodeInfo


def session(record: SessionRecord, now_ms: int) -> dict[str, Any]:
    return {
        "id": record.id,
        "status": record.status,
        "reason": record.reason,
        "phone": record.phone,
        "proxy": record.proxy_masked,
        "proxyId": _proxy_id(record.proxy),
        "created": record.created,
        "lastPing": record.last_ping,
        "lastPingAgeMs": now_ms - record.last_ping if record.last_ping else None,
        "connectedAt": record.connected_at,
        "qrExpires": record.qr_expires,
        "needsQr": record.needs_qr,
        "worker": record.lock,
        "eventsWebhookUrl": record.events_webhook_url_masked,
    }


def proxy(record: ProxyRecord, cap: int) -> dict[str, Any]:
    return {
        "id": _proxy_id(record.url),
        "url": record.masked,
        "status": record.status,
        "sessions": record.sessions,
        "capacity": cap,
    }


def _proxy_id(url: str) -> str | None:
    try:
        return ProxyUrl.parse(url).id
    except ValueError:
        return None


def starting(progress: BulkStart | None) -> dict[str, int] | None:
    """A bulk start's progress for the dashboard; None when no bulk start runs."""
    if progress is None:
        return None
    return {"total": progress.total, "started": progress.started, "pending": progress.pending}


def node(info: NodeInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "id": info.id,
        "state": info.state,
        "availability": info.availability,
        "sessions": len(info.session_ids),
        "sessionIds": list(info.session_ids),
    }
