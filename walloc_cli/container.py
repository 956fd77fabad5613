"""The ``.wlc`` container: versioned, self-describing, checksummed (see docs/FORMAT.md).

Layout (all integers little-endian)::

    offset   size  field
    0        4     magic b"WLOC"
    4        1     format version (2; version 1 files are still read)
    5        4     header length H (at most 65536)
    9        H     header: UTF-8 JSON object
    9+H      8     payload length P
    17+H     P     payload: the sections listed in header["sections"], in order
    17+H+P   4     CRC-32 of every byte before it

Like EnCodec's ``.ecdc`` the metadata is JSON — easy to extend and to print
with ``walloc info`` — while the bulk data is raw bytes.  Everything is known
before the first byte is written, so a file can be streamed to stdout in one
pass.  Parsing never trusts a length before checking it against the bytes
actually present.
"""
from __future__ import annotations

from .errors import WallocError

import json
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any

MAGIC = b"WLOC"
# Version 2 (issue #11): rgb-1x codes its latents in horizontal strips (header
# "strip_rows", section "strips"), so memory is bounded.  Everything else reads the same,
# and version 1 files (whole-image context coding) still decode: see docs/FORMAT.md.
VERSION = 2
READABLE_VERSIONS = (1, 2)
MAX_HEADER = 1 << 16
MAX_HEADER_DEPTH = 32  # JSON nesting; walloc writes 3 levels ("sections": [[name, length], ...])
_PREFIX = struct.Struct("<4sBI")
_PAYLOAD_LEN = struct.Struct("<Q")
_CRC = struct.Struct("<I")


class FormatError(WallocError):
    """The bytes are not a valid ``.wlc`` file (message says why)."""


@dataclass(frozen=True)
class Container:
    header: dict[str, Any]
    sections: dict[str, bytes]
    version: int = VERSION


def pack(header: dict[str, Any], sections: dict[str, bytes], version: int = VERSION) -> bytes:
    """Serialise a header (JSON-able, without "sections") and named byte sections.

    ``version`` other than the current one only to rewrite an older file's sections
    (adding tags) without changing how its latents must be read."""
    if version not in READABLE_VERSIONS:
        raise ValueError(f"cannot write format version {version}")
    if "sections" in header:
        raise ValueError("header key 'sections' is reserved")
    full = {**header, "sections": [[name, len(data)] for name, data in sections.items()]}
    header_bytes = json.dumps(full, sort_keys=True, separators=(",", ":")).encode()
    if len(header_bytes) > MAX_HEADER:
        raise ValueError("header too large")
    payload = b"".join(sections.values())
    body = _PREFIX.pack(MAGIC, version, len(header_bytes)) + header_bytes + _PAYLOAD_LEN.pack(len(payload)) + payload
    return body + _CRC.pack(zlib.crc32(body))


def unpack(data: bytes) -> Container:
    """Parse and verify a whole file; raises :class:`FormatError` with a one-line reason."""
    if len(data) < _PREFIX.size:
        if MAGIC.startswith(bytes(data[:4])) and data:
            raise FormatError("truncated file (shorter than the fixed header)")
        raise FormatError("not a walloc file (too short)")
    magic, version, header_len = _PREFIX.unpack_from(data, 0)
    if magic != MAGIC:
        raise FormatError("not a walloc file (wrong magic bytes)")
    if version not in READABLE_VERSIONS:
        raise FormatError(f"unsupported format version {version} (this walloc reads versions "
                          f"{', '.join(map(str, READABLE_VERSIONS))})")
    if header_len > MAX_HEADER:
        raise FormatError(f"corrupt header length {header_len}")
    pos = _PREFIX.size
    if len(data) < pos + header_len + _PAYLOAD_LEN.size + _CRC.size:
        raise FormatError("truncated file (header incomplete)")
    header_bytes = bytes(data[pos : pos + header_len])
    pos += header_len
    (payload_len,) = _PAYLOAD_LEN.unpack_from(data, pos)
    pos += _PAYLOAD_LEN.size
    expected_total = pos + payload_len + _CRC.size
    if len(data) < expected_total:
        raise FormatError(f"truncated file ({len(data)} bytes, header announces {expected_total})")
    if len(data) > expected_total:
        raise FormatError(f"{len(data) - expected_total} unexpected bytes after the end of the file")
    (crc,) = _CRC.unpack_from(data, pos + payload_len)
    if zlib.crc32(memoryview(data)[: pos + payload_len]) != crc:
        raise FormatError("checksum mismatch (file is corrupted)")
    if _nesting(header_bytes) > MAX_HEADER_DEPTH:  # before json.loads: it recurses once per level
        raise FormatError(f"corrupt header (JSON nested deeper than {MAX_HEADER_DEPTH} levels)")
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise FormatError("corrupt header (not JSON)") from None
    if not isinstance(header, dict):
        raise FormatError("corrupt header (not an object)")
    sections = _split_sections(header.pop("sections", None), data[pos : pos + payload_len])
    return Container(header, sections, version)


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _nesting(text: bytes) -> int:
    """Deepest nesting of JSON arrays and objects in ``text`` (strings skipped)."""
    depth = deepest = 0
    for ch in _JSON_STRING.sub(b'""', text).translate(None, b' \t\r\n'):
        if ch in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in b"]}":
            depth -= 1
    return deepest


def _split_sections(listing: Any, payload: bytes) -> dict[str, bytes]:
    if not isinstance(listing, list):
        raise FormatError("corrupt header (no section list)")
    sections: dict[str, bytes] = {}
    pos = 0
    for entry in listing:
        if (not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[0], str)
                or not isinstance(entry[1], int) or isinstance(entry[1], bool) or entry[1] < 0):
            raise FormatError("corrupt header (bad section entry)")
        name, length = entry
        if name in sections or pos + length > len(payload):
            raise FormatError("corrupt header (sections do not match the payload)")
        sections[name] = bytes(payload[pos : pos + length])
        pos += length
    if pos != len(payload):
        raise FormatError("corrupt header (sections do not match the payload)")
    return sections
