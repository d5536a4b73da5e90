"""The checks a media file passes before anything of it is kept, in a fixed order.

1. Size, per kind, while it streams in (``MediaWriter`` stops at the first byte past the
   limit): 413 ``media_too_large``. A huge upload costs no more than its limit.
2. The kind against the bytes (libmagic on the file's head, never its name or a header):
   415 ``media_type_mismatch``. The types are the ones WhatsApp plays for the kind; a
   document may be any bytes, and its type is reported as found.
3. An image must decode, within ``MEDIA_MAX_IMAGE_PIXELS``: 415 ``media_unreadable``. The
   header's width x height is checked before a pixel is decoded, so a decompression bomb (a
   small file claiming 100,000 x 100,000) never makes Pillow allocate; a truncated or
   corrupt file fails its full decode.

A refused file is discarded (its temporary file removed) by the caller, and nothing is
written to Redis before every check passed.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image

from core.errors import InvalidInput, MediaRefused
from core.media.registry import KINDS

# What WhatsApp takes for each kind, as libmagic names it. GIF is not here: WhatsApp shows
# an image message's GIF as a still or not at all (animations travel as MP4 video). WAV is
# not audio WhatsApp plays. A voice note is Ogg (Opus) only: the one format WhatsApp's
# voice player takes. An audio-only MP4 is told as video/mp4 by libmagic (same container).
ACCEPTED: dict[str, frozenset[str]] = {
    "image": frozenset({"image/jpeg", "image/png", "image/webp"}),
    "audio": frozenset(
        {
            "audio/ogg",
            "audio/mpeg",
            "audio/mp4",
            "audio/x-m4a",
            "audio/aac",
            "audio/x-hx-aac-adts",
            "audio/amr",
            "video/mp4",
        }
    ),
    "voice": frozenset({"audio/ogg"}),
    "video": frozenset({"video/mp4", "video/3gpp"}),
}
# Pillow's own format names for the image types above: a file whose bytes libmagic calls
# PNG but Pillow opens as something else is refused too.
_PILLOW_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
MAX_FILENAME = 255


def check_kind(kind: object) -> str:
    if not isinstance(kind, str) or kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}")
    return kind


def check_filename(value: object) -> str | None:
    """A file's name as the recipient will see it (a document's): text, no path."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_FILENAME:
        raise InvalidInput(f"filename must be a string of at most {MAX_FILENAME} characters")
    if "/" in value or "\\" in value or value in (".", "..") or not value.isprintable():
        raise InvalidInput("filename must be a plain name (no path, no control characters)")
    return value


def check_type(kind: str, mime: str) -> str:
    """``mime`` (libmagic's, of the file's head) if it fits ``kind``; 415 otherwise."""
    accepted = ACCEPTED.get(kind)
    if accepted is not None and mime not in accepted:
        raise MediaRefused(
            "media_type_mismatch",
            f"the file is {mime}, not {kind} ({', '.join(sorted(accepted))})",
        )
    return mime


def check_image(path: Path, max_pixels: int) -> None:
    """Decode the image at ``path`` once, fully: 415 ``media_unreadable`` if it is not a
    whole image of an accepted format within ``max_pixels``. CPU-bound: run it in a thread.
    """
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb guard warns before it refuses: a warning is a refusal here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size  # the header only: nothing decoded yet
                if image.format not in _PILLOW_FORMATS:
                    raise MediaRefused("media_unreadable", "the image's format is not readable")
                if width <= 0 or height <= 0 or width * height > max_pixels:
                    raise MediaRefused(
                        "media_unreadable",
                        f"the image is {width} x {height}: more than {max_pixels} pixels",
                    )
                image.load()  # the full decode: a truncated or corrupt file fails here
    except MediaRefused:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise MediaRefused("media_unreadable", "the image would decode too large") from None
    except Exception as exc:  # Pillow's decoders fail in many ways; each is a refusal
        raise MediaRefused(
            "media_unreadable", f"the image does not decode ({type(exc).__name__})"
        ) from None
