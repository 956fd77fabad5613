"""The quality ladder's decoder side on the latent grid: a linear 3×3 filter across the leading
latent channels and, at low qualities, a small nonlinear refiner on top (:class:`Refiner`).

Why: the linear decoder reconstructs every latent from its own integer alone (its bin's
centroid).  But quantization errors are not independent of the neighbourhood: where the
low channels show an edge, the values rounded to zero in the next channels were not
random, and a latent's 3×3 neighbours across the first K channels say much about the error
of each.  The least-squares estimate of that error from those neighbours (a Wiener filter,
fitted in closed form per quality anchor on training photos) is the cheapest "asymmetric
decoder" there is: the encoder is unchanged, the decoder adds one small convolution on the
latent grid (9·K² multiply-adds per latent position, K = 32: about 3 ms for a 768×512 photo).

Measured before shipping (60 training photos fitted, 12 validation photos, error in the
latent domain, which the orthonormal transform carries to the pixels): +0.34 dB at q 15,
+0.17 dB at q 35, +0.08 dB at q 55; K = 64 gave +0.34 / +0.14 / +0.10 dB (more weights
than 60 photos fit well).

The filter works in units of the quality's step, zero beyond the latent grid's edges (as it
was fitted), so its result at a position depends only on that position's neighbourhood:
the same in every decoding window.  It is floating-point arithmetic on the decoder's side,
like the inverse transform; the entropy decoding it follows stays integer and exact.
"""
from __future__ import annotations

import numpy as np

TAPS = 3  # the filter's width and height on the latent grid


def patches(z: np.ndarray) -> np.ndarray:
    """(K, H, W) -> (9·K, H·W): each position's 3×3 neighbourhood in every channel, zeros
    beyond the edges; row ``t·K + k`` is channel k at tap t (row-major over the 3×3)."""
    channels, height, width = z.shape
    padded = np.zeros((channels, height + 2, width + 2), z.dtype)
    padded[:, 1:-1, 1:-1] = z
    out = np.empty((TAPS * TAPS, channels, height, width), z.dtype)
    for t in range(TAPS * TAPS):
        i, j = divmod(t, TAPS)
        out[t] = padded[:, i : i + height, j : j + width]
    return out.reshape(TAPS * TAPS * channels, height * width)


def correction(z: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The estimated quantization error of the first K channels of ``z`` (K, H, W), in the
    same units, from ``weight`` (K, 9·K): what the decoder adds to them."""
    channels, height, width = z.shape
    return (weight @ patches(z)).reshape(channels, height, width)


def fit_weight(pairs: list[tuple[np.ndarray, np.ndarray]], ridge: float = 1e-3) -> np.ndarray:
    """Least-squares ``weight`` (K, 9·K) from (decoded, true) latent pairs (K, H, W) in step
    units: the linear estimate of ``true − decoded`` from the decoded neighbourhood.  The
    normal equations are summed photo by photo in float64 (memory: (9K)² numbers)."""
    size = TAPS * TAPS * pairs[0][0].shape[0]
    gram = np.zeros((size, size))
    cross = np.zeros((size, pairs[0][0].shape[0]))
    for decoded, true in pairs:
        x = patches(decoded.astype(np.float64))
        gram += x @ x.T
        cross += x @ (true - decoded).reshape(decoded.shape[0], -1).T.astype(np.float64)
    gram += ridge * np.trace(gram) / size * np.eye(size)
    return np.linalg.solve(gram, cross).T.astype(np.float32)


class Refiner:
    """The ladder's nonlinear refiner (fitted by :mod:`walloc_cli.fit.refiner`) with its
    linear filter: per anchor, ``correction + c · relu(b · relu(a · patches + a_bias) + b_bias)``
    over 3×3 neighbourhoods, so its result at a position depends on the positions within two
    cells (:attr:`RADIUS`), zero beyond the latent grid's edges, as it was trained.

    Why it pays: a rounded latent's error depends nonlinearly on its neighbourhood (a ±1 in a
    smooth area was most likely small); the least-squares filter alone cannot say so.  The
    linear filter's rows are stacked over the hidden layer's so that one product serves both."""

    RADIUS = 2

    def __init__(self, first: np.ndarray, a_bias: np.ndarray, b: np.ndarray, b_bias: np.ndarray,
                 c: np.ndarray, c_bias: np.ndarray) -> None:
        self.first, self.a_bias, self.b, self.b_bias, self.c, self.c_bias = first, a_bias, b, b_bias, c, c_bias
        # the output layer by tap: rows t·K + k hold channel k's weights at tap t, so one product
        # gives every tap's contribution and shifted sums replace the hidden layer's 3×3
        # patches (a 9·H × positions copy: a quarter of the refiner's time, session 23)
        anchors, channels = c.shape[:2]
        self.c_taps = np.ascontiguousarray(
            c.reshape(anchors, channels, TAPS * TAPS, -1).transpose(0, 2, 1, 3).reshape(anchors, TAPS * TAPS * channels, -1))
        # anchors whose output layer is all zero (the fit found the refiner not worth its time
        # there) run the linear filter alone: the same result, a fifth of the work
        self.active = (c.reshape(c.shape[0], -1) != 0).any(axis=1) | (c_bias != 0).any(axis=1)

    @property
    def channels(self) -> int:
        return self.c.shape[1]

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], linear: np.ndarray) -> "Refiner":
        """From ``refine.*`` arrays (keys without the ``quality.`` prefix) and the linear
        filter (anchors, K, 9·K); ValueError names an array whose shape does not fit."""
        anchors, channels = linear.shape[:2]
        a = np.asarray(arrays["refine.a"], np.float32)
        hidden = a.shape[0]
        shapes = {"refine.a": (hidden, TAPS * TAPS * channels), "refine.a_bias": (anchors, hidden),
                  "refine.b": (hidden, hidden), "refine.b_bias": (hidden,),
                  "refine.c": (anchors, channels, TAPS * TAPS * hidden), "refine.c_bias": (anchors, channels)}
        for key, shape in shapes.items():
            if np.shape(arrays[key]) != shape:
                raise ValueError(f"array 'quality.{key}' has shape {np.shape(arrays[key])}, expected {shape}")
        first = np.concatenate([linear, np.broadcast_to(a, (anchors, *a.shape))], axis=1)
        return cls(np.ascontiguousarray(first, np.float32), *(np.asarray(arrays[k], np.float32) for k in
                                                                 ("refine.a_bias", "refine.b", "refine.b_bias",
                                                                  "refine.c", "refine.c_bias")))


def shifted_sum(taps: np.ndarray) -> np.ndarray:
    """(9, C, H, W) -> (C, H, W): out[y, x] = Σ over taps t = (i, j) of taps[t] at (y + i − 1,
    x + j − 1), zero beyond the grid — a 3×3 convolution whose per-tap products were computed
    at every position first (one matrix product for all nine taps instead of one on a 9-row
    patch matrix: what the refiner's output layer and the wide filter's input do)."""
    _, channels, height, width = taps.shape
    # tap (i, j)'s product lands shifted by (1 − i, 1 − j) in a grid with a one-cell margin
    summed = np.zeros((channels, height + 2, width + 2), taps.dtype)
    for t in range(TAPS * TAPS):
        i, j = divmod(t, TAPS)
        summed[:, 2 - i:2 - i + height, 2 - j:2 - j + width] += taps[t]
    return summed[:, 1:-1, 1:-1]


def refine(z: np.ndarray, refiner: Refiner, anchor: int) -> np.ndarray:
    """The estimated error of the first K channels of ``z`` (K, H, W) in step units, linear
    filter and refiner together: what the decoder adds to them."""
    channels, height, width = z.shape
    if not refiner.active[anchor]:
        return correction(z, refiner.first[anchor, :channels])
    both = refiner.first[anchor] @ patches(z)
    hidden = both[channels:]
    hidden += refiner.a_bias[anchor][:, None]
    np.maximum(hidden, 0, out=hidden)
    hidden = refiner.b @ hidden
    hidden += refiner.b_bias[:, None]
    np.maximum(hidden, 0, out=hidden)
    taps = (refiner.c_taps[anchor] @ hidden).reshape(TAPS * TAPS, channels, height, width)
    out = both[:channels].reshape(channels, height, width)
    out += shifted_sum(taps)
    out += refiner.c_bias[anchor][:, None, None]
    return out


class WideFilter:
    """A low-rank 3×3 filter for the channels after the refined ones, ``K … K1 − 1``, from the
    decoded channels ``0 … K1 − 1`` (session 26; K = 32, K1 = 96, rank 32).

    Why: past q 50 the refiner and the 3×3 filter of the first K channels have little left to
    gain, but the next 64 channels carry most of the remaining error and are reconstructed from
    their own integers alone.  Their quantization errors are predictable from the decoded
    neighbourhood of every channel up to K1, as the first K's are; the least-squares estimate
    (fitted in closed form per anchor, as :func:`fit_weight`) of channels 32–95 from channels
    0–95 gained 0.03 dB at q 65–95 (150 training photos, 12 validation photos).  A full 64 × 864
    filter cost 13 ms of a 768×512 photo's decode (a quarter of it), so it is factored as
    ``out · in`` with ``in`` (r, 9·K1) and ``out`` (K1 − K, r), the rank-r solution of the same
    error weighted by each channel's squared step (pixel error): r = 32 keeps about 90 % of the
    gain at 3 ms.  ``in`` is applied tap by tap (nine products with the same K1 channels, summed
    shifted) instead of to a 9·K1-row patch matrix: the same sums without copying the latents
    nine times.

    Like the first filter it works in units of each channel's step and reads zeros beyond the
    latent grid's edges, one cell around each position (:attr:`RADIUS`)."""

    RADIUS = 1

    def __init__(self, into: np.ndarray, out: np.ndarray) -> None:
        anchors, rank, width = into.shape
        if width % (TAPS * TAPS) or out.ndim != 3 or out.shape[0] != anchors or out.shape[2] != rank:
            raise ValueError(f"wide filter arrays have shapes {into.shape} and {out.shape}, expected "
                             f"(anchors, r, {TAPS * TAPS}·K1) and (anchors, K1 − K, r)")
        self.into, self.out = into, out
        channels = width // (TAPS * TAPS)
        # rows t·r + i: tap t's weights of rank component i over the K1 channels (one product per anchor)
        self.taps = np.ascontiguousarray(
            into.reshape(anchors, rank, TAPS * TAPS, channels).transpose(0, 2, 1, 3).reshape(anchors, -1, channels))

    @property
    def channels(self) -> int:
        """K1: the channels it reads (0 … K1 − 1)."""
        return self.taps.shape[2]

    @property
    def first(self) -> int:
        """K: the first channel it corrects (it corrects K … K1 − 1)."""
        return self.channels - self.out.shape[1]

    def correction(self, z: np.ndarray, anchor: int) -> np.ndarray:
        """The estimated error of channels K … K1 − 1 from ``z`` (K1, H, W), all in step units."""
        channels, height, width = z.shape
        rank = self.out.shape[2]
        per_tap = (self.taps[anchor] @ z.reshape(channels, -1)).reshape(TAPS * TAPS, rank, height, width)
        hidden = np.ascontiguousarray(shifted_sum(per_tap))
        return (self.out[anchor] @ hidden.reshape(rank, -1)).reshape(-1, height, width)

    def weight(self, anchor: int) -> np.ndarray:
        """The filter as one (K1 − K, 9·K1) matrix over :func:`patches` rows (for tests and fits)."""
        return self.out[anchor] @ self.into[anchor]
