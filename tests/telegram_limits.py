"""What the real Bot API refuses, for the fake server in ``tests/fake_telegram.py``.

Every bot test then fails where Telegram would refuse a message, instead of passing on a
fake that takes anything: a listing too long, a keyboard too big, a button whose callback
data is over 64 bytes, HTML Telegram cannot parse. The limits are the Bot API's documented
ones (sendMessage: text 1-4096 characters after entities parsing; captions 0-1024;
callback_data 1-64 bytes; answerCallbackQuery text 0-200) and the ones operators meet in
practice (at most 100 inline buttons under a message). Lengths are counted in characters
(code points) of the text as shown, after the HTML tags are taken out and the entities
decoded, as Telegram counts them. The error texts are Telegram's own.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64  # bytes
MAX_BUTTONS = 100
MAX_POPUP = 200  # answerCallbackQuery's text

TOO_LONG = "Bad Request: message is too long"
CAPTION_TOO_LONG = "Bad Request: message caption is too long"
EMPTY = "Bad Request: message text is empty"
BUTTON_DATA = "Bad Request: BUTTON_DATA_INVALID"
MARKUP_TOO_LONG = "Bad Request: reply markup is too long"
POPUP_TOO_LONG = "Bad Request: MESSAGE_TOO_LONG"
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)

# Telegram's HTML: these tags only, and only the named entities below.
_TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "tg-emoji",
    "code",
    "pre",
    "blockquote",
}
_TAG = re.compile(r"<(/?)([A-Za-z0-9-]*)((?:\s[^<>]*)?)>")
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d+|#x[0-9A-Fa-f]+);")


def shown_text(raw: str, parse_mode: str | None) -> str:
    """The text as Telegram shows it; ``ValueError`` with Telegram's words if it cannot
    parse it ("can't parse entities")."""
    if (parse_mode or "").upper() != "HTML":
        return raw
    out: list[str] = []
    open_tags: list[str] = []
    at = 0
    while at < len(raw):
        if raw[at] == "<":
            tag = _TAG.match(raw, at)
            offset = len(raw[:at].encode())
            if tag is None:
                raise ValueError(
                    f"Bad Request: can't parse entities: Unsupported start tag at byte offset "
                    f"{offset}"
                )
            closing, name = tag.group(1), tag.group(2).lower()
            if name not in _TAGS:
                raise ValueError(
                    f'Bad Request: can\'t parse entities: Unsupported start tag "{name}" at '
                    f"byte offset {offset}"
                )
            if closing:
                if not open_tags or open_tags[-1] != name:
                    expected = f'expected "</{open_tags[-1]}>", ' if open_tags else ""
                    raise ValueError(
                        "Bad Request: can't parse entities: Unmatched end tag at byte offset "
                        f'{offset}, {expected}found "</{name}>"'
                    )
                open_tags.pop()
            else:
                open_tags.append(name)
            at = tag.end()
        elif raw[at] == "&" and (entity := _ENTITY.match(raw, at)):
            out.append(html.unescape(entity.group(0)))
            at = entity.end()
        else:
            out.append(raw[at])
            at += 1
    if open_tags:
        raise ValueError(
            "Bad Request: can't parse entities: Can't find end tag corresponding to start tag "
            f'"{open_tags[-1]}"'
        )
    return "".join(out)


def text_refusal(raw: str, parse_mode: str | None) -> str | None:
    """Why Telegram refuses ``raw`` as a message's text, or None."""
    try:
        shown = shown_text(raw, parse_mode)
    except ValueError as exc:
        return str(exc)
    if not shown.strip():
        return EMPTY
    if len(shown) > MAX_TEXT:
        return TOO_LONG
    return None


def caption_refusal(raw: str, parse_mode: str | None) -> str | None:
    """Why Telegram refuses ``raw`` as a photo's caption, or None (a caption may be empty)."""
    try:
        shown = shown_text(raw, parse_mode)
    except ValueError as exc:
        return str(exc)
    return CAPTION_TOO_LONG if len(shown) > MAX_CAPTION else None


def markup_refusal(markup: Any) -> str | None:
    """Why Telegram refuses an inline keyboard, or None."""
    if not isinstance(markup, dict):
        return None
    buttons = [b for row in markup.get("inline_keyboard") or [] for b in row]
    if len(buttons) > MAX_BUTTONS:
        return MARKUP_TOO_LONG
    for button in buttons:
        data = button.get("callback_data")
        if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA:
            return BUTTON_DATA
    return None


def popup_refusal(text: str | None) -> str | None:
    return POPUP_TOO_LONG if text and len(text) > MAX_POPUP else None


def decoded(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw
