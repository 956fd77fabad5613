"""Rate–distortion optimised rounding of ladder-model latents (encoder only).

Plain rounding picks the integer nearest each scaled latent ``y = z / step``,
whatever it costs to code.  But the context coder's tables say what every value
costs *where it stands*: in a quiet neighbourhood a 1 is rare and expensive, in
busy texture it is cheap.  This module chooses, for each latent, between the
nearest integer ``n`` and ``n − 1`` toward zero (for |y| ≥ 0.5), whichever
minimises

    (|y| − reconstruction(n))²  +  λ · bits(n | its table),

distortion in units of step² (the transform is orthonormal, so latent-domain
error is pixel-domain error) and bits from the integer tables the coder will
use.  The same rule is then applied to whole sparse channels (zero one when
the error that adds is below λ times the bits all its positions cost: see
:func:`_not_worth_coding`).  Nothing changes for the decoder: it reads
ordinary integer latents.  Measured on validation photos: 0.1–0.4 dB more at
the same size than dead-zone rounding (see the model card).

The tables a latent will be coded with depend on its context — the activity of
the previous channels' final values and, on white checkerboard squares, its four
neighbours in its own channel — and those depend on the rounding itself.  So the
rounding runs in the decoder's order: channel by channel, each channel's black
squares, then its white squares, every choice priced with exactly the table the
coder will use (the decisions are still greedy: a value's effect on its successors'
contexts is not costed).  Until session 19 the choices were priced with the contexts
of the dead-zone rounding, all channels at once; the true contexts measured −0.75 %
BD-rate (PSNR and MS-SSIM) on 24 validation photos, −1.8 % at q 3–35, and the
coder reuses the table indices they yield instead of computing them again
(:class:`entropy.KnownTables`), which more than pays for the per-channel loop.  With
every channel's final values at hand, ``--effort 2`` also picks the table set (its
quality's anchor or one of four neighbours) that codes them in the fewest bits — what its
search in the coder did before, −0.7 % BD-rate, now for about a third more encoding
instructions instead of several times the entropy coding's.  Every effort does the same for
the first :data:`SEARCHED_CHANNELS` channels (session 22): about half the gain for about 1 %
of the work.
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from . import entropy

if TYPE_CHECKING:  # imported only for the type hint: model imports nothing from here
    from .model import QualityLadder

# Lagrange multiplier in step² per bit.  High-rate theory for a uniform quantizer
# (D = step²/12 · 2^(−2ΔR)) gives −dD/dR = 2·ln 2 / 12 ≈ 0.12; measured on validation
# photos every value from 0.10 to 0.20 helps and 0.15 was best over q 30…85 (session 16's
# decoder).  Session 23's refiner, which recovers more of a finely rounded value's error at
# every quality, moved the optimum to 0.12 (BD-rate against 0.15, PSNR / MS-SSIM, 24 validation
# photos −0.24 / −0.26 %, 24 Imagenette photos −0.90 / −0.04 %; 0.10: −0.05 / −0.08 % and
# −1.20 / +0.14 %; 0.18: +0.68 / +0.53 % on the validation photos).  The tables were fitted on
# 0.15's rounding and are not refitted.
LAMBDA = 0.12
_HALF = np.float32(0.5)  # float32 like the scaled latents: their nearest integer is floor(|y| + _HALF)

def reconstruction(magnitude: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """|value| the decoder rebuilds for integer magnitudes ≥ 0, in steps: 0 for 0, else
    ``magnitude − centre`` (the bin's fitted centroid: below the integer after dead-zone
    rounding, above it after RD rounding, which leaves the upper part of a bin to the one
    below), never below 0 — as :meth:`QualityLadder.dequantize`."""
    return np.where(magnitude > 0, np.maximum(magnitude - centre, 0), 0)


# Channels (counting the DC ones) whose table set every effort picks: the first ones carry most of a
# photo's bits, and searching them alone (their activity bins under every set, their final values
# priced under each) costs about 1 % of an encode for half of ``--effort 2``'s gain (24 validation
# photos: files −0.66 / −0.37 / −0.18 % at q 25 / 55 / 75 with 16, against −0.69 / −0.56 / −0.37 %
# when every channel searches).  The choice is sent for every coded channel whether searched or
# not, so searching more costs encoding time only: 32 (session 26) saved another 0.18 / 0.11 /
# 0.08 % of the bytes at q 55 / 75 / 90 (24 photos at 768×512) for no measurable time (BD-rate
# against 16: −0.06 % on 24 validation photos, −0.12 % on 24 Imagenette photos); 64 and all 192
# saved 0.03–0.13 % more for 2–7 % more encoding time.
SEARCHED_CHANNELS = 32


def rd_round(scaled: np.ndarray, ladder: "QualityLadder", quality: int, lam: float = LAMBDA,
             known: "entropy.KnownTables | None" = None, search: bool = False) -> np.ndarray:
    """Scaled float latents (L, H, W) of one image -> int32 latents, rate–distortion optimised.

    ``scaled`` is ``z / step`` per channel (what :meth:`QualityLadder.quantize`
    rounds), costed with the tables of the quality's own anchor.  The first
    ``ladder.lifted`` (DC) channels are rounded along their interpolation pyramid
    (:func:`rd_round_dc`) when the ladder has its tables; otherwise they are coded after
    an integer Haar transform whose tables do not cost single values, and keep the
    dead-zone rounding.  The other channels are rounded in coding order on their true
    contexts (module docstring); a channel whose every value rounds to 0 costs nothing.

    ``known`` (:class:`entropy.KnownTables`), optional: filled with what the coder needs of
    every channel after the DC ones that holds a nonzero value — its table set (the one of
    :meth:`QualityLadder.table_sets` that codes its final values in the fewest bits, ties to the
    earlier, for the first :data:`SEARCHED_CHANNELS` channels, or with ``search`` for every
    channel: ``--effort 2``; the quality's own for the others) and the table index of each
    position under it — and with the DC pyramid's steps: what
    :func:`entropy.encode_with_context` would compute from the result.
    """
    q = ladder.check(quality)
    candidates = ladder.table_sets(q)
    channels, height, width = scaled.shape
    searched = 0 if known is None else channels if search else SEARCHED_CHANNELS
    used = list(range(len(candidates))) if searched > ladder.lifted else [ladder.CHOICES.index(0)]
    sets, own = [candidates[i] for i in used], used.index(ladder.CHOICES.index(0))
    tables, offset, depth, lifted = ladder.tables, ladder.offset[ladder.anchor[q]], ladder.depth, ladder.lifted
    per_channel = entropy.tables_per_channel(sets[0][1].shape[1] + 1, tuple(ladder.neighbour_cuts),
                                             tuple(ladder.diagonal_cuts))
    out = np.zeros(scaled.shape, np.int32)
    out[:lifted] = ladder.round_scaled(scaled[:lifted])
    if ladder.pyramid is not None and lifted:
        out[:lifted] = rd_round_dc(scaled[:lifted], ladder, q, steps=None if known is None else known.dc)
    # only channels with a value that rounds to nonzero have choices: past q 75's first ~100, none
    # (found from each channel's extremes: no copy of a strip's 12 M latents)
    flat = scaled[lifted:].reshape(channels - lifted, -1)
    highest, lowest = flat.max(axis=1, initial=0), flat.min(axis=1, initial=0)
    live = np.flatnonzero((highest >= 0.5) | (lowest <= -0.5))
    if live.size == 0:
        return out
    context = _Contexts(ladder, [t for _, t in sets], out[max(0, lifted - depth) : lifted], height, width)
    firsts = [first for first, _ in sets]
    values = context.values
    previous = lifted
    for c in (live + lifted).tolist():
        context.skip(c - previous)  # the all-zero channels in between
        previous = c + 1
        base, centre = firsts[own] + c * per_channel, float(offset[c])
        y = scaled[c].reshape(-1)
        a = np.abs(y)
        choices = np.flatnonzero(a + _HALF >= 1)  # the positions whose nearest integer is not 0
        every_set = c < searched and len(used) > 1
        # the priced set's costs alone unless the channel searches: dense costs are per set
        rows = tuple(f + c * per_channel for f in firsts) if every_set else (base,)
        priced = own if every_set else 0
        pick = _Picks(a, y, choices, centre, priced * per_channel, base, tables.dense_costs(rows, per_channel),
                      tables.step_savings(rows, per_channel, priced), tables, lam)
        sparse = choices.size <= context.sparse_limit
        if sparse and not context.round_sparse(c, own, pick):
            context.clear(choices)  # every value rounded to 0: nothing to code, nothing to remember
            context.push(None)
            continue
        # after round_sparse: the tables the coder needs
        which = context.round_full(c, own, pick, rounded=sparse, every_set=every_set)
        final = values[: height * width]
        if _not_worth_coding(final, a, centre, pick, which):
            final[choices] = 0
        out[c] = final.reshape(height, width)
        if known is not None and final.any():
            chosen = _fewest_bits(final, context, firsts, c * per_channel, per_channel, pick.costs, tables) \
                if every_set else own
            known.choice[c], known.ac[c] = used[chosen], which if chosen == own else context.which_of(chosen)
        context.push(final)
        context.clear(choices)
    return out


class _Picks:
    """One channel's rounding decisions, made a phase at a time (:meth:`choose`): each candidate
    (``choices``: the positions whose nearest integer n is not 0) becomes n or n − 1 toward zero,
    whichever costs less in (|y| − reconstruction)² + λ · bits with its table: n − 1 when the
    distortion that adds is below λ times the bits it saves.  Everything but the bits is computed
    here once per channel; the bits a phase's candidates save are read from ``savings``
    (:meth:`entropy.RaggedTables.step_savings` of the priced set) once their tables are known, and
    a channel's bits from ``costs`` (:meth:`entropy.RaggedTables.dense_costs`, the priced set's
    tables from row ``set_row``); values beyond those tables, escapes, are priced by
    :func:`entropy.symbol_bits` itself (table ``base + which``)."""

    def __init__(self, magnitude: np.ndarray, scaled: np.ndarray, choices: np.ndarray, centre: float, set_row: int,
                 base: int, costs: tuple[np.ndarray, int, int], savings: np.ndarray, tables: "entropy.RaggedTables",
                 lam: float) -> None:
        self.choices, self.base, self.costs, self.savings, self.tables, self.lam = \
            choices, base, costs, savings, tables, lam
        self.set_row = set_row
        a = magnitude.take(choices)
        nearest = (a + _HALF).astype(np.int64)
        self.step = np.where(scaled.take(choices) < 0, -1, 1)  # a step away from zero
        self.signed = self.step * nearest
        a = a.astype(np.float64)
        # centre < 1 always, for fitted centroids: then r(n) = n − centre for n ≥ 1, and r(n − 1) =
        # r(n) − 1 for n ≥ 2, so the distortion one step down adds is linear in the error
        if centre < 1:
            twice = 2 * (a - (nearest - centre))  # 2 (a − r(n))
            twice += 1
            self.added = np.where(nearest > 1, twice, (1 - centre) * (twice - centre))
        else:
            self.added = (a - reconstruction(nearest - 1, centre)) ** 2 - (a - reconstruction(nearest, centre)) ** 2
        _, low, width = costs
        self.width = width
        inside = choices.size == 0 or int(nearest.max()) <= min(-low, low + width - 1)
        # each candidate's entry in row 0 of ``savings``, less its table's rows (None: escapes)
        self.entry = self.signed - low if inside else None

    def choose(self, subset: np.ndarray | None, which: np.ndarray) -> np.ndarray:
        """Signed values of the candidates ``subset`` (indices into ``choices``; None: all), priced
        with their table indices ``which``."""
        take = (lambda x: x) if subset is None else (lambda x: x.take(subset))
        if self.entry is not None:
            saved = self.savings.take(which.astype(np.int64) * self.width + take(self.entry))
        else:
            rows, signed = self.base + which.astype(np.int64), take(self.signed)
            saved = entropy.symbol_bits(self.tables, rows, signed) - \
                entropy.symbol_bits(self.tables, rows, signed - take(self.step))
        return take(self.signed) - take(self.step) * (take(self.added) < self.lam * saved)

    def bits(self, which: np.ndarray, values: np.ndarray) -> float:
        """The channel's bits: its final ``values`` (every position, flat) with tables ``which``."""
        dense, low, width = self.costs
        if self.entry is not None:  # every value inside the dense rows (none is beyond its nearest)
            return float(dense.take((which.astype(np.int64) + self.set_row) * width + (values - low)).sum())
        return float(entropy.symbol_bits(self.tables, self.base + which.astype(np.int64), values).sum())


def _fewest_bits(values: np.ndarray, context: "_Contexts", firsts: list[int], channel_row: int, per_channel: int,
                 costs: tuple[np.ndarray, int, int], tables: "entropy.RaggedTables") -> int:
    """The table set (index into ``firsts``) that codes a channel's final ``values`` in the fewest
    (estimated) bits, ties to the earlier set — the coder's own search (``--effort 2`` before
    session 19), from the channel's context under every set (``context``)."""
    dense, low, width = costs
    if max(int(values.max()), -int(values.min())) <= min(-low, low + width - 1):
        # entry (set · per_channel + bin · mult + refine) · width + value − low, for all sets at once
        position = context.refine * width + (values - low)
        position = position + (np.arange(len(firsts), dtype=np.int64) * (per_channel * width))[:, None]
        position += context.bins * (context.mult * width)
        bits = dense.take(position).sum(axis=1)
    else:  # escapes: priced by symbol_bits itself
        bits = np.array([entropy.symbol_bits(tables, first + channel_row + context.which_of(s).astype(np.int64),
                                             values).sum() for s, first in enumerate(firsts)])
    return int(np.argmin(bits))


@lru_cache(maxsize=8)
def _grid(height: int, width: int, bins: int, neighbour_cuts: tuple[int, ...],
          diagonal_cuts: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """The index arrays of an H × W latent grid coded in :func:`entropy.phases`, read-only and kept (a batch's
    photos share a size): each position's 3×3 box in the activity's zero-bordered total (flat
    indices, (H·W, 9)), its phase (int8) and its rank among its phase's positions (the column of
    its neighbours in :attr:`entropy.Phase.neighbours`), and each position's tables per activity
    bin (``mult``, 1 in the first phase)."""
    i, j = np.divmod(np.arange(height * width), width)
    centre = (i + 1) * (width + 2) + j + 1
    box = centre[:, None] + ((np.arange(3) - 1)[:, None] * (width + 2) + np.arange(3) - 1).reshape(1, 9)
    phase_of = np.zeros(height * width, np.int8)
    rank = np.zeros(height * width, np.int64)
    mult = np.ones(height * width, np.int64)
    for k, phase in enumerate(entropy.phases(height, width, bins, neighbour_cuts, diagonal_cuts)):
        phase_of[phase.positions] = k
        rank[phase.positions] = np.arange(phase.positions.size)
        mult[phase.positions] = phase.mult
    arrays = (box, phase_of, rank, mult)
    for a in arrays:
        a.setflags(write=False)
    return arrays


class _Contexts:
    """The coder's context state as the rounding proceeds: the decoder's own
    :class:`entropy.ActivityContext` over the final values, and for the current channel each
    position's activity bin under each of the table sets whose context ``thresholds`` it was
    given (:attr:`bins`, sets × H·W), its refinement by its neighbours in earlier phases
    (:attr:`refine`, 0 in the first phase) and its table index under the set the rounding prices
    with (:attr:`which`).  A position's table under set s is ``bins[s] · mult + refine`` (``mult``:
    its phase's tables per activity bin, :class:`entropy.Phase`), as
    :func:`entropy.batch_table_index` computes it.

    A channel with few candidates (:attr:`sparse_limit`) is first rounded on the tables of its
    candidates alone (:meth:`round_sparse`, gathered from the activity around each); about half
    of the channels with a candidate end all zero (q 75), and then nothing is computed over the
    whole channel."""

    def __init__(self, ladder: "QualityLadder", thresholds: list[np.ndarray], before: np.ndarray,
                 height: int, width: int) -> None:
        stacked = np.concatenate(thresholds).astype(np.int64)  # (sets · L, bins − 1)
        self.lookup = entropy.channel_lookup(stacked.tobytes(), stacked.shape)
        self.cap = self.lookup.size // stacked.shape[0] - 1
        self.set_rows = (np.arange(len(thresholds)) * thresholds[0].shape[0] * (self.cap + 1))[:, None]
        # the activity exactly as the decoder keeps it (int64: no sum can overflow)
        self.activity = entropy.ActivityContext((height, width), ladder.depth)
        self.values = np.zeros(height * width + 1, np.int64)  # the last entry: a zero for neighbours outside
        self.bins = np.zeros((len(thresholds), height * width), np.int16)
        self.which = np.zeros(height * width, np.int16)
        self.refine = np.zeros(height * width, np.int64)
        for channel in before:
            self.activity.push(channel.reshape(-1))
        layout = (height, width, thresholds[0].shape[1] + 1, tuple(ladder.neighbour_cuts), tuple(ladder.diagonal_cuts))
        self.phases = entropy.phases(*layout)
        self.box, self.phase_of, self.rank, self.mult = _grid(*layout)
        self.sparse_limit = height * width // SPARSE_FRACTION

    def skip(self, count: int) -> None:
        """``count`` all-zero channels (only the last ``depth`` of them still count)."""
        for _ in range(min(count, self.activity.depth)):
            self.activity.push(None)

    def push(self, channel: np.ndarray | None) -> None:
        """A channel's final values (flat; None: all zero) join the activity."""
        self.activity.push(channel if channel is not None and channel.any() else None)

    def clear(self, positions: np.ndarray) -> None:
        """The channel is done: its values (nonzero only at ``positions``) back to zero."""
        self.values[positions] = 0

    def round_sparse(self, c: int, priced: int, pick: "_Picks") -> bool:
        """Round channel ``c``'s candidates into :attr:`values`, pricing with set ``priced``, from the
        tables of the candidates alone; True when a value is left nonzero (:meth:`round_full` then
        records every position's table)."""
        choices, values = pick.choices, self.values
        activity = self.activity.padded.reshape(-1).take(self.box[choices]).sum(axis=1)
        np.minimum(activity, self.cap, out=activity)
        bins = self.lookup.take(activity + (c * (self.cap + 1) + int(self.set_rows[priced, 0])))
        if len(self.phases) == 1:
            values[choices] = pick.choose(None, bins)
            return bool(values[choices].any())
        phase_of = self.phase_of.take(choices)
        for k, phase in enumerate(self.phases):  # in coding order: earlier phases' values are final
            subset = np.flatnonzero(phase_of == k)
            if not subset.size:
                continue
            squares = choices[subset]
            which = bins[subset]
            if phase.neighbours is not None:
                near = np.abs(values).take(phase.neighbours[:, self.rank[squares]]).sum(axis=0)
                np.minimum(near, phase.refined.size - 1, out=near)
                which = which * np.int16(phase.mult) + phase.refined.take(near)
            values[squares] = pick.choose(subset, which)
        return bool(values[choices].any())

    def round_full(self, c: int, priced: int, pick: "_Picks", rounded: bool = False,
                   every_set: bool = True) -> np.ndarray:
        """Every position's activity bins under every set (``every_set``; else under set
        ``priced`` only, and :meth:`which_of` is then valid for that set alone) and table index
        under set ``priced`` (:attr:`which`, returned), with channel ``c``'s candidates rounded
        into :attr:`values` in coding order — phase by phase, each refined by its neighbours'
        final values — unless ``rounded``: :meth:`round_sparse` already did (on the same tables)."""
        activity = self.activity.current()
        np.minimum(activity, self.cap, out=activity)
        activity += c * (self.cap + 1)
        if self.bins.shape[0] > 1 and every_set:
            self.lookup.take(activity.reshape(-1) + self.set_rows, out=self.bins)
        else:
            self.lookup.take(activity.reshape(-1) + int(self.set_rows[priced, 0]), out=self.bins[priced])
        which, values, choices = self.which, self.values, pick.choices
        which[:] = self.bins[priced]
        if len(self.phases) == 1:
            if not rounded:
                values[choices] = pick.choose(None, which.take(choices))
            return which
        phase_of = None if rounded else self.phase_of.take(choices)
        for k, phase in enumerate(self.phases):
            if phase.neighbours is not None:  # the earlier phases' values are final now
                near = np.abs(values).take(phase.neighbours).sum(axis=0)
                np.minimum(near, phase.refined.size - 1, out=near)
                refine = phase.refined.take(near)
                squares = phase.positions
                self.refine[squares] = refine
                which[squares] = which[squares] * np.int16(phase.mult) + refine
            if not rounded:
                subset = np.flatnonzero(phase_of == k)
                if subset.size:
                    values[choices[subset]] = pick.choose(subset, which.take(choices[subset]))
        return which

    def which_of(self, s: int) -> np.ndarray:
        """The current channel's table indices under set ``s`` (int16, H·W)."""
        return (self.bins[s] * self.mult + self.refine).astype(np.int16)


# A channel with at most H·W / SPARSE_FRACTION candidates is rounded on its candidates' own
# tables first (:meth:`_Contexts.round_sparse`).
SPARSE_FRACTION = 16


# The DC channels are coded as residuals from predictions made of values already coded
# (:mod:`walloc_cli.pyramid`), so their rounding is decided in the pyramid's own order: at each
# step, with the values before it final, each scaled value takes floor or ceiling, whichever
# minimises (y − v)² + λ · bits(v − prediction | its table).  Greedy (a choice's effect on later
# predictions is not costed), and it still pays where the DC is most of a file: on 24
# validation photos −6.0 % BD-rate at q 5–35, −1.6 % over q 5–95 with λ = 0.11; λ = 0.08 /
# 0.15 / 0.30 gave −1.48 / −1.40 / +0.07 % overall.
DC_LAMBDA = 0.11


def rd_round_dc(scaled: np.ndarray, ladder: "QualityLadder", quality: int, lam: float = DC_LAMBDA,
                steps: list[tuple[np.ndarray, np.ndarray]] | None = None) -> np.ndarray:
    """Scaled DC latents (lifted, H, W) -> int32, rounded along the pyramid (the coarse grid,
    coded raw, to the nearest integer).  ``steps``: a list that receives, step by step, the
    (table index within the channel, residual) arrays (lifted, n) the coder will code
    (:attr:`entropy.KnownTables.dc`)."""
    from . import pyramid

    dc = ladder.dc_pyramid(quality)
    first = dc.first_rows[ladder.CHOICES.index(0)]
    channels, height, width = scaled.shape
    # all channels at once (each step's work is small: per-call overhead dominated channel by channel)
    y = scaled.reshape(channels, -1).astype(np.float64)
    known = np.zeros((channels, height * width), np.int64)
    rows = first + np.arange(channels)[:, None] * dc.tables_per_channel
    for positions, neighbours, stage in pyramid.plan(height, width):
        target = y[:, positions]
        if neighbours is None:
            known[:, positions] = np.floor(target + 0.5)
            if steps is not None:
                steps.append((np.zeros(known[:, positions].shape, np.int64), known[:, positions]))
            continue
        prediction, which = pyramid.predict(known, neighbours, stage, dc.pairs)
        tables = rows + which
        below = np.floor(target).astype(np.int64)
        cost_below = (target - below) ** 2 + lam * entropy.symbol_bits(dc.tables, tables, below - prediction)
        cost_above = (below + 1 - target) ** 2 + lam * entropy.symbol_bits(dc.tables, tables, below + 1 - prediction)
        chosen = np.where(cost_above < cost_below, below + 1, below)
        known[:, positions] = chosen
        if steps is not None:
            steps.append((which, chosen - prediction))
    return known.reshape(channels, height, width).astype(np.int32)


# A channel with a handful of nonzero latents costs far more than their own bits: every one of
# its positions is coded, each a few thousandths of a bit, and a channel left all zero costs
# one flag bit (coder version 2).  Zeroing it is the same decision as rounding one value down,
# taken for the whole channel: when the distortion it adds is below λ times the bits it
# saves.  Only sparse channels are costed.  Measured on 12 validation photos (Bjøntegaard on
# bytes and PSNR at q 5 … 95): −2.0 % at q 5–35, −0.2 % at q 45–95, −0.64 % overall; 1.5 λ /
# 0.7 λ / up to 256 nonzeros gave −0.12 / −0.60 / −0.66 % overall.
SPARSE_CHANNEL = 64  # most nonzero latents a channel may have and still be considered for zeroing


def _not_worth_coding(values: np.ndarray, magnitude: np.ndarray, centre: float, pick: _Picks,
                      which: np.ndarray) -> bool:
    """True for a sparse channel (flat final ``values``, |scaled| ``magnitude``, table indices
    ``which``, priced as ``pick`` prices) whose bits cost more than the distortion they remove."""
    count = np.count_nonzero(values)
    if not 0 < count <= SPARSE_CHANNEL:
        return False
    nonzero = np.flatnonzero(values)
    a = magnitude[nonzero].astype(np.float64)
    kept = reconstruction(np.abs(values[nonzero]), centre)
    added = float((a ** 2 - (a - kept) ** 2).sum())  # step², from zeroing
    return added < pick.lam * (pick.bits(which, values) - 1.0)  # less the zero flag
