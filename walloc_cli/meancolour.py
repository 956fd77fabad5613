"""The decoder's exact mean-colour correction: the shift that gives the decoded image, after
rounding and clipping to 0…255, the original's mean colour.

Why the decoder and not the encoder: the encoder can predict the decoded mean *before*
clipping in closed form (files of the session before carried that as ``mean_shift``), but
clipping then moves it again wherever a photo has black or white: coding noise around a
level-0 shadow is cut on one side only, so shadows lift (at q 25 the worst validation
photo stayed 1.5 levels off).  Only the decoded values say how much is cut, and the
encoder does not have them without running the decoder (+20 % encoding time); the
decoder has them anyway.  So a file carries the original's mean colour (``mean``, 1/16
level per colour) and the decoder solves for the shift that reproduces it through its own
rounding and clipping.

The solver works on the decoded values in whole sixteenths of a level (:class:`LevelStats`:
the int16 the decoder keeps anyway, and their histogram per colour), gathered window by
window, so a large image needs no copy of its float values and the solved mean is exactly
that of the output pixels.  Everything is deterministic numpy on the decoder's own values,
so the output pixels stay the same on every run.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

UNITS = 16                      # the fields' units: 1/16 of a level
REACH = 48                      # levels: the largest shift the solver considers, either way
BOUND = UNITS * (REACH + 1)     # sixteenths kept beyond 0 and 255: further out, every shift
_SPAN = 255 * UNITS + 2 * BOUND + 1  # the solver tries clips a value alike


class LevelStats:
    """A decoded image's values as the solver needs them: each value in whole sixteenths of a
    level after the file's fixed shift ``start`` (``mean_shift``, else zero), clipped to
    BOUND beyond 0…255 — the int16 the decoder keeps — and their histogram per colour.

    From these the mean of the output pixels, floor(value + shift + ½) clipped to 0…255, is
    exact for any shift in whole sixteenths, so the solver and the pixels agree to the bit."""

    def __init__(self, start: Sequence[float]) -> None:
        self.start = np.asarray(start, np.float64)   # levels, a multiple of 1/16 per colour
        self.counts = np.zeros((len(self.start), _SPAN), np.int64)
        self.sums = np.zeros(len(self.start))        # exact sums of the values: where the search starts

    @property
    def count(self) -> int:
        return int(self.counts[0].sum())

    def add(self, levels: np.ndarray) -> np.ndarray:
        """Count one window's values (colours, rows, columns, in levels) and return them as
        int16 sixteenths after ``start`` (same shape)."""
        out = np.empty(levels.shape, np.int16)
        for c in range(levels.shape[0]):
            self.sums[c] += float(levels[c].sum(dtype=np.float64))
            scaled = levels[c] + self.start[c]  # then in place: floor(·16), clipped
            scaled *= UNITS
            np.floor(scaled, out=scaled)
            out[c] = np.clip(scaled, -BOUND, 255 * UNITS + BOUND, out=scaled)
            # shifted to 0 … _SPAN − 1 in int16 (it fits: _SPAN < 2^15), one pass instead of an int64 copy and an add
            self.counts[c] += np.bincount(np.add(out[c].reshape(-1), BOUND, dtype=np.int16), minlength=_SPAN)
        return out

    def mean_after(self, colour: int, move: int) -> float:
        """The mean of the output pixels of ``colour`` when its values move by ``move`` sixteenths
        (|move| ≤ REACH · UNITS): exact, from the histogram."""
        sixteenths = np.arange(-BOUND, 255 * UNITS + BOUND + 1) + move
        pixels = np.clip((sixteenths + UNITS // 2) >> 4, 0, 255)
        return float(pixels @ self.counts[colour] / max(self.count, 1))

    def moves_for(self, target: Sequence[float]) -> np.ndarray:
        """Per colour, the move (whole sixteenths) whose output mean is closest to ``target``
        (levels), searched within REACH / 2 of the move that would be exact without clipping."""
        half = REACH * UNITS // 2
        unclipped = (np.asarray(target, np.float64) - self.sums / max(self.count, 1) - self.start) * UNITS
        out = np.empty(len(target), np.int64)
        for c, goal in enumerate(target):
            base = int(np.clip(np.rint(unclipped[c]), -half, half))
            lo, hi = base - half, base + half   # the mean rises with the move: bisect
            while lo < hi:
                mid = (lo + hi) // 2
                if self.mean_after(c, mid) < goal:
                    lo = mid + 1
                else:
                    hi = mid
            out[c] = min((lo - 1, lo), key=lambda k: abs(self.mean_after(c, k) - goal))
        return out


def solved_pixels(windows: Iterable[tuple[int, np.ndarray]], height: int, width: int, mean: Sequence[int],
                  start: Sequence[float]) -> np.ndarray:
    """uint8 (H, W, 3) pixels whose mean colour is ``mean`` (1/16 level) after rounding and
    clipping, from the decoded windows ((first row, levels (3, rows, width)) in row order).

    One pass keeps every value as int16 sixteenths (:meth:`LevelStats.add`) instead of
    synthesising the image twice; the pixels are then written as uint8 over the front half of
    the same buffer, which shrinks to them (6 bytes a pixel at the peak, 3 once returned).
    Sample k's byte overwrites the int16 of sample k/2, already read: blocks go in order, and
    a block is copied out before its bytes are written."""
    stats = LevelStats(start)
    buffer = np.empty(height * width * 3 * 2, np.uint8)
    sixteenths = buffer.view(np.int16).reshape(height, width, 3)
    for row, levels in windows:
        sixteenths[row : row + levels.shape[1]] = stats.add(levels).transpose(1, 2, 0)
    move = stats.moves_for(np.asarray(mean, np.float64) / UNITS).astype(np.int32)
    values = sixteenths.reshape(-1, 3)
    pixels = buffer[: values.size].reshape(-1, 3)
    for p0 in range(0, values.shape[0], 1 << 16):
        block = (values[p0 : p0 + (1 << 16)].astype(np.int32) + move + UNITS // 2) >> 4
        pixels[p0 : p0 + (1 << 16)] = np.clip(block, 0, 255)
    del sixteenths, values, pixels
    buffer.resize(height * width * 3, refcheck=False)  # no views of it are left
    return buffer.reshape(height, width, 3)


def image_mean(rgb: np.ndarray) -> list[int]:
    """The header's ``mean``: the mean of each colour of an (H, W, 3) uint8 image, in 1/16 level."""
    # exact integer sums; column sums over contiguous rows, then per colour (20× faster than
    # summing an (N, 3) view per colour)
    total = rgb.reshape(rgb.shape[0], rgb.shape[1] * 3).sum(axis=0, dtype=np.int64).reshape(-1, 3).sum(axis=0)
    return [int(v) for v in np.rint(total / max(rgb.shape[0] * rgb.shape[1], 1) * UNITS)]


def mean_field(value: Any) -> list[int] | None:
    """The header's ``mean`` checked (None when absent); ValueError when malformed."""
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) != 3
            or any(not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 255 * UNITS for v in value)):
        raise ValueError("corrupt header (field 'mean')")
    return value
