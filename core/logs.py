"""Logging set-up: a ``wafleet.*`` tree, text or JSON, and a filter that hides secrets.

The filter is the last line of defence: code never logs a proxy URL unmasked on purpose,
but an exception message from a library might carry one.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable

# Proxy URLs, and the operator's events endpoints (http(s), which may carry basic auth).
_URL_PASSWORD = re.compile(r"((?:socks5h?|https?)://[^:/@\s]*:)[^@\s]+@")
_BOT_TOKEN = re.compile(r"\b\d{5,}:[A-Za-z0-9_-]{30,}\b")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    text = _URL_PASSWORD.sub(r"\1***@", text)
    text = _BOT_TOKEN.sub("***", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            # Fold the traceback into the message so it is redacted like the rest.
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg = redact(message, self.secrets)
        record.args = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "ts": self.formatTime(record),
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
            },
            ensure_ascii=False,
        )


def setup(level: str = "INFO", fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter(secrets))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
