"""The ``.wlc`` container: versioned, self-describing, checksummed (see docs/FORMAT.md).

Layout (all integers little-endian)::

    offset   size  field
    0        4     magic b"WLOC"
    4        1     format version (12; versions 1 to 11 are still read)
    5        1     modality: b"i" image, b"a" audio, b"r" raster, b"-" other; b"I" image
                   whose header is the compact binary one (versions 11 and 12, below)
    6        2     header length H (at most 65535)
    8        H     header: UTF-8 JSON object, raw-DEFLATEd against HEADER_DICTIONARY_V12,
                   or (modality b"I") the compact image header of _COMPACT_MODELS_V12
    8+H      P     payload: the sections listed in header["sections"], in order (P is their sum)
    8+H+P    4     CRC-32 of every byte before it

(Version 11: the same layout, HEADER_DICTIONARY_V10 and _COMPACT_MODELS_V11.  Version 10: the same
layout without b"I".  Versions 4 to 9: the same layout, the header deflated against HEADER_DICTIONARY_V4 / _V5 / _V6 / _V7 / _V8 / _V9.  Version 3: a
4-byte header length, the header deflated against HEADER_DICTIONARY, and an
8-byte payload length P before the payload.  Versions 1 and 2: no modality byte either, and
the header is the plain JSON text.)

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
# Version 3: the header is stored deflated against a fixed dictionary of the keys and values
# walloc writes (a 220-510 byte JSON header becomes 38-58 bytes: a 481×321 photo at 0.2 bpp
# is 3.9 KB, so the plain header was 7 % of it), and a modality byte lets file(1) name the
# content without inflating anything.
# Version 4 (session 9): the payload length, which the header's section list already gives,
# is no longer repeated (8 bytes), the header length takes 2 bytes instead of 4, and the
# dictionary ends with the headers the current models write (HEADER_DICTIONARY_V4), and
# image headers leave out "pad" and "latent_shape" (derived: api._image_layout): a 481×321
# photo's file at q 5 — about 330 bytes of latents — carried 85 bytes of container, now 47.
# Version 5 (session 13): version 4 with the headers of the refitted rgb-1x weights at the end
# of the dictionary.  A header names its weights by a 16-hex-digit hash, which deflates to
# about 16 bytes when the dictionary does not hold it: 5 % of a 481×321 photo's file at q 5.
# Version 6 (session 14): version 5 with the headers of the rgb-1x weights that add the
# decoder's nonlinear refiner (postfilter.Refiner) at the end of the dictionary.
# Version 7 (session 15): version 6 with the headers of the rgb-1x weights whose DC pyramid
# tables also follow the neighbour pairs' disagreement (context coder version 4).
# Version 8 (session 17): version 7 with the headers of the rgb-1x weights whose tables were
# refitted on the encoder's RD rounding (and whose reconstruction offsets may be negative).
# Version 9 (session 22): version 8 with the headers of the rgb-1x weights whose white squares
# also see a diagonal phase (context coder version 5), refitted on the RD rounding.
# Version 10 (session 23): version 9 with the headers of the rgb-1x weights whose decoder
# refiner was retrained on a GPU (same tables, same latents: only the decoder's arrays differ).
# Version 11 (session 25): an image file of a model in _COMPACT_MODELS_V11 whose only section is
# its latents (no strips, alpha or metadata) carries a compact binary header instead of the
# deflated JSON: 5–14 bytes instead of 20–36, 1 % of a 481×321 photo's file at q 30 and 4–8 %
# of a 224×224 thumbnail's at q 5–35 (Bjøntegaard over q 1–100 against version 10: −0.58 % on 24
# validation photos, −2.05 % on 24 Imagenette photos; docs/HISTORY.md).  Every other file is
# written as in version 10, with the same dictionary.
# Version 12 (session 26): version 11 with session 26's rgb-1x weights (the decoder's wide filter)
# at the end of the compact header's table and of the dictionary.  The weights hash decides how a
# file decodes, so a file of the new weights needs both to stay as small as version 11's.
VERSION = 12
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
MODALITY_CODES = {"image": b"i", "audio": b"a", "raster": b"r"}
COMPACT_IMAGE_CODE = b"I"
# Fixed forever for version 3: a decoder inflates against exactly these bytes.  Samples of the
# headers walloc writes, rarest first (DEFLATE reaches back 32 KB, nearer matches cost less).
HEADER_DICTIONARY = b"".join((
    b'"alpha","exif","icc","xmp","tags",'
    b'"maxval":255,"wavelengths":[400.0,"y4m_tags":"A0:0 C444p10 F25:1 Ip","mean_shift":[',
    b'{"bit_depth":16,"block_of":[0,1,1,1,2,2,2,1,2,0,0,2,2],"byteorder":"<",'
    b'"coder":"constriction.queue.RangeEncoder/u32/p24/multiband-v1","components":4,"container":"npy",'
    b'"dtype":"uint16","groups":[[6,6,5,0,56587,2,2,0,0],[1,1,0,0,339520,4,4,0,0],[2,2,1,0,169760,3,5,0,0]],'
    b'"height":101,"layout":"hwb","modality":"raster","model":"nband-1x","quality":20,'
    b'"sections":[["latents.0",133],["spectral.0",32],["latents.1",1234],["spectral.1",40],["latents.2",567],'
    b'["spectral.2",52]],"weights":"e5cfbb378e0aa303","width":100}',
    b'{"bands":4,"bit_depth":16,"byteorder":"<","coder":"constriction.queue.RangeEncoder/u32/p24/multiband-v1",'
    b'"components":4,"container":"tif","dtype":"int16","height":120,"layout":"hw","levels":4,"modality":"raster",'
    b'"model":"nband-1x","quality":75,"rotations":0,"sections":[["latents",9876],["spectral",48],["strips",12]],'
    b'"step":12345,"strip_rows":128,"weights":"e5cfbb378e0aa303","width":120}',
    b'{"channels":1,"coder":"constriction.queue.RangeEncoder/u32/p24","coding":"mid-side","frames":22050,'
    b'"latent_shape":[108,87],"modality":"audio","model":"stereo-ms","pad":222,"sample_rate":48000,'
    b'"source_subtype":"FLOAT","tune":"psnr"}',
    b'{"channels":2,"coder":"constriction.queue.RangeEncoder/u32/p24/audio-ladder-v1","coding":"left-right",'
    b'"frames":441000,"latent_shape":[2,256,1723],"lead":4096,"modality":"audio","model":"stereo-1x",'
    b'"pad":4574,"quality":50,"sample_rate":44100,"sections":[["latents",23456],["index",4]],'
    b'"source_subtype":"PCM_16","tune":"perceptual","weights":"59852dbaabd9d7ff"}',
    b'{"coder":"constriction.queue.RangeEncoder/u32/p24","height":224,"latent_shape":[12,28,28],'
    b'"modality":"image","mode":"RGB","model":"rgb-16x","pad":[0,0],"sections":[["latents",3456]],'
    b'"weights":"6cdd9a34d5a3a6e2","width":224}',
    b'{"coder":"constriction.queue.RangeEncoder/u32/p24/context-v1","grey":true,"height":512,'
    b'"latent_shape":[192,64,96],"mean":[1894,1986,1789],"modality":"image","mode":"L","model":"rgb-1x",'
    b'"pad":[0,0],"quality":25,"sections":[["latents",12345]],"weights":"68b8bcdf04e9e1f5","width":768}',
    b'{"coder":"constriction.queue.RangeEncoder/u32/p24/context-v1","height":321,"latent_shape":[192,41,61],'
    b'"mean":[1894,1986,1789],"modality":"image","mode":"RGB","model":"rgb-1x","pad":[7,7],"quality":50,'
    b'"sections":[["latents",12345],["strips",12]],"strip_rows":16,"weights":"68b8bcdf04e9e1f5","width":481}',
))
# Fixed forever for version 4: version 3's dictionary, then the headers of the models of
# session 9 (their coders and weights hashes; images without "pad" and "latent_shape", which
# format 4 derives), the most common last (nearest, cheapest).
HEADER_DICTIONARY_V4 = HEADER_DICTIONARY + b"".join((
    b'{"coder":"constriction.queue.RangeEncoder/u32/p24","height":224,'
    b'"modality":"image","mode":"RGB","model":"rgb-16x","sections":[["latents",3456]],'
    b'"weights":"6cdd9a34d5a3a6e2","width":224}',
    b'{"channels":2,"coder":"constriction.queue.RangeEncoder/u32/p24/audio-ladder-v1","coding":"mid-side",'
    b'"frames":441000,"latent_shape":[2,256,1723],"lead":4096,"modality":"audio","model":"stereo-1x",'
    b'"pad":4574,"quality":50,"sample_rate":44100,"sections":[["latents",23456],["index",4]],'
    b'"source_subtype":"PCM_16","tune":"perceptual","weights":"59852dbaabd9d7ff"}',
    b'{"coder":"constriction.queue.RangeEncoder/u32/p24/context-v3","grey":true,"height":512,'
    b'"mean":[1894,1986,1789],"modality":"image","mode":"L","model":"rgb-1x",'
    b'"quality":25,"sections":[["latents",12345]],"weights":"66c179fa41ead972","width":768}',
    b'{"coder":"constriction.queue.RangeEncoder/u32/p24/context-v3","height":321,'
    b'"mean":[1894,1986,1789],"modality":"image","mode":"RGB","model":"rgb-1x","quality":50,'
    b'"sections":[["latents",12345]],"weights":"66c179fa41ead972","width":481}',
))
# Fixed forever for version 5: version 4's dictionary, then the rgb-1x headers of session 13's
# weights (the DC's finer step), grey then colour.
HEADER_DICTIONARY_V5 = HEADER_DICTIONARY_V4 + b"".join((
    b'{"coder":"constriction.queue.RangeEncoder/u32/p24/context-v3","grey":true,"height":512,'
    b'"mean":[1894,1986,1789],"modality":"image","mode":"L","model":"rgb-1x",'
    b'"quality":25,"sections":[["latents",12345]],"weights":"4bbf021f65945226","width":768}',
    b'{"coder":"constriction.queue.RangeEncoder/u32/p24/context-v3","height":321,'
    b'"mean":[1894,1986,1789],"modality":"image","mode":"RGB","model":"rgb-1x","quality":50,'
    b'"sections":[["latents",12345]],"weights":"4bbf021f65945226","width":481}',
))
# Fixed forever for version 6: version 5's dictionary, then the rgb-1x headers of session 14's
# weights (the decoder's refiner), grey then colour.
HEADER_DICTIONARY_V6 = HEADER_DICTIONARY_V5 + b"".join((
    b'{"coder":"constriction.queue.RangeEncoder/u32/p24/context-v3","grey":true,"height":512,'
    b'"mean":[1894,1986,1789],"modality":"image","mode":"L","model":"rgb-1x",'
    b'"quality":25,"sections":[["latents",12345]],"weights":"900fc330744aeb4b","width":768}',
    b'{"coder":"constriction.queue.RangeEncoder/u32/p24/context-v3","height":321,'
    b'"mean":[1894,1986,1789],"modality":"image","mode":"RGB","model":"rgb-1x","quality":50,'
    b'"sections":[["latents",12345]],"weights":"900fc330744aeb4b","width":481}',
))
# Fixed forever for version 7: version 6's dictionary, then the rgb-1x headers of session 15's
# weights (context coder version 4), grey then colour.
HEADER_DICTIONARY_V7 = HEADER_DICTIONARY_V6 + b"".join((
    b'{"coder":"constriction.queue.RangeEncoder/u32/p24/context-v4","grey":true,"height":512,'
    b'"mean":[1894,1986,1789],"modality":"image","mode":"L","model":"rgb-1x",'
    b'"quality":25,"sections":[["latents",12345]],"weights":"37cfa662d9b06382","width":768}',
    b'{"coder":"constriction.queue.RangeEncoder/u32/p24/context-v4","height":321,'
    b'"mean":[1894,1986,1789],"modality":"image","mode":"RGB","model":"rgb-1x","quality":50,'
    b'"sections":[["latents",12345]],"weights":"37cfa662d9b06382","width":481}',
))
# Fixed forever for version 8: version 7's dictionary, then the rgb-1x headers of session 17's
# weights (tables refitted on the encoder's RD rounding, finer steps for the first luma AC
# channels), grey then colour.
HEADER_DICTIONARY_V8 = HEADER_DICTIONARY_V7 + b"".join((
    b'{"coder":"constriction.queue.RangeEncoder/u32/p24/context-v4","grey":true,"height":512,'
    b'"mean":[1894,1986,1789],"modality":"image","mode":"L","model":"rgb-1x",'
    b'"quality":25,"sections":[["latents",12345]],"weights":"fb8588d7708dac72","width":768}',
    b'{"coder":"constriction.queue.RangeEncoder/u32/p24/context-v4","height":321,'
    b'"mean":[1894,1986,1789],"modality":"image","mode":"RGB","model":"rgb-1x","quality":50,'
    b'"sections":[["latents",12345]],"weights":"fb8588d7708dac72","width":481}',
))
# Fixed forever for version 9: version 8's dictionary, then the rgb-1x headers of session 22's
# weights (context coder version 5: the diagonal phase), grey then colour.
HEADER_DICTIONARY_V9 = HEADER_DICTIONARY_V8 + b"".join((
    b'{"coder":"constriction.queue.RangeEncoder/u32/p24/context-v5","grey":true,"height":512,'
    b'"mean":[1894,1986,1789],"modality":"image","mode":"L","model":"rgb-1x",'
    b'"quality":25,"sections":[["latents",12345]],"weights":"6f3442b1bf78b61e","width":768}',
    b'{"coder":"constriction.queue.RangeEncoder/u32/p24/context-v5","height":321,'
    b'"mean":[1894,1986,1789],"modality":"image","mode":"RGB","model":"rgb-1x","quality":50,'
    b'"sections":[["latents",12345]],"weights":"6f3442b1bf78b61e","width":481}',
))
# Fixed forever for version 10: version 9's dictionary, then the rgb-1x headers of session 23's
# weights (the session-22 tables with a GPU-trained refiner), grey then colour.
HEADER_DICTIONARY_V10 = HEADER_DICTIONARY_V9 + b"".join((
    b'{"coder":"constriction.queue.RangeEncoder/u32/p24/context-v5","grey":true,"height":512,'
    b'"mean":[1894,1986,1789],"modality":"image","mode":"L","model":"rgb-1x",'
    b'"quality":25,"sections":[["latents",12345]],"weights":"96374cf1ffc1d286","width":768}',
    b'{"coder":"constriction.queue.RangeEncoder/u32/p24/context-v5","height":321,'
    b'"mean":[1894,1986,1789],"modality":"image","mode":"RGB","model":"rgb-1x","quality":50,'
    b'"sections":[["latents",12345]],"weights":"96374cf1ffc1d286","width":481}',
))
# Fixed forever for version 12: version 10's dictionary, then the rgb-1x headers of session 26's
# weights (the decoder's wide filter added), grey then colour: what a file the compact header
# cannot say (strips, alpha, metadata) deflates against.
HEADER_DICTIONARY_V12 = HEADER_DICTIONARY_V10 + b"".join((
    b'{"coder":"constriction.queue.RangeEncoder/u32/p24/context-v5","grey":true,"height":512,'
    b'"mean":[1894,1986,1789],"modality":"image","mode":"L","model":"rgb-1x",'
    b'"quality":25,"sections":[["latents",12345]],"weights":"118f56e506ae6a8a","width":768}',
    b'{"coder":"constriction.queue.RangeEncoder/u32/p24/context-v5","height":321,'
    b'"mean":[1894,1986,1789],"modality":"image","mode":"RGB","model":"rgb-1x","quality":50,'
    b'"sections":[["latents",12345]],"weights":"118f56e506ae6a8a","width":481}',
))
# Fixed forever for version 11: the (model, weights, coder) a compact image header's first byte
# names.  A refit adds its triple at the end in a new format version (as the dictionaries do).
_COMPACT_MODELS_V11 = (
    ("rgb-1x", "96374cf1ffc1d286", "constriction.queue.RangeEncoder/u32/p24/context-v5"),
    ("rgb-16x", "6cdd9a34d5a3a6e2", "constriction.queue.RangeEncoder/u32/p24"),
)
# Fixed forever for version 12: version 11's table, then session 26's rgb-1x weights (the
# session-23 weights with the decoder's wide filter: same tables, same latents).
_COMPACT_MODELS_V12 = _COMPACT_MODELS_V11 + (
    ("rgb-1x", "118f56e506ae6a8a", "constriction.queue.RangeEncoder/u32/p24/context-v5"),
)
_COMPACT_MODES = ("RGB", "L", "RGBA", "LA")  # the flags byte's two low bits
_GREY, _HAS_QUALITY, _HAS_MEAN = 4, 8, 16    # the flags byte's other bits (the top three are 0)
_COMPACT_KEYS = {"modality", "model", "weights", "coder", "width", "height", "mode", "quality", "mean", "grey"}
_MEAN_LIMIT = 4080                            # meancolour: 255 levels in 1/16 level
_MAX_SIDE = (1 << 31) - 1
_PREFIX_V4 = struct.Struct("<4sBcH")  # versions 4 to 12
_PREFIX_V3 = struct.Struct("<4sBcI")
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
    payload = b"".join(sections.values())
    compact = _compact_header(header, sections, version) if version >= 11 else None
    if compact is not None:
        body = _PREFIX_V4.pack(MAGIC, version, COMPACT_IMAGE_CODE, len(compact)) + compact + payload
        return body + _CRC.pack(zlib.crc32(body))
    full = {**header, "sections": [[name, len(data)] for name, data in sections.items()]}
    header_bytes = json.dumps(full, sort_keys=True, separators=(",", ":")).encode()
    if len(header_bytes) > MAX_HEADER:
        raise ValueError("header too large")
    if version >= 3:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _dictionary(version))
        header_bytes = packer.compress(header_bytes) + packer.flush()
    if version >= 4:
        if len(header_bytes) > 0xFFFF:
            raise ValueError("header too large")
        body = _PREFIX_V4.pack(MAGIC, version, modality_code(header.get("modality")), len(header_bytes)) + header_bytes
    else:
        prefix = (_PREFIX_V3.pack(MAGIC, version, modality_code(header.get("modality")), len(header_bytes))
                  if version == 3 else _PREFIX.pack(MAGIC, version, len(header_bytes)))
        body = prefix + header_bytes + _PAYLOAD_LEN.pack(len(payload))
    body += payload
    return body + _CRC.pack(zlib.crc32(body))


def _compact_models(version: int) -> tuple[tuple[str, str, str], ...]:
    """The (model, weights, coder) table of a version's compact headers (11 or later)."""
    return _COMPACT_MODELS_V12 if version >= 12 else _COMPACT_MODELS_V11


def _compact_header(header: dict[str, Any], sections: dict[str, bytes], version: int = VERSION) -> bytes | None:
    """The version-11 (or later) binary header of an image file, or None when the file needs JSON.

    Layout: the model's index in the version's table (_COMPACT_MODELS_V11, _V12); a flags byte
    (mode in bits 0–1, then grey, has quality, has mean); width and height as unsigned LEB128
    (shortest form);
    the quality (1 byte); the three 12-bit means packed little-endian in 5 bytes."""
    if set(header) - _COMPACT_KEYS or list(sections) != ["latents"] or header.get("modality") != "image":
        return None
    triple = (header.get("model"), header.get("weights"), header.get("coder"))
    models = _compact_models(version)
    if triple not in models or header.get("mode") not in _COMPACT_MODES:
        return None
    width, height, quality, mean = header.get("width"), header.get("height"), header.get("quality"), header.get("mean")
    if not all(_plain_int(v) and 1 <= v <= _MAX_SIDE for v in (width, height)):
        return None
    flags = _COMPACT_MODES.index(header["mode"])
    if "grey" in header:
        if header["grey"] is not True:
            return None
        flags |= _GREY
    tail = b""
    if quality is not None:
        if not (_plain_int(quality) and 1 <= quality <= 100):
            return None
        flags |= _HAS_QUALITY
        tail += bytes([quality])
    if mean is not None:
        if not (isinstance(mean, list) and len(mean) == 3
                and all(_plain_int(v) and 0 <= v <= _MEAN_LIMIT for v in mean)):
            return None
        flags |= _HAS_MEAN
        tail += (mean[0] | mean[1] << 12 | mean[2] << 24).to_bytes(5, "little")
    return bytes([models.index(triple), flags]) + _leb128(width) + _leb128(height) + tail


def _parse_compact_header(stored: bytes, version: int = VERSION) -> dict[str, Any]:
    """The header dict a compact header stands for (what its JSON form would give); a
    FormatError for any byte that _compact_header would not have written."""
    if len(stored) < 4:
        raise FormatError("corrupt header (compact header too short)")
    index, flags = stored[0], stored[1]
    models = _compact_models(version)
    if index >= len(models):
        raise FormatError(f"corrupt header (unknown compact model index {index})")
    if flags >> 5:
        raise FormatError("corrupt header (unknown compact header flags)")
    model, weights, coder = models[index]
    pos = 2
    width, pos = _read_leb128(stored, pos)
    height, pos = _read_leb128(stored, pos)
    header: dict[str, Any] = {"coder": coder, "height": height, "modality": "image",
                              "mode": _COMPACT_MODES[flags & 3], "model": model, "weights": weights, "width": width}
    if flags & _GREY:
        header["grey"] = True
    if flags & _HAS_QUALITY:
        if pos >= len(stored) or not 1 <= stored[pos] <= 100:
            raise FormatError("corrupt header (compact quality)")
        header["quality"] = stored[pos]
        pos += 1
    if flags & _HAS_MEAN:
        if pos + 5 > len(stored):
            raise FormatError("corrupt header (compact header too short)")
        packed = int.from_bytes(stored[pos : pos + 5], "little")
        mean = [packed & 0xFFF, packed >> 12 & 0xFFF, packed >> 24 & 0xFFF]
        if packed >> 36 or max(mean) > _MEAN_LIMIT:
            raise FormatError("corrupt header (compact mean)")
        header["mean"] = mean
        pos += 5
    if pos != len(stored):
        raise FormatError("corrupt header (compact header length)")
    return header


def _plain_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _leb128(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_leb128(stored: bytes, pos: int) -> tuple[int, int]:
    """An unsigned LEB128 size in 1 … _MAX_SIDE, shortest form only (one header, one encoding)."""
    value = shift = 0
    while True:
        if pos >= len(stored) or shift > 28:
            raise FormatError("corrupt header (compact size)")
        byte = stored[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    if not 1 <= value <= _MAX_SIDE or (byte == 0 and shift > 7):
        raise FormatError("corrupt header (compact size)")
    return value, pos


def _dictionary(version: int) -> bytes:
    if version >= 12:
        return HEADER_DICTIONARY_V12
    if version >= 10:
        return HEADER_DICTIONARY_V10
    if version == 9:
        return HEADER_DICTIONARY_V9
    if version == 8:
        return HEADER_DICTIONARY_V8
    if version == 7:
        return HEADER_DICTIONARY_V7
    if version == 6:
        return HEADER_DICTIONARY_V6
    return HEADER_DICTIONARY_V5 if version == 5 else HEADER_DICTIONARY_V4 if version == 4 else HEADER_DICTIONARY


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
    if version >= 4:
        return _unpack_v4(data, version)
    pos = _PREFIX.size
    code = b""
    if version >= 3:
        if len(data) < _PREFIX_V3.size:
            raise FormatError("truncated file (shorter than the fixed header)")
        _, _, code, header_len = _PREFIX_V3.unpack_from(data, 0)
        pos = _PREFIX_V3.size
    if header_len > MAX_HEADER:
        raise FormatError(f"corrupt header length {header_len}")
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
    _check_crc(data, pos + payload_len, "checksum mismatch (file is corrupted)")
    header = _parse_header(_inflate(header_bytes, version) if version >= 3 else header_bytes)
    if version >= 3 and code != modality_code(header.get("modality")):
        raise FormatError("corrupt header (modality byte does not match the header)")
    sections = _split_sections(header.pop("sections", None), data[pos : pos + payload_len])
    return Container(header, sections, version)


def _parse_header(text: bytes) -> dict[str, Any]:
    if _nesting(text) > MAX_HEADER_DEPTH:  # before json.loads: it recurses once per level
        raise FormatError(f"corrupt header (JSON nested deeper than {MAX_HEADER_DEPTH} levels)")
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise FormatError("corrupt header (not JSON)") from None
    if not isinstance(header, dict):
        raise FormatError("corrupt header (not an object)")
    return header


def _unpack_v4(data: bytes, version: int) -> Container:
    """Version 4: the payload's length is the sum of the header's sections, so the header is
    read (bounded: at most 65535 bytes deflated, MAX_HEADER inflated) before the checksum
    can be located; a short or long file is named as such before the checksum is tested."""
    if len(data) < _PREFIX_V4.size + _CRC.size:
        raise FormatError("truncated file (shorter than the fixed header)")
    _, _, code, header_len = _PREFIX_V4.unpack_from(data, 0)
    pos = _PREFIX_V4.size
    if len(data) < pos + header_len + _CRC.size:
        raise FormatError("truncated file (header incomplete)")
    stored = bytes(data[pos : pos + header_len])
    pos += header_len
    end = len(data) - _CRC.size
    if code == COMPACT_IMAGE_CODE and version >= 11:
        # the rest of the file is its latents, so the checksum can come first: a damaged file is
        # named as such, not by whichever header byte the damage made impossible (and with no
        # length to compare, a cut file is told from a damaged one no better than this)
        _check_crc(data, end, "checksum mismatch (file is truncated or corrupted)")
        return Container(_parse_compact_header(stored, version), {"latents": bytes(data[pos:end])}, version)
    header = _parse_header(_inflate(stored, version))
    if code != modality_code(header.get("modality")):
        raise FormatError("corrupt header (modality byte does not match the header)")
    listing = header.pop("sections", None)
    expected_total = pos + sum(length for _, length in _section_lengths(listing)) + _CRC.size
    if len(data) < expected_total:
        raise FormatError(f"truncated file ({len(data)} bytes, header announces {expected_total})")
    if len(data) > expected_total:
        raise FormatError(f"{len(data) - expected_total} unexpected bytes after the end of the file")
    _check_crc(data, end, "checksum mismatch (file is corrupted)")
    return Container(header, _split_sections(listing, data[pos:end]), version)


def _check_crc(data: bytes, end: int, message: str) -> None:
    """The CRC-32 stored at ``end`` against every byte before it (FormatError ``message``)."""
    (crc,) = _CRC.unpack_from(data, end)
    if zlib.crc32(memoryview(data)[:end]) != crc:
        raise FormatError(message)


def modality_code(modality: Any) -> bytes:
    """The version-3 prefix byte naming the modality (b"-" for anything else)."""
    return MODALITY_CODES.get(modality, b"-") if isinstance(modality, str) else b"-"


def _inflate(stored: bytes, version: int) -> bytes:
    """A version-3 or 4 header: one complete raw DEFLATE stream, nothing after it, at most MAX_HEADER
    bytes once inflated (a stream that would inflate further is refused before it does)."""
    unpacker = zlib.decompressobj(-15, zdict=_dictionary(version))
    try:
        text = unpacker.decompress(stored, MAX_HEADER + 1)
    except zlib.error:
        raise FormatError("corrupt header (not a deflate stream)") from None
    if len(text) > MAX_HEADER:
        raise FormatError("corrupt header (inflates beyond 65536 bytes)")
    if not unpacker.eof or unpacker.unused_data or unpacker.unconsumed_tail:
        raise FormatError("corrupt header (deflate stream incomplete or followed by data)")
    return text


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


def _section_lengths(listing: Any) -> list[tuple[str, int]]:
    """The header's (name, length) list, checked."""
    if not isinstance(listing, list):
        raise FormatError("corrupt header (no section list)")
    out = []
    for entry in listing:
        if (not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[0], str)
                or not _plain_int(entry[1]) or entry[1] < 0):
            raise FormatError("corrupt header (bad section entry)")
        out.append((entry[0], entry[1]))
    if len({name for name, _ in out}) != len(out):
        raise FormatError("corrupt header (sections do not match the payload)")
    return out


def _split_sections(listing: Any, payload: bytes) -> dict[str, bytes]:
    sections: dict[str, bytes] = {}
    pos = 0
    for name, length in _section_lengths(listing):
        if pos + length > len(payload):
            raise FormatError("corrupt header (sections do not match the payload)")
        sections[name] = bytes(payload[pos : pos + length])
        pos += length
    if pos != len(payload):
        raise FormatError("corrupt header (sections do not match the payload)")
    return sections
