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

The solver works on a summary of the decoded values (:class:`LevelStats`, a 1/16-level
histogram per colour), gathered window by window, so a large image needs no copy of its
float values.  Everything is deterministic numpy on the
decoder's own values, so the output pixels stay the same on every run.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

UNITS = 16                 # the fields' units: 1/16 of a level
REACH = 48                 # levels: the largest shift the solver considers, either way
_LOW = -REACH              # the histogram covers [−REACH, 255 + REACH) in 1/16-level bins;
_BINS = (255 + 2 * REACH) * UNITS  # values outside it are clipped by any shift the solver tries


class LevelStats:
    """What the shift solver needs of a decoded image's values, per colour (levels, before
    rounding): a 1/16-level histogram over [−REACH, 255 + REACH) plus one bin either side for
    everything beyond, where every shift the solver tries clips them alike."""

    def __init__(self, colours: int = 3) -> None:
        self.counts = np.zeros((colours, _BINS + 2), np.int64)
        self.sums = np.zeros(colours)  # exact sums: where the search starts (the unclipped mean)

    @property
    def count(self) -> int:
        return int(self.counts[0].sum())

    def add(self, levels: np.ndarray) -> None:
        """Count the values of one window, (colours, rows, columns) in levels."""
        flat = levels.reshape(levels.shape[0], -1)
        for c, v in enumerate(flat):
            self.sums[c] += float(v.sum(dtype=np.float64))
            scaled = v - _LOW  # then in place: floor((v − LOW)·UNITS), clipped, as bin indices
            scaled *= UNITS
            np.floor(scaled, out=scaled)
            index = np.clip(scaled, -1, _BINS, out=scaled).astype(np.int64)
            index += 1
            self.counts[c] += np.bincount(index, minlength=_BINS + 2)

    def mean_after(self, colour: int, shift: float) -> float:
        """The mean of clip(value + shift, 0, 255) for ``colour`` (|shift| < REACH levels), each
        value taken at its bin's centre (within 1/32 level)."""
        centres = _LOW + (np.arange(-1, _BINS + 1) + 0.5) / UNITS
        total = np.clip(centres + shift, 0.0, 255.0) @ self.counts[colour]
        return float(total / max(self.count, 1))

    def shift_for(self, target: Sequence[float]) -> np.ndarray:
        """Per colour, the shift (levels, a multiple of 1/16) whose clipped mean is closest to
        ``target`` (levels), searched within REACH / 2 of the shift that would be exact without
        clipping (target minus the mean of the values)."""
        out = np.empty(len(target))
        steps = REACH * UNITS - 1
        start = np.asarray(target, np.float64) - self.sums / max(self.count, 1)
        for c, (goal, s0) in enumerate(zip(target, start)):
            base = float(np.clip(np.round(s0 * UNITS) / UNITS, -REACH / 2, REACH / 2))
            lo, hi = -steps // 2, steps // 2    # the mean rises with the shift: bisect on 1/16 levels
            while lo < hi:
                mid = (lo + hi) // 2
                if self.mean_after(c, base + mid / UNITS) < goal:
                    lo = mid + 1
                else:
                    hi = mid
            best = min((lo - 1, lo), key=lambda k: abs(self.mean_after(c, base + k / UNITS) - goal))
            out[c] = base + best / UNITS
        return out


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
