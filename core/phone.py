"""Phone numbers as WhatsApp uses them: digits only, country code first."""

from __future__ import annotations

import re

from core.errors import InvalidInput

_PHONE = re.compile(r"[1-9]\d{7,14}")


def normalize(raw: object) -> str:
    """``+972-50-123 4567`` → ``972501234567``; anything else is a clear ``InvalidInput``."""
    if not isinstance(raw, str):
        raise InvalidInput("phone must be a string of digits with the country code first")
    digits = re.sub(r"[\s\-().]", "", raw.strip()).removeprefix("+")
    if not _PHONE.fullmatch(digits):
        raise InvalidInput(
            "phone must be 8-15 digits with the country code first, e.g. 972501234567"
        )
    return digits
