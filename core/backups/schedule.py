"""``BACKUP_CRON`` parsing: crontab's meaning, on APScheduler's trigger."""

from __future__ import annotations

import re
from datetime import tzinfo

from apscheduler.triggers.cron import CronTrigger

_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def cron_trigger(expr: str, tz: tzinfo) -> CronTrigger:
    """``BACKUP_CRON`` as a trigger: crontab's 5 fields, or 6 with seconds first.

    Numeric weekdays keep crontab's meaning (0 = Sunday); APScheduler 3 alone would read
    0 as Monday.
    """
    fields = expr.split()
    second = "0"
    if len(fields) == 6:
        second, *fields = fields
    if len(fields) != 5:
        raise ValueError(f"BACKUP_CRON needs 5 or 6 fields, got {len(fields)}")
    minute, hour, day, month, dow = fields
    dow = re.sub(r"(?<![/\d])\d+", lambda m: _WEEKDAYS[int(m.group()) % 8], dow)
    return CronTrigger(
        second=second,
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=dow,
        timezone=tz,
    )
