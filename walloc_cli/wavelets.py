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

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

Array = Any  # numpy.ndarray or torch.Tensor

DEFAULT_WAVELET = "bior4.4"


# The default wavelet's taps, exactly as pywt 1.x gives them (a test checks): importing
# pywt costs ~160 ms, a third of the time budget of a one-photo `walloc encode`.
_BIOR44_LO = (0.0, 0.03782845550726404, -0.023849465019556843, -0.11062440441843718,
              0.37740285561283066, 0.8526986790088938, 0.37740285561283066,
              -0.11062440441843718, -0.023849465019556843, 0.03782845550726404)
_BIOR44_HI = (-0.0, -0.06453888262869706, 0.04068941760916406, 0.41809227322161724,
              -0.7884856164055829, 0.41809227322161724, 0.04068941760916406,
              -0.06453888262869706, -0.0, 0.0)
_BIOR44_REC_LO = (0.0, -0.06453888262869706, -0.04068941760916406, 0.41809227322161724,
                  0.7884856164055829, 0.41809227322161724, -0.04068941760916406,
                  -0.06453888262869706, 0.0, 0.0)
_BIOR44_REC_HI = (0.0, -0.03782845550726404, -0.023849465019556843, 0.11062440441843718,
                  0.37740285561283066, -0.8526986790088938, 0.37740285561283066,
                  0.11062440441843718, -0.023849465019556843, -0.03782845550726404)
_BUILTIN_BANKS = {"bior4.4": (_BIOR44_LO, _BIOR44_HI, _BIOR44_REC_LO, _BIOR44_REC_HI)}


@lru_cache(maxsize=None)
def filter_bank(wavelet: str = DEFAULT_WAVELET) -> tuple[tuple[float, ...], ...]:
    """(dec_lo, dec_hi, rec_lo, rec_hi) of a pywt wavelet with even filter length."""
    if wavelet in _BUILTIN_BANKS:
        return _BUILTIN_BANKS[wavelet]
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


# -- fast path: the whole packet tree as one block filter per axis ---------------------------
# J levels of a periodized two-channel filter bank applied to every band are, taken together,
# a linear map that commutes with shifts by B = 2^J samples.  Along one axis it is therefore a
# *block filter*: the B band coefficients at position n are a fixed (B × M·B) matrix times the
# M·B input samples starting at block n + first.  Computing it that way is one matrix product
# per axis with no Python loop over levels or taps — 5–10× faster than the level-by-level
# slicing above, which stays as the readable reference the kernels are derived from (tests
# check the two agree).  Synthesis has the same shape with the roles of bands and samples swapped.

@dataclass(frozen=True)
class BlockFilter:
    """``out[n] = kernel @ concat(in[n + first], …, in[n + first + span − 1])`` over blocks."""

    kernel: np.ndarray   # (B_out, span · B_in) float64
    first: int           # block offset of the first input block (usually negative)
    span: int            # number of input blocks per output block


def _trim(kernel_by_offset: dict[int, np.ndarray]) -> BlockFilter:
    used = sorted(m for m, k in kernel_by_offset.items() if np.abs(k).max() > 1e-14)
    first, last = used[0], used[-1]
    blocks = [kernel_by_offset.get(m, np.zeros_like(kernel_by_offset[used[0]])) for m in range(first, last + 1)]
    return BlockFilter(np.concatenate(blocks, axis=1), first, last - first + 1)


@lru_cache(maxsize=None)
def packet_filters(levels: int, wavelet: str = DEFAULT_WAVELET) -> tuple[BlockFilter, BlockFilter]:
    """(analysis, synthesis) block filters of the J-level 1-D packet transform.

    Derived once from the reference transform's impulse responses on a signal long
    enough that no response wraps around.  Band order is :func:`wpt1d`'s.
    """
    block = 2**levels
    taps = len(filter_bank(wavelet)[0])
    blocks = 2 * taps + 4  # a response spans fewer than taps blocks on either side
    n = block * blocks
    # Shift invariance: B impulses (one block of samples, or one position of bands) suffice.
    samples = np.zeros((block, 1, n))
    samples[np.arange(block), 0, np.arange(block)] = 1.0
    analysis = wpt1d(samples, levels, wavelet)             # (B impulses p, B bands, blocks positions)
    bands = np.zeros((block, block, blocks))
    bands[np.arange(block), np.arange(block), 0] = 1.0
    synthesis = iwpt1d(bands, levels, wavelet)[:, 0]        # (B bands b, n samples)
    centre = blocks // 2
    a_by_offset: dict[int, np.ndarray] = {}
    s_by_offset: dict[int, np.ndarray] = {}
    for m in range(-centre, centre):
        # out[b, n'] += h[b, t]·in[B·n' + t]: taps t = B·m + p come from impulse p at position -m
        a_by_offset[m] = analysis[:, :, (-m) % blocks].T                  # (B bands, B samples)
        # block 0's samples p from bands at position m: g[b, p - B·m]
        s_by_offset[m] = synthesis[:, (np.arange(block) - block * m) % n].T  # (B samples, B bands)
    return _trim(a_by_offset), _trim(s_by_offset)


def _block_filter_rows(x: np.ndarray, bf: BlockFilter) -> np.ndarray:
    """Apply ``bf`` along axis 0 of ``x`` shaped (blocks, B_in, …), periodically:
    (blocks, B_out, ·) with the trailing axes flattened.

    ``x`` may be any view (a transposed one included): the periodic padding is a fancy
    index along axis 0, which copies into a fresh C-ordered array anyway, so a transposed
    input costs no extra copy (making it contiguous first was one more pass over the whole
    image per filtering pass).  In that array the M consecutive input blocks of one output
    block are a contiguous (M·B_in, W) slab, so a strided *view* feeds BLAS with no copying.
    """
    nblocks, b_in = x.shape[0], x.shape[1]
    index = np.arange(bf.first, nblocks + bf.first + bf.span - 1) % nblocks
    padded = np.ascontiguousarray(x[index]).reshape(index.size, b_in, -1)
    width = padded.shape[2]
    s = padded.strides
    windows = np.lib.stride_tricks.as_strided(
        padded, shape=(nblocks, bf.span * b_in, width), strides=(s[0], s[1], s[2]), writeable=False)
    return np.matmul(bf.kernel.astype(x.dtype), windows)


def wpt2d_positions(image: np.ndarray, levels: int, wavelet: str = DEFAULT_WAVELET) -> np.ndarray:
    """Channel-last packet transform: (H, W, C) -> (H/B, W/B, C, B_rows, B_cols).

    This is the encoder's layout: every latent position's C·4^J coefficients are
    contiguous, ready for the 1×1 projection, and an (H, W, C) image (as Pillow
    gives it) needs no transposing on the way in.  Coefficient (c, r, k) is packet
    channel ``c·4^J + packet_channel(r, k)`` of :func:`wpt2d`; see
    :func:`packet_order_2d`.
    """
    analysis, _ = packet_filters(levels, wavelet)
    block = 2**levels
    h, w, c = image.shape
    hb, wb = h // block, w // block
    rows = _block_filter_rows(image.reshape(hb, block, w * c), analysis)     # (Hb, r, W·C)
    columns = rows.reshape(hb, block, wb, block, c).transpose(2, 3, 4, 0, 1)  # (Wb, B, C, Hb, r)
    out = _block_filter_rows(columns, analysis)                              # (Wb, k, C·Hb·r)
    return out.reshape(wb, block, c, hb, block).transpose(3, 0, 2, 4, 1)     # (Hb, Wb, C, r, k)


def iwpt2d_positions(coefficients: np.ndarray, levels: int, wavelet: str = DEFAULT_WAVELET) -> np.ndarray:
    """Inverse of :func:`wpt2d_positions`: (H', W', C, B, B) -> (H, W, C) image."""
    _, synthesis = packet_filters(levels, wavelet)
    hb, wb, c, block, _ = coefficients.shape
    columns = coefficients.transpose(1, 4, 0, 2, 3)                           # (Wb, k, Hb, C, r)
    out = _block_filter_rows(columns, synthesis)                             # (Wb, x, Hb·C·r)
    rows = out.reshape(wb * block, hb, c, block).transpose(1, 3, 0, 2)      # (Hb, r, W, C)
    image = _block_filter_rows(rows, synthesis)                              # (Hb, y, W·C)
    return image.reshape(hb * block, wb * block, c)


@lru_cache(maxsize=None)
def packet_order_2d(levels: int) -> np.ndarray:
    """For each packet channel of :func:`wpt2d` (per signal channel), its flat index r·B + k
    in :func:`wpt2d_positions`' (row band r, column band k) layout."""
    block = 2**levels
    order = np.zeros(block * block, np.int64)
    for r in range(block):
        for k in range(block):
            channel = 0
            for level in range(levels):
                bit = levels - 1 - level
                channel = channel * 4 + 2 * ((k >> bit) & 1) + ((r >> bit) & 1)  # dwt2: 2·col-high + row-high
            order[channel] = r * block + k
    return order


def fast_wpt2d(x: np.ndarray, levels: int, wavelet: str = DEFAULT_WAVELET) -> np.ndarray:
    """:func:`wpt2d` for numpy (C, H, W) arrays via block filters; same output, dtype kept."""
    c, h, w = x.shape
    block = 2**levels
    y = wpt2d_positions(x.transpose(1, 2, 0), levels, wavelet).reshape(h // block, w // block, c, block * block)
    return y[..., packet_order_2d(levels)].transpose(2, 3, 0, 1).reshape(c * block * block, h // block, w // block)


def fast_iwpt2d(y: np.ndarray, levels: int, wavelet: str = DEFAULT_WAVELET) -> np.ndarray:
    """:func:`iwpt2d` for numpy (C·4^J, H', W') arrays via block filters."""
    block = 2**levels
    c4, hb, wb = y.shape
    c = c4 // (block * block)
    natural = np.empty((hb, wb, c, block * block), y.dtype)
    natural[..., packet_order_2d(levels)] = y.reshape(c, block * block, hb, wb).transpose(2, 3, 0, 1)
    return iwpt2d_positions(natural.reshape(hb, wb, c, block, block), levels, wavelet).transpose(2, 0, 1)
