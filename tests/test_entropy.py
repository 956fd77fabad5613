"""Integer tables and the range coder: lossless for any int32 latent, deterministic."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from walloc_cli import entropy


@pytest.fixture(scope="module")
def tables() -> entropy.EntropyTables:
    rng = np.random.default_rng(0)
    training = np.rint(rng.laplace(0, [1.0, 4.0, 0.3], size=(50_000, 3))).astype(np.int32)
    return entropy.fit_tables(training)


def test_tables_are_exact_integer_distributions(tables):
    tables.validate()
    for c in range(tables.channels):
        row = tables.freqs[c, : tables.size[c] + 1]
        assert row.sum() == entropy.TOTAL and row.min() >= 1


def test_quantize_distribution_keeps_every_symbol():
    q = entropy.quantize_distribution(np.array([0.0, 1e9, 3.0, 0.0]))
    assert q.sum() == entropy.TOTAL and q.min() >= 1 and q.argmax() == 1


def test_round_trip_with_escapes(tables):
    rng = np.random.default_rng(1)
    z = np.rint(rng.laplace(0, 2.0, size=(3, 17, 23))).astype(np.int32)
    z[0, 0, 0] = 2**31 - 1
    z[1, 5, 5] = -(2**31 - 1)
    z[2, 3, 4] = 1000
    z[2, 3, 5] = -1000
    data = entropy.encode(z, tables)
    np.testing.assert_array_equal(entropy.decode(data, tables, z.shape), z)


def test_rate_follows_the_table(tables):
    """Typical latents cost about their ideal code length under the table, escapes little extra."""
    rng = np.random.default_rng(2)
    z = np.rint(rng.laplace(0, [1.0, 4.0, 0.3], size=(20_000, 3))).astype(np.int32).T.copy()
    ideal = 0.0
    for c in range(3):
        idx = np.clip(z[c] - tables.lo[c], 0, tables.size[c])
        idx = np.where((z[c] < tables.lo[c]) | (z[c] >= tables.lo[c] + tables.size[c]), tables.size[c], idx)
        ideal += -np.log2(tables.freqs[c, idx] / entropy.TOTAL).sum()
    actual = 8 * len(entropy.encode(z, tables))
    assert ideal <= actual + 64
    assert actual < ideal * 1.02 + 512


def test_encoding_is_deterministic(tables):
    z = np.arange(3 * 40, dtype=np.int32).reshape(3, 40) % 7 - 3
    assert entropy.encode(z, tables) == entropy.encode(z.copy(), tables)


def test_channel_mismatch_is_an_error(tables):
    with pytest.raises(ValueError):
        entropy.encode(np.zeros((2, 4), np.int32), tables)
    with pytest.raises(entropy.EntropyError):
        entropy.decode(b"\0" * 8, tables, (4, 4))


def test_garbage_never_crashes(tables):
    rng = np.random.default_rng(3)
    for n in range(0, 64, 4):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        try:
            out = entropy.decode(data, tables, (3, 5, 5))
            assert out.shape == (3, 5, 5)
        except entropy.EntropyError:
            pass


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-(2**31) + 1, 2**31 - 1), min_size=3, max_size=60))
def test_any_int32_values_round_trip(tables, values):
    n = len(values) // 3
    z = np.array(values[: 3 * n], np.int32).reshape(3, n)
    np.testing.assert_array_equal(entropy.decode(entropy.encode(z, tables), tables, z.shape), z)


def test_announced_size_is_checked_against_the_payload(tables):
    z = np.zeros((3, 10, 10), np.int32)
    data = entropy.encode(z, tables)
    np.testing.assert_array_equal(entropy.decode(data, tables, z.shape), z)  # the cheapest content passes
    with pytest.raises(entropy.EntropyError, match="too short"):
        entropy.decode(data, tables, (3, 10_000, 10_000))


@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (5, 3), (41, 61), (64, 96)])
def test_integer_haar_lifting_is_exactly_invertible(shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.integers(-(2**31) + 1, 2**31 - 1, size=shape, dtype=np.int64)
    for levels in (1, 3, 7):
        y = entropy.lift_forward(x, levels)
        np.testing.assert_array_equal(entropy.lift_inverse(y, levels), x)
        assert entropy.lift_level_map(*shape, levels).shape == shape


def test_lifting_concentrates_smooth_maps():
    """A smooth (DC-like) map becomes mostly small differences: the point of lifting it."""
    x = (np.add.outer(np.arange(40), np.arange(60)) * 3 + 500).astype(np.int64)
    y = entropy.lift_forward(x, 7)
    levels = entropy.lift_level_map(40, 60, 7)
    assert np.abs(y[levels == 0]).max() <= 3 and np.abs(x).min() >= 500


def test_activity_of_all_matches_the_decoders_running_context():
    rng = np.random.default_rng(3)
    latents = rng.integers(-4, 5, size=(20, 6, 9))
    everything = entropy.activity_of_all(latents, 8)
    running = entropy.ActivityContext(latents.shape[1:], 8)
    for c in range(latents.shape[0]):
        np.testing.assert_array_equal(running.current(), everything[c])
        running.push(latents[c])


def test_checkerboard_table_index():
    """White squares refine their table by their 4 (black, already known) neighbours."""
    values = np.zeros((1, 4, 4), np.int64)
    values[0, 1, 2] = 5   # white ((1 + 2) odd): never a neighbour of another white square
    values[0, 2, 2] = 3   # black ((2 + 2) even)
    activity_bin = np.zeros((1, 4, 4), np.int64)
    index = entropy.table_index(activity_bin, values, 8, (1, 2, 4, 8))
    assert index[0, 0, 0] == 0                       # black: activity bin only
    assert index[0, 2, 1] == 8 + 0 * 5 + 2           # white next to |3|: neighbour sum 3 -> bin 2
    assert index[0, 2, 3] == 8 + 2                   # white, neighbour (2,2) = 3
    assert entropy.tables_per_channel(8, (1, 2, 4, 8)) == 48 and entropy.tables_per_channel(8, ()) == 8


def test_diagonal_phase_table_index():
    """Coder version 5: odd/odd squares refine their table by their 4 diagonal (even/even, already
    known) neighbours, and the white squares' tables come after theirs."""
    values = np.zeros((1, 4, 5), np.int64)
    values[0, 0, 0] = 2   # even/even
    values[0, 2, 2] = -3  # even/even
    values[0, 1, 2] = 7   # white: a neighbour of neither an odd/odd nor an even/even square's table
    activity_bin = np.full((1, 4, 5), 1, np.int64)
    index = entropy.table_index(activity_bin, values, 8, (1, 2, 4, 8), (1, 4))
    assert entropy.white_offset(8, (1, 4)) == 8 + 8 * 3
    assert entropy.tables_per_channel(8, (1, 2, 4, 8), (1, 4)) == 8 + 8 * 3 + 8 * 5
    assert index[0, 2, 2] == 1 and index[0, 0, 4] == 1    # even/even: activity bin only
    assert index[0, 1, 1] == 8 + 1 * 3 + 2                # diagonals 2 + 3 = 5 -> bin 2 (cuts 1, 4)
    assert index[0, 3, 3] == 8 + 1 * 3 + 1                # diagonal 3 -> bin 1
    assert index[0, 1, 3] == 8 + 1 * 3 + 1                # diagonal 3 (the white 7 is no diagonal)
    assert index[0, 1, 0] == 32 + 1 * 5 + 2               # white: neighbour 2 -> bin 2 (cuts 1, 2, 4, 8)
    assert index[0, 2, 1] == 32 + 1 * 5 + 2               # white: neighbours 3 (and 0) -> bin 2


@pytest.mark.parametrize("diagonal", [(), (1, 4)])
@pytest.mark.parametrize("shape", [(4, 5), (5, 4), (1, 3), (3, 1), (2, 2)])
def test_phases_partition_the_grid_in_coding_order(shape, diagonal):
    """Every position is in exactly one phase; a phase's neighbours are all in earlier phases (or
    outside the map), and its table rule is :func:`entropy.table_index`'s."""
    height, width = shape
    phases = entropy.phases(height, width, 8, (1, 2, 4, 8), diagonal)
    assert len(phases) == (3 if diagonal else 2)
    phase_of = np.full(height * width + 1, -1)
    for k, phase in enumerate(phases):
        assert (phase_of[phase.positions] == -1).all() and (np.diff(phase.positions) > 0).all()
        phase_of[phase.positions] = k
    assert (phase_of[:-1] >= 0).all()
    rng = np.random.default_rng(8)
    values = rng.integers(-4, 5, size=(height, width))
    activity_bin = rng.integers(0, 8, size=(height, width))
    expected = entropy.table_index(activity_bin, values, 8, (1, 2, 4, 8), diagonal).reshape(-1)
    known = np.append(np.abs(values).reshape(-1), 0)
    for k, phase in enumerate(phases):
        which = activity_bin.reshape(-1)[phase.positions]
        if phase.neighbours is not None:
            inside = phase.neighbours[phase.neighbours < height * width]
            assert (phase_of[inside] < k).all()
            near = known.take(phase.neighbours).sum(axis=0)
            which = which * phase.mult + phase.refined[np.minimum(near, phase.refined.size - 1)]
        np.testing.assert_array_equal(which, expected[phase.positions])


def _plain_activity(latents: np.ndarray, depth: int) -> np.ndarray:
    """The context's definition, loop by loop: |latents| summed over each position's 3×3
    neighbourhood in the previous ``depth`` channels."""
    out = np.zeros(latents.shape, np.int64)
    channels, height, width = latents.shape
    for c in range(channels):
        for k in range(max(0, c - depth), c):
            for i in range(height):
                for j in range(width):
                    out[c, i, j] += np.abs(latents[k, max(0, i - 1) : i + 2, max(0, j - 1) : j + 2]).sum()
    return out


@pytest.mark.parametrize("scale", [1, 10**8])  # 10**8: sums beyond int32, computed in int64
def test_every_form_of_the_context_matches_its_definition(scale):
    """The encoder's whole-array and batch forms and the decoder's running form compute the
    same integers as the plain definition (the decoder must rebuild the encoder's tables)."""
    rng = np.random.default_rng(5)
    depth = 4
    latents = rng.integers(-6, 7, size=(14, 5, 7)) * scale
    plain = _plain_activity(latents, depth)
    np.testing.assert_array_equal(entropy.activity_of_all(latents, depth), plain)
    running = entropy.ActivityContext(latents.shape[1:], depth)
    for c in range(latents.shape[0]):
        np.testing.assert_array_equal(running.current(), plain[c])
        running.push(latents[c])
    for c0, c1 in [(0, 3), (2, 9), (6, 14)]:
        lo = max(0, c0 - depth)
        activity, magnitude = entropy.batch_contexts(latents[lo:c1], c0 - lo, depth)
        np.testing.assert_array_equal(activity, plain[c0:c1])
        np.testing.assert_array_equal(magnitude[:, 1:-1, 1:-1], np.abs(latents[c0:c1]))
        assert not magnitude[:, [0, -1]].any() and not magnitude[:, :, [0, -1]].any()
        wanted = np.arange(0, c1 - c0, 2)  # some channels only: the others still count as context
        activity, magnitude = entropy.batch_contexts(latents[lo:c1], c0 - lo, depth, wanted)
        np.testing.assert_array_equal(activity, plain[c0 + wanted])
        np.testing.assert_array_equal(magnitude[:, 1:-1, 1:-1], np.abs(latents[c0 + wanted]))


@pytest.mark.parametrize("diagonal", [(), (1, 2, 4, 8)])
def test_batch_table_index_matches_the_per_channel_rule(diagonal):
    rng = np.random.default_rng(6)
    latents = rng.integers(-3, 4, size=(10, 6, 8)) * (rng.random((10, 6, 8)) < 0.4)
    thresholds = np.sort(rng.integers(0, 40, size=(10, 7)), axis=1)
    thresholds[0, -1] = 2**40  # beyond int32: a comparison that is never true
    cuts = (1, 2, 4, 8)
    activity, magnitude = entropy.batch_contexts(latents, 0, 8)
    which = entropy.batch_table_index(activity, magnitude, thresholds, 8, cuts, diagonal_cuts=diagonal)
    bins = entropy.context_bins_per_channel(entropy.activity_of_all(latents, 8).reshape(10, -1), thresholds)
    expected = entropy.table_index(bins.reshape(latents.shape), latents, 8, cuts, diagonal).reshape(10, -1)
    np.testing.assert_array_equal(which, expected)
    for c in range(10):
        np.testing.assert_array_equal(entropy.context_bins(activity[c], thresholds[c]), bins[c].reshape(6, 8))


def test_channel_lookup_counts_the_cuts_at_most_each_activity():
    """The lookup's row c, entry v: how many of channel c's thresholds are ≤ v (what
    np.searchsorted(..., side="right") says), for sorted rows, repeated cuts and cuts ≤ 0."""
    rng = np.random.default_rng(3)
    cuts = np.sort(rng.integers(-2, 300, (40, 7)), axis=1).astype(np.int64)
    cuts[0] = 5  # every cut the same
    lookup = entropy.channel_lookup(cuts.tobytes(), cuts.shape).reshape(40, -1)
    activity = np.arange(lookup.shape[1])
    assert lookup.shape[1] == cuts.max() + 1 and lookup.dtype == np.int16
    for row, lut in zip(cuts, lookup):
        assert np.array_equal(lut, np.searchsorted(row, activity, side="right"))


def test_models_builds_only_the_rows_not_seen_and_keeps_them():
    """A batch's later photos ask for a mix of rows built before and new ones: the rows seen
    before come back as the very objects built then, a new one is built once, in the order asked."""
    tables = entropy.RaggedTables.from_rows([(-1, [1 << 22, 1 << 23, (1 << 22) - 1, 1]),
                                             (0, [(1 << 24) - 2, 1, 1]),
                                             (-2, [1, 2, (1 << 24) - 5, 1, 1])])
    first = tables.models([2, 0])
    mixed = tables.models([0, 1, 2, 1])
    assert mixed[0] is first[1] and mixed[2] is first[0] and mixed[1] is mixed[3]
    assert mixed[1] is tables.model(1) and mixed[1] is not mixed[0]
    assert tables.models([1, 0, 2]) == [mixed[1], mixed[0], mixed[2]]
    encoder = entropy.constriction.stream.queue.RangeEncoder()
    encoder.encode(np.array([2], np.int32), mixed[2])  # a working model of row 2: its most likely symbol
    assert encoder.num_bits() > 0
