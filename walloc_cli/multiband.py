"""The N-band model family ``multiband``: any band count, any depth up to 16 bits.

WaLLoC's recipe — a wavelet transform, a linear map across channels, integer entropy
tables — carries over to multispectral and hyperspectral images once the map across bands
is fitted *per image*: sensors differ in band count, order and response, and one cube's
bands are so correlated that a per-image Karhunen–Loève transform (KLT) concentrates almost
all the energy in a few components.  So:

1. **Spectral KLT.** Integer band means (sent) are removed; the covariance's eigenvectors
   by decreasing variance are the components.  Only the K components that keep a nonzero
   coefficient are sent, each column rounded to its own fixed-point precision (more bits
   for stronger components: ``matrix_bits``) and coded as differences along the bands.
   The encoder projects onto the *rounded* columns by least squares, so the decoder's
   ``x = Σ_k column_k · y_k + mean`` is the best fit those columns allow.
2. **Spatial wavelet.** Each component gets D levels of the bior4.4 2-D DWT of
   :mod:`walloc_cli.wavelets` (the pyramid: only the low band is split again; on the
   multispectral tune files it beat a 3-level full packet tree, mean BD-rate against JPEG
   2000 −28.3 → −31.5 %, and encodes 3–4× faster); a low band of
   odd size is mirror-extended by one sample before its next level, so no padding to 2^D.
   **Per-level rotations**: bands correlate one way in the smooth picture and another way in
   the edges, so with 2–16 components each level's subbands may get their own integer
   eigenvector rotation (7-bit, sent), kept when the file comes out smaller.
3. **Uniform quantization**: one step for every coefficient (the KLT is orthonormal and
   bior4.4 nearly so: equal steps are the MSE choice), set by the quality relative to the
   file's dynamic range (max − min), with rate–distortion optimised rounding
   (:func:`rd_round`: each value the cheaper of its nearest integer and the next toward zero,
   costed with the tables of its dead-zone context; encoder only).
4. **Entropy coding with integer tables.**  The weights hold a bank of 80 integer tables
   (dead-zone-quantized Laplace laws on a quarter-octave grid of scales).  Each
   (component, subband) group is coded in two checkerboard phases; each phase sends a base
   table b (as a difference from the previous one) and a slope g, and every coefficient takes table ``b + g·(L − 24)/4`` where L is
   the integer quarter-octave level of its known neighbourhood: the 3×3 magnitudes of its
   parent subband, of its sibling at the same level and of the same subband in the previous
   component, plus (second phase) its four same-band neighbours.  Everything the entropy
   decoder needs is an integer; the step and the reconstruction offsets (each value at its
   bin's centroid under its table's law) only scale the decoded integers.

Memory: a raster of more than STRIP_SAMPLES samples is coded in horizontal strips
(:func:`strip_rows_for`; header field ``strip_rows``, section ``strips`` as in
:mod:`walloc_cli.strips`).  The KLT is one for the raster — its statistics are summed strip
by strip — while the wavelet pyramid, the contexts, the rotations and the range coder restart
in each strip, so the float64 samples, float32 components, int64 integers and contexts (about
45–50 bytes per sample) are a strip's, not the raster's: the working set depends on width ×
bands, never on height.  ``--max-pixels`` counts samples (height × width × bands).
"""
from __future__ import annotations

import zlib
from typing import Any, Iterator

import constriction
import numpy as np

from . import strips, wavelets
from .entropy import (TOTAL, EntropyError, RaggedTables, decode_grouped, decoding_failures, encode_grouped,
                      quantize_distribution, range_decoder, symbol_bits)
from .quality import check_quality
from .model import ModelConfig, dead_zone_round
from .threads import one_blas_thread

CODER = "constriction.queue.RangeEncoder/u32/p24/multiband-v1"
MATRIX_BITS = 14        # most fixed-point bits of the spectral matrix (int16 entries)
MATRIX_MARGIN = 6       # extra bits over log2(component spread / step): measured on Jasper (q 20, 50)
STEP_UNIT = 1 << 10     # the header's integer step is the quantization step × STEP_UNIT
SLOPES = 5              # g = 0 … 4: table index rises g/4 steps per quarter-octave of activity
CENTRE = 24             # level L of a neighbourhood whose mean |value| is 1
MAX_LEVELS = 12         # D a header may name
LEVELS = 5              # wavelet levels D for ordinary images ...
LEVELS_MARGIN = 3       # ... fewer when the short side is under 2^(D + LEVELS_MARGIN) (small tiles; format 3)
LEVELS_MARGIN_V2 = 2    # the margin of format versions 1-2 (mean tune BD-rate of the 3 small tune files: 2: −53.1 %, 3: −53.6 %, 4: −48.9 %)
ROTATE_MAX = 16         # per-level rotations are tried for 2 … ROTATE_MAX components
ROTATION_BITS = 7       # fixed-point bits of a rotation matrix (7, 10, 12: mean tune BD-rate −37.6, −37.4, −37.3 %)
BASE_START = 40         # the prediction of the first group's base table
BASE_DELTA_TABLE = 28   # bank table (Laplace scale 4) for base-table differences
NEIGHBOUR_WEIGHT = 8    # a same-band neighbour counts as this many cells of the other bands' 3×3 boxes
STRIP_SAMPLES = 1 << 23  # samples (rows × width × bands) per strip: the encoder's working set (docs/LIMITS.md)
MIN_STRIP_ROWS = 128     # ... but never fewer rows: strips of 64 rows cost Landsat-8 +8.0 % (BD-rate), of 128 +3.6 %
RD_LAMBDA = 0.15        # rate–distortion rounding's multiplier (step² per bit); 0: dead-zone rounding only
RD_GROUP_BITS = 10      # side bits of a coded group (base tables, slopes) when deciding to zero it; 0: never
FIRST_LOG2 = -5.0       # table s of the bank has Laplace scale 2^(FIRST_LOG2 + s/4) steps


class MultibandModel:
    """A loaded ``multiband`` model: the table bank and the quantizer's constants."""

    has_quality = True

    def __init__(self, config: ModelConfig, raw: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.config = config
        self.bank = RaggedTables(arrays["bank.lo"].astype(np.int32), arrays["bank.size"].astype(np.int32),
                                 arrays["bank.offset"].astype(np.int64), arrays["bank.freqs"].astype(np.int32))
        self.bank.validate()
        self.levels_thresholds = arrays["context.thresholds"].astype(np.int64)
        # in the arrays, not the JSON: the weights' SHA-256, which every file names, covers them
        self.deadzone = float(arrays["quant.deadzone"])
        self.reconstruction = float(arrays["quant.reconstruction"])
        self.step_scale = float(arrays["quant.step_scale"])
        self.step_slope = float(arrays["quant.step_slope"])
        self.offsets = arrays["quant.offsets"].astype(np.float64) if "quant.offsets" in arrays else None
        self.tables = int(self.bank.lo.shape[0])
        self._bits = None

    # -- quality ------------------------------------------------------------------------
    def check_quality(self, quality: Any) -> int:
        return check_quality(quality)

    def step_of(self, quality: int, peak: int) -> int:
        """The integer step (× STEP_UNIT) for a quality and a dynamic range max − min."""
        step = max(peak, 1) * self.step_scale * 2.0 ** (-self.check_quality(quality) / self.step_slope)
        return max(1, int(round(step * STEP_UNIT)))

    # -- the spectral transform ---------------------------------------------------------------
    @staticmethod
    def spectral(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Integer band means (B,) and the covariance around them (B, B), summed strip by strip
        (:func:`statistics`) -> the means, orthonormal eigenvectors (B, B) as columns by
        decreasing variance (each with its largest entry positive: deterministic signs), and the
        standard deviation of each component."""
        bands = cov.shape[0]
        if bands == 1:
            return mean, np.ones((1, 1)), np.sqrt(cov[0])
        values, vectors = np.linalg.eigh(cov)
        order = np.argsort(-values, kind="stable")
        vectors = vectors[:, order]
        signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(bands)])
        return mean, vectors * np.where(signs == 0, 1, signs), np.sqrt(np.maximum(values[order], 0))

    @staticmethod
    def matrix_bits(spread: float, step: float) -> int:
        """Fixed-point bits of the sent matrix: rounding it leaks about 2^-bits of the strongest
        component into the others, which is harmless once it is well below a step."""
        return int(np.clip(np.ceil(np.log2(max(spread, 1e-9) / step)) + MATRIX_MARGIN, 2, MATRIX_BITS))

    # -- table choice ---------------------------------------------------------------------
    def bits(self) -> np.ndarray:
        """Encoder only: approximate cost in bits of value v under table s, (S, 2·V + 1)."""
        if self._bits is None:
            reach = int(self.bank.size.max()) // 2 + 1
            v = np.arange(-reach, reach + 1)
            out = np.empty((self.tables, v.size))
            for s in range(self.tables):
                row = self.bank.row(s).astype(np.float64) / TOTAL
                lo, size = int(self.bank.lo[s]), int(self.bank.size[s])
                idx = v - lo
                inside = (idx >= 0) & (idx < size)
                beyond = np.where(idx < 0, -idx, idx - size + 1)
                escape = -np.log2(row[size]) + 6 + np.log2(np.maximum(beyond, 1)) * 1.0
                out[s] = np.where(inside, -np.log2(row[np.clip(idx, 0, size - 1)]), escape)
            self._bits = out
        return self._bits

    def level(self, activity: np.ndarray, cells: int) -> np.ndarray:
        """Integer quarter-octave level of a neighbourhood's mean |value| × 64 (0 when no neighbours)."""
        if cells == 0:
            return np.full(activity.shape, CENTRE, np.int64)
        return np.searchsorted(self.levels_thresholds, (activity * 64) // cells, side="right").astype(np.int64)

    def which(self, base: Any, slope: int, level: np.ndarray) -> np.ndarray:
        """Table of each value: ``base + slope·(level − CENTRE)/4`` (floor), within the bank."""
        return np.minimum(np.maximum(base + (slope * (level - CENTRE)) // 4, 0), self.tables - 1)

    def choose(self, values: np.ndarray, level: np.ndarray) -> tuple[int, int]:
        """Base table and slope that code ``values`` (at context ``level``) in the fewest bits
        (encoder only; searched within 4 octaves of the scale the values' mean suggests)."""
        bits = self.bits()
        reach = (bits.shape[1] - 1) // 2
        mean = float(np.abs(values).mean())
        guess = int(round(4 * (np.log2(max(mean, 2.0**-6)) - FIRST_LOG2)))
        bases = np.arange(max(0, guess - 16), min(self.tables, guess + 17))
        order = np.argsort(level, kind="stable")
        sorted_levels = level[order]
        starts = np.flatnonzero(np.concatenate(([True], np.diff(sorted_levels) != 0)))
        levels = sorted_levels[starts]
        lo_row, hi_row = int(self.which(bases[0], SLOPES - 1, levels.min())), int(self.which(bases[-1], SLOPES - 1, levels.max()))
        rows = np.arange(min(lo_row, bases[0]), max(hi_row, bases[-1]) + 1)
        cost = bits[rows][:, np.clip(values[order], -reach, reach) + reach]    # (rows, N) in level order
        by_level = np.add.reduceat(cost, starts, axis=1)                          # (rows, levels)
        best = (np.inf, 0, 0)
        for slope in range(SLOPES if levels.size > 1 or levels[0] != CENTRE else 1):
            idx = self.which(bases[:, None], slope, levels[None, :]) - rows[0]    # (bases, levels)
            total = by_level[idx, np.arange(levels.size)[None, :]].sum(axis=1)
            i = int(total.argmin())
            if total[i] < best[0]:
                best = (float(total[i]), int(bases[i]), slope)
        return best[1], best[2]


def box3(a: np.ndarray) -> np.ndarray:
    """Sum over each 3×3 neighbourhood (zeros outside) of the last two axes (integers)."""
    p = np.zeros(a.shape[:-2] + (a.shape[-2] + 2, a.shape[-1] + 2), a.dtype)
    p[..., 1:-1, 1:-1] = a
    rows = p[..., :-2, :] + p[..., 1:-1, :] + p[..., 2:, :]
    return rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]


def levels_for(height: int, width: int, margin: int = LEVELS_MARGIN) -> int:
    """Wavelet levels D: LEVELS for ordinary images, fewer for small ones (``margin``: that of
    the format version the file has — LEVELS_MARGIN_V2 before version 3)."""
    side = min(height, width)
    return int(max(1, min(LEVELS, int(np.log2(max(side, 1))) - margin)))


def subband_shapes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """Sizes of the subbands in coding order: LL_D, then levels D … 1, three details each.

    A low band of odd size is mirror-extended by one row or column before its next level,
    so any size works and costs at most one extra sample per side and level."""
    sizes = [(height, width)]
    for _ in range(levels):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    out = [sizes[levels]]
    for level in range(levels, 0, -1):
        out += [sizes[level]] * 3
    return out


def context_of(index: int, levels: int) -> tuple[int | None, bool, int | None]:
    """(parent subband, whether it is at half size, sibling subband) of a subband in coding order."""
    if index == 0:
        return None, False, None
    level = levels - (index - 1) // 3
    orientation = (index - 1) % 3
    parent = 0 if level == levels else index - 3
    return parent, level != levels, index - 1 if orientation else None


def analyse(y: np.ndarray, levels: int) -> list[np.ndarray]:
    """(K, H, W) float32 -> subbands (K, h, w) in coding order (bior4.4, periodized per level)."""
    details = []
    low = y
    for _ in range(levels):
        low = np.pad(low, ((0, 0), (0, low.shape[1] % 2), (0, low.shape[2] % 2)), mode="symmetric")
        bands = wavelets.dwt2(low, wavelets.DEFAULT_WAVELET)
        low = np.ascontiguousarray(bands[:, 0])
        details.append([np.ascontiguousarray(bands[:, i]) for i in (1, 2, 3)])
    out = [low]
    for level in reversed(details):
        out += level
    return out


def synthesise(subbands: list[np.ndarray], height: int, width: int, levels: int) -> np.ndarray:
    """Inverse of :func:`analyse`: subbands -> (K, H, W)."""
    sizes = [(height, width)]
    for _ in range(levels):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    low = subbands[0]
    for step, level in enumerate(range(levels, 0, -1)):
        d = subbands[1 + 3 * step : 4 + 3 * step]
        low = wavelets.idwt2(np.stack([low, *d], axis=1), wavelets.DEFAULT_WAVELET)
        h, w = sizes[level - 1]
        low = low[:, :h, :w]
    return low


def _phases(shape: tuple[int, int]) -> list[np.ndarray]:
    """Flat positions of the black squares of a checkerboard, then of the white ones: a white
    square's four neighbours are black, hence known when it is coded.  A 1×1 subband has no
    white square: nothing at all is sent for an empty phase."""
    rows, columns = np.indices(shape)
    white = ((rows + columns) % 2).reshape(-1).astype(bool)
    return [p for p in (np.flatnonzero(~white), np.flatnonzero(white)) if p.size]


def _phase_level(model: "MultibandModel", activity: np.ndarray, cells: int, values: np.ndarray, phase: int,
                 where: np.ndarray) -> np.ndarray:
    """Context level of each value of a phase: white squares add their four (black, already
    coded) neighbours' magnitudes, weighted NEIGHBOUR_WEIGHT per cell against the 3×3 boxes."""
    if phase == 0:
        return model.level(activity.reshape(-1)[where], cells)
    a = np.abs(values)
    p = np.zeros((a.shape[0] + 2, a.shape[1] + 2), np.int64)
    p[1:-1, 1:-1] = a
    near = (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]).reshape(-1)[where]
    return model.level(activity.reshape(-1)[where] + NEIGHBOUR_WEIGHT * near, cells + 4 * NEIGHBOUR_WEIGHT)


def _activity(boxes: dict, k: int, index: int, levels: int, shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Sum of |values| over the 3×3 neighbourhoods already known when subband ``index`` of
    component k is coded — its parent (upsampled when at half size), its sibling at the
    same level and the same subband of the previous component — and how many cells."""
    parent, half, sibling = context_of(index, levels)
    total = np.zeros(shape, np.int64)
    cells = 0
    if parent is not None:
        box = boxes[k, parent]
        if half:
            box = np.repeat(np.repeat(box, 2, axis=0), 2, axis=1)[: shape[0], : shape[1]]
        total += box
        cells += 9
    if sibling is not None:
        total += boxes[k, sibling]
        cells += 9
    if k > 0:
        total += boxes[k - 1, index]
        cells += 9
    return total, cells


def strip_rows_for(height: int, width: int, bands: int) -> int:
    """Rows per strip (the encoder's rule; a decoder reads ``strip_rows`` from the header): the
    whole raster when it holds at most STRIP_SAMPLES samples, else equal strips of about that
    many samples, never fewer than MIN_STRIP_ROWS rows (each strip's wavelet pyramid is
    mirror-extended at its edges: short strips cost rate there)."""
    if height * width * bands <= STRIP_SAMPLES:
        return height
    target = max(MIN_STRIP_ROWS, STRIP_SAMPLES // (width * bands))
    return -(-height // -(-height // target))


def _samples(array: np.ndarray, r0: int, r1: int) -> np.ndarray:
    """Rows r0:r1 of an (H, W, B) array as (N, B) float64 — one strip's, never the whole raster's
    (the array may be a memory map)."""
    return array[r0:r1].reshape(-1, array.shape[2]).astype(np.float64)


def statistics(array: np.ndarray, cuts: list[tuple[int, int]]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Band minima, maxima, integer means and the covariance around those means, in two passes
    over the strips ``cuts`` (for one strip: exactly what a whole-raster computation gives)."""
    h, w, bands = array.shape
    lows = np.full(bands, np.iinfo(np.int64).max, np.int64)
    highs = np.full(bands, np.iinfo(np.int64).min, np.int64)
    total = np.zeros(bands)
    for r0, r1 in cuts:
        x = _samples(array, r0, r1)
        lows, highs = np.minimum(lows, x.min(axis=0).astype(np.int64)), np.maximum(highs, x.max(axis=0).astype(np.int64))
        total += x.sum(axis=0)
    mean = np.rint(total / (h * w)).astype(np.int64)
    cov = np.zeros((bands, bands))
    for r0, r1 in cuts:
        centred = _samples(array, r0, r1) - mean
        cov += centred.T @ centred
    return lows, highs, mean, cov / (h * w)


def _peaks(array: np.ndarray, r0: int, r1: int, mean: np.ndarray, vectors: np.ndarray, levels: int) -> np.ndarray:
    """Largest |wavelet coefficient| of each exact KLT component over strip r0:r1."""
    bands, width = array.shape[2], array.shape[1]
    exact = analyse(((_samples(array, r0, r1) - mean) @ vectors).T.reshape(bands, r1 - r0, width).astype(np.float32),
                    levels)
    return np.max([np.abs(b).reshape(bands, -1).max(axis=1) for b in exact], axis=0)


def _components(array: np.ndarray, r0: int, r1: int, mean: np.ndarray, matrix: np.ndarray, bits: np.ndarray,
                levels: int) -> list[np.ndarray]:
    """Subbands (K, h, w) of strip r0:r1 projected on the sent (rounded) columns by least squares,
    so the decoder's sum of columns is the best fit the rounded matrix allows."""
    rows, width = r1 - r0, array.shape[1]
    components = matrix.shape[1]
    if not components:
        return [np.zeros((0, *shape), np.float32) for shape in subband_shapes(rows, width, levels)]
    x = _samples(array, r0, r1) - mean
    basis = matrix / (1 << bits).astype(np.float64)
    y = np.linalg.lstsq(basis.T @ basis, basis.T @ x.T, rcond=None)[0].T  # normal equations: K × K
    del x
    return analyse(np.ascontiguousarray(y.T).reshape(components, rows, width).astype(np.float32), levels)


def _code(model: MultibandModel, matrix: np.ndarray | None, bits: np.ndarray, rotation: list[np.ndarray] | None,
          q: list[np.ndarray], levels: int) -> bytes:
    """One range-coder stream: the spectral matrix (first strip only), the rotations, the groups."""
    encoder = constriction.stream.queue.RangeEncoder()
    if matrix is not None:
        _encode_matrix(model, encoder, matrix, bits)
    if rotation is not None:
        _encode_rotations(model, encoder, rotation)
    _encode_groups(model, encoder, q, levels)
    return encoder.get_compressed().astype("<u4").tobytes()


def encode(model: MultibandModel, array: np.ndarray, quality: int, step: int | None = None
           ) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(H, W, B) integers -> header fields and sections of a ``raster`` file.

    The statistics (ranges, means, covariance) and the choice of K — the exact KLT components
    that keep any nonzero coefficient — take passes over the strips; the sent K columns are
    rounded each to its own precision; then each strip is projected, transformed, quantized and
    coded on its own (its own range-coder stream, contexts and rotations; the spectral matrix
    rides in the first).  A raster of one strip is coded exactly as before strips existed.
    ``step`` (× STEP_UNIT) overrides the quality's step: a group of block-replicated bands
    (:mod:`walloc_cli.blocks`) is coded finer than the raster's quality alone would say."""
    quality = model.check_quality(quality)
    h, w, bands = array.shape
    rows = strip_rows_for(h, w, bands)
    cuts = strips.bounds(h, rows)
    levels = levels_for(rows, w)
    with one_blas_thread():
        lows, highs, mean, cov = statistics(array, cuts)
        if step is None:
            step = model.step_of(quality, int(highs.max() - lows.min()))
        delta = step / STEP_UNIT
        mean, vectors, spread = model.spectral(mean, cov)
        peaks = np.max([_peaks(array, r0, r1, mean, vectors, levels) for r0, r1 in cuts], axis=0)
        big = peaks >= (0.5 + model.deadzone) * delta
        components = int(np.flatnonzero(big)[-1]) + 1 if big.any() else 0
        bits = np.array([model.matrix_bits(spread[k], delta) for k in range(components)], np.int64)
        matrix = np.rint(vectors[:, :components] * (1 << bits)).astype(np.int64)
    # Per-level rotations pay for their matrices only with few components: the first strip tries
    # both and keeps the smaller file; the other strips follow its choice (one header flag).
    rotate_choice: bool | None = None if 2 <= components <= ROTATE_MAX else False
    payloads = []
    for index, (r0, r1) in enumerate(cuts):
        with one_blas_thread():
            subbands = _components(array, r0, r1, mean, matrix, bits, levels)
        best = None
        for use in ([False, True] if rotate_choice is None else [rotate_choice]):
            rotation = rotations_of(subbands, levels) if use else None
            with one_blas_thread():
                rotated = subbands if rotation is None else rotate(subbands, rotation, levels, forward=True)
                q = [dead_zone_round(b / delta, model.deadzone) for b in rotated]
            if RD_LAMBDA:
                q = rd_round(model, [b / delta for b in rotated], q, levels, RD_LAMBDA)
            payload = _code(model, matrix if index == 0 else None, bits, rotation, q, levels)
            if best is None or len(payload) < len(best[0]):
                best = (payload, use)
        payloads.append(best[0])
        rotate_choice = best[1]
    fields = {"quality": quality, "step": step, "levels": levels, "components": components,
              "rotations": int(rotate_choice)}
    sections = {"latents": b"".join(payloads), "spectral": pack_ranges(lows, highs, mean, array.dtype)}
    if len(cuts) > 1:
        fields["strip_rows"] = rows
        sections["strips"] = strips.pack_sizes(payloads)
    return fields, sections


def level_groups(levels: int) -> list[list[int]]:
    """Subbands (coding order) that share one rotation: LL_D, then each level's three details."""
    return [[0]] + [[1 + 3 * g, 2 + 3 * g, 3 + 3 * g] for g in range(levels)]


def rotations_of(subbands: list[np.ndarray], levels: int) -> list[np.ndarray]:
    """Encoder: per level group, the integer (K, K) eigenvectors of the components' covariance
    there (columns by decreasing variance, largest entry positive).  Bands correlate one way
    in the smooth picture and another way in the edges (Landsat's thermal bands follow the
    land cover in LL_D and nothing in the details), which one global KLT cannot capture."""
    out = []
    for group in level_groups(levels):
        f = np.concatenate([subbands[i].reshape(subbands[i].shape[0], -1) for i in group], axis=1).astype(np.float64)
        values, vectors = np.linalg.eigh(f @ f.T)
        vectors = vectors[:, np.argsort(-values, kind="stable")]
        signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(vectors.shape[1])])
        rounded = np.rint(vectors * np.where(signs == 0, 1, signs) * (1 << ROTATION_BITS)).astype(np.int64)
        if abs(np.linalg.det(rounded / (1 << ROTATION_BITS))) < 0.5:  # rounding broke it: no rotation
            rounded = np.eye(len(vectors), dtype=np.int64) << ROTATION_BITS
        out.append(rounded)
    return out


def rotate(subbands: list[np.ndarray], rotation: list[np.ndarray], levels: int, forward: bool) -> list[np.ndarray]:
    """Forward (encoder): the exact inverse of each sent integer rotation; backward (decoder): the
    rotation itself, so decoding undoes precisely what encoding did."""
    out = list(subbands)
    for group, matrix in zip(level_groups(levels), rotation):
        a = matrix / float(1 << ROTATION_BITS)
        m = np.linalg.inv(a) if forward else a
        for i in group:
            shape = subbands[i].shape
            out[i] = (m @ subbands[i].reshape(shape[0], -1).astype(np.float64)).reshape(shape).astype(np.float32)
    return out


def _encode_rotations(model: MultibandModel, encoder, rotation: list[np.ndarray]) -> None:
    """Each rotation column by column: a table (uniform over the bank), then its K entries."""
    base_model = constriction.stream.model.Uniform(model.tables)
    for matrix in rotation:
        for column in matrix.T:
            base, _ = model.choose(column, np.full(column.size, CENTRE))
            encoder.encode(np.array([base], np.int32), base_model)
            encode_grouped(encoder, model.bank, 0, np.full(column.size, base), column)


def _decode_rotations(model: MultibandModel, decoder, components: int, levels: int) -> list[np.ndarray]:
    base_model = constriction.stream.model.Uniform(model.tables)
    out = []
    for _ in level_groups(levels):
        matrix = np.zeros((components, components), np.int64)
        for k in range(components):
            base = int(decoder.decode(base_model, 1)[0])
            order, values = decode_grouped(decoder, model.bank, 0, np.full(components, base), model.tables)
            matrix[order, k] = values
        if np.abs(matrix).max(initial=0) > (2 << ROTATION_BITS):
            raise EntropyError("corrupt rotation matrix")
        out.append(matrix)
    return out


def _encode_matrix(model: MultibandModel, encoder, matrix: np.ndarray, bits: np.ndarray) -> None:
    """Each sent column: its precision (uniform over 1 … MATRIX_BITS), a table, then its entries
    as differences along the bands (eigenvectors of spectra are smooth in wavelength)."""
    precision, base_model = constriction.stream.model.Uniform(MATRIX_BITS), constriction.stream.model.Uniform(model.tables)
    for k in range(matrix.shape[1]):
        diffs = np.diff(matrix[:, k], prepend=0)
        base, _ = model.choose(diffs, np.full(diffs.size, CENTRE))
        encoder.encode(np.array([bits[k] - 1], np.int32), precision)
        encoder.encode(np.array([base], np.int32), base_model)
        encode_grouped(encoder, model.bank, 0, np.full(diffs.size, base), diffs)


def _decode_matrix(model: MultibandModel, decoder, bands: int, components: int) -> tuple[np.ndarray, np.ndarray]:
    precision, base_model = constriction.stream.model.Uniform(MATRIX_BITS), constriction.stream.model.Uniform(model.tables)
    matrix = np.zeros((bands, components), np.int64)
    bits = np.zeros(components, np.int64)
    for k in range(components):
        bits[k] = int(decoder.decode(precision, 1)[0]) + 1
        base = int(decoder.decode(base_model, 1)[0])
        order, values = decode_grouped(decoder, model.bank, 0, np.full(bands, base), model.tables)
        diffs = np.zeros(bands, np.int64)
        diffs[order] = values
        matrix[:, k] = np.cumsum(diffs)
        if np.abs(matrix[:, k]).max(initial=0) > (1 << (bits[k] + 1)):
            raise EntropyError("corrupt spectral matrix")
    return matrix, bits


def _plan(model: MultibandModel, q: list[np.ndarray], levels: int
          ) -> Iterator[tuple[int, int, list[tuple[np.ndarray, int, int, int, np.ndarray]]]]:
    """The encoder's choices for each (component k, subband i) group in coding order: per
    checkerboard phase (positions, base table, its prediction, slope, each value's table); an
    all-zero group has no phases.  What :func:`_encode_groups` codes and :func:`rd_round` costs."""
    components = q[0].shape[0]
    boxes = {(k, i): box3(np.abs(band[k])) for i, band in enumerate(q) for k in range(components)}
    previous = BASE_START
    for k in range(components):
        for i, band in enumerate(q):
            values = band[k]
            phases = []
            if values.any():
                activity, cells = _activity(boxes, k, i, levels, values.shape)
                predicted = previous
                for phase, where in enumerate(_phases(values.shape)):
                    level = _phase_level(model, activity, cells, values, phase, where)
                    base, slope = model.choose(values.reshape(-1)[where], level)
                    phases.append((where, base, predicted, slope, model.which(base, slope, level)))
                    predicted = previous = base if phase == 0 else previous
            yield k, i, phases


def _encode_groups(model: MultibandModel, encoder, q: list[np.ndarray], levels: int) -> None:
    """Each (component, subband) group: an 'all zero' flag, else its base table, slope and values."""
    flag, slope_model = (constriction.stream.model.Uniform(n) for n in (2, SLOPES))
    for k, i, phases in _plan(model, q, levels):
        encoder.encode(np.array([int(not phases)], np.int32), flag)
        for where, base, predicted, slope, which in phases:
            _put_base(model, encoder, base, predicted)
            encoder.encode(np.array([slope], np.int32), slope_model)
            encode_grouped(encoder, model.bank, 0, which, q[i][k].reshape(-1)[where])


def rd_round(model: MultibandModel, scaled: list[np.ndarray], q: list[np.ndarray], levels: int,
             lam: float) -> list[np.ndarray]:
    """Rate–distortion optimised rounding (encoder only; the decoder reads plain integers).

    For each coefficient (in steps) whose nearest integer n is not 0, the cheaper of n and
    n − 1 toward zero under ``(|y| − reconstruction)² + lam · bits``, with bits from the
    table the coefficient gets under the dead-zone rounding ``q``'s contexts (an estimate:
    the coder then recomputes the true contexts from the final values, as for rgb-1x in
    :mod:`walloc_cli.rdoq`).  Coefficients of all-zero groups keep 0."""
    tables = [np.full(b.shape, -1, np.int16) for b in q]  # table indices: the bank has 80
    for k, i, phases in _plan(model, q, levels):
        for where, _, _, _, which in phases:
            tables[i][k].reshape(-1)[where] = which
    out = []
    for y, t, dead in zip(scaled, tables, q):
        a = np.abs(y).astype(np.float64)
        n = np.floor(a + 0.5).astype(np.int64)
        pick = (n > 0) & (t >= 0)
        a, n, rows = a[pick], n[pick], t[pick]
        sign = np.where(y[pick] < 0, -1, 1)
        offset = model.offsets[rows] + model.reconstruction if model.offsets is not None else model.reconstruction
        def cost(m: np.ndarray) -> np.ndarray:
            distortion = np.where(m > 0, (a - (m + offset)) ** 2, a**2)
            return distortion + lam * symbol_bits(model.bank, rows, sign * m)
        chosen = dead.copy()
        chosen[pick] = sign * np.where(cost(n - 1) < cost(n), n - 1, n)
        if RD_GROUP_BITS:
            _drop_groups(model, y, t, chosen, lam)
        out.append(chosen)
    return out


def _drop_groups(model: MultibandModel, y: np.ndarray, t: np.ndarray, chosen: np.ndarray, lam: float) -> None:
    """Zero (in place) each component's subband whose values save less distortion than λ times
    their bits plus the group's side information (RD_GROUP_BITS): it is then sent as one flag.
    Component by component, so the temporaries are one group's."""
    for k in range(chosen.shape[0]):
        coded = t[k] >= 0
        if not coded.any():
            continue
        rows, c = t[k][coded], chosen[k][coded]
        a = np.abs(y[k][coded]).astype(np.float64)
        offset = model.offsets[rows] + model.reconstruction if model.offsets is not None else model.reconstruction
        saved = float((a**2 - (a - np.where(c != 0, np.abs(c) + offset, 0.0)) ** 2).sum())
        if saved < lam * (float(symbol_bits(model.bank, rows, c).sum()) + RD_GROUP_BITS):
            chosen[k] = 0


def _put_base(model: MultibandModel, encoder, base: int, predicted: int) -> None:
    """A base table as its difference from the predicted one (the previous group's first phase, or
    this group's first phase for its second): neighbouring groups use nearby scales, so the
    difference costs 2–4 bits where a uniform choice among 80 tables cost 6.3."""
    encode_grouped(encoder, model.bank, 0, np.array([BASE_DELTA_TABLE]), np.array([base - predicted]))


def _get_base(model: MultibandModel, decoder, predicted: int) -> int:
    _, values = decode_grouped(decoder, model.bank, 0, np.array([BASE_DELTA_TABLE]), model.tables)
    base = predicted + int(values[0])
    if not 0 <= base < model.tables:
        raise EntropyError("corrupt table choice")
    return base


def decode(model: MultibandModel, payload: bytes, bands: int, components: int, height: int, width: int,
           levels: int, rotations: bool = False, known: tuple[np.ndarray, np.ndarray] | None = None
           ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray] | None, list[np.ndarray]]:
    """One strip's range-coder stream (the whole ``latents`` section when there is one strip)
    -> (matrix (B, K), its bits per column (K,), subbands (K, h, w) int64, the per-level
    rotations or None, each value's table index (K, h, w) int16).  ``known``: the (matrix,
    bits) the first strip sent; the other strips do not repeat them."""
    if len(payload) % 4:
        raise EntropyError("compressed latents are not a whole number of 32-bit words")
    shapes = subband_shapes(height, width, levels)
    # each group and (first strip) each matrix column costs a bit at least
    if 8 * len(payload) + 64 < components * (len(shapes) + (4 if known is None else 0)):
        raise EntropyError("payload too short for the announced number of latents")
    decoder = range_decoder(payload)
    flag, slope_model = (constriction.stream.model.Uniform(n) for n in (2, SLOPES))
    q = [np.zeros((components, *shape), np.int64) for shape in shapes]
    tables = [np.zeros((components, *shape), np.int16) for shape in shapes]  # each value's table (reconstruction)
    boxes = {(k, i): np.zeros(shape, np.int64) for i, shape in enumerate(shapes) for k in range(components)}
    limit = np.iinfo(np.int32).max
    with decoding_failures():
        matrix, bits = known if known is not None else _decode_matrix(model, decoder, bands, components)
        rotation = _decode_rotations(model, decoder, components, levels) if rotations else None
        previous = BASE_START
        for k in range(components):
            for i, shape in enumerate(shapes):
                if int(decoder.decode(flag, 1)[0]):
                    continue
                activity, cells = _activity(boxes, k, i, levels, shape)
                flat = q[i][k].reshape(-1)
                predicted = previous
                for phase, where in enumerate(_phases(shape)):
                    base = _get_base(model, decoder, predicted)
                    predicted = previous = base if phase == 0 else previous
                    slope = int(decoder.decode(slope_model, 1)[0])
                    level = _phase_level(model, activity, cells, q[i][k], phase, where)
                    which = model.which(base, slope, level)
                    tables[i][k].reshape(-1)[where] = which
                    order, values = decode_grouped(decoder, model.bank, 0, which,
                                                   model.tables)
                    if np.abs(values).max(initial=0) > limit:
                        raise EntropyError("decoded latent value out of range")
                    flat[where[order]] = values
                boxes[k, i] = box3(np.abs(q[i][k]))
        if not decoder.maybe_exhausted():  # a header that does not match its payload leaves words over
            raise EntropyError("the latents do not match the header (data left over)")
    return matrix, bits, q, rotation, tables


def dequantize(model: MultibandModel, q: np.ndarray, step: int, tables: np.ndarray | None = None) -> np.ndarray:
    """Integers -> coefficient values (float32): nonzero at (|n| + offset) steps, the offset being
    the centroid of the value's bin under its table's Laplace law (``quant.offsets``) plus the
    model's ``reconstruction`` shift, or that shift alone without tables."""
    offset = model.reconstruction if tables is None or model.offsets is None else \
        model.offsets[tables] + model.reconstruction
    magnitude = np.where(q != 0, np.abs(q) + offset, 0.0)
    return (np.sign(q) * magnitude * (step / STEP_UNIT)).astype(np.float32)


def reconstruct(model: MultibandModel, q: list[np.ndarray], step: int, matrix: np.ndarray, bits: np.ndarray,
                ranges: dict[str, np.ndarray], height: int, width: int, levels: int, dtype: str,
                rotation: list[np.ndarray] | None = None, tables: list[np.ndarray] | None = None) -> np.ndarray:
    """Quantized subbands -> (H, W, B) array of ``dtype``, each band clipped to its range."""
    bands = ranges["mean"].size
    components = q[0].shape[0]
    with one_blas_thread():
        if components:
            subbands = [dequantize(model, b, step, None if tables is None else t)
                        for b, t in zip(q, tables or [None] * len(q))]
            if rotation is not None:
                subbands = rotate(subbands, rotation, levels, forward=False)
            y = synthesise(subbands, height, width, levels)
            basis = matrix / (1 << bits).astype(np.float64)
            x = y.reshape(components, -1).T.astype(np.float64) @ basis.T + ranges["mean"]
        else:
            x = np.broadcast_to(ranges["mean"].astype(np.float64), (height * width, bands))
        x = np.clip(np.rint(x), ranges["low"], ranges["high"])
    return x.reshape(height, width, bands).astype(dtype)


def pack_ranges(low: np.ndarray, high: np.ndarray, mean: np.ndarray, dtype: np.dtype) -> bytes:
    """The ``spectral`` section of format version 3: band minima, maxima and integer means, B
    each, as little-endian samples of the raster's own dtype (all three lie in its range).
    Version 2 stored them zlib-compressed as int32: 49 bytes for 4 bands where 24 do."""
    return np.concatenate([low, high, mean]).astype(np.dtype(dtype).newbyteorder("<")).tobytes()


def parse_ranges(section: bytes, bands: int, dtype: np.dtype | None = None) -> dict[str, np.ndarray]:
    """The ``spectral`` section: band minima, maxima and means, B values each — raw samples of
    ``dtype`` (format version 3, :func:`pack_ranges`), or zlib of int32 (versions 1–2: no dtype)."""
    if dtype is not None:
        kind = np.dtype(dtype).newbyteorder("<")
        if len(section) != 3 * bands * kind.itemsize:
            raise EntropyError("corrupt spectral section (wrong size)")
        ints = np.frombuffer(section, kind).astype(np.int64)
    else:
        expected = 12 * bands
        try:
            inflater = zlib.decompressobj()
            raw = inflater.decompress(section, expected + 1)  # bounded: a zlib bomb stops here
        except zlib.error:
            raise EntropyError("corrupt spectral section") from None
        if len(raw) != expected or not inflater.eof:
            raise EntropyError("corrupt spectral section (wrong size)")
        ints = np.frombuffer(raw, "<i4").astype(np.int64)
    low, high, mean = ints[:bands], ints[bands : 2 * bands], ints[2 * bands :]
    if (low > high).any() or (mean < low).any() or (mean > high).any():
        raise EntropyError("corrupt spectral section (band ranges)")
    return {"low": low, "high": high, "mean": mean}


# -- the weights: a table bank, no training data ----------------------------------------------
def laplace_bank(tables: int = 80, deadzone: float = 0.2, reach: int = 1024) -> RaggedTables:
    """Integer tables of dead-zone-quantized Laplace laws, scale 2^(FIRST_LOG2 + s/4) steps.

    Computed once when the weights are made and stored as integers: a decoder never
    evaluates an exponential, so no machine's libm can change a table."""
    rows = []
    for s in range(tables):
        sigma = 2.0 ** (FIRST_LOG2 + s / 4)
        support = int(min(reach, np.ceil(sigma * 20 + 1)))
        n = np.arange(1, support + 1)
        tail = np.exp(-(n - 0.5 + deadzone) / sigma) - np.exp(-(n + 0.5 + deadzone) / sigma)
        zero = 1 - np.exp(-(0.5 + deadzone) / sigma)
        escape = np.exp(-(support + 0.5 + deadzone) / sigma) + 2.0 ** -20
        probabilities = np.concatenate([tail[::-1] / 2, [zero], tail / 2, [escape]])
        rows.append((-support, quantize_distribution(probabilities)))
    return RaggedTables.from_rows(rows)


def make_weights(directory, name: str = "nband-1x", deadzone: float = 0.2, reconstruction: float = 0.0,
                 step_scale: float = 0.25, step_slope: float = 10.0) -> None:
    """Write ``<name>.npz`` and ``<name>.json`` (``make nband-weights``)."""
    from pathlib import Path

    from .model import save_model

    bank = laplace_bank(deadzone=deadzone)
    thresholds = np.rint(2.0 ** (np.arange(0, 96) / 4)).astype(np.int64)
    # Centroid of a nonzero bin [|n| − 0.5 + dz, |n| + 0.5 + dz) under table s's Laplace law, minus |n|:
    # near the bin's lower edge for narrow laws, its middle for wide ones.
    sigma = 2.0 ** (FIRST_LOG2 + np.arange(bank.lo.shape[0]) / 4)
    offsets = deadzone - 0.5 + sigma - 1 / np.expm1(1 / sigma)
    arrays = {"bank.lo": bank.lo, "bank.size": bank.size, "bank.offset": bank.offset, "bank.freqs": bank.freqs,
              "context.thresholds": thresholds, "quant.deadzone": np.float64(deadzone),
              "quant.reconstruction": np.float64(reconstruction), "quant.step_scale": np.float64(step_scale),
              "quant.step_slope": np.float64(step_slope), "quant.offsets": offsets}
    config = {"name": name, "modality": "raster", "family": "multiband", "channels": 1, "levels": LEVELS,
              "wavelet": wavelets.DEFAULT_WAVELET, "latent_channels": 1, "decoder_width": 0, "decoder_blocks": 0,
              "decoder_kind": "linear", "coding": "context",
              "info": {"tables": int(bank.lo.shape[0]), "table_law": "dead-zone Laplace, quarter-octave scales",
                       "spectral": f"per-image KLT, {MATRIX_BITS}-bit integer matrix"}}
    save_model(Path(directory), config, arrays)


def load(config: ModelConfig, raw: dict[str, Any], arrays: dict[str, np.ndarray]) -> MultibandModel:
    return MultibandModel(config, raw, arrays)
