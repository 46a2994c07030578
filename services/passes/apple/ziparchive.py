"""A small ZIP writer for .pkpass bundles (PKWARE APPNOTE 6.3.10, sections 4.3.6 to 4.3.16).

``zipfile`` builds a ZipInfo, encodes headers and computes a CRC-32 for every entry on every
write; a bundle's images are the same for every card of a design, so their records are laid out
once per design (:func:`layout` at offset 0) and copied, and only the per-card files are encoded
per bundle. What it writes is the plainest ZIP: no directory entries, no extra fields, no data
descriptors, no ZIP64 (a pass holds a few MiB at most), ASCII names, and one fixed timestamp so
the same files give the same bytes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

STORED = 0
DEFLATED = 8
VERSION = 20
"""2.0: the version that reads deflate; written as 'made by' (MS-DOS attributes) and 'needed'."""
DOS_TIME = 0
DOS_DATE = (1 << 5) | 1
"""1980-01-01 00:00, the earliest DOS date: the files' times say nothing about a pass."""
MAX_SIZE = 0xFFFFFFFF

_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END = struct.Struct("<IHHHHIIH")
_LOCAL_SIGNATURE = 0x04034B50
_CENTRAL_SIGNATURE = 0x02014B50
_END_SIGNATURE = 0x06054B50


@dataclass(frozen=True, slots=True)
class Entry:
    """One file as it goes into the archive: ``data`` is stored or raw-deflated ``size`` bytes."""

    name: str
    method: int
    crc: int
    size: int
    data: bytes

    @classmethod
    def stored(cls, name: str, content: bytes) -> Entry:
        return cls(name, STORED, zlib.crc32(content), len(content), content)

    @classmethod
    def deflated(cls, name: str, content: bytes) -> Entry:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = compressor.compress(content) + compressor.flush()
        return cls(name, DEFLATED, zlib.crc32(content), len(content), data)


@dataclass(frozen=True, slots=True)
class Records:
    """Entries laid out from some offset: their local records and central directory records."""

    local: bytes
    central: bytes
    count: int


def layout(entries: Iterable[Entry], offset: int = 0) -> Records:
    """The local header and data, and the central directory record, of each entry in turn."""
    local: list[bytes] = []
    central: list[bytes] = []
    count = 0
    for entry in entries:
        if entry.size > MAX_SIZE or len(entry.data) > MAX_SIZE or offset > MAX_SIZE:
            raise ValueError("a .pkpass bundle is far below ZIP64 sizes")
        # ASCII: without the UTF-8 flag (bit 11) readers take names as code page 437.
        name = entry.name.encode("ascii")
        fields = (
            entry.method, DOS_TIME, DOS_DATE, entry.crc, len(entry.data), entry.size, len(name)
        )  # fmt: skip
        header = _LOCAL.pack(_LOCAL_SIGNATURE, VERSION, 0, *fields, 0)
        local += (header, name, entry.data)
        central += (
            _CENTRAL.pack(_CENTRAL_SIGNATURE, VERSION, VERSION, 0, *fields, 0, 0, 0, 0, 0, offset),
            name,
        )
        offset += len(header) + len(name) + len(entry.data)
        count += 1
    return Records(b"".join(local), b"".join(central), count)


EMPTY = Records(b"", b"", 0)


def archive(entries: Iterable[Entry], head: Records = EMPTY) -> bytes:
    """A whole ZIP: ``head`` (laid out at offset 0, e.g. once and reused), then ``entries``."""
    tail = layout(entries, offset=len(head.local))
    count = head.count + tail.count
    directory_size = len(head.central) + len(tail.central)
    directory_offset = len(head.local) + len(tail.local)
    if count > 0xFFFF or directory_offset > MAX_SIZE:
        raise ValueError("a .pkpass bundle is far below ZIP64 sizes")
    end = _END.pack(_END_SIGNATURE, 0, 0, count, count, directory_size, directory_offset, 0)
    return b"".join((head.local, tail.local, head.central, tail.central, end))
