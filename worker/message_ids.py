"""Our message id <-> the WhatsApp message id the worker sends it with.

Derived, not drawn: a message handed to a worker again (the worker died between sending and
reporting) goes out with the same WhatsApp id, which WhatsApp (and simwa) take as the same
message, so a resend never becomes a second message. Reversible, so a receipt about a
WhatsApp id names our message without a lookup table. ``3EB0`` is the prefix WhatsApp Web's
own ids carry; whatsmeow accepts any id a caller chooses.
"""

from __future__ import annotations

import re

PREFIX = "3EB0"
_OURS = re.compile(rf"{PREFIX}([0-9A-F]{{32}})")


def wa_id(message_id: str) -> str:
    return PREFIX + message_id.upper()


def message_id_of(wa_message_id: str) -> str | None:
    """Our id, or None for a WhatsApp id we did not derive (the self-message, the phone's)."""
    found = _OURS.fullmatch(wa_message_id)
    return found.group(1).lower() if found else None
