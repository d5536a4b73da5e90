"""One page of a long chat listing (sessions, proxies): which items, which page of how many.

A Telegram message holds 4,096 characters and 100 buttons; the fleet holds 10,000 sessions
on 2,500 proxies. Every listing is therefore shown a page at a time, with the same page
buttons (``keyboards.page_row``) and the same callback data (``keyboards.PageCb``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]  # the items on this page
    number: int  # 0-based, within 0 .. count - 1
    count: int  # how many pages (1 for an empty listing)
    total: int  # how many items in the whole listing
    first: int  # the 1-based position of the page's first item in the listing


def page_of(items: Sequence[T], number: int, size: int) -> Page[T]:
    """Page ``number`` of ``items`` (clamped: a page asked for after items went away shows
    the last one that still exists)."""
    count = max(1, math.ceil(len(items) / size))
    number = min(max(number, 0), count - 1)
    start = number * size
    return Page(list(items[start : start + size]), number, count, len(items), start + 1)
