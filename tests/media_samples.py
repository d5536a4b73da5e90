"""Small real files of each kind for the media tests, and the bad ones the checks must refuse.

Images are drawn by Pillow; the audio and video files are real containers' first bytes
(what libmagic reads) followed by filler, which is all the checks look at: the network
never decodes sound or video. ``bomb_png`` is a valid PNG whose header claims a size far
past any pixel limit, with a few bytes of data: what a decompression bomb looks like.
"""

from __future__ import annotations

import base64
import io
import os
import struct
import zlib

from PIL import Image


def image(fmt: str = "PNG", size: tuple[int, int] = (64, 48), noise: bool = False) -> bytes:
    picture = (
        Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
        if noise
        else Image.new("RGB", size, (200, 30, 90))
    )
    out = io.BytesIO()
    picture.save(out, fmt)
    return out.getvalue()


def pdf(filler: int = 2000) -> bytes:
    return b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" + b"%" * filler + b"\n%%EOF\n"


def ogg_opus(filler: int = 4000) -> bytes:
    head = b"OpusHead\x01\x01\x38\x01\x80\xbb\x00\x00\x00\x00\x00"
    page = b"OggS\x00\x02" + b"\x00" * 8 + b"\x01\x00\x00\x00" + b"\x00" * 8 + b"\x01\x13"
    return page + head + os.urandom(filler)


def mp4(filler: int = 4000, brand: bytes = b"isom") -> bytes:
    ftyp = struct.pack(">I", 24) + b"ftyp" + brand + b"\x00\x00\x02\x00" + brand + b"iso2"
    return ftyp + struct.pack(">I", 8 + filler) + b"mdat" + os.urandom(filler)


def wav() -> bytes:
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
    return b"RIFF" + struct.pack("<I", 36 + 800) + b"WAVEfmt " + fmt + b"data" + b"\x00" * 804


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG that says ``width`` x ``height`` (RGB) and carries a few compressed rows."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + 3 * min(width, 1000)) * 4)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", rows)
        + _chunk(b"IEND", b"")
    )


def truncated_jpeg() -> bytes:
    whole = image("JPEG", (400, 300), noise=True)
    return whole[: len(whole) // 2]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
