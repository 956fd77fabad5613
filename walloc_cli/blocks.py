"""Bands that are exact block copies of a coarser grid: find them, thin them, grow them back.

Multispectral stacks are often resampled to one grid by nearest neighbour: eo-learn's and
Sentinel Hub's Sentinel-2 arrays repeat each 20 m sample over 2×2 pixels of the 10 m grid and
each 60 m sample over 6×6 (the first block row or column cut short where the grids do not
align).  Such a band holds a quarter or a thirty-sixth of the information its size suggests,
yet a transform coder pays for the block edges as if they were detail.  This module finds,
per band and per axis, the largest factor f and offset o for which the band changes only at
positions ``o + m·f`` — then the band is exactly its samples at the block starts, repeated —
so the codec can code the coarse grid and rebuild the band bit for bit.  It knows nothing of
files or models; :mod:`walloc_cli.raster_codec` decides what to do with the groups.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

MAX_FACTOR = 16   # the largest block side looked for (Sentinel-2's 60 m bands on the 10 m grid: 6)


class Blocks(NamedTuple):
    """Block size and phase of a band, per axis: along rows, a new block starts at row 0 and at
    every ``offset_y + m·factor_y`` (m ≥ 0) — likewise along columns.  (1, 1, 0, 0): no blocks."""

    factor_y: int
    factor_x: int
    offset_y: int
    offset_x: int

    @property
    def trivial(self) -> bool:
        return self.factor_y == 1 and self.factor_x == 1


NONE = Blocks(1, 1, 0, 0)


def _axis(changes: np.ndarray, length: int) -> tuple[int, int]:
    """(factor, offset) of one axis from the positions where a value differs from the one
    before it: the largest f ≤ MAX_FACTOR (and under the length) for which all of them are
    congruent modulo f.  A band constant along the axis takes the largest factor allowed."""
    for factor in range(min(MAX_FACTOR, length), 1, -1):
        if changes.size == 0:
            return factor, 0
        offset = int(changes[0]) % factor
        if np.all(changes % factor == offset):
            return factor, offset
    return 1, 0


def detect(band: np.ndarray) -> Blocks:
    """The blocks of one (H, W) band (see :class:`Blocks`)."""
    rows = np.flatnonzero((band[1:] != band[:-1]).any(axis=1)) + 1
    columns = np.flatnonzero((band[:, 1:] != band[:, :-1]).any(axis=0)) + 1
    fy, oy = _axis(rows, band.shape[0])
    fx, ox = _axis(columns, band.shape[1])
    return Blocks(fy, fx, oy, ox)


def starts(length: int, factor: int, offset: int) -> np.ndarray:
    """Index of the first sample of each block along an axis of ``length`` samples."""
    regular = np.arange(offset, length, factor)
    return regular if offset == 0 else np.concatenate(([0], regular))


def coarse_size(length: int, factor: int, offset: int) -> int:
    """How many blocks an axis of ``length`` samples has."""
    return int(starts(length, factor, offset).size)


def thin(array: np.ndarray, blocks: Blocks) -> np.ndarray:
    """(H, W, …) -> the samples at the block starts (h, w, …)."""
    h, w = array.shape[:2]
    rows, columns = starts(h, blocks.factor_y, blocks.offset_y), starts(w, blocks.factor_x, blocks.offset_x)
    return np.ascontiguousarray(array[rows][:, columns])


def grow(coarse: np.ndarray, blocks: Blocks, height: int, width: int) -> np.ndarray:
    """Inverse of :func:`thin`: each coarse sample repeated over its block, (height, width, …)."""
    def index(length: int, factor: int, offset: int) -> np.ndarray:
        return np.searchsorted(starts(length, factor, offset), np.arange(length), side="right") - 1
    return coarse[index(height, blocks.factor_y, blocks.offset_y)][:, index(width, blocks.factor_x, blocks.offset_x)]


def groups(array: np.ndarray) -> list[tuple[Blocks, list[int]]]:
    """(H, W, B) -> the bands grouped by their blocks, each group's bands in order and the
    groups ordered by their first band: [(blocks, [band, …]), …]."""
    out: dict[Blocks, list[int]] = {}
    for b in range(array.shape[2]):
        out.setdefault(detect(array[:, :, b]), []).append(b)
    return list(out.items())


# -- predicting a coarse group from the full-resolution bands ------------------------------------
# A 20 m band of a Sentinel-2 stack is much like a weighted sum of the 10 m bands averaged over
# its 2×2 block (red edge from red and near infrared, ...).  The codec codes the full-resolution
# bands first; a coarse group is then coded as its difference from that prediction, made from
# the *decoded* full-resolution bands with integer weights the file carries, in integer
# arithmetic, so the decoder forms exactly the encoder's prediction.
WEIGHT_BITS = 8    # fractional bits of the prediction weights (int16: |weight| < 128)


def block_sums(array: np.ndarray, blocks: Blocks, bands: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, B) integers -> each block's sum (h, w, n) int64 of ``bands`` (default: all B) and its
    sample count (h, w) int64.  The decoder passes its whole output and the reference bands, so
    no copy of them is made."""
    h, w = array.shape[:2]
    rows, columns = starts(h, blocks.factor_y, blocks.offset_y), starts(w, blocks.factor_x, blocks.offset_x)
    bands = list(range(array.shape[2])) if bands is None else bands
    sums = np.empty((rows.size, columns.size, len(bands)), np.int64)
    for i, j in enumerate(bands):  # band by band: the int64 temporary is one band's, not the raster's
        sums[:, :, i] = np.add.reduceat(np.add.reduceat(array[:, :, j], rows, axis=0, dtype=np.int64), columns,
                                        axis=1)
    counts = np.outer(np.diff(np.append(rows, h)), np.diff(np.append(columns, w))).astype(np.int64)
    return sums, counts


def fit_weights(coarse: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Encoder: least-squares weights (m coarse bands × n reference bands) of the coarse bands on
    the reference block means (both centred: the band means are sent anyway), as int16 with
    WEIGHT_BITS fractional bits."""
    x = (sums / counts[..., None]).reshape(-1, sums.shape[2])
    y = coarse.reshape(-1, coarse.shape[2]).astype(np.float64)
    fitted = np.linalg.lstsq(x - x.mean(axis=0), y - y.mean(axis=0), rcond=None)[0].T
    return np.clip(np.rint(fitted * (1 << WEIGHT_BITS)), -(1 << 15), (1 << 15) - 1).astype(np.int16)


def predict(sums: np.ndarray, counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The prediction (h, w, m) int64: Σ_j weight_ij · mean_j, rounded half up, in integers only."""
    numerator = np.einsum("hwn,mn->hwm", sums, weights.astype(np.int64))
    denominator = (counts << WEIGHT_BITS)[..., None]
    return np.floor_divide(2 * numerator + denominator, 2 * denominator)
