"""Domain errors with a stable ``code``: one place maps them to HTTP, another to chat text."""

from __future__ import annotations


class WafleetError(Exception):
    """Base of every error an operator may see. ``code`` never changes once published."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(WafleetError):
    code = "invalid_input"


class NotFound(WafleetError):
    code = "not_found"


class Conflict(WafleetError):
    code = "conflict"


class Busy(Conflict):
    """Something fleet-wide (a restore) is running; the request may be repeated after it."""

    code = "busy"


class PhoneLimit(Conflict):
    code = "phone_limit"


class QrUnavailable(Conflict):
    code = "qr_unavailable"


class NoCapacity(WafleetError):
    code = "no_proxy_capacity"


class ConfigError(WafleetError):
    """Settings that must be fixed before wafleet can start."""

    code = "config_error"


class MediaTooLarge(WafleetError):
    """A media file over its kind's limit (HTTP 413): nothing of it is kept."""

    code = "media_too_large"


class MediaRefused(WafleetError):
    """A media file that is not what it says (HTTP 415): ``media_type_mismatch`` (the bytes
    are not of the kind) or ``media_unreadable`` (an image that does not decode, or would
    decode to more pixels than allowed)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
