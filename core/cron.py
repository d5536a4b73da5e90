"""Crontab lines (``BACKUP_CRON``, and any later schedule) on APScheduler's trigger.

One parser, used both when settings are checked at start and when the scheduler is built, so
a line that passes the check is the line that runs.
"""

from __future__ import annotations

import re
from datetime import tzinfo

from apscheduler.triggers.cron import CronTrigger

_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NUMERIC_DOW = re.compile(r"(\*|\d+)(?:-(\d+))?(?:/(\d+))?")


def cron_trigger(expr: str, tz: tzinfo | None = None) -> CronTrigger:
    """A crontab line as a trigger: 5 fields, or 6 with seconds first.

    Numeric weekdays keep crontab's meaning (0 and 7 = Sunday). APScheduler 3 alone reads 0
    as Monday, and a range such as ``0-6`` turned into names would run backwards (``sun-sat``
    is Sunday to Saturday in crontab, an error in APScheduler), so numeric weekdays are
    spelled out as a list of names. Raises ``ValueError`` for a line that cannot run.
    """
    fields = expr.split()
    second = "0"
    if len(fields) == 6:
        second, *fields = fields
    if len(fields) != 5:
        raise ValueError(f"a crontab line needs 5 or 6 fields, got {len(fields)}")
    minute, hour, day, month, dow = fields
    return CronTrigger(
        second=second,
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=",".join(_weekdays(part) for part in dow.split(",")),
        timezone=tz,
    )


def _weekdays(part: str) -> str:
    """One comma-separated part of crontab's weekday field, in APScheduler's words."""
    numeric = _NUMERIC_DOW.fullmatch(part)
    if numeric is None:
        return part  # names (``mon-fri``) mean the same to both
    first, last, step = numeric.groups()
    if first == "*":
        if last is not None:
            raise ValueError(f"bad weekday field {part!r}")
        if step is None:
            return "*"
        low, high = 0, 6
    else:
        low = int(first)
        high = int(last) if last is not None else (6 if step is not None else low)
    if not 0 <= low <= 7 or not 0 <= high <= 7 or low > high:
        raise ValueError(f"weekdays go from 0 to 7 (Sunday), got {part!r}")
    days = range(low, high + 1, int(step) if step else 1)
    if not days:
        raise ValueError(f"bad weekday step in {part!r}")
    return ",".join(dict.fromkeys(_WEEKDAYS[d % 7] for d in days))
