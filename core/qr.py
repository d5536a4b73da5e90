"""QR rendering: a PNG large enough to scan off a phone screen, and a terminal version."""

from __future__ import annotations

import io

import qrcode
from qrcode.constants import ERROR_CORRECT_M


def png(data: str, box_size: int = 10, border: int = 4) -> bytes:
    """PNG bytes; with the defaults a WhatsApp QR is ~ 570 px, easy to scan off a screen."""
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=box_size, border=border)
    code.add_data(data)
    code.make(fit=True)
    image = code.make_image(fill_color="black", back_color="white")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def terminal(data: str) -> str:
    """Half-block text art: two QR rows per terminal line, inverted for dark terminals."""
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=2)
    code.add_data(data)
    code.make(fit=True)
    matrix = code.get_matrix()
    if len(matrix) % 2:
        matrix.append([False] * len(matrix[0]))
    glyphs = {(False, False): "█", (True, False): "▄", (False, True): "▀", (True, True): " "}
    return "\n".join(
        "".join(
            glyphs[(top, bottom)] for top, bottom in zip(matrix[y], matrix[y + 1], strict=True)
        )
        for y in range(0, len(matrix), 2)
    )
