"""``/api/openapi.json``: the REST API as it is. A test checks it against the router."""

from __future__ import annotations

from typing import Any

from aiohttp import web

routes = web.RouteTableDef()

_ERROR = {"$ref": "#/components/schemas/Error"}
_SESSION = {"$ref": "#/components/schemas/Session"}
_NODE = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "hostname + short id, or its wafleet label"},
        "id": {"type": "string"},
        "state": {"type": "string", "description": "ready, down, unknown, disconnected"},
        "availability": {"type": "string", "description": "active, pause, drain"},
        "sessions": {"type": "integer"},
        "sessionIds": {"type": "array", "items": {"type": "string"}},
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "bad input (invalid_input), or a request that could not be read",
        401: "missing or wrong API key",
        404: "not found",
        409: "conflict: busy (a restore runs), phone_limit, qr_unavailable, in use",
        500: "restore_failed: the restore failed after the swap and the previous fleet "
        "was put back",
        503: "redis_unavailable: the state store is unreachable (any route), or "
        "no_proxy_capacity: no proxy has a free slot",
        507: "disk_full: no space left for the archive",
    }
    return {str(c): _json(_ERROR, text[c]) for c in codes}


_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
# Proxy examples point at loopback: a fuzzer sends the schema's examples, and a provision
# makes a worker connect to the proxy host it names.
_PROXY_EXAMPLE = "socks5h://user:pass@127.0.0.1:1080"


def _op(summary: str, ok: dict[str, Any], *errors: int, **extra: Any) -> dict[str, Any]:
    """Every API route can answer 401, and 503 while Redis is down; a route with a path id or
    a body can answer 400 (path ids and bodies pass core/text.py's rule, bodies must be JSON
    objects)."""
    errors = (503, *errors)
    if "parameters" in extra or "requestBody" in extra:
        errors = (400, *errors)
    responses = {**ok, **_errors(401, *sorted(set(errors)))}
    return {"summary": summary, "responses": responses, **extra}


def _body(
    properties: dict[str, Any], required: tuple[str, ...] = (), body_required: bool = False
) -> dict[str, Any]:
    """A JSON object body; unknown fields are refused (api/body.py), so the schema says so."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    return {"required": body_required, "content": {"application/json": {"schema": schema}}}


SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "wafleet", "version": "1"},
    "components": {
        "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    }
                },
            },
            "Session": {
                "type": "object",
                "required": ["id", "status", "phone", "proxy", "created", "lastPing"],
                "properties": {
                    "id": {"type": "string"},
                    "status": {
                        "type": "string",
                        "enum": [
                            "pending",
                            "qr_ready",
                            "connected",
                            "disconnected",
                            "failed",
                            "stopped",
                        ],
                    },
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
                },
            },
            "Proxy": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "url": {"type": "string"},
                    "status": {"type": "string"},
                    "sessions": {"type": "integer"},
                    "capacity": {"type": "integer"},
                },
            },
            "Backup": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "example": "backup_2024-05-01"},
                    "file": {"type": "string"},
                    "size": {"type": "integer", "description": "bytes"},
                    "created": {"type": "integer", "description": "ms since the epoch"},
                    "sessions": {"type": "integer", "nullable": True},
                },
            },
        },
    },
    "security": [{"apiKey": []}],
    "paths": {
        "/api/sessions/provision": {
            "post": _op(
                "Create a session: choose a proxy, start its worker",
                {"201": _json(_SESSION, "created")},
                409,
                503,
                requestBody=_body(
                    {
                        "phone": {
                            "type": "string",
                            "description": "country code first; ASCII digits, '+', spaces, "
                            "dashes, dots and parentheses",
                            "example": "972501234567",
                        },
                        "proxy": {
                            "type": "string",
                            "description": "socks5h:// only; its host must be admitted by "
                            "PROXY_ALLOW_NETWORKS / PROXY_DENY_NETWORKS",
                            "example": _PROXY_EXAMPLE,
                        },
                    }
                ),
            )
        },
        "/api/sessions/{id}/qr": {
            "get": _op(
                "The current QR: JSON {qr}, or a PNG with Accept: image/png",
                {
                    "200": {
                        "description": "the QR",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "qr": {"type": "string"},
                                        "pairingCode": {"type": "string", "nullable": True},
                                    },
                                }
                            },
                            "image/png": {"schema": {"type": "string", "format": "binary"}},
                        },
                    }
                },
                404,
                409,
                parameters=_ID,
            ),
            "post": _op(
                "Start a new QR round (after the last one ran out, or a logout)",
                {"202": _json(_SESSION, "restarting with a new QR round")},
                404,
                409,
                503,
                parameters=_ID,
            ),
        },
        "/api/sessions/{id}/status": {
            "get": _op("One session", {"200": _json(_SESSION, "the session")}, 404, parameters=_ID)
        },
        "/api/sessions/{id}/events": {
            "get": _op(
                "The session's recent events, newest first",
                {"200": _json({"type": "object"}, "events")},
                404,
                parameters=_ID,
            )
        },
        "/api/sessions/{id}/restart": {
            "post": _op(
                "Restart the session's worker",
                {"200": _json(_SESSION, "restarted")},
                404,
                409,
                503,
                parameters=_ID,
            )
        },
        "/api/sessions/{id}": {
            "delete": _op(
                "Delete: stop the worker, remove its folder, release the proxy slot",
                {"200": _json({"type": "object"}, "deleted")},
                404,
                409,
                parameters=_ID,
            )
        },
        "/api/v1/dashboard/sessions": {
            "get": _op(
                "The sessions, a page at a time in id order (worker_2 before worker_10): "
                "`limit` sessions (default 500, at most 1000) after `cursor`; `next` is the "
                "cursor of the following page, null on the last one; `total` counts them all",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "sessions": {"type": "array", "items": _SESSION},
                                "total": {"type": "integer"},
                                "next": {"type": "string", "nullable": True},
                            },
                        },
                        "one page of sessions",
                    )
                },
                parameters=[
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "pattern": "^worker_[0-9]{1,12}$"},
                    },
                ],
            )
        },
        "/api/v1/dashboard/stats": {
            "get": _op(
                "Counts by status, the pool's capacity, the runner's nodes with their sessions, "
                "and the progress of a bulk start of "
                "workers (after a reboot or a restore; absent when none runs); "
                "`reconciling: true` while serve's start-up reconcile runs",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "reconciling": {"type": "boolean"},
                                "nodes": {"type": "array", "items": _NODE},
                                "starting": {
                                    "type": "object",
                                    "properties": {
                                        "total": {"type": "integer"},
                                        "started": {"type": "integer"},
                                        "pending": {"type": "integer"},
                                    },
                                },
                            },
                        },
                        "stats",
                    )
                },
            )
        },
        "/api/v1/nodes": {
            "get": _op(
                "Where the workers run: this host for RUNNER=process/docker, every swarm node "
                "(sessions or not) for RUNNER=swarm",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"nodes": {"type": "array", "items": _NODE}},
                        },
                        "nodes",
                    )
                },
            )
        },
        "/api/v1/cluster": {
            "get": _op(
                "The serve replicas seen in the last three leases, the leader (null while "
                "none holds the lease), and the Redis primary with its connected replicas",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "leader": {"type": "string", "nullable": True},
                                "replicas": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "id": {"type": "string"},
                                            "url": {"type": "string"},
                                            "leader": {"type": "boolean"},
                                            "seenAt": {"type": "integer"},
                                        },
                                        "required": ["id", "url", "leader", "seenAt"],
                                    },
                                },
                                "redis": {
                                    "type": "object",
                                    "properties": {
                                        "primary": {"type": "string"},
                                        "replicas": {"type": "integer"},
                                    },
                                    "required": ["primary", "replicas"],
                                },
                            },
                            "required": ["leader", "replicas", "redis"],
                        },
                        "cluster",
                    )
                },
            )
        },
        "/api/v1/proxies": {
            "get": _op(
                "The proxy pool (passwords masked)",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "proxies": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Proxy"},
                                }
                            },
                        },
                        "proxies",
                    )
                },
            ),
            "post": _op(
                "Add a proxy",
                {"201": _json({"$ref": "#/components/schemas/Proxy"}, "added")},
                409,
                requestBody=_body(
                    {
                        "url": {
                            "type": "string",
                            "description": "socks5h:// only; its host must be admitted by "
                            "PROXY_ALLOW_NETWORKS / PROXY_DENY_NETWORKS",
                            "example": _PROXY_EXAMPLE,
                        }
                    },
                    required=("url",),
                    body_required=True,
                ),
            ),
        },
        "/api/v1/proxies/{id}": {
            "delete": _op(
                "Remove an unused proxy",
                {"200": _json({"type": "object"}, "removed")},
                404,
                409,
                parameters=_ID,
            )
        },
        "/api/v1/backups": {
            "get": _op(
                "The backups in BACKUPS_DIR, newest first",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "backups": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Backup"},
                                }
                            },
                        },
                        "backups",
                    )
                },
            )
        },
        "/api/v1/backups/create": {
            "post": _op(
                "Back up every session now (BACKUP_MODE: rolling pauses or stop-all), "
                "then apply MAX_BACKUPS retention",
                {
                    "201": _json(
                        {
                            "allOf": [
                                {"$ref": "#/components/schemas/Backup"},
                                {
                                    "type": "object",
                                    "properties": {
                                        "mode": {
                                            "type": "string",
                                            "enum": ["rolling", "stop-all"],
                                        },
                                        "durationMs": {"type": "integer"},
                                        "maxPauseMs": {"type": "number"},
                                        "pausesMs": {"type": "object"},
                                    },
                                },
                            ]
                        },
                        "written",
                    )
                },
                409,
                507,
                requestBody=_body({}),
            )
        },
        "/api/v1/backups/restore/{id}": {
            "post": _op(
                "Check the archive, then replace every session with the archive's, rebuild "
                "the state and start the workers; answers which sessions came back connected. "
                "A bad archive: 400 with its own code, and nothing changed",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "backup": {"type": "string"},
                                "sessions": {"type": "array", "items": {"type": "string"}},
                                "connected": {"type": "array", "items": {"type": "string"}},
                                "notConnected": {"type": "array", "items": {"type": "string"}},
                                "reassigned": {
                                    "type": "array",
                                    "description": "sessions whose proxy is gone: moved "
                                    "to one from the pool (to: null when none had a slot)",
                                    "items": {"type": "object"},
                                },
                                "proxiesAdded": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                        "restored",
                    )
                },
                400,
                404,
                409,
                500,
                507,
                parameters=_ID,
                requestBody=_body(
                    {
                        "waitSeconds": {
                            "type": "number",
                            "minimum": 0,
                            "maximum": 300,
                            "description": "how long to wait for the sessions "
                            "to connect before answering (default 30)",
                        }
                    }
                ),
            )
        },
        "/webhook": {
            "post": {
                "summary": "Events from workers, HMAC-signed per session",
                "description": "The signature is checked before the body is parsed; every "
                "string in data obeys the same rule as REST bodies (no control characters, "
                "no lone surrogates)",
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["sessionId", "type"],
                                "properties": {
                                    "sessionId": {"type": "string", "pattern": "^worker_[0-9]+$"},
                                    "type": {
                                        "type": "string",
                                        "enum": [
                                            "QR_CODE",
                                            "PAIRING_CODE",
                                            "CONNECTED",
                                            "DISCONNECTED",
                                            "PING",
                                            "PROXY_ERROR",
                                            "AUTH_FAILURE",
                                            "MESSAGE_IN",
                                            "MESSAGE_STATUS",
                                        ],
                                    },
                                    "data": {"type": "object"},
                                    "timestamp": {"type": "integer"},
                                    "id": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "parameters": [
                    {
                        "name": "X-Wafleet-Timestamp",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "X-Wafleet-Signature",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": _json({"type": "object"}, "accepted"),
                    **_errors(400, 401, 404),
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness and Redis",
                "security": [],
                "responses": {
                    "200": {
                        "description": "ok; `reconciling` is true while the start-up "
                        "reconcile still adopts and starts workers; `replica` names the "
                        "replica that answered (SERVE_ID) and `leader` says whether it leads"
                    },
                    "503": {"description": "Redis unreachable"},
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "security": [],
                "responses": {
                    "200": {"description": "text exposition"},
                    "401": {"description": "METRICS_TOKEN is set and the bearer token is not it"},
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3"}},
            }
        },
    },
}


# Incoming messages and receipts for the operator (issue 12): the per-session endpoint at
# provision, the replay of the durable stream, and the dead letters.
_OPERATOR_EVENT = {
    "type": "object",
    "description": "What the operator's endpoint receives (POST, JSON), signed: headers "
    "X-Wafleet-Timestamp (ms) and X-Wafleet-Signature: sha256=HMAC-SHA256("
    "EVENTS_WEBHOOK_SECRET, '<timestamp>.<raw body>'); also X-Wafleet-Event-Id, "
    "X-Wafleet-Session, X-Wafleet-Attempt. Delivered at least once: deduplicate on id.",
    "properties": {
        "id": {"type": "string", "description": "stable across attempts and redeliveries"},
        "sessionId": {"type": "string"},
        "type": {"type": "string", "enum": ["MESSAGE_IN", "MESSAGE_STATUS"]},
        "data": {"type": "object"},
        "timestamp": {"type": "integer", "description": "when serve stored it (ms)"},
        "streamId": {"type": "string", "description": "its place in the stream (?since=)"},
    },
}
_LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
}
SPEC["components"]["schemas"]["Session"]["properties"]["eventsWebhookUrl"] = {
    "type": "string",
    "nullable": True,
    "description": "the session's own events endpoint (credentials masked); null: "
    "EVENTS_WEBHOOK_URL",
}
SPEC["paths"]["/api/sessions/provision"]["post"]["requestBody"]["content"]["application/json"][
    "schema"
]["properties"]["eventsWebhookUrl"] = {
    "type": "string",
    "description": "where this session's incoming messages and receipts go instead of "
    "EVENTS_WEBHOOK_URL: http:// or https://, its host admitted by "
    "EVENTS_WEBHOOK_ALLOW_NETWORKS / EVENTS_WEBHOOK_DENY_NETWORKS (needs "
    "EVENTS_WEBHOOK_SECRET on the server)",
    "example": "http://127.0.0.1:8080/wafleet-events",
}
SPEC["paths"]["/webhook"]["post"]["requestBody"]["content"]["application/json"]["schema"][
    "properties"
]["type"]["enum"] += ["MESSAGE_IN", "MESSAGE_STATUS"]
SPEC["paths"]["/api/sessions/{id}/events"] = {
    "get": _op(
        "Without since: the session's recent lifecycle events, newest first. With since: "
        "the replay of its incoming messages and receipts stored after that stream id "
        "(0: from the start), oldest first, delivered or not",
        {
            "200": _json(
                {
                    "type": "object",
                    "properties": {
                        "events": {"type": "array", "items": {"type": "object"}},
                        "next": {"type": "string", "description": "since of the next page"},
                        "deliveredThrough": {
                            "type": "string",
                            "description": "the last stream id delivered or dead-lettered",
                        },
                    },
                },
                "events (with since: of type OperatorEvent)",
            )
        },
        404,
        parameters=[
            *_ID,
            {
                "name": "since",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "pattern": "^[0-9]{1,20}(-[0-9]{1,20})?$"},
            },
            _LIMIT,
        ],
    )
}
SPEC["components"]["schemas"]["OperatorEvent"] = _OPERATOR_EVENT
SPEC["paths"]["/api/sessions/{id}/events/dead-letters"] = {
    "get": _op(
        "Events whose delivery gave up (EVENTS_MAX_ATTEMPTS or EVENTS_MAX_AGE_MS), oldest "
        "first; kept until redelivered",
        {
            "200": _json(
                {
                    "type": "object",
                    "properties": {
                        "deadLetters": {"type": "array", "items": {"type": "object"}},
                        "total": {"type": "integer"},
                    },
                },
                "dead letters: an OperatorEvent plus attempts, error, deadAt",
            )
        },
        404,
        parameters=[
            *_ID,
            {
                "name": "offset",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 0, "default": 0},
            },
            _LIMIT,
        ],
    )
}
SPEC["paths"]["/api/sessions/{id}/events/dead-letters/redeliver"] = {
    "post": _op(
        "Put the dead letters back in line (oldest first, after what waits now, same ids); "
        "up to 1,000 per call",
        {
            "202": _json(
                {
                    "type": "object",
                    "properties": {
                        "redelivered": {"type": "integer"},
                        "remaining": {"type": "integer", "description": "call again if > 0"},
                    },
                },
                "queued for delivery",
            )
        },
        404,
        parameters=_ID,
    )
}
# Messages, stop/start and careful-sending limits (issue 12).
_MESSAGE = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "to": {"type": "string"},
        "status": {"type": "string", "enum": ["queued", "sent", "delivered", "read", "failed"]},
        "reason": {"type": "string", "description": "why it failed (expired, logged_out, ...)"},
    },
}
_COUNTS = ("sent", "received", "failed")
_LIMITS = {
    "perMinute": {"type": "integer", "minimum": 0, "description": "0: no limit"},
    "perDay": {"type": "integer", "minimum": 0, "description": "0: no limit"},
    "warmupDays": {
        "type": "integer",
        "minimum": 0,
        "description": "a new number's daily limit ramps up over this many days",
    },
}
_MID = [*_ID, {"name": "mid", "in": "path", "required": True, "schema": {"type": "string"}}]
SPEC["paths"]["/api/sessions/provision"]["post"]["requestBody"]["content"]["application/json"][
    "schema"
]["properties"]["limits"] = {
    "type": "object",
    "properties": _LIMITS,
    "additionalProperties": False,
    "minProperties": 1,
    "description": "the session's own careful-sending limits from its first message, as PUT "
    "/api/sessions/{id}/limits takes them (the settings' defaults for those not named)",
}
SPEC["paths"]["/api/v1/dashboard/stats"]["get"]["responses"]["200"]["content"]["application/json"][
    "schema"
]["properties"]["messages"] = {
    "type": "object",
    "description": "messages of the whole fleet since counting began (a deleted session's "
    "stay counted)",
    "properties": {name: {"type": "integer", "minimum": 0} for name in _COUNTS},
    "required": list(_COUNTS),
}
_SIGNED = [
    {
        "name": "X-Wafleet-Timestamp",
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
    },
    {
        "name": "X-Wafleet-Signature",
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
    },
]
SPEC["paths"].update(
    {
        "/api/sessions/{id}/messages": {
            "post": _op(
                "Send a text through the session: accepted, durable, sent at most once",
                {"202": _json(_MESSAGE, "accepted (the same idempotencyKey: the same message)")},
                404,
                parameters=_ID,
                requestBody=_body(
                    {
                        "to": {"type": "string", "example": "14155550123"},
                        "text": {"type": "string", "minLength": 1, "maxLength": 4096},
                        "idempotencyKey": {"type": "string", "minLength": 1, "maxLength": 128},
                    },
                    ("to", "text"),
                    body_required=True,
                ),
            )
        },
        "/api/sessions/{id}/messages/{mid}": {
            "get": _op(
                "One message and its status",
                {"200": _json(_MESSAGE, "the message")},
                404,
                parameters=_MID,
            )
        },
        "/api/sessions/{id}/limits": {
            "get": _op(
                "The careful-sending limits in force for the session",
                {"200": _json({"type": "object", "properties": _LIMITS}, "limits")},
                404,
                parameters=_ID,
            ),
            "put": _op(
                "Set the session's own limits (the settings' defaults otherwise)",
                {"200": _json({"type": "object", "properties": _LIMITS}, "limits in force")},
                404,
                parameters=_ID,
                requestBody=_body(_LIMITS, body_required=True),
            ),
        },
        "/api/sessions/{id}/stop": {
            "post": _op(
                "Stop without deleting: no worker; link, proxy, sticky mapping and queue kept",
                {"200": _json(_SESSION, "stopped")},
                404,
                409,
                parameters=_ID,
            )
        },
        "/api/sessions/{id}/start": {
            "post": _op(
                "Start a stopped session with its saved link (no new QR)",
                {"200": _json(_SESSION, "starting")},
                404,
                409,
                parameters=_ID,
            )
        },
        "/worker/commands": {
            "post": {
                "summary": "A worker's long poll of its command channel, signed as /webhook",
                "security": [],
                "parameters": _SIGNED,
                "responses": {
                    "200": _json({"type": "object"}, "the unacknowledged commands"),
                    **_errors(400, 401, 404),
                },
            }
        },
        "/worker/commands/ack": {
            "post": {
                "summary": "A worker acknowledges one of its session's commands",
                "security": [],
                "parameters": _SIGNED,
                "responses": {
                    "200": _json({"type": "object"}, "applied"),
                    **_errors(400, 401),
                    "403": _json(_ERROR, "not this session's command: nothing changes"),
                },
            }
        },
    }
)


@routes.get("/api/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(SPEC)
