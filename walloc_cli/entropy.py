"""Entropy coding of integer latents: integer frequency tables + constriction's range coder.

Why integer tables: a decoder must rebuild *exactly* the probabilities the
encoder used, or the range coder desynchronises and the rest of the file is
garbage.  Probabilities computed in floating point from a network (as in
CompressAI or EnCodec) differ in the last bit between machines and thread
counts.  Here every channel has a table of integer frequencies that sum to
2^24 (constriction's fixed-point precision), stored in the weights file.  The
only float ever handed to constriction is ``frequency / 2**24``, which is exact
in binary64, and with ``perfect=True`` constriction's quantizer returns that
table unchanged (it is already representable), so encoder and decoder agree
bit for bit everywhere.

Alphabet per channel c: the values ``lo[c] .. lo[c] + size[c] - 1`` plus one
*escape* symbol (index ``size[c]``).  Values outside the range are sent as
escape, then coded after all channels with uniform models (sign, then an
Elias-gamma style length and the remaining bits), so *any* int32 latent
round-trips losslessly.
"""
from __future__ import annotations

from .errors import WallocError

from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import constriction
import numpy as np

from . import pyramid as dc_pyramid

PRECISION = 24
TOTAL = 1 << PRECISION
CODER = "constriction.queue.RangeEncoder/u32/p24"  # recorded in every file's header
_CHUNK_BITS = 16
_COST_BLOCK = 4096  # table rows whose symbol costs are computed together, on first use (RaggedTables.costs)


class EntropyError(WallocError):
    """The compressed latents are inconsistent with the tables (corrupt data)."""


@dataclass(frozen=True)
class EntropyTables:
    """Per-channel integer frequency tables; freqs[c, :size[c] + 1] sums to 2^24."""

    lo: np.ndarray      # (C,) int32: smallest in-range value
    size: np.ndarray    # (C,) int32: number of in-range values
    freqs: np.ndarray   # (C, max(size) + 1) int32; entry size[c] is the escape

    @property
    def channels(self) -> int:
        return int(self.lo.shape[0])

    def validate(self) -> None:
        if (self.lo.ndim != 1 or self.size.shape != self.lo.shape or self.freqs.ndim != 2
                or self.freqs.shape[0] != self.channels or self.freqs.shape[1] < int(self.size.max(initial=0)) + 1):
            raise ValueError("entropy tables have inconsistent shapes")
        for c in range(self.channels):
            n = int(self.size[c])
            row = self.freqs[c, : n + 1].astype(np.int64)
            if n < 1 or row.min() < 1 or row.sum() != TOTAL:
                raise ValueError(f"entropy table of channel {c} is not a valid 2^{PRECISION} distribution")

    @classmethod
    def stack(cls, parts: list["EntropyTables"]) -> "EntropyTables":
        """Concatenate table sets channel-wise (e.g. mid tables, then side tables)."""
        width = max(p.freqs.shape[1] for p in parts)
        freqs = np.zeros((sum(p.channels for p in parts), width), np.int32)
        row = 0
        for p in parts:
            freqs[row : row + p.channels, : p.freqs.shape[1]] = p.freqs
            row += p.channels
        return cls(np.concatenate([p.lo for p in parts]), np.concatenate([p.size for p in parts]), freqs)

    def select(self, rows: np.ndarray) -> "EntropyTables":
        """The tables of the given channels, in that order."""
        return EntropyTables(self.lo[rows], self.size[rows], self.freqs[rows])

    def models(self) -> list:
        """One constriction Categorical per channel, built from the integer table only."""
        return [
            constriction.stream.model.Categorical(
                self.freqs[c, : int(self.size[c]) + 1].astype(np.float64) / TOTAL, perfect=True
            )
            for c in range(self.channels)
        ]


def quantize_distribution(counts: np.ndarray, total: int = TOTAL) -> np.ndarray:
    """Integer frequencies >= 1 summing to ``total``, close to ``counts`` (largest remainder)."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.size
    if n > total:
        raise ValueError("alphabet larger than the precision allows")
    spare = total - n  # everybody gets 1, the rest is shared proportionally
    share = counts / counts.sum() * spare if counts.sum() > 0 else np.full(n, spare / n)
    base = np.floor(share).astype(np.int64)
    remainder = spare - int(base.sum())
    order = np.argsort(-(share - base), kind="stable")
    base[order[:remainder]] += 1
    return (base + 1).astype(np.int64)


def fit_tables(latents: np.ndarray, coverage: float = 0.9999, prior_count: float = 0.5,
               max_size: int = 1024) -> EntropyTables:
    """Histogram tables from training latents shaped (N, C).

    The in-range support covers ``coverage`` of each channel's mass; everything
    else costs an escape.  ``prior_count`` keeps unseen in-range values codable
    at a sane cost.
    """
    latents = np.asarray(latents)
    channels = latents.shape[1]
    los, rows = [], []
    for c in range(channels):
        lo, row = fit_row(latents[:, c], coverage, prior_count, max_size)
        los.append(lo)
        rows.append(row)
    sizes = [row.size - 1 for row in rows]
    width = max(sizes) + 1
    freqs = np.zeros((channels, width), np.int32)
    for c, row in enumerate(rows):
        freqs[c, : row.size] = row
    tables = EntropyTables(np.array(los, np.int32), np.array(sizes, np.int32), freqs)
    tables.validate()
    return tables


def _encode_escapes(encoder, values: np.ndarray) -> None:
    """Out-of-range magnitudes: sign bit, bit length (Elias-gamma style), then the bits."""
    uniform = constriction.stream.model.Uniform
    for v in values.tolist():
        encoder.encode(np.array([int(v < 0)], np.int32), uniform(2))
        u = abs(int(v))  # >= 1 by construction (distance beyond the range)
        nbits = u.bit_length()
        encoder.encode(np.array([nbits - 1], np.int32), uniform(33))
        rest, remaining = u - (1 << (nbits - 1)), nbits - 1
        while remaining > 0:
            k = min(_CHUNK_BITS, remaining)
            remaining -= k
            chunk = (rest >> remaining) & ((1 << k) - 1)
            encoder.encode(np.array([chunk], np.int32), uniform(1 << k))


def _decode_escapes(decoder, count: int) -> np.ndarray:
    uniform = constriction.stream.model.Uniform
    out = np.empty(count, np.int64)
    for i in range(count):
        negative = int(decoder.decode(uniform(2), 1)[0])
        nbits = int(decoder.decode(uniform(33), 1)[0]) + 1
        if nbits > 33:
            raise EntropyError("escaped latent value out of range")
        u, remaining = 1, nbits - 1
        while remaining > 0:
            k = min(_CHUNK_BITS, remaining)
            remaining -= k
            u = (u << k) | int(decoder.decode(uniform(1 << k), 1)[0])
        out[i] = -u if negative else u
    return out


def minimum_bits(tables: EntropyTables, per_channel: int) -> float:
    """Fewest bits that ``per_channel`` symbols in every channel can possibly cost."""
    most_likely = tables.freqs.max(axis=1).astype(np.float64) / TOTAL
    return float(per_channel * -np.log2(most_likely).sum())


def encode(latents: np.ndarray, tables: EntropyTables) -> bytes:
    """Range-code integer latents shaped (C, ...) channel by channel; returns bytes."""
    latents = np.asarray(latents)
    if latents.shape[0] != tables.channels:
        raise ValueError(f"expected {tables.channels} latent channels, got {latents.shape[0]}")
    encoder = constriction.stream.queue.RangeEncoder()
    escaped = []
    for c, model in enumerate(tables.models()):
        lo, size = int(tables.lo[c]), int(tables.size[c])
        v = latents[c].reshape(-1).astype(np.int64)
        symbols = v - lo
        outside = (symbols < 0) | (symbols >= size)
        # distance beyond the nearest end of the range, signed: -1 is one below lo, +1 one above hi
        escaped.append(np.where(symbols < 0, symbols, symbols - size + 1)[outside])
        symbols = np.where(outside, size, symbols).astype(np.int32)
        encoder.encode(symbols, model)
    _encode_escapes(encoder, np.concatenate(escaped) if escaped else np.zeros(0, np.int64))
    return encoder.get_compressed().astype("<u4").tobytes()


def decode(data: bytes, tables: EntropyTables, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`encode`: int32 latents of ``shape`` (C, ...)."""
    if len(data) % 4:
        raise EntropyError("compressed latents are not a whole number of 32-bit words")
    if shape[0] != tables.channels:
        raise EntropyError(f"expected {tables.channels} latent channels, header says {shape[0]}")
    per_channel = int(np.prod(shape[1:], dtype=np.int64))
    if 8 * len(data) + 64 < minimum_bits(tables, per_channel):
        # A range coder cannot spend fewer bits than the symbols' self-information: a
        # header announcing far more latents than the payload can hold is refused
        # before anything of that size is allocated (decompression bomb).
        raise EntropyError("payload too short for the announced number of latents")
    decoder = range_decoder(data)
    out = np.empty((tables.channels, per_channel), np.int32)  # int32 throughout: long audio stays small
    masks = []
    with decoding_failures():
        for c, model in enumerate(tables.models()):
            symbols = decoder.decode(model, per_channel)
            masks.append(symbols == int(tables.size[c]))
            symbols += tables.lo[c]  # in-range values cannot overflow; escapes are overwritten below
            out[c] = symbols
        n_escaped = int(sum(m.sum() for m in masks))
        escaped = _decode_escapes(decoder, n_escaped)
    k = 0
    for c, mask in enumerate(masks):
        n = int(mask.sum())
        lo, size = int(tables.lo[c]), int(tables.size[c])
        e = escaped[k : k + n]
        k += n
        values = np.where(e < 0, lo + e, lo + size - 1 + e)
        if np.abs(values).max(initial=0) > np.iinfo(np.int32).max:
            raise EntropyError("decoded latent value out of range")
        out[c, mask] = values
    return out.reshape(shape)


# -- context-adaptive coding (the quality-ladder models) -----------------------------------
# A wide model's latents are coded channel by channel (in order of decreasing variance).
# Every latent chooses its table by an integer *context*: the activity around it in the
# channels already coded — the sum of |latent| over its 3×3 neighbourhood in the previous
# ``context_depth`` channels.  Texture and edges light up many channels at the same place,
# so a latent next to large, already-known values is likely large itself; one table per
# (quality anchor, channel, activity bin) captures that with no floating point: contexts
# are integer sums, bins are integer thresholds, tables are integer frequencies.  All
# latents of one (channel, bin) are coded with one constriction call, so the cost in Python
# is per table, not per symbol.
CONTEXT_CODER_V1 = "constriction.queue.RangeEncoder/u32/p24/context-v1"
# Version 2 adds zero-channel flags in front of each payload (see :func:`_encode_zero_flags`).
CONTEXT_CODER_V2 = "constriction.queue.RangeEncoder/u32/p24/context-v2"
# Version 3 codes the DC (lifted) channels through an interpolation pyramid instead of the
# integer Haar transform (:mod:`walloc_cli.pyramid`, tables of their own: :class:`DcPyramid`).
CONTEXT_CODER_V3 = "constriction.queue.RangeEncoder/u32/p24/context-v3"
# Version 4: version 3 with the pyramid's tables also chosen by how much the two neighbour
# pairs of a DC value disagree (``pyramid.PAIR_CUTS``; weights whose pyramid has ``pairs``).
CONTEXT_CODER_V4 = "constriction.queue.RangeEncoder/u32/p24/context-v4"
# Version 5: version 4 with the black squares coded in two phases, the odd/odd ones refined by
# their diagonal neighbours (weights with ``diagonal_cuts``: :func:`phases`).
CONTEXT_CODER = "constriction.queue.RangeEncoder/u32/p24/context-v5"
CONTEXT_CODERS = (CONTEXT_CODER_V1, CONTEXT_CODER_V2, CONTEXT_CODER_V3, CONTEXT_CODER_V4, CONTEXT_CODER)  # decoders read


def zero_flags_of(coder: str) -> bool:
    """Whether a payload of ``coder`` (one of :data:`CONTEXT_CODERS`) starts with zero-channel flags."""
    return coder != CONTEXT_CODER_V1


def pyramid_of(coder: str) -> bool:
    """Whether a payload of ``coder`` codes its DC channels through the interpolation pyramid."""
    return coder in (CONTEXT_CODER_V3, CONTEXT_CODER_V4, CONTEXT_CODER)



@dataclass(frozen=True)
class RaggedTables:
    """Many integer tables of different sizes in one flat array (rows are (anchor, channel, bin))."""

    lo: np.ndarray       # (rows,) int32
    size: np.ndarray     # (rows,) int32, in-range values; frequency ``size`` is the escape
    offset: np.ndarray   # (rows + 1,) int64 into ``freqs``
    freqs: np.ndarray    # (sum(size + 1),) int32; each row sums to 2^24

    def validate(self) -> None:
        if self.lo.ndim != 1 or self.freqs.ndim != 1:
            raise ValueError("entropy tables have inconsistent shapes")
        rows = self.lo.shape[0]
        if self.size.shape != (rows,) or self.offset.shape != (rows + 1,):
            raise ValueError("entropy tables have inconsistent shapes")
        if self.offset[0] != 0 or self.offset[-1] != self.freqs.size or (np.diff(self.offset) != self.size + 1).any():
            raise ValueError("entropy table offsets do not match their sizes")
        if (self.size < 1).any() or self.freqs.min(initial=1) < 1:
            raise ValueError("entropy tables contain empty or zero-probability entries")
        sums = np.add.reduceat(self.freqs, self.offset[:-1], dtype=np.int64)  # no int64 copy of freqs
        if (sums != TOTAL).any():
            raise ValueError(f"an entropy table is not a valid 2^{PRECISION} distribution")

    def row(self, r: int) -> np.ndarray:
        return self.freqs[self.offset[r] : self.offset[r + 1]]

    def fewest_bits(self) -> np.ndarray:
        """Per row, the self-information of its most likely symbol: no value coded with that
        row can cost fewer bits (computed once and kept)."""
        bits = self.__dict__.get("_fewest_bits")
        if bits is None:
            most = np.maximum.reduceat(self.freqs, self.offset[:-1]) if self.freqs.size else self.size
            bits = self.__dict__["_fewest_bits"] = -np.log2(np.asarray(most, np.float64) / TOTAL)
        return bits

    def costs(self, rows: np.ndarray) -> np.ndarray:
        """Every symbol's cost in bits (−log2 of its probability), laid out as ``freqs``,
        computed for the blocks of :data:`_COST_BLOCK` rows from the smallest to the largest
        of ``rows`` and kept: one file uses one quality's tables, a sixteenth of rgb-1x's
        960,000 entries, and computing all of them was 20 ms of a one-photo ``walloc encode``.
        Entries not yet computed are 0 and never read (every row asked for lies inside a
        computed block); zeros, not NaN, so that the array's untouched pages are never
        written (filling 2 M entries was 5 ms of every command).  Only encoder choices use
        these floats (:func:`symbol_bits`)."""
        cache = self.__dict__.get("_cost")
        if cache is None:
            cache = self.__dict__["_cost"] = (np.zeros(self.freqs.shape), set())
        cost, done = cache
        if rows.size:
            first, last = int(rows.min()) // _COST_BLOCK, int(rows.max()) // _COST_BLOCK
            for block in range(first, last + 1):
                if block not in done:
                    a = self.offset[block * _COST_BLOCK]
                    b = self.offset[min((block + 1) * _COST_BLOCK, self.lo.shape[0])]
                    cost[a:b] = -np.log2(self.freqs[a:b].astype(np.float64) / TOTAL)
                    done.add(block)
        return cost

    def dense_costs(self, firsts: tuple[int, ...], count: int) -> tuple[np.ndarray, int, int]:
        """Every value's cost under each of rows ``first … first + count − 1`` for each of
        ``firsts`` (one channel's tables in each of several table sets), as a dense
        (sets · count · width) array: entry ``(s · count + k) · width + v − low`` is what
        :func:`symbol_bits` gives value v with row ``firsts[s] + k``, for ``low`` ≤ v <
        ``low + width`` — the smallest to the largest value any of the rows holds, 0 always
        included.  The RD rounding prices a whole channel under every set with one lookup
        (kept: a file uses one quality's rows, a batch of files the same ones; about 30 MB for
        a quality's five sets at q 100)."""
        cache = self.__dict__.setdefault("_dense_costs", {})
        key = (firsts, count)
        if key not in cache:
            if len(cache) > 1024:  # a few qualities' worth (a benchmark runs through them all)
                cache.clear()
            rows = (np.asarray(firsts, np.int64)[:, None] + np.arange(count)).reshape(-1)
            lo = self.lo[rows].astype(np.int64)
            low, high = min(int(lo.min()), 0), max(int((lo + self.size[rows] - 1).max()), 0)
            values = np.arange(low, high + 1)
            # rows as a column: symbol_bits gathers each row's lo, size and offset once and
            # broadcasts them over the values (an (rows, values) array of row numbers had it
            # gather them once per entry: 21 % of the time)
            bits = symbol_bits(self, rows[:, None], values)
            cache[key] = (bits.reshape(-1), low, values.size)
        return cache[key]

    def step_savings(self, firsts: tuple[int, ...], count: int, priced: int) -> np.ndarray:
        """For set ``priced`` of :meth:`dense_costs` (``firsts``, ``count``), the bits each entry
        saves by stepping one toward zero: the cost of v less that of v − 1 for v > 0, of v + 1
        for v < 0, 0 at v = 0 (a step toward zero stays inside a row: 0 is in every one), laid
        out as that set's part of the dense array (entry k · width + v − low).  The RD rounding prices
        its two candidates for a latent with one lookup here (kept beside the dense costs)."""
        cache = self.__dict__.setdefault("_step_savings", {})
        key = (firsts, count, priced)
        if key not in cache:
            if len(cache) > 1024:
                cache.clear()
            dense, low, width = self.dense_costs(firsts, count)
            bits = dense[priced * count * width : (priced + 1) * count * width].reshape(count, width)
            zero = -low
            saved = np.zeros_like(bits)
            saved[:, zero + 1 :] = bits[:, zero + 1 :] - bits[:, zero : width - 1]
            saved[:, :zero] = bits[:, :zero] - bits[:, 1 : zero + 1]
            cache[key] = saved.reshape(-1)
        return cache[key]

    def extent(self) -> int:
        """Largest magnitude an in-range (not escaped) value of any row can have (kept)."""
        extent = self.__dict__.get("_extent")
        if extent is None:
            lo = self.lo.astype(np.int64)
            extent = self.__dict__["_extent"] = int(np.maximum(np.abs(lo), np.abs(lo + self.size - 1)).max(initial=0))
        return extent

    def model(self, r: int):
        """constriction model of row ``r``, built on first use and kept: a file touches only
        its quality's tables, and a batch reuses them."""
        cache = self.__dict__.setdefault("_models", {})
        model = cache.get(r)
        if model is None:
            probabilities = self.row(r).astype(np.float64) / TOTAL
            model = cache[r] = constriction.stream.model.Categorical(probabilities, perfect=True)
        return model

    def models(self, rows: list[int]) -> list:
        """:meth:`model` of each of ``rows``: one call per batch of groups instead of one per group
        (about 2,000 groups a 768×512 photo, where the calls were 2 ms of the encoder's 57)."""
        cache = self.__dict__.setdefault("_models", {})
        found = [cache.get(r) for r in rows]
        if None in found:  # build only the rows not seen yet (a batch's later photos miss a few)
            found = [self.model(r) if m is None else m for r, m in zip(rows, found)]
        return found

    @classmethod
    def from_rows(cls, rows: list[tuple[int, np.ndarray]]) -> "RaggedTables":
        """From (lo, frequencies including the escape) pairs."""
        sizes = np.array([len(f) - 1 for _, f in rows], np.int32)
        offset = np.concatenate([[0], np.cumsum(sizes.astype(np.int64) + 1)])
        freqs = np.concatenate([np.asarray(f, np.int32) for _, f in rows]) if rows else np.zeros(0, np.int32)
        return cls(np.array([lo for lo, _ in rows], np.int32), sizes, offset, freqs)


@dataclass(frozen=True)
class DcPyramid:
    """The DC channels' pyramid tables (coder versions 3 and 4) as one file uses them: rows
    ``first_rows[set] + channel · tables_per_channel + table``, one first row per
    candidate table set (the same quality anchors as the other channels' sets)."""

    tables: RaggedTables
    first_rows: tuple[int, ...]
    pairs: bool = False  # tables also by the neighbour pairs' disagreement (coder version 4)

    @property
    def tables_per_channel(self) -> int:
        return dc_pyramid.tables_per_channel(self.pairs)


def fit_row(values: np.ndarray, coverage: float = 0.9999, prior_count: float = 0.5,
            max_size: int = 512) -> tuple[int, np.ndarray]:
    """One (lo, frequencies) table row for integer ``values``; see :func:`fit_tables`."""
    v = np.asarray(values, np.int64)
    if v.size == 0:
        return 0, quantize_distribution(np.array([1.0, 1e-3]))
    tail = (1.0 - coverage) / 2
    lo = int(np.floor(np.quantile(v, tail)))
    hi = int(np.ceil(np.quantile(v, 1 - tail)))
    if hi - lo + 1 > max_size:
        centre = int(np.round(np.median(v)))
        lo, hi = centre - max_size // 2, centre - max_size // 2 + max_size - 1
    size = hi - lo + 1
    inside = (v >= lo) & (v <= hi)
    counts = np.bincount(v[inside] - lo, minlength=size).astype(np.float64) + prior_count
    escapes = float((~inside).sum()) + prior_count
    return lo, quantize_distribution(np.append(counts, escapes))


def box_sum_3x3(a: np.ndarray) -> np.ndarray:
    """Sum over each position's 3×3 neighbourhood (zeros outside) of integer maps (..., H, W).

    Shifted in-place adds instead of a padded copy: the decoder calls this once per channel
    on small maps, where np.pad's own overhead cost more than the sums (integers: any order
    of the additions gives the same result)."""
    rows = a.copy()
    rows[..., 1:, :] += a[..., :-1, :]
    rows[..., :-1, :] += a[..., 1:, :]
    out = rows.copy()
    out[..., 1:] += rows[..., :-1]
    out[..., :-1] += rows[..., 1:]
    return out


def activity_of_all(latents: np.ndarray, depth: int) -> np.ndarray:
    """Context activity of every latent (L, H, W) at once — what the decoder computes channel by channel.

    The 3×3 box sum is linear, so the sum of the previous ``depth`` channels' boxes is the box of
    their summed |latents|: a running sum over channels (add the newest, drop the one ``depth``
    back), then one box sum.  (numpy's cumsum along the first axis of a 3-D array walks memory
    with a stride: it took 40 % of the encoder's time.)"""
    magnitude = np.abs(latents.astype(np.int64))
    total = np.empty_like(magnitude)
    running = np.zeros(magnitude.shape[1:], np.int64)
    for c in range(magnitude.shape[0]):
        total[c] = running
        running += magnitude[c]
        if c >= depth:
            running -= magnitude[c - depth]
    return box_sum_3x3(total)


class ActivityContext:
    """The decoder's running context state while channels arrive in order (integer, exact):
    the summed |latents| of the last ``depth`` channels, boxed when asked for (as
    :func:`activity_of_all`)."""

    def __init__(self, shape: tuple[int, int], depth: int) -> None:
        self.depth = depth
        self.history: deque[np.ndarray] = deque()
        self.padded = np.zeros((shape[0] + 2, shape[1] + 2), np.int64)  # the total inside a zero border,
        self.total = self.padded[1:-1, 1:-1]                            # so a box is four additions

    def current(self) -> np.ndarray:
        p = self.padded
        rows = p[:-2] + p[1:-1]
        rows += p[2:]
        box = rows[:, :-2] + rows[:, 1:-1]
        box += rows[:, 2:]
        return box

    def push(self, channel: np.ndarray | None) -> None:
        """The next channel's values (None: all zero, which adds nothing: over half of a photo's
        channels at q 75)."""
        magnitude = None if channel is None else \
            np.abs(channel if channel.dtype == np.int64 else channel.astype(np.int64)).reshape(self.total.shape)
        self.history.append(magnitude)
        if magnitude is not None:
            self.total += magnitude
        if len(self.history) > self.depth:
            dropped = self.history.popleft()
            if dropped is not None:
                self.total -= dropped


def context_bins(activity: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Bin index of each position of one channel: the number of (sorted, integer) thresholds
    <= its activity — the rule of :func:`context_bins_per_channel`, as one binary search per
    value (faster than a comparison per threshold on one channel's few thousand values)."""
    return np.searchsorted(np.asarray(thresholds), activity, side="right")


# The first latent channels of an image model are block averages (the DC of each colour):
# smooth across space, with no neighbouring activity to condition on.  They are coded after
# a reversible integer Haar transform (the S-transform: integer in, integer out, exactly
# invertible), with one table per transform level instead of per activity bin.
def _s_pairs(x: np.ndarray, axis: int) -> np.ndarray:
    """One integer Haar step along ``axis``: [sums (⌈n/2⌉) | differences (⌊n/2⌋)]."""
    x = np.moveaxis(x, axis, 0)
    n = x.shape[0]
    even, odd = x[0 : n - n % 2 : 2], x[1 : n - n % 2 : 2]
    d = odd - even
    s = even + (d >> 1)
    parts = [s, x[n - 1 :]] if n % 2 else [s]
    return np.moveaxis(np.concatenate(parts + [d]), 0, axis)


def _s_pairs_inverse(y: np.ndarray, axis: int) -> np.ndarray:
    y = np.moveaxis(y, axis, 0)
    n = y.shape[0]
    half = n // 2
    s, d = y[: n - half], y[n - half :]
    even = s[:half] - (d >> 1)
    x = np.empty_like(y)
    x[0 : 2 * half : 2], x[1 : 2 * half : 2] = even, d + even
    if n % 2:
        x[n - 1] = s[half]
    return np.moveaxis(x, 0, axis)


def _lift_regions(h: int, w: int, levels: int) -> list[tuple[int, int]]:
    regions = [(h, w)]
    for _ in range(levels):
        rh, rw = regions[-1]
        if rh < 2 and rw < 2:
            break
        regions.append(((rh + 1) // 2, (rw + 1) // 2))
    return regions


def lift_forward(x: np.ndarray, levels: int) -> np.ndarray:
    """Integer 2-D Haar (S-transform), ``levels`` times on the low band; same shape, exact."""
    y = x.astype(np.int64).copy()
    regions = _lift_regions(*x.shape, levels)
    for rh, rw in regions[:-1]:
        y[:rh, :rw] = _s_pairs(_s_pairs(y[:rh, :rw], 1), 0)
    return y


def lift_inverse(y: np.ndarray, levels: int) -> np.ndarray:
    x = y.astype(np.int64).copy()
    regions = _lift_regions(*y.shape, levels)
    for rh, rw in reversed(regions[:-1]):
        x[:rh, :rw] = _s_pairs_inverse(_s_pairs_inverse(x[:rh, :rw], 0), 1)
    return x


def lift_level_map(h: int, w: int, levels: int) -> np.ndarray:
    """Each position's transform level: 0 = finest differences, …, the last = the low band."""
    out = np.zeros((h, w), np.int64)
    regions = _lift_regions(h, w, levels)
    for level, (rh, rw) in enumerate(regions[1:], start=1):
        out[:rh, :rw] = level
    return out


# Checkerboard: after a channel's "black" positions ((i + j) even) are coded, each "white"
# position knows its four neighbours in the same channel.  Their |latents| sum, binned by
# ``neighbour_cuts``, refines the activity bin: white latents use table
# ``bins + activity_bin · (len(cuts) + 1) + neighbour_bin``, black ones ``activity_bin``.
# Coder version 5 (weights with ``diagonal_cuts``) splits the black squares in two: the
# even/even ones come first, on their activity bin alone; then each odd/odd one knows its four
# diagonal neighbours (all even/even), whose |latents| sum, binned by ``diagonal_cuts``, refines
# its bin: table ``bins + activity_bin · (len(diagonal_cuts) + 1) + diagonal_bin``; the white
# squares' tables follow those.  Held out on validation photos it saved 1.7 % of the AC bits
# (bench/context_oracle.py).
def neighbour_sum(values: np.ndarray) -> np.ndarray:
    """Sum of |v| over the 4 neighbours (zeros outside) of maps (..., H, W)."""
    a = np.abs(values)
    out = np.zeros_like(a)
    out[..., 1:, :] += a[..., :-1, :]
    out[..., :-1, :] += a[..., 1:, :]
    out[..., 1:] += a[..., :-1]
    out[..., :-1] += a[..., 1:]
    return out


def diagonal_sum(values: np.ndarray) -> np.ndarray:
    """Sum of |v| over the 4 diagonal neighbours (zeros outside) of maps (..., H, W)."""
    a = np.abs(values)
    out = np.zeros_like(a)
    out[..., 1:, 1:] += a[..., :-1, :-1]
    out[..., 1:, :-1] += a[..., :-1, 1:]
    out[..., :-1, 1:] += a[..., 1:, :-1]
    out[..., :-1, :-1] += a[..., 1:, 1:]
    return out


def white_mask(h: int, w: int) -> np.ndarray:
    return ((np.arange(h)[:, None] + np.arange(w)[None, :]) % 2).astype(bool)


def odd_mask(h: int, w: int) -> np.ndarray:
    """The odd/odd squares (both coordinates odd): coder version 5's second phase."""
    return ((np.arange(h)[:, None] % 2) & (np.arange(w)[None, :] % 2)).astype(bool)


def white_offset(bins: int, diagonal_cuts: tuple[int, ...] = ()) -> int:
    """The first table index (within a channel) of the white squares' tables."""
    return bins * (len(diagonal_cuts) + 2) if diagonal_cuts else bins


def tables_per_channel(bins: int, neighbour_cuts: tuple[int, ...], diagonal_cuts: tuple[int, ...] = ()) -> int:
    return white_offset(bins, diagonal_cuts) + bins * (len(neighbour_cuts) + 1) if neighbour_cuts else bins


def table_index(activity_bin: np.ndarray, values: np.ndarray, bins: int,
                neighbour_cuts: tuple[int, ...], diagonal_cuts: tuple[int, ...] = ()) -> np.ndarray:
    """Table index within a channel for maps (..., H, W): activity bin, refined on white squares
    (and, with ``diagonal_cuts``, on odd/odd ones)."""
    if not neighbour_cuts:
        return activity_bin
    near = np.searchsorted(np.asarray(neighbour_cuts), neighbour_sum(values), side="right")
    white = white_mask(*values.shape[-2:])
    first = white_offset(bins, diagonal_cuts)
    out = np.where(white, first + activity_bin * (len(neighbour_cuts) + 1) + near, activity_bin)
    if diagonal_cuts:
        diagonal = np.searchsorted(np.asarray(diagonal_cuts), diagonal_sum(values), side="right")
        odd = odd_mask(*values.shape[-2:])
        out = np.where(odd, bins + activity_bin * (len(diagonal_cuts) + 1) + diagonal, out)
    return out


class Phase(NamedTuple):
    """One coding phase of a channel: its ``positions`` (flat, raster order) are coded after the
    earlier phases', each with table ``activity_bin · mult + refined[min(s, len − 1)]``, s the
    |latents| sum of its four already-known ``neighbours`` (4, n) (flat indices; H·W for one
    outside the map, where the caller keeps a zero).  The first phase has no neighbours: its
    table is the activity bin."""

    positions: np.ndarray
    neighbours: np.ndarray | None
    refined: np.ndarray | None
    mult: int


@lru_cache(maxsize=16)
def phases(height: int, width: int, bins: int, neighbour_cuts: tuple[int, ...],
           diagonal_cuts: tuple[int, ...] = ()) -> tuple[Phase, ...]:
    """A channel's coding phases (read-only arrays, kept: a batch's photos share a size):
    every position at once without ``neighbour_cuts``; black then white squares; with
    ``diagonal_cuts`` even/even, odd/odd, then white squares."""
    positions = np.arange(height * width)
    if not neighbour_cuts:
        out = (Phase(positions, None, None, 1),)
    else:
        white = white_mask(height, width).reshape(-1)
        white_phase = Phase(np.flatnonzero(white), white_neighbours(height, width),
                            refined_bins(tuple(neighbour_cuts), white_offset(bins, diagonal_cuts)),
                            len(neighbour_cuts) + 1)
        if not diagonal_cuts:
            out = (Phase(np.flatnonzero(~white), None, None, 1), white_phase)
        else:
            odd = odd_mask(height, width).reshape(-1)
            out = (Phase(np.flatnonzero(~white & ~odd), None, None, 1),
                   Phase(np.flatnonzero(odd), diagonal_neighbours(height, width),
                         refined_bins(tuple(diagonal_cuts), bins), len(diagonal_cuts) + 1),
                   white_phase)
    for phase in out:
        for a in phase[:3]:
            if a is not None:
                a.setflags(write=False)
    return out


Candidate = tuple[int, np.ndarray]  # (first table row, integer thresholds (L, bins − 1)) of one table set


def symbol_bits(tables: RaggedTables, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Estimated cost in bits of each value coded with table ``rows`` (same shapes; escapes approximated).

    Only encoder *choices* use this float estimate (which table set, which rounding);
    the choices are transmitted or are plain latents, so the decoder never recomputes it.
    """
    cost = tables.costs(rows)
    lo, size = tables.lo[rows], tables.size[rows]
    symbols = values - lo
    outside = (symbols < 0) | (symbols >= size)
    bits = cost[tables.offset[rows] + np.where(outside, size, symbols)]
    if outside.any():
        bits = bits + np.where(outside, 2.0 * np.log2(np.abs(values) + 2.0) + 6.0, 0.0)
    return bits


def context_bins_per_channel(activity: np.ndarray, thresholds: np.ndarray,
                             channel_of: np.ndarray | None = None) -> np.ndarray:
    """:func:`context_bins` for many channels at once.

    ``activity`` is (L, P) with ``thresholds`` (L, bins−1), or flat with the channel
    of each value in ``channel_of``.  A bin is the number of thresholds ≤ the
    activity, counted with one comparison per threshold (7 passes over the array
    are several times faster than a binary search per value).
    """
    cuts = np.asarray(thresholds)
    per_value = cuts[:, None, :] if channel_of is None else cuts[channel_of]
    bins = np.zeros(np.shape(activity), np.int64)
    for k in range(cuts.shape[1]):
        bins += activity >= per_value[..., k]
    return bins


def _groups(which: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Raster order within bins, bins in order: (permutation, count per bin)."""
    # small integer keys make numpy's stable sort a radix sort (about 6× faster than on int64)
    keys = which if which.dtype == np.int16 else which.astype(np.int16)
    return np.argsort(keys, kind="stable"), np.bincount(which, minlength=bins)


# -- a batch of channels at once (the encoder and the RD rounding) ----------------------------
# The decoder learns the channels one by one; the encoder knows them all, and computes every
# context of a batch of channels with whole-array operations.  The integers are the same as
# the decoder's, computed in int32 where no sum can overflow it (half the memory traffic of
# int64), else int64.
def _context_dtype(latents: np.ndarray, depth: int) -> type:
    """int32 when every activity (≤ 9·depth·max|latent|) and neighbour sum fits it, else int64."""
    if latents.size == 0:
        return np.int32
    largest = max(int(latents.max()), -int(latents.min()))
    return np.int32 if largest * 9 * max(depth, 1) < np.iinfo(np.int32).max else np.int64


def batch_contexts(latents: np.ndarray, first: int, depth: int,
                   wanted: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(activity (n, H, W), |latents| inside a zero border (n, H + 2, W + 2)) of the n channels
    ``first`` … of ``latents`` (K, H, W), or only of the channels ``first + wanted`` (indices
    in increasing order).

    The channels before ``first`` only give context: at least ``depth`` of them, or every
    channel before the image's first.  The activity is :func:`activity_of_all`'s; the
    border makes each 3×3 box, and each white square's four neighbours, plain additions
    of shifted views.  ``wanted`` leaves out channels nobody asks about — at q 75 half of
    a batch's channels are all zero, and neither the coder nor the RD rounding needs their
    contexts — but every channel still counts in its successors' activity."""
    dtype = _context_dtype(latents, depth)
    channels, height, width = latents.shape
    count = channels - first
    wanted = np.arange(count) if wanted is None else np.asarray(wanted, np.int64)
    padded = np.zeros((channels, height + 2, width + 2), dtype)
    magnitude = padded[:, 1:-1, 1:-1]
    np.abs(latents, out=magnitude, casting="same_kind")  # the values fit: _context_dtype
    total = np.zeros((wanted.size, height + 2, width + 2), dtype)
    running = magnitude[max(0, first - depth) : first].sum(axis=0, dtype=dtype)
    slot = 0
    for i in range(int(wanted[-1]) + 1 if wanted.size else 0):
        c = first + i
        if i == wanted[slot]:
            total[slot, 1:-1, 1:-1] = running
            slot += 1
        running += magnitude[c]
        if c >= depth:
            running -= magnitude[c - depth]
    rows = total[:, :-2] + total[:, 1:-1]
    rows += total[:, 2:]
    activity = rows[:, :, :-2] + rows[:, :, 1:-1]
    activity += rows[:, :, 2:]
    return activity, (padded[first:] if wanted.size == count else padded[first + wanted])


def batch_table_index(activity: np.ndarray, magnitude: np.ndarray, thresholds: np.ndarray, bins: int,
                      neighbour_cuts: tuple[int, ...], rows: np.ndarray | None = None,
                      diagonal_cuts: tuple[int, ...] = ()) -> np.ndarray:
    """:func:`table_index` of channels (n, H, W) from :func:`batch_contexts` (``magnitude`` with its
    zero border), as int16 (n, H·W).  ``thresholds`` has a row per channel, or is the whole
    batch's with ``rows`` naming each channel's (:func:`batch_contexts`' ``wanted``: the
    lookup tables of the whole batch are kept and reused).

    Bins are read from count tables (:func:`_count_at_most`, one row per channel): three
    passes over the activities instead of two per threshold.  Thresholds too large to
    tabulate fall back to one comparison per threshold (the rule of
    :func:`context_bins_per_channel`), clipped to the activities' dtype, which changes no
    comparison (every activity lies inside it)."""
    thresholds = np.asarray(thresholds)
    count = activity.shape[0]
    rows = np.arange(count) if rows is None else np.asarray(rows)
    cap = max(int(thresholds.max(initial=0)), 0)
    if cap < _LOOKUP_LIMIT:
        table = channel_lookup(thresholds.astype(np.int64).tobytes(), thresholds.shape)
        index = np.minimum(activity, cap)
        index += (rows.astype(index.dtype) * (cap + 1))[:, None, None]
        which = table.take(index)
    else:
        info = np.iinfo(activity.dtype)
        cuts = np.clip(thresholds[rows], info.min, info.max).astype(activity.dtype)[:, :, None, None]
        which = np.zeros(activity.shape, np.int16)
        for k in range(cuts.shape[1]):
            which += activity >= cuts[:, k]
    if neighbour_cuts:
        height, width = activity.shape[1:]
        p = magnitude
        if diagonal_cuts:  # the odd/odd squares: refined by their four diagonal (even/even) neighbours
            # neighbours of (i, j) = (1 + 2a, 1 + 2b) sit at (i + 1 ± 1, j + 1 ± 1) in p
            near = p[:, 1:height:2, 1:width:2] + p[:, 1:height:2, 3 : width + 2 : 2]
            near += p[:, 3 : height + 2 : 2, 1:width:2]
            near += p[:, 3 : height + 2 : 2, 3 : width + 2 : 2]
            refined = refined_bins(tuple(diagonal_cuts), bins)
            np.minimum(near, refined.size - 1, out=near)
            odd = which[:, 1::2, 1::2]  # a view
            odd *= len(diagonal_cuts) + 1
            odd += refined.take(near)
        near_bin = refined_bins(tuple(neighbour_cuts), white_offset(bins, diagonal_cuts))
        for r, c in ((0, 1), (1, 0)):  # the white squares ((i + j) odd) of even, then of odd rows
            # neighbours of (i, j) = (r + 2a, c + 2b) sit at (i + 1 ± 1, j + 1) and (i + 1, j + 1 ± 1) in p
            near = p[:, r : height : 2, c + 1 : width + 1 : 2] + p[:, r + 2 : height + 2 : 2, c + 1 : width + 1 : 2]
            near += p[:, r + 1 : height + 1 : 2, c : width : 2]
            near += p[:, r + 1 : height + 1 : 2, c + 2 : width + 2 : 2]
            np.minimum(near, near_bin.size - 1, out=near)
            white = which[:, r::2, c::2]  # a view
            white *= len(neighbour_cuts) + 1
            white += near_bin.take(near)
    return which.reshape(count, -1)


@lru_cache(maxsize=16)
def refined_bins(cuts: tuple[int, ...], offset: int) -> np.ndarray:
    """``offset`` + :func:`_count_at_most` of ``cuts``: a refined square's table index less its
    activity bin's share (:class:`Phase`'s ``refined``)."""
    return _count_at_most(np.asarray(cuts, np.int64)) + np.int16(offset)


_LOOKUP_LIMIT = 1 << 14


@lru_cache(maxsize=64)
def channel_lookup(thresholds: bytes, shape: tuple[int, int]) -> np.ndarray:
    """Flat (channels · (cap + 1)) int16: row c is :func:`_count_at_most` of channel c's
    thresholds, all rows as long as the largest (kept: every batch of a file, and the next
    file, use the same thresholds)."""
    return _count_at_most(np.frombuffer(thresholds, np.int64).reshape(shape)).reshape(-1)


# Zero-channel flags (coder version 2).  At q 75 over half of a photo's 192 channels are all
# zero (PCA order: the last ones carry the least), yet version 1 coded every one of their
# latents, and the decoder paid a context pass per channel: 48 ms of a 768×512 photo's
# entropy decoding, 29 ms once the trailing zero channels were cut and 24 ms with every zero
# channel flagged (12 validation photos).  The flags also save bytes — each zero channel cost
# its positions' few thousandths of a bit: 92 bytes a photo at q 5 (7 % of the file), 113 at
# q 25, 217 at q 75, net of the flags' own cost.  So a version 2 payload begins with K, one
# past the last coded channel (uniform over 0 … channels), then one uniform bit (1 = coded)
# for each flaggable channel before K − 1: every channel but the ``lifted`` (DC) ones, which
# are always coded — they keep a floor under every file's size, so a tiny file still cannot
# announce a huge image (:func:`check_context_payload`) — and a grey image's skipped colour
# channels.  Flagged channels are then left out exactly like skipped ones: zeros, counted as
# zeros in later contexts.
def _flaggable(skip: np.ndarray, lifted: int) -> np.ndarray:
    flaggable = ~skip
    flaggable[:lifted] = False
    return flaggable


def _encode_zero_flags(encoder, latents: np.ndarray, skip: np.ndarray, lifted: int) -> np.ndarray:
    """Code the zero-channel flags of ``latents`` (L, H, W); return the skip mask grown by them."""
    channels = latents.shape[0]
    flaggable = _flaggable(skip, lifted)
    zero = skip | (flaggable & ~latents.reshape(channels, -1).any(axis=1))
    coded = np.flatnonzero(~zero)
    last = int(coded[-1]) + 1 if coded.size else 0
    encoder.encode(np.array([last], np.int32), constriction.stream.model.Uniform(channels + 1))
    flagged = np.flatnonzero(flaggable[: max(last - 1, 0)])
    if flagged.size:
        encoder.encode((~zero[flagged]).astype(np.int32), constriction.stream.model.Uniform(2))
    return zero


def _decode_zero_flags(decoder, channels: int, skip: np.ndarray, lifted: int) -> np.ndarray:
    """Inverse of :func:`_encode_zero_flags`: the skip mask grown by the flagged channels."""
    last = int(decoder.decode(constriction.stream.model.Uniform(channels + 1), 1)[0])
    flaggable = _flaggable(skip, lifted)
    if last < channels and (~skip[last:] & ~flaggable[last:]).any():
        raise EntropyError("zero-channel flags leave out a channel that is always coded")
    if last and skip[last - 1]:
        raise EntropyError("zero-channel flags end on a skipped channel")
    zero = skip.copy()
    zero[last:] = True
    flagged = np.flatnonzero(flaggable[: max(last - 1, 0)])
    if flagged.size:
        zero[flagged] = decoder.decode(constriction.stream.model.Uniform(2), flagged.size) == 0
    return zero


@dataclass
class KnownTables:
    """The coder's table choices the encoder's rounding already made (:func:`walloc_cli.rdoq.rd_round`):
    for every channel after the DC ones that holds a nonzero value (the other rows are never
    read), ``choice`` (L,) its table set (an index into the candidates) and ``ac`` (L, H·W) int16
    each position's table index within the channel under that set; ``dc``, per step of the DC
    pyramid (:func:`walloc_cli.pyramid.plan`), the (table index within the channel, residual)
    arrays (lifted, n) of every DC channel (they do not depend on the set).  Exactly what
    :func:`encode_with_context`'s search would compute from the latents, so it need not."""

    ac: np.ndarray
    choice: np.ndarray
    dc: list[tuple[np.ndarray, np.ndarray]]

    @classmethod
    def empty(cls, channels: int, positions: int) -> "KnownTables":
        return cls(np.zeros((channels, positions), np.int16), np.zeros(channels, np.int64), [])


def encode_with_context(latents: np.ndarray, tables: RaggedTables, candidates: list[Candidate],
                        depth: int, lifted: int = 0, default: int | None = None,
                        neighbour_cuts: tuple[int, ...] = (), skip: np.ndarray | None = None,
                        zero_flags: bool = True, pyramid: DcPyramid | None = None,
                        known: KnownTables | None = None, diagonal_cuts: tuple[int, ...] = (),
                        searched: int = 0) -> bytes:
    """Code int latents (L, H, W) channel by channel with context-selected tables.

    For each channel the encoder picks the cheapest of the ``candidates`` table sets
    (neighbouring quality anchors: an image busier or smoother than the training
    average codes better with a neighbour's statistics) and sends its index first,
    uniform over ``len(candidates)``.  With set (first_row, thresholds), latent bin
    k of channel c uses table ``first_row + c·bins + k``; bin 0's latents come first,
    then bin 1's, …, each in raster order.  Escapes are coded right after their
    group, so the decoder knows every value before it computes the next context.
    ``default`` skips the search (≈ half the encoding time, ≈ 1.5 % more bits): every
    channel takes that candidate.  ``skip`` (L,) bool: channels both sides know are zero
    (a grey image's colour channels), not coded at all — not even their set choice — but
    still zeros in the contexts of the channels after them.  ``zero_flags`` (coder version
    2 and later): all-zero channels are flagged up front and skipped alike.  ``pyramid``
    (versions 3 and 4; 4 with its pair contexts): the ``lifted`` channels are coded through the
    interpolation pyramid with those tables (:func:`_encode_pyramid`), not the Haar levels.
    ``known``: the table sets, table indices and the DC pyramid's residuals the rounding already
    chose and computed (:class:`KnownTables`), used instead of computing them again (and, for
    the channels after the DC ones, instead of ``default``: the DC channels' sets are searched
    here when ``default`` is None, three channels); they must be exactly what the decoder will
    compute.  ``diagonal_cuts`` (version 5): the odd/odd squares' refinement (:func:`phases`).
    ``searched``: channels ``0 … searched − 1`` search their set even when ``default`` fixes the
    others' (``--effort 1``: the channels that carry most of a photo's bits, the DC first, for
    about 1 % of an encode; :data:`walloc_cli.rdoq.SEARCHED_CHANNELS`).  With ``known`` the
    AC channels' choices are the rounding's, made by the same rule.
    """
    channels = latents.shape[0]
    skip = _skip_mask(skip, channels)
    if (latents[skip] != 0).any():
        raise ValueError("skipped channels must be all zero")
    encoder = constriction.stream.queue.RangeEncoder()
    if zero_flags:
        skip = _encode_zero_flags(encoder, latents, skip, lifted)
    choice_model = constriction.stream.model.Uniform(len(candidates)) if len(candidates) > 1 else None
    start = 0
    if pyramid is not None:
        _encode_pyramid(encoder, latents[:lifted], pyramid, default, choice_model, skip[:lifted],
                        None if known is None else known.dc, searched)
        start = lifted
    # A few channels at a time: the per-latent arrays below are int64, and a 12 MP photo
    # has 36 M latents; each batch reads the `depth` channels before it for its contexts.
    for c0 in range(start, channels, _ENCODE_CHANNELS_PER_BATCH):
        c1 = min(channels, c0 + _ENCODE_CHANNELS_PER_BATCH)
        if skip[c0:c1].all():  # contexts come from the latents themselves: nothing to carry over
            continue
        _encode_channels(encoder, latents, c0, c1, tables, candidates, depth, lifted, default, neighbour_cuts,
                         choice_model, skip[c0:c1], known, diagonal_cuts, searched)
    return encoder.get_compressed().astype("<u4").tobytes()


_ENCODE_CHANNELS_PER_BATCH = 24


def _encode_pyramid(encoder, latents: np.ndarray, pyramid: DcPyramid, default: int | None, choice_model,
                    skip: np.ndarray, known: list[tuple[np.ndarray, np.ndarray]] | None = None,
                    searched: int = 0) -> None:
    """The DC channels ``latents`` (lifted, H, W) through the interpolation pyramid, each after
    its table-set choice (the cheapest set, or ``default`` from channel ``searched`` on), as the
    other channels are; ``known``: :attr:`KnownTables.dc` (else each channel is analysed here)."""
    for c in range(latents.shape[0]):
        if skip[c]:
            continue
        steps = dc_pyramid.analyse(latents[c], pyramid.pairs) if known is None else \
            [(which[c], residuals[c]) for which, residuals in known]
        rows = [first + c * pyramid.tables_per_channel for first in pyramid.first_rows]
        pick = default if c >= searched else None
        if pick is None:  # argmin: ties keep the earlier set, as the other channels' search does
            which, residuals = (np.concatenate(part) for part in zip(*steps))
            pick = int(np.argmin([symbol_bits(pyramid.tables, r + which, residuals).sum() for r in rows]))
        if choice_model is not None:
            encoder.encode(np.array([pick], np.int32), choice_model)
        # step by step (each step's tables depend on the steps before), sorted and counted at once
        encode_grouped_runs(encoder, pyramid.tables, rows[pick], steps)


def _decode_pyramid(decoder, pyramid: DcPyramid, choice: int, channel: int, height: int, width: int,
                    limit: int) -> np.ndarray:
    """Inverse of one channel of :func:`_encode_pyramid` (after its choice): flat int64 (H·W,)."""
    base = pyramid.first_rows[choice] + channel * pyramid.tables_per_channel
    per_stage = dc_pyramid.tables_per_stage(pyramid.pairs)

    def step(first: int, bins: np.ndarray) -> np.ndarray:
        # residuals of values within ±limit lie within ±2·limit: 1 more bit of headroom
        order, grouped = _decode_groups(decoder, pyramid.tables, base + first, bins, per_stage, 2 * limit)
        residuals = np.empty(bins.size, np.int64)
        residuals[order] = grouped
        return residuals

    try:
        return dc_pyramid.synthesise(height, width, step, limit, pyramid.pairs).reshape(-1)
    except ValueError as exc:
        raise EntropyError(str(exc)) from None


def _skip_mask(skip: np.ndarray | None, channels: int) -> np.ndarray:
    if skip is None:
        return np.zeros(channels, bool)
    skip = np.asarray(skip, bool)
    if skip.shape != (channels,):
        raise ValueError("skip mask does not match the channels")
    return skip


def _encode_channels(encoder, latents: np.ndarray, c0: int, c1: int, tables: RaggedTables,
                     candidates: list[Candidate], depth: int, lifted: int, default: int | None,
                     neighbour_cuts: tuple[int, ...], choice_model, skip: np.ndarray,
                     known: KnownTables | None = None, diagonal_cuts: tuple[int, ...] = (),
                     searched: int = 0) -> None:
    """Channels ``c0 … c1 − 1`` of :func:`encode_with_context`, appended to ``encoder``
    (those ``skip`` marks are left out)."""
    keep = np.flatnonzero(~skip)  # the coded channels: contexts of the others are never needed
    if keep.size == 0:
        return
    bins = candidates[0][1].shape[1] + 1
    per_channel = tables_per_channel(bins, neighbour_cuts, diagonal_cuts)
    coded = latents[c0 + keep].reshape(keep.size, -1).astype(np.int64)
    level_map = None
    lifted_here = int(np.count_nonzero(c0 + keep < lifted))  # lifted channels come first
    given = known is not None and not lifted_here
    if not given:
        lo = max(0, c0 - depth)
        activity, magnitude = batch_contexts(latents[lo:c1], c0 - lo, depth, keep)
    if lifted_here:
        level_map = lift_level_map(*latents.shape[1:], bins - 1).reshape(-1)
        for c in range(lifted_here):
            coded[c] = lift_forward(latents[c0 + keep[c]], bins - 1).reshape(-1)
    channel_rows = (c0 + keep)[:, None] * per_channel
    search = len(candidates) > 1 and (default is None or c0 < searched)
    best = np.zeros(keep.size, np.int64)
    best_bits = np.full(keep.size, np.inf)
    best_which = default_which = None
    if given:
        best, best_which = known.choice[c0 + keep], known.ac[c0 + keep]
    for j, (first_row, thresholds) in enumerate(candidates):
        if given or (not search and j != default):
            continue
        which = batch_table_index(activity, magnitude, thresholds[c0:c1], bins, neighbour_cuts, keep, diagonal_cuts)
        if lifted_here:
            which[:lifted_here] = level_map
        if not search:
            best[:], best_which = j, which
            break
        if j == default:
            default_which = which.copy()  # ``best_which`` below is updated in place
        if best_which is None:
            best_which = which
        bits = symbol_bits(tables, first_row + channel_rows + which, coded).sum(axis=1)
        better = bits < best_bits  # strict: ties keep the earlier candidate
        best[better], best_bits[better], best_which[better] = j, bits[better], which[better]
    if search and default is not None and not given:  # the channels from ``searched`` on: the default set
        fixed = c0 + keep >= searched
        best[fixed], best_which[fixed] = default, default_which[fixed]
    # Every latent of the batch gets its group key (channel, table) at once; one stable sort puts
    # the groups in the order the decoder will ask for them (raster order within a group), and
    # the Python loop below only walks the groups (one constriction call each).
    small = keep.size * per_channel < 1 << 15  # int16 keys: numpy's stable sort is then a radix sort
    key = best_which.astype(np.int16 if small else np.int32, copy=False)
    key = (key + (np.arange(keep.size, dtype=key.dtype) * per_channel)[:, None]).reshape(-1)
    order = np.argsort(key, kind="stable")
    counts = np.bincount(key, minlength=keep.size * per_channel)
    present = np.flatnonzero(counts)
    sizes = counts[present]
    kept_channel = present // per_channel
    first_rows = np.array([candidates[int(b)][0] for b in best], np.int64)
    rows = first_rows[kept_channel] + (c0 + keep[kept_channel]) * per_channel + present % per_channel
    choices = None
    if choice_model is not None:  # each channel's table set, coded before its first group
        firsts = np.flatnonzero(np.concatenate(([True], np.diff(kept_channel) != 0)))
        choices = dict(zip(firsts.tolist(), best[kept_channel[firsts]].tolist()))
    _code_groups(encoder, tables, rows, sizes, coded.reshape(-1)[order], choices, choice_model)


def _code_groups(encoder, tables: RaggedTables, rows: np.ndarray, sizes: np.ndarray, values: np.ndarray,
                 choices: dict[int, int] | None = None, choice_model=None) -> None:
    """Append ``values``, in runs of ``sizes`` already in coding order, each run coded with table
    ``rows`` and followed by its escapes (one constriction call a run); ``choices``: {run: table
    set} coded with ``choice_model`` just before the runs it names.  What both grouped encoders
    (:func:`_encode_channels`, :func:`encode_grouped_runs`) end with."""
    symbols, escapes = _symbols_of_groups(tables, rows, sizes, values)
    ends = np.cumsum(sizes).tolist()
    for i, (model, a, b) in enumerate(zip(tables.models(rows.tolist()), [0] + ends[:-1], ends)):
        if choices is not None and i in choices:
            encoder.encode(np.array([choices[i]], np.int32), choice_model)
        encoder.encode(symbols[a:b], model)
        if escapes is not None and escapes[i].size:
            _encode_escapes(encoder, escapes[i])


def _symbols_of_groups(tables: RaggedTables, rows: np.ndarray, sizes: np.ndarray, values: np.ndarray
                       ) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """Values in runs of ``sizes`` coded with table ``rows`` -> (int32 symbols with escapes as
    the row's ``size``, and per run the signed distances of its escaped values beyond the range,
    or None when nothing escapes): what both grouped encoders hand constriction."""
    lo = np.repeat(tables.lo[rows].astype(np.int64), sizes)
    size = np.repeat(tables.size[rows].astype(np.uint64), sizes)
    symbols = values - lo
    outside = symbols.view(np.uint64) >= size  # below lo wraps around to a huge unsigned value
    if not outside.any():
        return symbols.astype(np.int32), None
    where = np.flatnonzero(outside)
    beyond = symbols[where]
    edge = size[where].astype(np.int64)
    beyond = np.where(beyond < 0, beyond, beyond - edge + 1)
    symbols[where] = edge
    run = np.repeat(np.arange(rows.size), sizes)[where]
    cuts = np.searchsorted(run, np.arange(rows.size + 1))
    return symbols.astype(np.int32), [beyond[a:b] for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist())]


def white_neighbours(height: int, width: int) -> np.ndarray:
    """(4, white squares) flat indices of each white square's four neighbours, in raster order of
    the squares; a neighbour outside the map is index ``height·width`` (a zero kept there)."""
    white = np.flatnonzero(white_mask(height, width).reshape(-1))
    i, j = np.divmod(white, width)
    outside = height * width
    return np.stack([np.where(i > 0, white - width, outside), np.where(i < height - 1, white + width, outside),
                     np.where(j > 0, white - 1, outside), np.where(j < width - 1, white + 1, outside)])


def diagonal_neighbours(height: int, width: int) -> np.ndarray:
    """(4, odd/odd squares) flat indices of each odd/odd square's four diagonal neighbours, in
    raster order of the squares; one outside the map is index ``height·width``."""
    odd = np.flatnonzero(odd_mask(height, width).reshape(-1))
    i, j = np.divmod(odd, width)
    outside = height * width
    below, right = i < height - 1, j < width - 1  # i, j ≥ 1: the row and column above are inside
    return np.stack([odd - width - 1, np.where(right, odd - width + 1, outside),
                     np.where(below, odd + width - 1, outside), np.where(below & right, odd + width + 1, outside)])


def _count_at_most(thresholds: np.ndarray) -> np.ndarray:
    """For every integer a in 0 … max(thresholds, 0): how many thresholds are <= a (int16), of
    one row of thresholds (1-D) or of each row (2-D: rows as long as the largest threshold of
    any).  The last entry also holds for every larger a, so a nonnegative value's count is
    ``table[min(value, len(table) − 1)]``: two array operations instead of one comparison
    per threshold.  Built with one comparison pass per threshold, counted in place: the
    (rows, cap + 1, thresholds) boolean array of one broadcast, summed over its short last
    axis, was 42 ms of a one-photo encode at q 75 (960 rows of 1,553) and 154 ms at q 95."""
    cuts = np.atleast_2d(thresholds)
    cap = max(int(cuts.max(initial=0)), 0)
    out = np.zeros((cuts.shape[0], cap + 1), np.int16)
    activity = np.arange(cap + 1)
    for k in range(cuts.shape[1]):
        np.add(out, activity >= cuts[:, k : k + 1], out=out, casting="unsafe")
    return out if thresholds.ndim == 2 else out[0]


def _bin_lookup(tables: RaggedTables, row: int, thresholds: np.ndarray) -> np.ndarray | None:
    """:func:`_count_at_most` of one channel's context thresholds (activities are never
    negative), kept with the tables for the next file; None for thresholds too large to tabulate."""
    cache = tables.__dict__.setdefault("_bin_lookup", {})
    key = (row, thresholds.tobytes())
    if key not in cache:
        cache[key] = _count_at_most(thresholds) if int(thresholds.max(initial=0)) < 1 << 16 else None
    return cache[key]


# ``np.maximum.reduce`` without ndarray.max's Python wrapper: called once per decoded group
# (about 2,000 times per 768×512 photo), where the wrapper was a third of the call's cost
_largest = np.maximum.reduce


def _decode_groups(decoder, tables: RaggedTables, first_row: int, which: np.ndarray,
                   count_of_tables: int, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode the latents whose table indices are ``which`` (bins in order, raster within).

    Returns (permutation of the positions, their values in that order); given ``limit``, a
    value beyond ±``limit`` is corrupt data (EntropyError).  The loop does only what the bitstream's order
    requires per group (decode, and the group's escapes right after it); the offsets ``lo``
    are added to all groups at once.
    """
    order, counts = _groups(which, count_of_tables)
    present = np.flatnonzero(counts)
    rows, sizes = first_row + present, tables.size[first_row + present]
    parts = []
    escaped = False
    for model, size, count in zip(tables.models(rows.tolist()), sizes.tolist(), counts[present].tolist()):
        symbols = decoder.decode(model, count)
        if _largest(symbols) == size:  # escapes: their distances beyond the range follow the group
            symbols = symbols.astype(np.int64)
            escape = symbols == size
            e = _decode_escapes(decoder, int(escape.sum()))
            symbols[escape] = np.where(e < 0, e, size - 1 + e)  # relative to lo, as the symbols
            escaped = True
        parts.append(symbols)
    grouped = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
    grouped += np.repeat(tables.lo[rows].astype(np.int64), counts[present])
    if limit is not None and (escaped or tables.extent() > limit) and np.abs(grouped).max(initial=0) > limit:
        raise EntropyError("decoded latent value out of range")
    return order, grouped


def minimum_bits_with_context(tables: RaggedTables, candidates: list[Candidate], per_channel: int,
                              shape: tuple[int, int, int], skip: np.ndarray | None = None) -> float:
    """Fewest bits a context-coded payload of ``shape`` can possibly take: every latent of
    channel c costs at least the cheapest most-likely symbol of any table channel c may use
    (whichever table set it picks), and each channel's choice of set costs log2(sets) bits."""
    channels, height, width = shape
    fewest = tables.fewest_bits()
    cheapest = np.full(channels, np.inf)
    for first_row, _ in candidates:
        rows = first_row + np.arange(channels)[:, None] * per_channel + np.arange(per_channel)[None, :]
        cheapest = np.minimum(cheapest, fewest[rows].min(axis=1))
    coded = ~_skip_mask(skip, channels)
    choices = coded.sum() * np.log2(len(candidates)) if len(candidates) > 1 else 0.0
    return float(height * width * cheapest[coded].sum() + choices)


def check_context_payload(size: int, tables: RaggedTables, candidates: list[Candidate],
                          shape: tuple[int, int, int], neighbour_cuts: tuple[int, ...] = (),
                          skip: np.ndarray | None = None, zero_flags: bool = True, lifted: int = 0,
                          pyramid: DcPyramid | None = None, diagonal_cuts: tuple[int, ...] = ()) -> None:
    """Refuse a payload of ``size`` bytes that cannot hold context-coded latents of ``shape``.

    As in :func:`decode`: a header announcing far more latents than the payload can hold
    is refused before anything of that size is allocated (decompression bomb).  Callers
    that decode in strips check every strip first.  With ``zero_flags`` any channel may be
    flagged all-zero but the ``lifted`` (DC) ones, whose latents bound the size from below."""
    if size % 4:
        raise EntropyError("compressed latents are not a whole number of 32-bit words")
    channels = shape[0]
    per_channel = tables_per_channel(candidates[0][1].shape[1] + 1, neighbour_cuts, diagonal_cuts)
    for first_row, thresholds in candidates:
        if thresholds.shape[0] != channels or first_row + channels * per_channel > tables.lo.shape[0]:
            raise EntropyError("latent shape does not match the model's tables")
    if zero_flags:
        skip = _skip_mask(skip, channels) | (np.arange(channels) >= lifted)
    if pyramid is None:
        floor = minimum_bits_with_context(tables, candidates, per_channel, shape, skip)
    else:  # the DC channels' values are coded with the pyramid's tables instead
        if len(pyramid.first_rows) != len(candidates) or max(pyramid.first_rows) + lifted * \
                pyramid.tables_per_channel > pyramid.tables.lo.shape[0]:
            raise EntropyError("latent shape does not match the model's tables")
        dc = np.arange(channels) < lifted
        floor = minimum_bits_with_context(tables, candidates, per_channel, shape, _skip_mask(skip, channels) | dc)
        fewest = pyramid.tables.fewest_bits()
        per_dc = pyramid.tables_per_channel
        for c in np.flatnonzero(dc & ~_skip_mask(skip, channels)):
            cheapest = min(fewest[r + c * per_dc : r + (c + 1) * per_dc].min() for r in pyramid.first_rows)
            floor += shape[1] * shape[2] * float(cheapest)
    if 8 * size + 64 < floor:
        raise EntropyError("payload too short for the announced number of latents")


def range_decoder(data: bytes):
    """constriction's range decoder over a payload of whole 32-bit words (EntropyError otherwise:
    a truncated or padded payload, never a numpy error)."""
    if len(data) % 4:
        raise EntropyError("compressed segment is not a whole number of 32-bit words")
    return constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))


@contextmanager
def decoding_failures() -> Iterator[None]:
    """Range decoding inside this block fails only with :class:`EntropyError`: constriction raises
    plain exceptions on exhausted or garbled input, which a corrupt file must not turn into a
    traceback."""
    try:
        yield
    except EntropyError:
        raise
    except Exception as exc:
        raise EntropyError(f"range decoder failed: {exc}") from None


def coded_channels(data: bytes, channels: int, skip: np.ndarray | None = None, lifted: int = 0) -> np.ndarray:
    """The channels a payload with zero-channel flags (coder version 2 and later) codes, read from
    its flags alone (bool, (channels,)): the encoder flags a channel zero exactly when it holds
    no nonzero latent, so the channels of a strip-coded file that hold one are known before any
    strip is decoded (the decoder's product then has the same shape as for the whole grid)."""
    decoder = range_decoder(data)
    with decoding_failures():
        return ~_decode_zero_flags(decoder, channels, _skip_mask(skip, channels), lifted)


def decode_with_context(data: bytes, tables: RaggedTables, candidates: list[Candidate],
                        depth: int, shape: tuple[int, int, int], lifted: int = 0,
                        neighbour_cuts: tuple[int, ...] = (), skip: np.ndarray | None = None,
                        zero_flags: bool = True, pyramid: DcPyramid | None = None,
                        diagonal_cuts: tuple[int, ...] = ()) -> np.ndarray:
    """Inverse of :func:`encode_with_context`: int32 latents of ``shape`` (L, H, W)."""
    check_context_payload(len(data), tables, candidates, shape, neighbour_cuts, skip, zero_flags, lifted, pyramid,
                          diagonal_cuts)
    channels, height, width = shape
    skip = _skip_mask(skip, channels)
    bins = candidates[0][1].shape[1] + 1
    per_channel = tables_per_channel(bins, neighbour_cuts, diagonal_cuts)
    choice_model = constriction.stream.model.Uniform(len(candidates)) if len(candidates) > 1 else None
    decoder = range_decoder(data)
    context = ActivityContext((height, width), depth)
    out = np.empty(shape, np.int32)
    positions = height * width
    limit = np.iinfo(np.int32).max
    level_map = lift_level_map(height, width, bins - 1).reshape(-1) if lifted else None
    coding_phases = phases(height, width, bins, tuple(neighbour_cuts), tuple(diagonal_cuts))
    with decoding_failures():
        if zero_flags:
            skip = _decode_zero_flags(decoder, channels, skip, lifted)
        coded = np.flatnonzero(~skip)
        out[coded[-1] + 1 if coded.size else 0 :] = 0  # the channels after the last coded one
        for c in range(coded[-1] + 1 if coded.size else 0):
            if skip[c]:
                out[c] = 0
                context.push(None)
                continue
            choice = int(decoder.decode(choice_model, 1)[0]) if len(candidates) > 1 else 0
            first_row, thresholds = candidates[choice]
            base = first_row + c * per_channel
            values = np.zeros(positions + 1, np.int64)  # the last entry: a zero for neighbours outside
            if c < lifted and pyramid is not None:
                values = _decode_pyramid(decoder, pyramid, choice, c, height, width, limit)
            elif c < lifted:
                # lifted channels hold sums and differences of int32 latents: 2 more bits of headroom
                order, grouped = _decode_groups(decoder, tables, base, level_map, per_channel, 4 * limit)
                values[order] = grouped
                values = lift_inverse(values[:positions].reshape(height, width), bins - 1).reshape(-1)
                if np.abs(values).max(initial=0) > limit:
                    raise EntropyError("decoded latent value out of range")
            else:
                activity = context.current().reshape(-1)
                lookup = _bin_lookup(tables, base, thresholds[c])
                activity_bin = context_bins(activity, thresholds[c]) if lookup is None else \
                    lookup[np.minimum(activity, lookup.size - 1)]
                for phase in coding_phases:
                    where = phase.positions
                    which = activity_bin[where]
                    if phase.neighbours is not None:  # refined by neighbours of earlier phases, hence known
                        near = np.abs(values).take(phase.neighbours).sum(axis=0)
                        which = which * phase.mult + phase.refined[np.minimum(near, phase.refined.size - 1)]
                    order, grouped = _decode_groups(decoder, tables, base, which, per_channel, limit)
                    values[where[order]] = grouped
            values = values[:positions].reshape(height, width)
            out[c] = values
            context.push(values)
    return out


# -- grouped coding with per-value tables (the audio ladder) ---------------------------------
# Each value names its table row (``first_row + which``); values sharing a row are coded
# with one constriction call, rows in increasing order and raster order within a row, each
# row's escapes right after it.  The decoder must know ``which`` before it decodes — it is
# always computed from integers already decoded.
def encode_grouped(encoder, tables: RaggedTables, first_row: int, which: np.ndarray, values: np.ndarray) -> None:
    """Append ``values`` (flat ints) coded with tables ``first_row + which`` to ``encoder``."""
    encode_grouped_runs(encoder, tables, first_row, [(which, values)])


def encode_grouped_runs(encoder, tables: RaggedTables, first_row: int,
                        runs: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
    """:func:`encode_grouped` of each (``which``, ``values``) of ``runs`` in turn — the same stream
    — with one sort for all of them: each value's key is its run's index times the runs' span of
    ``which`` plus its own, so a stable sort puts runs in order, tables in order within a run and
    raster order within a table.  The DC pyramid's 14 steps a channel are such runs: sorting and
    counting them once instead of 14 times saved about 1 ms of a 768×512 photo's encode."""
    whiches = [np.asarray(which).reshape(-1) for which, _ in runs]
    if not any(w.size for w in whiches):
        return
    span = max(int(w.max()) for w in whiches if w.size) + 1
    key = np.concatenate([w.astype(np.int64) + i * span for i, w in enumerate(whiches)])
    values = np.concatenate([np.asarray(v, np.int64).reshape(-1) for _, v in runs])
    # small keys: numpy's stable sort is then a radix sort
    order = np.argsort(key.astype(np.int16) if len(runs) * span < 1 << 15 else key, kind="stable")
    counts = np.bincount(key)
    present = np.flatnonzero(counts)
    sizes = counts[present]
    _code_groups(encoder, tables, first_row + present % span, sizes, values[order])


def decode_grouped(decoder, tables: RaggedTables, first_row: int, which: np.ndarray,
                   count_of_tables: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_grouped`: (permutation, values in that order); value j belongs
    at position ``permutation[j]`` of ``which``."""
    which = np.asarray(which).reshape(-1)
    if which.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if which.min() < 0 or which.max() >= count_of_tables or first_row + count_of_tables > tables.lo.shape[0]:
        raise EntropyError("table index out of range")
    with decoding_failures():
        return _decode_groups(decoder, tables, first_row, which, count_of_tables)
