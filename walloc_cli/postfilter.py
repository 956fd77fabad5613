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
    # tap (i, j) reads the hidden layer at (y + i − 1, x + j − 1), zero beyond the grid: its
    # product lands shifted by (1 − i, 1 − j) in a grid with a one-cell margin
    summed = np.zeros((channels, height + 2, width + 2), np.float32)
    for t in range(TAPS * TAPS):
        i, j = divmod(t, TAPS)
        summed[:, 2 - i:2 - i + height, 2 - j:2 - j + width] += taps[t]
    out = both[:channels].reshape(channels, height, width)
    out += summed[:, 1:-1, 1:-1]
    out += refiner.c_bias[anchor][:, None, None]
    return out
