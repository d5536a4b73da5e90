"""Phone numbers as WhatsApp uses them: ASCII digits only, country code first.

Only ``0-9`` count as digits: Python's ``\\d``, ``str.isdigit()`` and ``int()`` also accept
Arabic-Indic, full-width and other digits, which would store the same number under a
second sticky key (``phone:<number>:proxy``) and so give it a second IP.
"""

from __future__ import annotations

import re

from core.errors import InvalidInput

_PHONE = re.compile(r"[1-9][0-9]{7,14}", re.ASCII)
_SEPARATORS = re.compile(r"[\s\-().]")


def normalize(raw: object) -> str:
    """``+972-50-123 4567`` → ``972501234567``; anything else is a clear ``InvalidInput``."""
    if not isinstance(raw, str):
        raise InvalidInput("phone must be a string of digits with the country code first")
    digits = _SEPARATORS.sub("", raw.strip()).removeprefix("+")
    if not _PHONE.fullmatch(digits):
        raise InvalidInput(
            "phone must be 8-15 digits with the country code first, e.g. 972501234567"
        )
    return digits
