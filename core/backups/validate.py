"""An archive's contents checked against the rules the live API applies (ids, phones, proxy
URLs), so a restore can never write what a provision would have refused.

Everything here is pure: it takes what the archive says and returns a ``Plan`` or raises the
``BadArchive`` that names the first fault.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from core import endpoint_url
from core import phone as phones
from core.backups import trail
from core.backups.errors import (
    BadEventsUrl,
    BadLimits,
    BadManifest,
    BadPhone,
    BadProxy,
    BadSessionId,
)
from core.backups.records import Plan, PlannedSession
from core.errors import InvalidInput
from core.models import Status
from core.proxy_policy import ProxyPolicy
from core.proxy_url import ProxyUrl
from core.send_limits import check_provision_limits
from core.store import id_order

# The ids provision makes: ``worker_<n>`` from a counter, no leading zero. Twelve digits
# bound the counter a restore may raise (a trillion sessions is not a real fleet), and keep
# it an integer Redis can INCR; the webhook accepts the same ids.
SESSION_ID = re.compile(r"worker_[1-9]\d{0,11}")


def session_id(archive: str, sid: str) -> str:
    if not SESSION_ID.fullmatch(sid):
        raise BadSessionId(
            f"{archive}: {sid!r} is not a session id wafleet makes (worker_<n>, n up to 12 digits)"
        )
    return sid


def phone(archive: str, where: str, raw: object) -> str:
    """A phone exactly as provision stores it (already normalised)."""
    try:
        normal = phones.normalize(raw)
    except InvalidInput:
        normal = None
    if normal is None or normal != raw:
        raise BadPhone(f"{archive}: {where} has a phone provision would refuse")
    return normal


def proxy(archive: str, where: str, raw: object) -> str:
    """A ``socks5h://`` URL in the one form wafleet stores (the password never echoed)."""
    try:
        parsed = ProxyUrl.parse(raw) if isinstance(raw, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.url != raw:
        raise BadProxy(f"{archive}: {where} has no valid socks5h:// proxy URL")
    return parsed.url


def plan(archive: str, manifest: Any, metas: dict[str, Any], events_policy: ProxyPolicy) -> Plan:
    """``metas``: each session folder's ``session.json`` (None when absent or unreadable);
    ``events_policy``: the destinations an ``eventsWebhookUrl`` may name (as at provision)."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sessions"), list):
        raise BadManifest(f"{archive}: manifest.json has no session list")
    listed = {e["id"]: e for e in manifest["sessions"] if isinstance(e, dict) and "id" in e}
    sessions = [
        _operator_set(
            archive,
            _session(
                archive, session_id(archive, sid), meta if meta is not None else listed.get(sid)
            ),
            listed.get(sid),
            events_policy,
        )
        for sid, meta in sorted(metas.items(), key=lambda item: id_order(item[0]))
    ]
    restored = {s.id for s in sessions}
    sticky = {
        phone(archive, "the sticky map", p): proxy(archive, f"the sticky map ({p})", url)
        for p, url in _mapping(archive, manifest, "sticky").items()
    }
    owners = {
        phone(archive, "the sticky sessions", p): session_id(archive, sid)
        for p, sid in _mapping(archive, manifest, "stickySessions").items()
    }
    listed_proxies = manifest.get("proxies") or []
    if not isinstance(listed_proxies, list):
        raise BadManifest(f"{archive}: manifest.json has a malformed proxy list")
    pool = [
        proxy(archive, "the proxy list", e.get("url") if isinstance(e, dict) else e)
        for e in listed_proxies
    ]
    return Plan(
        sessions=sessions,
        sticky=sticky,
        sticky_sessions={p: sid for p, sid in owners.items() if sid in restored},
        proxies=pool,
        api_keys=trail.read_keys(archive, manifest),
    )


def _mapping(archive: str, manifest: dict[str, Any], name: str) -> dict[str, Any]:
    value = manifest.get(name) or {}
    if not isinstance(value, dict):
        raise BadManifest(f"{archive}: manifest.json's {name} is not a mapping")
    return value


def _session(archive: str, sid: str, meta: Any) -> PlannedSession:
    if not isinstance(meta, dict):
        raise BadManifest(f"{archive}: session {sid} has no session.json and no manifest entry")
    if meta.get("id", sid) != sid:
        raise BadManifest(f"{archive}: the folder {sid} holds the session.json of another id")
    raw_phone, created = meta.get("phone"), meta.get("created")
    return PlannedSession(
        id=sid,
        phone=None if raw_phone is None else phone(archive, f"session {sid}", raw_phone),
        proxy=proxy(archive, f"session {sid}", meta.get("proxy")),
        created=created if isinstance(created, int) and not isinstance(created, bool) else 0,
    )


def _operator_set(
    archive: str, planned: PlannedSession, entry: Any, events_policy: ProxyPolicy
) -> PlannedSession:
    """What the operator set on the session, from its manifest entry (``session.json`` is
    the worker's folder, not the operator's settings), through the live API's own rules."""
    if not isinstance(entry, dict):
        return planned
    where = f"{archive}: session {planned.id}"
    status = entry.get("status")
    if status is not None and not isinstance(status, str):
        raise BadManifest(f"{where} has a status that is not a string")
    url = entry.get("eventsWebhookUrl")
    if url is not None:
        try:
            url = endpoint_url.parse(url, events_policy)
        except InvalidInput:
            raise BadEventsUrl(f"{where} has an eventsWebhookUrl provision would refuse") from None
    limits = entry.get("limits")
    if limits is not None:
        try:
            limits = check_provision_limits(limits) if limits != {} else {}
        except InvalidInput as exc:
            raise BadLimits(f"{where} has limits the API would refuse: {exc}") from None
    owner = entry.get("owner")
    if owner is not None and not (isinstance(owner, str) and _OWNER.fullmatch(owner)):
        raise BadManifest(f"{where} has an owner that is no key id")
    return replace(
        planned,
        stopped=status == Status.STOPPED,
        events_webhook_url=url,
        limits=limits,
        owner=owner,
        owner_known="owner" in entry,
    )


_OWNER = re.compile(r"[0-9a-f]{12}")
