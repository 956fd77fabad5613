"""The quality scale every ladder shares (images, audio, N-band rasters): what ``-q`` accepts,
and the search behind ``--bpp`` / ``--kbps``.  One place, so the three codecs cannot drift apart."""
from __future__ import annotations

from typing import Callable

import numpy as np

from .errors import WallocError

QUALITY_RANGE = (1, 100)


def check_quality(quality: object) -> int:
    """An integer from 1 to 100 (bools and floats refused, so ``-q 50.5`` cannot silently round)."""
    low, high = QUALITY_RANGE
    if quality is None or isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) \
            or not low <= quality <= high:
        raise WallocError(f"quality must be an integer from {low} to {high}, got {quality!r}")
    return int(quality)


def highest_quality_within(encode: Callable[[int], bytes], budget_bits: float) -> tuple[int | None, bytes]:
    """(quality, file) of the highest quality whose whole file (header included) takes at most
    ``budget_bits``: a bisection over 1…100, about 7 encodes, valid because every ladder's size
    grows with quality (tested per model).  (None, quality 1's file) when even that is too big."""
    best: tuple[int, bytes] | None = None
    lo, hi = QUALITY_RANGE
    while lo <= hi:
        q = (lo + hi) // 2
        data = encode(q)
        if 8 * len(data) <= budget_bits:
            best, lo = (q, data), q + 1
        else:
            hi = q - 1
    return best if best is not None else (None, encode(QUALITY_RANGE[0]))
