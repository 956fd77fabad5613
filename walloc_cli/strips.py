"""Horizontal strips of the latent grid: how ``rgb-1x`` codes a huge image in bounded memory.

A context-coded image used to be coded whole: the encoder held every latent of
the image (192 per 8×8 block, int32 and float32: 24 bytes per pixel, plus int64
temporaries), so a 96 MP photo took 5.3 GB (issue #11).  Since format version 2
the latent grid is cut into strips of ``strip_rows`` latent rows (the last one
shorter), and each strip is context-coded on its own — activity contexts,
checkerboard neighbours, the DC channels' Haar levels or pyramid, and the table-set
choice all restart at a strip's top and bottom edge, as at the image's edges.
The encoder then holds one strip's latents at a time, and the decoder decodes a
strip when the inverse transform first needs its rows.

The *latents* do not change: the wavelet transform still runs over the whole
(periodized) image, window by window; only their coding is cut.  Strips are
sized by latent positions (:data:`STRIP_POSITIONS`), so a 12 MP photo is 3–4
strips and the ordinary photos of the benchmarks one.

Layout in the file (docs/FORMAT.md): header field ``strip_rows``; section
``latents`` holds the strips' range-coder outputs one after the other, and
section ``strips`` their byte lengths as little-endian uint32.  An image of one
strip has neither (its file is a version 1 file but for the version byte): the
ordinary photo pays nothing for the layout.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Callable

import numpy as np

from .container import FormatError

# Latent positions per strip (each holds 192 latents): 4 MP of image.  The encoder holds a
# strip's float32 and int32 latents (1.5 KB per position: 100 MB here, whatever the image's
# size) besides the transform's window; the table-set choices and the coder's flush cost
# about 60 bytes per strip, and the contexts lost at a strip's edges a little more (measured
# in docs/LIMITS.md: +0.27 % at q 25 on a 4000×3000 photo, three strips).
STRIP_POSITIONS = 1 << 16
# More than the inverse transform's reach (9 latent rows for bior4.4 at 3 levels), so a decoding
# window (never taller than a strip in files of this encoder: api.window_rows) reads at most three strips.
MIN_STRIP_ROWS = 16


def rows_per_strip(latent_width: int) -> int:
    """Latent rows per strip for an image ``latent_width`` positions wide (the encoder's rule;
    a decoder reads the number from the header)."""
    return max(MIN_STRIP_ROWS, -(-STRIP_POSITIONS // max(1, latent_width)))


def bounds(height: int, strip_rows: int) -> list[tuple[int, int]]:
    """[start, stop) latent rows of each strip of a grid ``height`` rows tall."""
    return [(r0, min(height, r0 + strip_rows)) for r0 in range(0, height, strip_rows)]


def pack_sizes(payloads: list[bytes]) -> bytes:
    """The ``strips`` section: each strip's byte length (uint32 little-endian)."""
    return np.array([len(p) for p in payloads], "<u4").tobytes()


def split(latents: bytes, sizes: bytes | None, height: int, strip_rows: int) -> list[bytes]:
    """Each strip's coded bytes, the index checked against the grid and the payload."""
    count = len(bounds(height, strip_rows))
    if sizes is None or len(sizes) != 4 * count:
        raise FormatError("corrupt file (strip index does not match the image height)")
    lengths = np.frombuffer(sizes, "<u4").astype(np.int64)
    if int(lengths.sum()) != len(latents):
        raise FormatError("corrupt file (strip sizes do not match the payload)")
    ends = np.cumsum(lengths).tolist()
    return [latents[e - n : e] for e, n in zip(ends, lengths.tolist())]


class StripLatents:
    """The latents of a strip-coded file, decoded strip by strip as rows are asked for.

    Quacks like the (L, H, W) array :meth:`CodecModel.from_latents` reads — ``shape`` and
    ``[:, lo:hi]`` row slices — and keeps only the few strips the current window needs
    (the periodized inverse transform also reads the last rows when it decodes the first
    ones, and the first rows at the end): memory is a few strips, not the image.
    """

    def __init__(self, payloads: list[bytes], shape: tuple[int, int, int], strip_rows: int,
                 decode: Callable[[bytes, tuple[int, int, int]], np.ndarray], reach: int, window: int,
                 nonzero: np.ndarray | None = None) -> None:
        """``reach``: latent rows a decoding window reads beyond its own on each side;
        ``window``: its own rows.  The strips kept decoded are those one window and its reach
        touch.  ``nonzero``: the channels that may hold a nonzero latent (the strips' zero-channel
        flags; None: unknown), so the decoder skips the others as it does for a whole grid."""
        self.shape = shape
        self.dtype = np.dtype(np.int32)
        self.keep = -(-window // strip_rows) + 2 * -(-reach // strip_rows)
        self._payloads, self._rows, self._decode = payloads, strip_rows, decode
        self._bounds = bounds(shape[1], strip_rows)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._all_channels = shape[0]
        self.nonzero = nonzero
        self._channels: np.ndarray | None = None  # the channels rows give (None: all)

    def select(self, channels: np.ndarray) -> "StripLatents":
        """The same latents, only ``channels`` (indices) in each slice; shares the decoded strips."""
        view = copy.copy(self)
        view._channels = np.asarray(channels)
        view.shape = (len(view._channels), *self.shape[1:])
        return view

    def strip(self, k: int) -> np.ndarray:
        """Latents (L, rows, W) of strip ``k``, decoded on first use and kept while recent."""
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        r0, r1 = self._bounds[k]
        values = self._decode(self._payloads[k], (self._all_channels, r1 - r0, self.shape[2]))
        self._cache[k] = values
        while len(self._cache) > self.keep:
            self._cache.popitem(last=False)
        return values

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        channels, rows = key
        if channels != slice(None) or not isinstance(rows, slice) or rows.step not in (None, 1):
            raise TypeError("StripLatents supports [:, start:stop] only")
        lo, hi, _ = rows.indices(self.shape[1])
        parts = []
        for k in range(lo // self._rows, -(-hi // self._rows)):
            r0, _ = self._bounds[k]
            parts.append(self.strip(k)[:, max(lo, r0) - r0 : hi - r0])
        if self._channels is not None:
            parts = [part[self._channels] for part in parts]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    def full(self) -> np.ndarray:
        """Every latent in one array (for :func:`walloc_cli.api.file_latents`)."""
        return np.concatenate([self._decode(p, (self._all_channels, r1 - r0, self.shape[2]))
                               for p, (r0, r1) in zip(self._payloads, self._bounds)], axis=1)
