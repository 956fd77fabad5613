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


def test_versions_5_to_12_differ_from_4_only_in_their_dictionaries():
    """Version 4 to 11 files still read; the same (non-compact) header and sections packed as
    version 4 to 12 differ only in the version byte, the deflated header and the checksum; each
    dictionary begins with the one before (version 11 reuses version 10's)."""
    for version in (4, 5, 6, 7, 8, 9, 10, 11, 12):
        box = container.unpack(container.pack(HEADER, SECTIONS, version=version))
        assert (box.version, box.header, box.sections) == (version, HEADER, SECTIONS)
    assert container.HEADER_DICTIONARY_V5.startswith(container.HEADER_DICTIONARY_V4)
    assert container.HEADER_DICTIONARY_V6.startswith(container.HEADER_DICTIONARY_V5)
    assert container.HEADER_DICTIONARY_V7.startswith(container.HEADER_DICTIONARY_V6)
    assert container.HEADER_DICTIONARY_V8.startswith(container.HEADER_DICTIONARY_V7)
    assert container.HEADER_DICTIONARY_V9.startswith(container.HEADER_DICTIONARY_V8)
    assert container.HEADER_DICTIONARY_V10.startswith(container.HEADER_DICTIONARY_V9)
    assert container.HEADER_DICTIONARY_V12.startswith(container.HEADER_DICTIONARY_V10)
    assert container._dictionary(11) == container._dictionary(10) == container.HEADER_DICTIONARY_V10
    assert container._dictionary(9) == container.HEADER_DICTIONARY_V9
    assert container._dictionary(8) == container.HEADER_DICTIONARY_V8
    assert container._dictionary(7) == container.HEADER_DICTIONARY_V7
    assert container._dictionary(6) == container.HEADER_DICTIONARY_V6
    assert container._dictionary(4) == container.HEADER_DICTIONARY_V4
    assert container._dictionary(5) == container.HEADER_DICTIONARY_V5
    assert container._dictionary(container.VERSION) == container.HEADER_DICTIONARY_V12


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


# -- versions 11 and 12: the compact binary header of a plain image file ---------------------------
def _compact_header_of(model: str = "rgb-1x", **fields) -> dict:
    """A plain image header of ``model``'s latest weights in the current version's table."""
    weights, coder = {name: (w, c) for name, w, c in container._COMPACT_MODELS_V12}[model]
    return {"modality": "image", "model": model, "weights": weights, "coder": coder,
            "width": 481, "height": 321, "mode": "RGB", **fields}


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


COMPACT_CASES = [
    _compact_header_of(quality=30, mean=[1405, 1641, 4080]),
    _compact_header_of(quality=1, mean=[0, 0, 0], mode="L", grey=True),
    _compact_header_of(quality=100, mean=[4080, 4080, 4080], width=1, height=300000),
    _compact_header_of("rgb-16x", width=127, height=128),
    _compact_header_of("rgb-16x", mode="LA", grey=True, width=16384, height=16383),
]


@pytest.mark.parametrize("header", COMPACT_CASES)
def test_a_plain_image_file_gets_the_compact_header_and_reads_as_its_json_form(header):
    sections = {"latents": b"\x05" * 40}
    data, json_form = container.pack(header, sections), container.pack(header, sections, version=10)
    assert data[5:6] == container.COMPACT_IMAGE_CODE and json_form[5:6] == b"i"
    stored = struct.unpack_from("<H", data, 6)[0]
    assert stored <= 2 + 3 + 3 + 1 + 5 and len(data) == 8 + stored + 40 + 4
    assert len(data) <= len(json_form) - 10  # 20-40 deflated JSON bytes become 5-14
    box, old = container.unpack(data), container.unpack(json_form)
    assert box.header == old.header == header and box.sections == old.sections == sections
    assert box.version == container.VERSION == 12


def test_version_12_adds_one_triple_to_version_11s_table_and_both_read():
    """Version 12's table is version 11's with session 26's rgb-1x weights after it: a version-11
    file's index names the same triple in version 12, and the new weights are compact only from
    version 12 on (a version-11 file of them is written with the JSON header)."""
    assert container._COMPACT_MODELS_V12[: len(container._COMPACT_MODELS_V11)] == container._COMPACT_MODELS_V11
    new = container._COMPACT_MODELS_V12[-1]
    assert new not in container._COMPACT_MODELS_V11
    old_header = {**_compact_header_of(quality=40), "weights": container._COMPACT_MODELS_V11[0][1]}
    for version in (11, 12):
        data = container.pack(old_header, {"latents": b"xy"}, version=version)
        assert data[5:6] == container.COMPACT_IMAGE_CODE and container.unpack(data).header == old_header
    new_header = _compact_header_of(quality=40)
    assert new_header["weights"] == new[1]
    assert container.pack(new_header, {"latents": b"xy"}, version=11)[5:6] == b"i"
    data = container.pack(new_header, {"latents": b"xy"})
    assert data[5:6] == container.COMPACT_IMAGE_CODE and data[8] == len(container._COMPACT_MODELS_V11)
    assert container.unpack(data).header == new_header
    as_version_11 = _with_crc(data[:4] + bytes([11]) + data[5:-4])  # its index is beyond version 11's table
    with pytest.raises(container.FormatError, match="model index"):
        container.unpack(as_version_11)


@pytest.mark.parametrize("change", [
    {"weights": "0123456789abcdef"},                   # weights the table does not hold
    {"coder": "constriction.queue.RangeEncoder/u32/p24/context-v4"},
    {"mode": "CMYK"}, {"grey": False}, {"quality": 0}, {"quality": 101}, {"quality": True},
    {"mean": [1, 2]}, {"mean": [1, 2, 4081]}, {"width": 0}, {"height": 2 ** 31}, {"width": 3.0},
    {"strip_rows": 16},                                # any key beyond the compact ones
    {"modality": "raster"},
])
def test_anything_the_compact_header_cannot_say_is_written_as_json(change):
    header = {**_compact_header_of(quality=50, mean=[1, 2, 3]), **change}
    data = container.pack(header, {"latents": b"abc"})
    assert data[5:6] != container.COMPACT_IMAGE_CODE
    assert container.unpack(data).header == header


def test_an_image_with_more_sections_than_its_latents_is_written_as_json():
    header = _compact_header_of(quality=50)
    for sections in ({"latents": b"ab", "icc": b"profile"}, {"latents": b"ab", "strips": b"\x01"}, {"alpha": b"x"}):
        data = container.pack(header, sections)
        assert data[5:6] == b"i" and container.unpack(data).sections == sections


def test_every_truncation_and_flipped_byte_of_a_compact_file_is_a_clean_error():
    data = container.pack(COMPACT_CASES[0], {"latents": b"\x01\x02\x03" * 4})
    for n in range(len(data)):
        with pytest.raises(container.FormatError):
            container.unpack(data[:n])
    with pytest.raises(container.FormatError, match="truncated or corrupted"):
        container.unpack(data[:-5] + data[-4:])
    damaged = bytearray(data)
    damaged[9] ^= 0x40  # an unknown flag, but the checksum is what names the damage
    with pytest.raises(container.FormatError, match="checksum mismatch"):
        container.unpack(bytes(damaged))
    for i in range(len(data)):
        for bit in (0x01, 0x20, 0x80):
            bad = bytearray(data)
            bad[i] ^= bit
            with pytest.raises(container.FormatError):
                container.unpack(bytes(bad))


@pytest.mark.parametrize("stored, message", [
    (b"\x00\x08\x01", "too short"),
    (bytes([len(container._COMPACT_MODELS_V12), 0, 1, 1]), "model index"),
    (b"\x00\x20\x01\x01", "flags"),                       # an unknown flag bit
    (b"\x00\x00\x00\x01", "size"),                        # width 0
    (b"\x00\x00\x81\x00\x01", "size"),                   # width 1 in two bytes (not the shortest form)
    (b"\x00\x00\xff\xff\xff\xff\x7f\x01", "size"),    # beyond 2^31 - 1
    (b"\x00\x00\x01\x81", "size"),                        # height cut short
    (b"\x00\x08\x01\x01", "quality"),                     # has-quality, no byte
    (b"\x00\x08\x01\x01\x00", "quality"),                # quality 0
    (b"\x00\x08\x01\x01\x65", "quality"),                # quality 101
    (b"\x00\x10\x01\x01\x00\x00\x00\x00", "too short"),  # a mean of 4 bytes
    (b"\x00\x10\x01\x01\xf1\x0f\x00\x00\x00", "mean"),  # 4081
    (b"\x00\x10\x01\x01\x00\x00\x00\x00\x10", "mean"),  # a top bit set
    (b"\x00\x00\x01\x01\x00", "length"),                 # a byte left over
])
def test_malformed_compact_headers_are_clean_errors(stored, message):
    data = _with_crc(struct.pack("<4sBcH", container.MAGIC, 12, b"I", len(stored)) + stored + b"abc")
    with pytest.raises(container.FormatError, match=message):
        container.unpack(data)


def test_the_compact_code_means_nothing_before_version_11():
    stored = container._compact_header(_compact_header_of(quality=50), {"latents": b""})
    data = _with_crc(struct.pack("<4sBcH", container.MAGIC, 10, b"I", len(stored)) + stored + b"abc")
    with pytest.raises(container.FormatError, match="corrupt header"):
        container.unpack(data)


def test_the_compact_table_knows_the_shipped_image_models():
    """A plain photo of every shipped image model gets the compact header: a refit that forgets
    to add its (model, weights, coder) to the table (in a new format version) fails here, as a
    refit that forgets the dictionary fails the test above."""
    from walloc_cli import api
    from walloc_cli.model import load_model

    for name in ("rgb-1x", "rgb-16x"):
        model = load_model(name)
        triple = (name, model.config.short_hash, api._coder(model))
        assert triple in container._COMPACT_MODELS_V12
