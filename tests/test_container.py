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
    body = struct.pack("<4sBI", container.MAGIC, 2, len(header)) + header + struct.pack("<Q", 3) + b"abc"
    with pytest.raises(container.FormatError, match="sections"):
        container.unpack(_reseal(body))
    header = b'[1,2]'
    body = struct.pack("<4sBI", container.MAGIC, 2, len(header)) + header + struct.pack("<Q", 0)
    with pytest.raises(container.FormatError):
        container.unpack(_reseal(body))


def test_huge_declared_lengths_do_not_allocate():
    body = struct.pack("<4sBI", container.MAGIC, 2, 2**32 - 1)
    with pytest.raises(container.FormatError):
        container.unpack(body + b"\0" * 20)
    header = b'{"sections":[]}'
    body = struct.pack("<4sBI", container.MAGIC, 2, len(header)) + header + struct.pack("<Q", 2**63)
    with pytest.raises(container.FormatError, match="truncated"):
        container.unpack(body + b"\0" * 4)


# -- version 3: the deflated header and the modality byte -------------------------------------------
def _v3(stored_header: bytes, modality: bytes = b"i", payload: bytes = b"") -> bytes:
    body = struct.pack("<4sBcI", container.MAGIC, 3, modality, len(stored_header)) + stored_header
    body += struct.pack("<Q", len(payload)) + payload
    return body + struct.pack("<I", zlib.crc32(body))


def _deflate(text: bytes, dictionary: bytes = container.HEADER_DICTIONARY) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, dictionary)
    return packer.compress(text) + packer.flush()


def test_version_3_header_is_deflated_small_and_names_the_modality():
    data = container.pack(HEADER, SECTIONS, version=3)
    plain = container.pack(HEADER, SECTIONS, version=2)
    assert data[4] == 3 and data[5:6] == b"i"
    assert len(data) < len(plain) - 40  # the dictionary knows the keys and common values
    assert container.unpack(plain).header == container.unpack(data).header == HEADER
    assert container.pack({**HEADER, "modality": "thing"}, SECTIONS, version=3)[5:6] == b"-"


def test_version_3_bad_headers_are_clean_errors():
    text = b'{"modality":"image","sections":[]}'
    assert container.unpack(_v3(_deflate(text))).header == {"modality": "image"}
    cases = {
        b"not deflate at all": "deflate",
        _deflate(text)[:-2]: "deflate",                         # stream cut short
        _deflate(text) + b"\x00": "deflate",                    # data after the stream
        _deflate(text, b"another dictionary"): "corrupt header",  # garbage out: not JSON, or a failed inflate
        _deflate(b" " * 70000): "inflates beyond",              # a small stream that would inflate past the limit
    }
    for stored, message in cases.items():
        with pytest.raises(container.FormatError, match=message):
            container.unpack(_v3(stored))
    with pytest.raises(container.FormatError, match="modality byte"):
        container.unpack(_v3(_deflate(text), b"a"))
    with pytest.raises(container.FormatError, match="truncated"):
        container.unpack(_v3(_deflate(text))[:7])


# -- version 4: no payload length, a 2-byte header length, the dictionary of the current models ---
def _v4(stored_header: bytes, modality: bytes = b"i", payload: bytes = b"") -> bytes:
    body = struct.pack("<4sBcH", container.MAGIC, 4, modality, len(stored_header)) + stored_header + payload
    return body + struct.pack("<I", zlib.crc32(body))


def test_the_current_version_is_smaller_than_version_3_and_reads_the_same():
    data, old = container.pack(HEADER, SECTIONS), container.pack(HEADER, SECTIONS, version=3)
    assert container.VERSION >= 4 and data[4] == container.VERSION and data[5:6] == b"i"
    new_header, old_header = struct.unpack_from("<H", data, 6)[0], struct.unpack_from("<I", old, 6)[0]
    # 8 bytes of payload length and 2 of header length (each version's header deflates against
    # its own dictionary, a byte or so apart)
    assert len(data) - new_header == len(old) - old_header - 10
    new_box, old_box = container.unpack(data), container.unpack(old)
    assert new_box.header == old_box.header == HEADER and new_box.sections == old_box.sections == SECTIONS
    assert (new_box.version, old_box.version) == (container.VERSION, 3)


def test_versions_5_to_10_differ_from_4_only_in_their_dictionaries():
    """Version 4 to 9 files still read; the same header and sections packed as version 4 to 10
    differ only in the version byte, the deflated header and the checksum; each dictionary
    begins with the one before."""
    for version in (4, 5, 6, 7, 8, 9, 10):
        box = container.unpack(container.pack(HEADER, SECTIONS, version=version))
        assert (box.version, box.header, box.sections) == (version, HEADER, SECTIONS)
    assert container.HEADER_DICTIONARY_V5.startswith(container.HEADER_DICTIONARY_V4)
    assert container.HEADER_DICTIONARY_V6.startswith(container.HEADER_DICTIONARY_V5)
    assert container.HEADER_DICTIONARY_V7.startswith(container.HEADER_DICTIONARY_V6)
    assert container.HEADER_DICTIONARY_V8.startswith(container.HEADER_DICTIONARY_V7)
    assert container.HEADER_DICTIONARY_V9.startswith(container.HEADER_DICTIONARY_V8)
    assert container.HEADER_DICTIONARY_V10.startswith(container.HEADER_DICTIONARY_V9)
    assert container._dictionary(9) == container.HEADER_DICTIONARY_V9
    assert container._dictionary(8) == container.HEADER_DICTIONARY_V8
    assert container._dictionary(7) == container.HEADER_DICTIONARY_V7
    assert container._dictionary(6) == container.HEADER_DICTIONARY_V6
    assert container._dictionary(4) == container.HEADER_DICTIONARY_V4
    assert container._dictionary(5) == container.HEADER_DICTIONARY_V5
    assert container._dictionary(container.VERSION) == container.HEADER_DICTIONARY_V10


def test_the_current_dictionary_knows_the_current_photo_header():
    """A typical rgb-1x header of the shipped weights deflates to a few dozen bytes — with the
    dictionary of the current version, which holds the weights' hash: version 4's, written
    before the refit, spends about 16 bytes more on it."""
    import json

    from walloc_cli import api
    from walloc_cli.model import load_model

    model = load_model("rgb-1x")
    weights = model.config.short_hash
    header = {"coder": api._coder(model), "height": 481,
              "latent_shape": [192, 61, 41], "mean": [1405, 1641, 1295], "modality": "image", "mode": "RGB",
              "model": "rgb-1x", "pad": [7, 7], "quality": 5, "weights": weights, "width": 321,
              "sections": [["latents", 416]]}
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    current = container._dictionary(container.VERSION)
    assert len(_deflate(text, current)) <= 45
    assert len(_deflate(text, container.HEADER_DICTIONARY_V4)) >= len(_deflate(text, current)) + 8
    assert len(_deflate(text, container.HEADER_DICTIONARY)) >= 55


def test_version_4_bad_headers_and_lengths_are_clean_errors():
    text = b'{"modality":"image","sections":[["latents",3]]}'
    good = _v4(_deflate(text, container.HEADER_DICTIONARY_V4), payload=b"abc")
    assert container.unpack(good).sections == {"latents": b"abc"}
    with pytest.raises(container.FormatError, match="truncated"):
        container.unpack(_v4(_deflate(text, container.HEADER_DICTIONARY_V4), payload=b"ab"))
    with pytest.raises(container.FormatError, match="unexpected bytes"):
        container.unpack(_v4(_deflate(text, container.HEADER_DICTIONARY_V4), payload=b"abcd"))
    with pytest.raises(container.FormatError, match="checksum"):
        container.unpack(good[:-5] + b"x" + good[-4:])
    with pytest.raises(container.FormatError, match="modality byte"):
        container.unpack(_v4(_deflate(text, container.HEADER_DICTIONARY_V4), b"a", b"abc"))
    cases = {
        b"not deflate at all": "deflate",
        _deflate(text, container.HEADER_DICTIONARY): "corrupt header",  # version 3's dictionary
        _deflate(b'{"modality":"image","sections":7}', container.HEADER_DICTIONARY_V4): "section list",
        _deflate(b'{"modality":"image","sections":[["a",-1]]}', container.HEADER_DICTIONARY_V4): "section entry",
        _deflate(b" " * 70000, container.HEADER_DICTIONARY_V4): "inflates beyond",
    }
    for stored, message in cases.items():
        with pytest.raises(container.FormatError, match=message):
            container.unpack(_v4(stored, payload=b"abc"))


def test_older_versions_are_still_written_on_request_and_read():
    for version in (1, 2):
        data = container.pack(HEADER, SECTIONS, version=version)
        assert data[9:10] == b"{"  # the plain JSON header right after the length
        box = container.unpack(data)
        assert box.version == version and box.header == HEADER and box.sections == SECTIONS
