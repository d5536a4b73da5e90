"""The fleet as one picture (``/stats`` and the daily digest), drawn with Pillow.

Four panels, top to bottom: sessions by status now, connected sessions over the last 24
hours, every proxy's load against its cap (by proxy id, never its URL), sessions per node.

Sized for a phone: Telegram shows a photo about 320-400 px wide there, so the picture is
``WIDTH`` px wide and every font is large enough that its letters stay at least
``MIN_TEXT_PX`` high once scaled down to ``PHONE_WIDTH`` (``tests/test_console_parts.py``
checks).

Hebrew: Pillow without libraqm draws characters in logical order, which reads backwards for
right-to-left text, so labels are put in visual order here (``visual``) and the layout is
mirrored (labels on the right, bars growing leftwards). The time axis keeps running left to
right, as charts do in Hebrew too. The font must have Hebrew letters: Debian's
``fonts-dejavu-core``; without it the picture still renders (Pillow's own font) and the log
says why Hebrew shows as boxes.

Everything here is blocking CPU work: callers run ``render`` in a thread.
"""

from __future__ import annotations

import functools
import io
import logging
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger("wafleet.bot.charts")

WIDTH = 640
PHONE_WIDTH = 320  # the narrowest a phone shows a photo in a chat
MIN_TEXT_PX = 11  # the smallest letters still read on that phone
TITLE_SIZE = 30
BODY_SIZE = 26
SMALL_SIZE = 24
FONT_SIZES = (TITLE_SIZE, BODY_SIZE, SMALL_SIZE)
MAX_ROWS = 12  # proxies or nodes drawn; the rest are summed up in one line

MARGIN = 24
ROW = 40
LABEL_W = 230
COUNT_W = 96
PLOT_H = 190

FONT_PATHS = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/TTF/DejaVuSans.ttf"),
)

BACKGROUND = (255, 255, 255)
INK = (33, 37, 41)
MUTED = (108, 117, 125)
TRACK = (233, 236, 239)
STATUS_COLOURS = {
    "connected": (46, 160, 67),
    "qr_ready": (56, 132, 244),
    "pending": (245, 166, 35),
    "disconnected": (230, 110, 40),
    "failed": (215, 58, 73),
    "stopped": (134, 142, 150),  # on purpose, by the operator: grey, not an alarm
}
OTHER = (134, 142, 150)
PROXY_ACTIVE = (56, 132, 244)
PROXY_FULL = (245, 166, 35)
PROXY_BAD = (215, 58, 73)
NODE_UP = (111, 66, 193)
LINE = (46, 160, 67)
AREA = (200, 236, 207)


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    colour: tuple[int, int, int]
    note: str = ""  # drawn instead of the bare value (e.g. "3/4")


@dataclass(frozen=True)
class Picture:
    """What to draw, already in the reader's words (``bot.texts.stats_picture`` builds it)."""

    rtl: bool
    status_title: str
    statuses: list[Bar]
    history_title: str
    history: list[tuple[int, int]]  # (ms, connected), oldest first
    now_ms: int
    span_ms: int
    axis: tuple[str, str, str]  # under the time axis: start, middle, now
    proxies_title: str
    proxies: list[Bar]
    proxy_cap: int
    nodes_title: str
    nodes: list[Bar]
    empty: str  # "none" in the reader's words


@functools.cache
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in FONT_PATHS:
        if path.is_file():
            # BASIC layout everywhere: with libraqm Pillow would reorder Hebrew itself, and
            # the text ``visual`` already ordered would read backwards again.
            return ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.BASIC)
    log.warning(
        "no DejaVu font found (Debian: apt-get install fonts-dejavu-core): the charts use "
        "Pillow's own font, which has no Hebrew letters"
    )
    return ImageFont.load_default(size)


def _is_rtl(char: str) -> bool:
    return unicodedata.bidirectional(char) in ("R", "AL")


def _is_ltr(char: str) -> bool:
    return unicodedata.bidirectional(char) in ("L", "EN", "AN")


_MIRRORED = str.maketrans("()[]{}<>", ")(][}{><")


def visual(text: str) -> str:
    """A right-to-left paragraph in the order Pillow's basic layout must draw it.

    A small part of Unicode's bidi algorithm, enough for labels: runs of Hebrew read right
    to left, runs of Latin letters and digits (``worker_1``, ``3/4``, ``12 h``) keep their
    order, neutral characters between two runs of one direction join them and otherwise
    take the paragraph's direction (right to left), paired brackets are mirrored. Text
    with no right-to-left letter is returned as it is.
    """
    if not any(_is_rtl(c) for c in text):
        return text
    # Each character's resolved direction: True = left to right.
    strong: list[bool | None] = [
        True if _is_ltr(c) else False if _is_rtl(c) else None for c in text
    ]
    resolved: list[bool] = []
    for i, here in enumerate(strong):
        if here is not None:
            resolved.append(here)
            continue
        before = next((d for d in reversed(strong[:i]) if d is not None), False)
        after = next((d for d in strong[i + 1 :] if d is not None), False)
        resolved.append(before and after)  # between two LTR runs: LTR; otherwise RTL
    runs: list[tuple[bool, str]] = []
    for char, ltr in zip(text, resolved, strict=True):
        if runs and runs[-1][0] == ltr:
            runs[-1] = (ltr, runs[-1][1] + char)
        else:
            runs.append((ltr, char))
    return "".join(run if ltr else run[::-1].translate(_MIRRORED) for ltr, run in reversed(runs))


class _Canvas:
    """Draws in coordinates measured from the reading start: mirrored when right to left."""

    def __init__(self, height: int, rtl: bool) -> None:
        self.image = Image.new("RGB", (WIDTH, height), BACKGROUND)
        self.draw = ImageDraw.Draw(self.image)
        self.rtl = rtl

    def x(self, x: float) -> float:
        return WIDTH - x if self.rtl else x

    def text(
        self, x: float, y: float, text: str, size: int, fill: tuple[int, int, int] = INK
    ) -> None:
        """``text`` starting at ``x`` (from the reading start), its top at ``y``."""
        shown = visual(text) if self.rtl else text
        anchor = "ra" if self.rtl else "la"
        self.draw.text((self.x(x), y), shown, font=font(size), fill=fill, anchor=anchor)

    def text_end(
        self, x: float, y: float, text: str, size: int, fill: tuple[int, int, int] = INK
    ) -> None:
        """``text`` ending at ``x`` (from the reading start)."""
        shown = visual(text) if self.rtl else text
        anchor = "la" if self.rtl else "ra"
        self.draw.text((self.x(x), y), shown, font=font(size), fill=fill, anchor=anchor)

    def bar(self, x0: float, y0: float, x1: float, y1: float, fill: tuple[int, int, int]) -> None:
        left, right = sorted((self.x(x0), self.x(x1)))
        if right - left >= 1:
            self.draw.rounded_rectangle((left, y0, right, y1), radius=4, fill=fill)


def _fit(text: str, size: int, width: float) -> str:
    """``text`` cut short with an ellipsis so it fits ``width`` px (a long node name)."""
    if font(size).getlength(text) <= width:
        return text
    while text and font(size).getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _height(picture: Picture) -> int:
    def bars(n: int) -> int:
        return TITLE_SIZE + 16 + max(1, min(n, MAX_ROWS) + (n > MAX_ROWS)) * ROW + 20

    total = MARGIN + bars(len(picture.statuses))
    total += TITLE_SIZE + 16 + PLOT_H + SMALL_SIZE + 30
    total += bars(len(picture.proxies))
    if picture.nodes:
        total += bars(len(picture.nodes))
    return total + MARGIN


def _bars(canvas: _Canvas, y: int, title: str, bars: list[Bar], scale_to: int, empty: str) -> int:
    canvas.text(MARGIN, y, title, TITLE_SIZE)
    y += TITLE_SIZE + 16
    if not bars:
        canvas.text(MARGIN, y, empty, BODY_SIZE, MUTED)
        return y + ROW + 20
    track0, track1 = MARGIN + LABEL_W, WIDTH - MARGIN - COUNT_W
    for bar in bars[:MAX_ROWS]:
        canvas.text(MARGIN, y + 4, _fit(bar.label, BODY_SIZE, LABEL_W - 12), BODY_SIZE)
        canvas.bar(track0, y + 6, track1, y + ROW - 8, TRACK)
        share = min(1.0, bar.value / scale_to) if scale_to > 0 else 0.0
        canvas.bar(track0, y + 6, track0 + (track1 - track0) * share, y + ROW - 8, bar.colour)
        canvas.text_end(WIDTH - MARGIN, y + 4, bar.note or str(bar.value), BODY_SIZE)
        y += ROW
    if len(bars) > MAX_ROWS:
        rest = bars[MAX_ROWS:]
        canvas.text(
            MARGIN, y + 4, f"+{len(rest)} · Σ {sum(b.value for b in rest)}", BODY_SIZE, MUTED
        )
        y += ROW
    return y + 20


def _history(canvas: _Canvas, y: int, picture: Picture) -> int:
    canvas.text(MARGIN, y, picture.history_title, TITLE_SIZE)
    y += TITLE_SIZE + 16
    # The time axis runs left to right in both languages; only the words are mirrored.
    left, right, top, bottom = MARGIN + 50, WIDTH - MARGIN, y, y + PLOT_H
    draw = canvas.draw
    draw.rectangle((left, top, right, bottom), fill=(248, 249, 250))
    peak = max([c for _, c in picture.history] + [1])
    for fraction in (0.5, 1.0):
        gy = bottom - (bottom - top) * fraction
        draw.line((left, gy, right, gy), fill=TRACK, width=2)
    draw.text((left - 8, top), str(peak), font=font(SMALL_SIZE), fill=MUTED, anchor="ra")
    draw.text((left - 8, bottom), "0", font=font(SMALL_SIZE), fill=MUTED, anchor="rd")
    start = picture.now_ms - picture.span_ms

    def point(at_ms: int, connected: int) -> tuple[float, float]:
        share = min(1.0, max(0.0, (at_ms - start) / picture.span_ms))
        return left + (right - left) * share, bottom - (bottom - top) * connected / peak

    points = [point(at, c) for at, c in picture.history]
    if points:
        # The last sample holds until now: the fleet has not been counted since.
        points.append((right, points[-1][1]))
        draw.polygon([(points[0][0], bottom), *points, (right, bottom)], fill=AREA)
        draw.line(points, fill=LINE, width=4, joint="curve")
        for px, py in points[:-1][-1:]:
            draw.ellipse((px - 5, py - 5, px + 5, py + 5), fill=LINE)
    else:
        draw.text(
            ((left + right) / 2, (top + bottom) / 2),
            visual(picture.empty) if canvas.rtl else picture.empty,
            font=font(BODY_SIZE),
            fill=MUTED,
            anchor="mm",
        )
    draw.line((left, bottom, right, bottom), fill=MUTED, width=2)
    first, middle, last = (visual(a) if canvas.rtl else a for a in picture.axis)
    label_y = bottom + 6
    draw.text((left, label_y), first, font=font(SMALL_SIZE), fill=MUTED, anchor="la")
    draw.text(
        ((left + right) / 2, label_y), middle, font=font(SMALL_SIZE), fill=MUTED, anchor="ma"
    )
    draw.text((right, label_y), last, font=font(SMALL_SIZE), fill=MUTED, anchor="ra")
    return bottom + SMALL_SIZE + 30


# One picture at a time: the cached FreeType faces are shared, and FreeType faces are not
# safe to use from two threads at once (two operators asking /stats together).
_RENDERING = threading.Lock()


def render(picture: Picture) -> bytes:
    """The picture as a PNG (blocking: run it in a thread)."""
    with _RENDERING:
        return _render(picture)


def _render(picture: Picture) -> bytes:
    canvas = _Canvas(_height(picture), picture.rtl)
    y = MARGIN
    most = max([b.value for b in picture.statuses] + [1])
    y = _bars(canvas, y, picture.status_title, picture.statuses, most, picture.empty)
    y = _history(canvas, y, picture)
    y = _bars(canvas, y, picture.proxies_title, picture.proxies, picture.proxy_cap, picture.empty)
    if picture.nodes:
        most = max([b.value for b in picture.nodes] + [1])
        _bars(canvas, y, picture.nodes_title, picture.nodes, most, picture.empty)
    out = io.BytesIO()
    canvas.image.save(out, format="PNG")
    return out.getvalue()
