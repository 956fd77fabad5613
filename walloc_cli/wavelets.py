"""Wavelet packet transform (WPT), one implementation for numpy and torch.

WaLLoC applies J levels of a biorthogonal wavelet to *every* band (a full
packet tree, not the usual Mallat pyramid), so an image of C channels becomes
C·4^J coefficient channels at 1/2^J resolution and a signal of C channels
becomes C·2^J channels at 1/2^J length.  The encoder is then a plain 1×1
projection across those channels.

Why one generic implementation: the encoder runs on numpy (no torch import,
see ``api``) while training and the neural decoder run on torch.  Everything
here uses only operations that numpy arrays and torch tensors share
(slicing, integer-array indexing, ``stack``/``reshape``, scalar arithmetic),
so the two paths cannot drift apart.  Tests check both against ``pywt``.

Boundary handling is *periodization* (as ``pywt``'s ``mode="periodization"``):
a signal of even length N gives exactly N/2 approximation and N/2 detail
coefficients, so the transform is a square, invertible linear map.  Lengths
must therefore be multiples of 2^J; callers pad (images: reflect) beforehand.

Index conventions (verified against ``pywt.dwt`` / ``pywt.idwt`` in the tests),
for a filter of even length L with shift s = L/2:

* analysis   ``a[m] = sum_k dec_lo[k] · x[(2m + s - k) mod N]``
* synthesis  ``x[(2m + k - s + 1) mod N] += a[m]·rec_lo[k] + d[m]·rec_hi[k]``
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

import numpy as np

Array = Any  # numpy.ndarray or torch.Tensor

DEFAULT_WAVELET = "bior4.4"


@lru_cache(maxsize=None)
def filter_bank(wavelet: str = DEFAULT_WAVELET) -> tuple[tuple[float, ...], ...]:
    """(dec_lo, dec_hi, rec_lo, rec_hi) of a pywt wavelet with even filter length."""
    import pywt  # only the filter taps come from pywt; the transform is ours

    w = pywt.Wavelet(wavelet)
    bank = (tuple(w.dec_lo), tuple(w.dec_hi), tuple(w.rec_lo), tuple(w.rec_hi))
    if len(bank[0]) % 2:
        raise ValueError(f"wavelet {wavelet!r} has odd filter length; periodized WPT needs even")
    return bank


def _is_torch(x: Array) -> bool:
    return type(x).__module__.startswith("torch")


def _stack(arrays: Sequence[Array], axis: int) -> Array:
    if _is_torch(arrays[0]):
        import torch

        return torch.stack(list(arrays), dim=axis)
    return np.stack(arrays, axis=axis)


def _wrap_pad_last(x: Array, left: int, right: int) -> Array:
    """Periodic extension of the last axis; works for any pad, even one longer than N."""
    n = x.shape[-1]
    index = np.arange(-left, n + right) % n
    if _is_torch(x):
        import torch

        index = torch.from_numpy(index).to(x.device)
    return x[..., index]


def _filter_terms(taps: Sequence[float], first_offset: int, step: int) -> list[tuple[float, int]]:
    """Non-zero taps paired with their signed input offsets (offset = first_offset - step·i)."""
    return [(t, first_offset - step * i) for i, t in enumerate(taps) if t != 0.0]


def analysis_1d(x: Array, wavelet: str = DEFAULT_WAVELET) -> tuple[Array, Array]:
    """One level of periodized DWT along the last axis: (approximation, detail)."""
    dec_lo, dec_hi, _, _ = filter_bank(wavelet)
    n = x.shape[-1]
    if n % 2:
        raise ValueError(f"periodized DWT needs an even length, got {n}")
    shift = len(dec_lo) // 2
    half = n // 2
    terms_lo = _filter_terms(dec_lo, shift, 1)
    terms_hi = _filter_terms(dec_hi, shift, 1)
    offsets = [o for _, o in terms_lo + terms_hi]
    left = max(0, -min(offsets))
    right = max(0, max(offsets))
    xp = _wrap_pad_last(x, left, right)

    def branch(terms: list[tuple[float, int]]) -> Array:
        out = None
        for tap, off in terms:
            start = left + off
            part = xp[..., start : start + 2 * half : 2] * tap
            out = part if out is None else out + part
        return out

    return branch(terms_lo), branch(terms_hi)


def synthesis_1d(approx: Array, detail: Array, wavelet: str = DEFAULT_WAVELET) -> Array:
    """Inverse of :func:`analysis_1d` (polyphase form: even and odd outputs separately)."""
    _, _, rec_lo, rec_hi = filter_bank(wavelet)
    shift = len(rec_lo) // 2 - 1
    # x[2j+p] = sum_{k ≡ p+shift (mod 2)} rec[k] · c[j + (p + shift - k)/2]
    phases = []
    per_phase_terms = []
    for p in (0, 1):
        terms = []
        for k in range(len(rec_lo)):
            if (p + shift - k) % 2 == 0:
                terms.append((rec_lo[k], rec_hi[k], (p + shift - k) // 2))
        per_phase_terms.append(terms)
    offsets = [o for terms in per_phase_terms for _, _, o in terms]
    left = max(0, -min(offsets))
    right = max(0, max(offsets))
    half = approx.shape[-1]
    ap = _wrap_pad_last(approx, left, right)
    dp = _wrap_pad_last(detail, left, right)
    for terms in per_phase_terms:
        out = None
        for g_lo, g_hi, off in terms:
            start = left + off
            part = ap[..., start : start + half] * g_lo + dp[..., start : start + half] * g_hi
            out = part if out is None else out + part
        phases.append(out)
    interleaved = _stack(phases, axis=-1)  # (..., half, 2)
    return interleaved.reshape(*approx.shape[:-1], 2 * half)


def dwt2(x: Array, wavelet: str = DEFAULT_WAVELET) -> Array:
    """One 2-D level on the last two axes; bands stacked on a new axis -3.

    Band order matches ``pywt.dwt2``: (cA, cH, cV, cD) = (low-low, high-rows
    low-cols, low-rows high-cols, high-high), where "rows" is axis -2.
    """
    lo_w, hi_w = analysis_1d(x, wavelet)  # along W
    bands = []
    for part in (lo_w, hi_w):
        lo_h, hi_h = analysis_1d(part.swapaxes(-1, -2), wavelet)
        bands.append((lo_h.swapaxes(-1, -2), hi_h.swapaxes(-1, -2)))
    (aa, da), (ad, dd) = bands
    return _stack([aa, da, ad, dd], axis=-3)


def idwt2(bands: Array, wavelet: str = DEFAULT_WAVELET) -> Array:
    """Inverse of :func:`dwt2`; ``bands`` has the 4 bands on axis -3."""
    aa, da, ad, dd = (bands[..., i, :, :] for i in range(4))
    lo_w = synthesis_1d(aa.swapaxes(-1, -2), da.swapaxes(-1, -2), wavelet).swapaxes(-1, -2)
    hi_w = synthesis_1d(ad.swapaxes(-1, -2), dd.swapaxes(-1, -2), wavelet).swapaxes(-1, -2)
    return synthesis_1d(lo_w, hi_w, wavelet)


def wpt2d(x: Array, levels: int, wavelet: str = DEFAULT_WAVELET) -> Array:
    """Full packet transform: (..., C, H, W) -> (..., C·4^J, H/2^J, W/2^J).

    Channel index = c·4^J + b1·4^(J-1) + ... + bJ, where b1 is the band chosen
    at the first (finest) level.
    """
    for _ in range(levels):
        *lead, c, h, w = x.shape
        x = dwt2(x, wavelet).reshape(*lead, 4 * c, h // 2, w // 2)
    return x


def iwpt2d(y: Array, levels: int, wavelet: str = DEFAULT_WAVELET) -> Array:
    """Inverse of :func:`wpt2d`."""
    for _ in range(levels):
        *lead, c4, h, w = y.shape
        y = idwt2(y.reshape(*lead, c4 // 4, 4, h, w), wavelet)
    return y


def wpt1d(x: Array, levels: int, wavelet: str = DEFAULT_WAVELET) -> Array:
    """Full 1-D packet transform: (..., C, T) -> (..., C·2^J, T/2^J)."""
    for _ in range(levels):
        *lead, c, t = x.shape
        lo, hi = analysis_1d(x, wavelet)
        x = _stack([lo, hi], axis=-2).reshape(*lead, 2 * c, t // 2)
    return x


def iwpt1d(y: Array, levels: int, wavelet: str = DEFAULT_WAVELET) -> Array:
    """Inverse of :func:`wpt1d`."""
    for _ in range(levels):
        *lead, c2, t = y.shape
        pairs = y.reshape(*lead, c2 // 2, 2, t)
        y = synthesis_1d(pairs[..., 0, :], pairs[..., 1, :], wavelet)
    return y
