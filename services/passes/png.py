"""Just enough PNG: check that bytes are a PNG (and its size), and draw the default artwork."""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"


class NotAPNG(ValueError):
    pass


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk; raises :class:`NotAPNG` for anything else."""
    if len(data) < 33 or not data.startswith(SIGNATURE) or data[12:16] != b"IHDR":
        raise NotAPNG("not a PNG image")
    width, height = struct.unpack(">II", data[16:24])
    if not (0 < width <= 4096 and 0 < height <= 4096):
        raise NotAPNG(f"PNG size {width}x{height} is out of range")
    if zlib.crc32(data[12:29]) != struct.unpack(">I", data[29:33])[0]:
        raise NotAPNG("PNG header is corrupt")
    return width, height


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def badge_png(width: int, height: int, rgb: tuple[int, int, int], *, ring: bool = True) -> bytes:
    """An RGBA image: a filled rounded badge in ``rgb`` (a ring of white inside when ``ring``)."""
    radius = min(width, height) / 2
    cx, cy = (width - 1) / 2, (height - 1) / 2
    rows = []
    for y in range(height):
        row = bytearray(b"\x00")  # filter type: none
        for x in range(width):
            # A pill: round ends, flat middle; works for square icons and wide logos alike.
            dx = max(0.0, abs(x - cx) - (width - height) / 2) if width > height else abs(x - cx)
            distance = (dx * dx + (y - cy) ** 2) ** 0.5
            if distance > radius:
                row += b"\x00\x00\x00\x00"
            elif ring and radius * 0.55 < distance < radius * 0.7:
                row += b"\xff\xff\xff\xff"
            else:
                row += bytes(rgb) + b"\xff"
        rows.append(bytes(row))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + _chunk(b"IEND", b"")
    )
