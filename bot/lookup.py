"""Finding sessions by what an operator knows: an id, a phone, or part of a phone.

The fleet's records come from core; matching is here because it serves the chat only (the
REST API names sessions by id). A few hundred records are read in one pipeline, so a scan
is cheaper than keeping a second index in step.
"""

from __future__ import annotations

import re

from core.models import SessionRecord
from core.sessions import SessionService

_SEPARATORS = re.compile(r"[\s\-().]")
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what a session id can look like (worker_<n>)


def digits_of(query: str) -> str:
    """``+972-50 123`` → ``97250123``; empty when the query holds anything but a number."""
    stripped = _SEPARATORS.sub("", query.strip()).removeprefix("+")
    return stripped if stripped.isascii() and stripped.isdigit() else ""


async def resolve(service: SessionService, query: str) -> list[SessionRecord]:
    """The session named by ``query``: an exact id first, else every session of that phone
    (a phone may have several: it is ambiguous then, and the caller lets the operator pick)."""
    number = digits_of(query)
    if not number:
        if not _ID.fullmatch(query):
            return []  # no id looks like that: no key is built from it
        record = await service.store.get_session(query)
        return [record] if record is not None else []
    return [r for r in await service.all_sessions() if r.phone == number]


async def find(service: SessionService, query: str) -> list[SessionRecord]:
    """Sessions whose phone holds the digits of ``query``, or whose id holds ``query``."""
    number = digits_of(query)
    needle = query.strip().lower()
    return [
        r
        for r in await service.all_sessions()
        if (number and r.phone and number in r.phone) or (needle and needle in r.id.lower())
    ]
