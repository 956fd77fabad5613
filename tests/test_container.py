"""The .wlc container: round trip, every truncation, flipped bytes, bad headers."""
from __future__ import annotations

import struct
import zlib

import pytest

from walloc_cli import container

HEADER = {"modality": "image", "model": "m", "weights": "0123456789abcdef", "width": 3, "height": 2}
SECTIONS = {"latents": b"\x01\x02\x03\x04" * 5, "icc": b"profile"}


def test_round_trip():
    data = container.pack(HEADER, SECTIONS)
    box = container.unpack(data)
    assert box.header == HEADER
    assert box.sections == SECTIONS
    assert box.version == container.VERSION
    assert data[:4] == container.MAGIC


def test_every_truncation_is_a_clean_error():
    data = container.pack(HEADER, SECTIONS)
    for n in range(len(data)):
        with pytest.raises(container.FormatError):
            container.unpack(data[:n])


def test_every_flipped_byte_is_a_clean_error():
    data = container.pack(HEADER, SECTIONS)
    for i in range(len(data)):
        for bit in (0x01, 0x80):
            bad = bytearray(data)
            bad[i] ^= bit
            with pytest.raises(container.FormatError):
                container.unpack(bytes(bad))


def test_trailing_bytes_are_refused():
    with pytest.raises(container.FormatError, match="unexpected bytes"):
        container.unpack(container.pack(HEADER, SECTIONS) + b"x")


def _reseal(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def test_wrong_magic_and_version():
    data = container.pack(HEADER, SECTIONS)
    with pytest.raises(container.FormatError, match="not a walloc file"):
        container.unpack(b"\x89PNG" + data[4:])
    future = _reseal(data[:4] + bytes([container.VERSION + 1]) + data[5:-4])
    with pytest.raises(container.FormatError, match="unsupported format version"):
        container.unpack(future)


def test_checksummed_but_inconsistent_header():
    """A header whose CRC is right but whose sections disagree with the payload."""
    header = b'{"sections":[["latents",999]]}'
    body = struct.pack("<4sBI", container.MAGIC, container.VERSION, len(header)) + header + struct.pack("<Q", 3) + b"abc"
    with pytest.raises(container.FormatError, match="sections"):
        container.unpack(_reseal(body))
    header = b'[1,2]'
    body = struct.pack("<4sBI", container.MAGIC, container.VERSION, len(header)) + header + struct.pack("<Q", 0)
    with pytest.raises(container.FormatError):
        container.unpack(_reseal(body))


def test_huge_declared_lengths_do_not_allocate():
    body = struct.pack("<4sBI", container.MAGIC, container.VERSION, 2**32 - 1)
    with pytest.raises(container.FormatError):
        container.unpack(body + b"\0" * 20)
    header = b'{"sections":[]}'
    body = struct.pack("<4sBI", container.MAGIC, container.VERSION, len(header)) + header + struct.pack("<Q", 2**63)
    with pytest.raises(container.FormatError, match="truncated"):
        container.unpack(body + b"\0" * 4)
