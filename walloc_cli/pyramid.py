"""The DC channels' integer interpolation pyramid (context coder versions 3 and 4).

A ladder model's first latent channels are block averages — the DC of each colour at 1/8
resolution, a small, smooth image.  At low qualities they are most of a file: 97 % of the
bytes at q 5, 69 % at q 25, 48 % at q 35 (12 validation photos).  Versions 1 and 2 code
them after an integer Haar transform (the S-transform), whose differences predict each
value from one neighbour.  Here each value is predicted from four already-known ones and
its table chosen by how much they disagree, the way lossless image coders interpolate:

* the coarsest grid, every 2^:data:`LEVELS`-th row and column, is coded as it is;
* then, level by level, each 2s × 2s cell's centre from its four diagonal corners
  (stage "centres"), then the edge midpoints from their four direct neighbours
  (stage "edges"), s = 2^(k−1) for k = :data:`LEVELS` … 1;
* a value's prediction is the rounded mean of its four neighbours, and its table the
  (stage, spread) pair, the spread (max − min of the four) binned by :data:`SPREAD_CUTS`.
  Levels from :data:`SHARED_FROM` up share their tables (few values live there).
* with ``pairs`` (context coder version 4) each spread bin is split three ways by how much the
  two opposite neighbour pairs disagree, | |a − b| − |c − d| | binned by :data:`PAIR_CUTS`: an
  edge through the value (one pair alike, the other not) makes the mean of four a worse guess
  than the same spread without one.  Fitted on training photos and measured on validation
  photos (``bench/entropy_probe.py``): −4.2 / −2.8 / −1.0 % of the DC's bits at q 5 / 25 / 45.

Everything is integer arithmetic on values both sides know, so the decoder rebuilds the
same predictions and tables bit for bit.  Measured against the Haar levels with tables
fitted on the same training photos: 26 / 21 / 17 % fewer DC bits at q 5 / 25 / 45 on 24
validation photos.  This module only says *where* and *with which table*; coding the
values is :mod:`walloc_cli.entropy`'s.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

LEVELS = 7                                   # the coarsest grid keeps every 128th row and column
SPREAD_CUTS = np.array([1, 2, 3, 5, 8, 12, 18, 27, 40], np.int64)
SPREAD_BINS = SPREAD_CUTS.size + 1
SHARED_FROM = 5                              # levels ≥ 5 use level 5's tables
STAGES = 1 + 2 * SHARED_FROM                 # the coarse grid, then (centres, edges) per level
PAIR_CUTS = np.array([1, 3], np.int64)       # | |a − b| − |c − d| | of the two neighbour pairs (version 4)
PAIR_BINS = PAIR_CUTS.size + 1


def tables_per_stage(pairs: bool = False) -> int:
    return SPREAD_BINS * (PAIR_BINS if pairs else 1)


def tables_per_channel(pairs: bool = False) -> int:
    return STAGES * tables_per_stage(pairs)


# One step of the plan: (flat raster positions it fills, (4, n) flat positions of their
# neighbours — None for the coarse grid — and its stage).
Step = tuple[np.ndarray, "np.ndarray | None", int]


def _neighbours(i: np.ndarray, j: np.ndarray, offsets: tuple[tuple[int, int], ...], height: int,
                width: int) -> np.ndarray:
    """(4, n) flat positions of the neighbours of (i, j) at ``offsets`` (two opposite pairs).

    A neighbour outside the grid is replaced by its opposite one, and a pair with both
    outside by the other pair; every position of a step has at least one known neighbour
    inside (its upper-left, upper or left one), so every substitute is known too."""
    rows, inside = [], []
    for di, dj in offsets:
        a, b = i + di, j + dj
        ok = (a >= 0) & (a < height) & (b >= 0) & (b < width)
        rows.append(np.where(ok, a * width + b, -1))
        inside.append(ok)
    for p, q in ((0, 1), (2, 3)):
        rows[p] = np.where(inside[p], rows[p], rows[q])
        rows[q] = np.where(inside[q], rows[q], rows[p])
        inside[p] = inside[q] = inside[p] | inside[q]
    for p, q in ((0, 2), (2, 0)):
        for k in (p, p + 1):
            rows[k] = np.where(inside[p], rows[k], rows[q])
    out = np.stack(rows)
    assert (out >= 0).all()
    return out


_CACHED_POSITIONS = 1 << 20  # plans up to this size are kept (a batch of photos reuses a few shapes)


def plan(height: int, width: int) -> tuple[Step, ...]:
    """The steps of a (height, width) channel in coding order; every position filled once.

    Indices are int32 (4 of them per position for the neighbours: 20 bytes a position);
    only small plans are cached, so a batch of huge, differently sized images never holds
    more than a few megabytes of them."""
    if height * width <= _CACHED_POSITIONS:
        return _cached_plan(height, width)
    return _make_plan(height, width)


@lru_cache(maxsize=16)
def _cached_plan(height: int, width: int) -> tuple[Step, ...]:
    return _make_plan(height, width)


def _make_plan(height: int, width: int) -> tuple[Step, ...]:
    index = np.int32 if height * width < 1 << 31 else np.int64
    i, j = np.divmod(np.arange(height * width, dtype=index), index(width))
    coarse = 1 << LEVELS
    steps: list[Step] = [(np.flatnonzero((i % coarse == 0) & (j % coarse == 0)).astype(index), None, 0)]
    for k in range(LEVELS, 0, -1):
        s = 1 << (k - 1)
        cell = 2 * s
        stage = 1 + 2 * (min(k, SHARED_FROM) - 1)
        centres = np.flatnonzero((i % cell == s) & (j % cell == s)).astype(index)
        edges = np.flatnonzero(((i % cell == 0) & (j % cell == s)) | ((i % cell == s) & (j % cell == 0))).astype(index)
        for where, offsets, st in ((centres, ((-s, -s), (s, s), (-s, s), (s, -s)), stage),
                                   (edges, ((-s, 0), (s, 0), (0, -s), (0, s)), stage + 1)):
            if where.size:
                steps.append((where, _neighbours(i[where], j[where], offsets, height, width), st))
    return tuple(steps)


def predict(known: np.ndarray, neighbours: np.ndarray, stage: int,
            pairs: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, table indices within the channel) of one step, from the values ``known``
    (flat, the steps before this one filled in; or (channels, H·W), giving (channels, n))."""
    v = known[..., neighbours]  # (…, 4, n)
    prediction = (v.sum(axis=-2) + 2) >> 2  # floor: the same integer on every machine
    spread = v.max(axis=-2) - v.min(axis=-2)
    table = np.searchsorted(SPREAD_CUTS, spread, side="right")
    if pairs:
        disagreement = np.abs(np.abs(v[..., 0, :] - v[..., 1, :]) - np.abs(v[..., 2, :] - v[..., 3, :]))
        table = table * PAIR_BINS + np.searchsorted(PAIR_CUTS, disagreement, side="right")
    return prediction, stage * tables_per_stage(pairs) + table


def analyse(channel: np.ndarray, pairs: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """Integer map (H, W) -> per step of :func:`plan`, (table index within the channel,
    residual) of its positions: what the encoder codes, step by step (levels from
    :data:`SHARED_FROM` up share tables, so the steps are not in table order)."""
    height, width = channel.shape
    known = channel.reshape(-1).astype(np.int64)
    which, residuals = [], []
    for positions, neighbours, stage in plan(height, width):
        values = known[positions]
        if neighbours is None:
            which.append(np.zeros(positions.size, np.int64))
            residuals.append(values)
            continue
        prediction, tables = predict(known, neighbours, stage, pairs)
        which.append(tables)
        residuals.append(values - prediction)
    return list(zip(which, residuals))


def synthesise(height: int, width: int, decode_step: Callable[[int, np.ndarray], np.ndarray],
               limit: int, pairs: bool = False) -> np.ndarray:
    """Inverse of :func:`analyse`: ``decode_step(first table, bins within the stage)`` returns
    the residuals of one step's positions (in plan order), coded with tables ``first table +
    bin``; values beyond ±``limit`` raise ValueError (corrupt data)."""
    known = np.zeros(height * width, np.int64)
    for positions, neighbours, stage in plan(height, width):
        if neighbours is None:
            values = decode_step(0, np.zeros(positions.size, np.int64))
        else:
            prediction, tables = predict(known, neighbours, stage, pairs)
            first = stage * tables_per_stage(pairs)
            values = prediction + decode_step(first, tables - first)
        if np.abs(values).max(initial=0) > limit:
            raise ValueError("decoded latent value out of range")
        known[positions] = values
    return known.reshape(height, width)
