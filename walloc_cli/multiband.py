"""The N-band model family ``multiband``: any band count, any depth up to 16 bits.

WaLLoC's recipe — a wavelet packet transform, a linear map across channels, integer
entropy tables — carries over to multispectral and hyperspectral images once the map
across bands is fitted *per image*: sensors differ in band count, order and response, and
one cube's bands are so correlated that a per-image Karhunen–Loève transform (KLT)
concentrates almost all the energy in a few components.  So:

1. **Spectral KLT.** Integer band means m (sent) are removed; the covariance's
   eigenvectors, rounded to ``MATRIX_BITS`` fixed point, form the integer matrix A that
   is sent (only the K columns of components that carry any nonzero coefficient).  The
   encoder uses A's exact inverse, so the decoder's ``x = A·y / 2^MATRIX_BITS + m`` is the
   inverse of what the encoder did; rounding the matrix costs a little decorrelation,
   never accuracy.
2. **Spatial WPT.** Each component gets the J-level bior4.4 packet transform of
   :mod:`walloc_cli.wavelets` (sides mirror-padded to multiples of 2^J).
3. **Uniform quantization** with one step for every coefficient (the KLT is orthonormal
   and the packet transform nearly so: equal steps are the MSE choice), set by the
   quality relative to the file's dynamic range (max − min), and dead-zone rounding.
4. **Entropy coding with integer tables.**  The weights hold a bank of integer tables
   (discretised Laplace laws on a quarter-octave grid of scales).  Every (component,
   packet) group of coefficients sends a base table b and a slope g; each coefficient
   then takes table ``b + g·(L − 24) / 4`` where L is the integer quarter-octave level of
   its already-decoded neighbourhood: the 3×3 magnitudes in the previous packet along
   each frequency axis and in the same packet of the previous component.  Everything
   the entropy decoder needs is an integer; the step and the reconstruction offset only
   scale the decoded integers.

Memory: the whole raster is held (the input array, a float32 copy per component and its
coefficients): about 16 bytes per sample, 1 GB for 64 M samples.  ``--max-pixels`` counts
samples (height × width × bands, padded) for these files.
"""
from __future__ import annotations

import zlib
from typing import Any

import constriction
import numpy as np

from . import wavelets
from .entropy import TOTAL, EntropyError, RaggedTables, decode_grouped, encode_grouped, quantize_distribution
from .errors import WallocError
from .model import ModelConfig, dead_zone_round
from .threads import one_blas_thread

CODER = "constriction.queue.RangeEncoder/u32/p24/multiband-v1"
MATRIX_BITS = 14        # most fixed-point bits of the spectral matrix (int16 entries)
MATRIX_MARGIN = 6       # extra bits over log2(component spread / step): measured on Jasper (q 20, 50)
STEP_UNIT = 1 << 10     # the header's integer step is the quantization step × STEP_UNIT
SLOPES = 5              # g = 0 … 4: table index rises g/4 steps per quarter-octave of activity
CENTRE = 24             # level L of a neighbourhood whose mean |value| is 1
MAX_LEVELS = 4          # J at most (mirror padding costs more than deeper packets gain)
SECTION_LIMIT = 1 << 30


class MultibandModel:
    """A loaded ``multiband`` model: the table bank and the quantizer's constants."""

    has_quality = True

    def __init__(self, config: ModelConfig, raw: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.config = config
        self.bank = RaggedTables(arrays["bank.lo"].astype(np.int32), arrays["bank.size"].astype(np.int32),
                                 arrays["bank.offset"].astype(np.int64), arrays["bank.freqs"].astype(np.int32))
        self.bank.validate()
        self.levels_thresholds = arrays["context.thresholds"].astype(np.int64)
        self.deadzone = float(raw["deadzone"])
        self.reconstruction = float(raw["reconstruction"])
        self.step_scale = float(raw["step_scale"])
        self.step_slope = float(raw["step_slope"])
        self.tables = int(self.bank.lo.shape[0])
        self._bits = None

    # -- quality ------------------------------------------------------------------------
    def check_quality(self, quality: Any) -> int:
        if quality is None or isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) \
                or not 1 <= quality <= 100:
            raise WallocError(f"quality must be an integer from 1 to 100, got {quality!r}")
        return int(quality)

    def step_of(self, quality: int, peak: int) -> int:
        """The integer step (× STEP_UNIT) for a quality and a dynamic range max − min."""
        step = max(peak, 1) * self.step_scale * 2.0 ** (-self.check_quality(quality) / self.step_slope)
        return max(1, int(round(step * STEP_UNIT)))

    # -- the spectral transform ---------------------------------------------------------------
    @staticmethod
    def spectral(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, B) samples -> integer band means (B,), orthonormal eigenvectors (B, B) as columns by
        decreasing variance (each with its largest entry positive: deterministic signs), and the
        standard deviation of each component."""
        mean = np.rint(x.mean(axis=0)).astype(np.int64)
        bands = x.shape[1]
        centred = x - mean
        cov = centred.T @ centred / max(len(x), 1)
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

    def which(self, base: int, slope: int, level: np.ndarray) -> np.ndarray:
        return np.clip(base + (slope * (level - CENTRE)) // 4, 0, self.tables - 1)

    def choose(self, values: np.ndarray, level: np.ndarray) -> tuple[int, int]:
        """Base table and slope that code ``values`` (at context ``level``) in the fewest bits."""
        bits = self.bits()
        reach = (bits.shape[1] - 1) // 2
        cost = bits[:, np.clip(values, -reach, reach) + reach]           # (S, N)
        levels, inverse = np.unique(level, return_inverse=True)
        by_level = np.zeros((self.tables, levels.size))
        np.add.at(by_level.T, inverse, cost.T)
        best = (np.inf, 0, 0)
        bases = np.arange(self.tables)
        for slope in range(SLOPES):
            idx = self.which(bases[:, None], slope, levels[None, :])      # (S, levels)
            total = by_level[idx, np.arange(levels.size)[None, :]].sum(axis=1)
            b = int(total.argmin())
            if total[b] < best[0]:
                best = (float(total[b]), b, slope)
            if levels.size == 1 and levels[0] == CENTRE:
                break
        return best[1], best[2]


def _box3(a: np.ndarray) -> np.ndarray:
    p = np.pad(a, 1)
    rows = p[:-2] + p[1:-1] + p[2:]
    return rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]


def _activity(q: np.ndarray, k: int, r: int, c: int) -> tuple[np.ndarray, int]:
    """Sum of |values| over the 3×3 neighbourhoods already known when group (k, r, c) is coded,
    and how many cells that is.  ``q`` is (K, B, B, H', W') int64, filled up to the group."""
    total = np.zeros(q.shape[3:], np.int64)
    cells = 0
    for known, grid in ((c > 0, (k, r, c - 1)), (r > 0, (k, r - 1, c)), (k > 0, (k - 1, r, c))):
        if known:
            total += _box3(np.abs(q[grid]))
            cells += 9
    return total, cells


def levels_for(height: int, width: int) -> int:
    """Packet levels J: 3 for ordinary images, fewer for tiny ones (padding would dominate)."""
    side = min(height, width)
    return int(max(1, min(MAX_LEVELS - 1, int(np.log2(max(side, 1))) - 2)))


def _spatial(y: np.ndarray, levels: int, pad: tuple[int, int]) -> np.ndarray:
    """(H, W, K) float32 components -> (K, B, B, H', W') packet coefficients (mirror-padded)."""
    y = np.pad(y, ((0, pad[0]), (0, pad[1]), (0, 0)), mode="symmetric")
    return wavelets.wpt2d_positions(y, levels, wavelets.DEFAULT_WAVELET).transpose(2, 3, 4, 0, 1)


def encode(model: MultibandModel, array: np.ndarray, quality: int) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(H, W, B) integers -> header fields and sections of a ``raster`` file.

    Two passes: the exact KLT tells which components keep any nonzero coefficient (K); the
    sent K columns, rounded each to its own precision, are then inverted by least squares,
    so the decoder's sum of columns is the best fit the rounded matrix allows."""
    quality = model.check_quality(quality)
    h, w, bands = array.shape
    levels = levels_for(h, w)
    block = 1 << levels
    pad = ((-h) % block, (-w) % block)
    with one_blas_thread():
        x = array.reshape(-1, bands).astype(np.float64)
        lows, highs = x.min(axis=0).astype(np.int64), x.max(axis=0).astype(np.int64)
        step = model.step_of(quality, int(highs.max() - lows.min()))
        delta = step / STEP_UNIT
        mean, vectors, spread = model.spectral(x)
        x -= mean
        exact = _spatial((x @ vectors).reshape(h, w, bands).astype(np.float32), levels, pad)
        big = np.abs(exact).reshape(bands, -1).max(axis=1) >= (0.5 + model.deadzone) * delta
        components = int(np.flatnonzero(big)[-1]) + 1 if big.any() else 0
        del exact
        bits = np.array([model.matrix_bits(spread[k], delta) for k in range(components)], np.int64)
        matrix = np.rint(vectors[:, :components] * (1 << bits)).astype(np.int64)
        if components:
            basis = matrix / (1 << bits).astype(np.float64)
            y = np.linalg.lstsq(basis, x.T, rcond=None)[0].T
            coefficients = _spatial(y.reshape(h, w, components).astype(np.float32), levels, pad)
            q = dead_zone_round(coefficients / delta, model.deadzone)
        else:
            q = np.zeros((0, block, block, (h + pad[0]) // block, (w + pad[1]) // block), np.int64)
    encoder = constriction.stream.queue.RangeEncoder()
    _encode_matrix(model, encoder, matrix, bits)
    _encode_groups(model, encoder, q)
    spectral = np.concatenate([lows, highs, mean]).astype("<i4").tobytes()
    fields = {"quality": quality, "step": step, "levels": levels, "pad": list(pad), "components": components,
              "latent_shape": [components, block * block, (h + pad[0]) // block, (w + pad[1]) // block]}
    return fields, {"latents": encoder.get_compressed().astype("<u4").tobytes(),
                    "spectral": zlib.compress(spectral, 9)}


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


def _encode_groups(model: MultibandModel, encoder, q: np.ndarray) -> None:
    flag, base_model, slope_model = (constriction.stream.model.Uniform(n) for n in (2, model.tables, SLOPES))
    components, block = q.shape[0], q.shape[1]
    for k in range(components):
        for r in range(block):
            for c in range(block):
                values = q[k, r, c]
                empty = not values.any()
                encoder.encode(np.array([int(empty)], np.int32), flag)
                if empty:
                    continue
                activity, cells = _activity(q, k, r, c)
                level = model.level(activity, cells)
                base, slope = model.choose(values.reshape(-1), level.reshape(-1))
                encoder.encode(np.array([base], np.int32), base_model)
                encoder.encode(np.array([slope], np.int32), slope_model)
                encode_grouped(encoder, model.bank, 0, model.which(base, slope, level), values)


def decode(model: MultibandModel, payload: bytes, bands: int, shape: tuple[int, int, int, int]
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``latents`` section -> (matrix (B, K), its bits per column (K,), int64 (K, B, B, H', W'))."""
    if len(payload) % 4:
        raise EntropyError("compressed latents are not a whole number of 32-bit words")
    components, packets, hb, wb = shape
    block = int(round(packets ** 0.5))
    if 8 * len(payload) + 64 < components * (packets + 4):  # every group costs its 1-bit flag at least
        raise EntropyError("payload too short for the announced number of latents")
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, "<u4").astype(np.uint32))
    flag, base_model, slope_model = (constriction.stream.model.Uniform(n) for n in (2, model.tables, SLOPES))
    q = np.zeros((components, block, block, hb, wb), np.int64)
    limit = np.iinfo(np.int32).max
    try:
        matrix, bits = _decode_matrix(model, decoder, bands, components)
        for k in range(components):
            for r in range(block):
                for c in range(block):
                    if int(decoder.decode(flag, 1)[0]):
                        continue
                    base = int(decoder.decode(base_model, 1)[0])
                    slope = int(decoder.decode(slope_model, 1)[0])
                    activity, cells = _activity(q, k, r, c)
                    which = model.which(base, slope, model.level(activity, cells)).reshape(-1)
                    order, values = decode_grouped(decoder, model.bank, 0, which, model.tables)
                    if np.abs(values).max(initial=0) > limit:
                        raise EntropyError("decoded latent value out of range")
                    q[k, r, c].reshape(-1)[order] = values
    except EntropyError:
        raise
    except Exception as exc:  # constriction raises plain exceptions on exhausted/garbled input
        raise EntropyError(f"range decoder failed: {exc}") from None
    return matrix, bits, q


def dequantize(model: MultibandModel, q: np.ndarray, step: int) -> np.ndarray:
    """Integers -> coefficient values (float32): nonzero at (|n| + reconstruction) steps."""
    magnitude = np.where(q != 0, np.abs(q) + model.reconstruction, 0.0)
    return (np.sign(q) * magnitude * (step / STEP_UNIT)).astype(np.float32)


def reconstruct(model: MultibandModel, q: np.ndarray, step: int, matrix: np.ndarray, bits: np.ndarray,
                ranges: dict[str, np.ndarray], height: int, width: int, levels: int, dtype: str) -> np.ndarray:
    """Quantized coefficients -> (H, W, B) array of ``dtype``, each band clipped to its range."""
    bands = ranges["mean"].size
    with one_blas_thread():
        if q.shape[0]:
            coefficients = dequantize(model, q, step).transpose(3, 4, 0, 1, 2)  # (H', W', K, r, k)
            y = wavelets.iwpt2d_positions(np.ascontiguousarray(coefficients), levels, wavelets.DEFAULT_WAVELET)
            y = y[:height, :width].reshape(-1, q.shape[0]).astype(np.float64)
            basis = matrix / (1 << bits).astype(np.float64)
            x = y @ basis.T + ranges["mean"]
        else:
            x = np.broadcast_to(ranges["mean"].astype(np.float64), (height * width, bands))
        x = np.clip(np.rint(x), ranges["low"], ranges["high"])
    return x.reshape(height, width, bands).astype(dtype)


def parse_ranges(section: bytes, bands: int) -> dict[str, np.ndarray]:
    """The ``spectral`` section: band minima, maxima and means (int32 each, B values)."""
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
def laplace_bank(tables: int = 80, deadzone: float = 0.2, reach: int = 1024, first_log2: float = -5.0
                 ) -> RaggedTables:
    """Integer tables of dead-zone-quantized Laplace laws, scale 2^(first_log2 + s/4) steps.

    Computed once when the weights are made and stored as integers: a decoder never
    evaluates an exponential, so no machine's libm can change a table."""
    rows = []
    for s in range(tables):
        sigma = 2.0 ** (first_log2 + s / 4)
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
    arrays = {"bank.lo": bank.lo, "bank.size": bank.size, "bank.offset": bank.offset, "bank.freqs": bank.freqs,
              "context.thresholds": thresholds}
    config = {"name": name, "modality": "raster", "family": "multiband", "channels": 1, "levels": 3,
              "wavelet": wavelets.DEFAULT_WAVELET, "latent_channels": 1, "decoder_width": 0, "decoder_blocks": 0,
              "decoder_kind": "linear", "coding": "context", "deadzone": deadzone, "reconstruction": reconstruction,
              "step_scale": step_scale, "step_slope": step_slope,
              "info": {"tables": int(bank.lo.shape[0]), "table_law": "dead-zone Laplace, quarter-octave scales",
                       "spectral": f"per-image KLT, {MATRIX_BITS}-bit integer matrix"}}
    save_model(Path(directory), config, arrays)


def load(config: ModelConfig, raw: dict[str, Any], arrays: dict[str, np.ndarray]) -> MultibandModel:
    return MultibandModel(config, raw, arrays)
