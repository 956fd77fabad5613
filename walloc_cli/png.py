"""PNG output written here, not by Pillow: what ``walloc decode`` spends most of its time on.

Why: Pillow's PNG encoder tries every row filter on every row (adaptive filtering) before
zlib sees the data.  On a decoded 768×512 photo that took 33 ms at zlib level 1 — more than
the whole entropy decoding — while filtering every row with *Sub* (each byte minus the one a
pixel to its left: two numpy passes) and deflating at the same level took 20 ms and gave a
2 % smaller file (673 against 689 KB; measured on this machine, ``bench/speed.py`` has the
batch figures).  Smooth decoded photos are what Sub suits: codec output has little of the
vertical texture the Up and Paeth filters are for.

At level 1 (walloc's default) the deflating is done by ISA-L (the ``isal`` package) where it
is installed: on decoded 768×512 photos its level 2 took 4.4 ms a photo against zlib level 1's
17 ms (15–20 % of the whole decode), for files 1.7 % larger (586 against 577 KB); its levels 0
and 1 were barely faster (4.0 and 4.2 ms) and 24 % and 1.4 % larger than its level 2.  The output is a standard zlib stream either way, and
the pixels never depend on which library wrote them; without ``isal`` (platforms it has no
wheel for) zlib writes level 1 as before.

Only the pixels are written here.  Every other chunk — the ICC profile, EXIF, XMP and
whatever Pillow adds for the options it is given — is taken from the PNG Pillow writes for a
1×1 image of the same mode with the same options (:func:`assemble`), so metadata keeps
exactly Pillow's encoding and its refusals (a too-large block fails there, as before).
"""
from __future__ import annotations

import struct
import zlib
from typing import Sequence

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour type of each 8-bit mode walloc writes, and its bytes per pixel
COLOUR_TYPES = {"L": (0, 1), "LA": (4, 2), "RGB": (2, 3), "RGBA": (6, 4)}
IDAT_BYTES = 1 << 20         # largest IDAT chunk written (any size is valid; readers stream them)
STRIP_BYTES = 1 << 20        # raw bytes filtered and deflated at a time: no whole-image copy
_SUB, _NONE = 1, 0           # filter types (PNG spec §9.2)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def chunks_of(png: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk of a PNG, in order (no CRC check: the PNG is Pillow's own)."""
    if not png.startswith(SIGNATURE):
        raise ValueError("not a PNG")
    out, at = [], len(SIGNATURE)
    while at + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[at : at + 8])
        out.append((kind, png[at + 8 : at + 8 + length]))
        at += 12 + length
    return out


def _filtered_rows(planes: Sequence[np.ndarray], r0: int, r1: int, filtered: bool) -> bytes:
    """Rows ``r0 … r1 − 1`` of the image whose channels are ``planes`` ((H, W, k) uint8 each,
    interleaved in this order), each row led by its filter type byte."""
    parts = [p[r0:r1] for p in planes]
    pixels = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)
    rows = r1 - r0
    raw = np.ascontiguousarray(pixels).reshape(rows, -1)
    bpp = pixels.shape[2]
    out = np.empty((rows, raw.shape[1] + 1), np.uint8)
    out[:, 0] = _SUB if filtered else _NONE
    out[:, 1:] = raw
    if filtered:  # Sub: each byte less the byte one pixel to its left, modulo 256
        np.subtract(raw[:, bpp:], raw[:, :-bpp], out=out[:, 1 + bpp :])
    return out.tobytes()


def _compressor(level: int):
    """A zlib-format compressor for ``level``: ISA-L's level 2 for zlib's fastest level 1 when
    the ``isal`` package is installed (about the same size, 4× faster), else zlib's own."""
    if level == 1:
        try:
            from isal import isal_zlib
        except ImportError:
            pass
        else:
            return isal_zlib.compressobj(2)
    return zlib.compressobj(level)


def assemble(template: bytes, planes: Sequence[np.ndarray], level: int) -> bytes:
    """A PNG of the image whose channels are ``planes`` (each (H, W, k) uint8; 1, 2, 3 or 4
    channels in all, as :data:`COLOUR_TYPES`), with every chunk of ``template`` (Pillow's PNG
    of a 1×1 image of that mode and the same options) but its header and pixel data.
    ``level``: zlib's level (0 stores the rows unfiltered; 1 is ISA-L's fast level where
    installed, :func:`_compressor`)."""
    height, width = planes[0].shape[:2]
    channels = sum(p.shape[2] for p in planes)
    colour_type = {bpp: kind for kind, bpp in COLOUR_TYPES.values()}[channels]
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    compressor = _compressor(level)
    deflated = bytearray()
    step = max(1, STRIP_BYTES // max(1, width * channels))
    for r0 in range(0, height, step):
        deflated += compressor.compress(_filtered_rows(planes, r0, min(height, r0 + step), level > 0))
    deflated += compressor.flush()
    pieces = [SIGNATURE]
    wrote_pixels = False
    for kind, data in chunks_of(template):
        if kind == b"IHDR":
            pieces.append(_chunk(kind, header))
        elif kind == b"IDAT":
            if not wrote_pixels:
                view = memoryview(deflated)
                pieces += [_chunk(b"IDAT", bytes(view[a : a + IDAT_BYTES])) for a in range(0, len(view), IDAT_BYTES)]
                wrote_pixels = True
        else:
            pieces.append(_chunk(kind, data))
    return b"".join(pieces)
