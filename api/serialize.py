"""What the REST API shows of core's records: masked proxies, no QR, no secrets.

Each shape's schema for the OpenAPI document sits beside the function that makes it.
"""

from __future__ import annotations

from typing import Any

from api.schema import Component, array
from core.bulk_start import BulkStart
from core.models import ProxyRecord, SessionRecord, Status
from core.proxy_url import ProxyUrl
from core.runner import NodeInfo

SESSION = Component(
    "Session",
    {
        "type": "object",
        "required": ["id", "status", "phone", "proxy", "created", "lastPing"],
        "properties": {
            "id": {"type": "string"},
            "status": {"type": "string", "enum": [str(status) for status in Status]},
            "reason": {"type": "string", "nullable": True},
            "phone": {"type": "string", "nullable": True},
            "proxy": {"type": "string", "description": "masked"},
            "proxyId": {"type": "string", "nullable": True},
            "created": {"type": "integer"},
            "lastPing": {"type": "integer", "nullable": True},
            "lastPingAgeMs": {"type": "integer", "nullable": True},
            "connectedAt": {"type": "integer", "nullable": True},
            "qrExpires": {"type": "integer", "nullable": True},
            "needsQr": {"type": "boolean"},
            "worker": {"type": "string", "nullable": True},
            "eventsWebhookUrl": {
                "type": "string",
                "nullable": True,
                "description": "the session's own events endpoint (credentials masked); null: "
                "EVENTS_WEBHOOK_URL",
            },
            "owner": {
                "type": "string",
                "nullable": True,
                "description": "admin keys only: the id of the client key that provisioned "
                "it (null: an admin did)",
            },
        },
    },
)


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


PROXY = Component(
    "Proxy",
    {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "url": {"type": "string"},
            "status": {"type": "string"},
            "sessions": {"type": "integer"},
            "capacity": {"type": "integer"},
        },
    },
)


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


NODE = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "hostname + short id, or its wafleet label"},
        "id": {"type": "string"},
        "state": {"type": "string", "description": "ready, down, unknown, disconnected"},
        "availability": {"type": "string", "description": "active, pause, drain"},
        "sessions": {"type": "integer"},
        "sessionIds": array({"type": "string"}),
    },
}


def node(info: NodeInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "id": info.id,
        "state": info.state,
        "availability": info.availability,
        "sessions": len(info.session_ids),
        "sessionIds": list(info.session_ids),
    }
