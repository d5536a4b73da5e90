"""A session's own careful-sending limits as the operator gives them (``PUT …/limits``, a
provision's ``limits``, a backup's): the names there are, and what each may be.

Apart from core/messages.py, which applies them (the ``take`` script), because three doors
check them alike: the REST API, a provision, and a restore's validation of an archive.
"""

from __future__ import annotations

from typing import Any

from core.errors import InvalidInput

LIMIT_NAMES = ("perMinute", "perDay", "warmupDays")
MAX_LIMIT = 1_000_000


def check_limits(body: dict[str, Any]) -> dict[str, int]:
    """The operator's per-session limits: whole numbers, 0 meaning none."""
    limits: dict[str, int] = {}
    for name in LIMIT_NAMES:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_LIMIT:
            raise InvalidInput(f"{name} must be a whole number from 0 to {MAX_LIMIT}")
        limits[name] = value
    if not limits:
        raise InvalidInput(f"name at least one of {', '.join(LIMIT_NAMES)}")
    return limits


def check_provision_limits(value: object) -> dict[str, int] | None:
    """A provision's optional ``limits``: the same object and rules as ``PUT …/limits``, an
    unknown name refused (as the PUT's body refuses it) rather than silently dropped."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput(f"limits must be an object with any of {', '.join(LIMIT_NAMES)}")
    unknown = sorted(str(name)[:40] for name in set(value) - set(LIMIT_NAMES))
    if unknown:
        raise InvalidInput(f"unknown limit(s): {', '.join(unknown[:5])}")
    return check_limits(value)
