"""Rate–distortion optimised rounding (encoder only): what it may choose, and that it pays off."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from walloc_cli import api, rdoq
from walloc_cli.model import load_model

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def ladder_model():
    return load_model("rgb-1x")


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO((DATA / "photo.jpg").read_bytes())).convert("RGB"))


def scaled_latents(model, rgb: np.ndarray, quality: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    pad = ((-h) % model.config.block, (-w) % model.config.block)
    read = api.image_reader(rgb, w + pad[1])
    return model.to_latents(read, h + pad[0], 10_000, quality, scaled=True)


def coded(model, rgb: np.ndarray, latents: np.ndarray, quality: int) -> tuple[float, float]:
    """(bpp of the entropy-coded latents, PSNR of the decoded image)."""
    payload = api._encode_latents(model, latents, quality)
    assert np.array_equal(api._decode_latents(model, payload, quality, latents.shape), latents)
    out = api.latents_to_image(model, latents, *rgb.shape[:2], quality)
    mse = np.mean((out.astype(np.float64) - rgb) ** 2)
    return 8 * len(payload) / (rgb.shape[0] * rgb.shape[1]), float(10 * np.log10(255.0**2 / mse))


def test_each_value_is_the_nearest_integer_or_one_step_toward_zero(ladder_model, rgb):
    y = scaled_latents(ladder_model, rgb, 50)
    out = rdoq.rd_round(y, ladder_model.ladder, 50)
    assert out.dtype == np.int32 and out.shape == y.shape
    nearest = np.floor(np.abs(y) + 0.5)
    lifted = ladder_model.ladder.lifted
    free = np.abs(out[lifted:]).astype(np.float64)
    dropped = ~out[lifted:].reshape(out.shape[0] - lifted, -1).any(axis=1)[:, None, None]  # whole channels zeroed
    assert np.all((free == nearest[lifted:]) | (free == nearest[lifted:] - 1) | dropped)
    assert np.all((out[lifted:] == 0) | (np.sign(out[lifted:]) == np.sign(y[lifted:])))
    assert (free < nearest[lifted:]).mean() > 0.01  # it does choose
    # the DC channels (coded along the pyramid) take the floor or the ceiling, and do choose
    below = np.floor(y[:lifted])
    assert np.all((out[:lifted] == below) | (out[:lifted] == below + 1))
    assert (out[:lifted] != np.floor(y[:lifted] + 0.5)).mean() > 0.01


def test_dc_rounding_trades_error_for_bits_along_the_pyramid(ladder_model, rgb):
    """Without a rate cost the DC rounding is plain rounding; with it, the DC's coded bits fall
    by more than λ's worth of the error it adds."""
    from walloc_cli import entropy, pyramid

    ladder, q = ladder_model.ladder, 20
    y = scaled_latents(ladder_model, rgb, q)[: ladder.lifted]
    np.testing.assert_array_equal(rdoq.rd_round_dc(y, ladder, q, lam=0.0), np.floor(y + 0.5))
    dc = ladder.dc_pyramid(q)
    first = dc.first_rows[ladder.CHOICES.index(0)]

    def bits(values: np.ndarray) -> float:
        total = 0.0
        for c in range(values.shape[0]):
            which, residuals = (np.concatenate(part) for part in zip(*pyramid.analyse(values[c], dc.pairs)))
            total += entropy.symbol_bits(dc.tables, first + c * dc.tables_per_channel + which, residuals).sum()
        return total

    plain, chosen = np.floor(y + 0.5), rdoq.rd_round_dc(y, ladder, q)
    added_error = np.sum((y - chosen) ** 2) - np.sum((y - plain) ** 2)
    saved = bits(plain) - bits(chosen)
    assert saved > 0.05 * bits(plain)
    assert added_error < rdoq.DC_LAMBDA * saved


def test_a_sparse_channel_is_zeroed_only_when_its_bits_cost_more_than_it_gives(ladder_model, rgb):
    """One small value alone in a channel costs the whole channel's positions (a zero flag
    costs one bit): it goes.  A large one would leave a large error: it stays, and so does
    a busy channel."""
    ladder, q = ladder_model.ladder, 50
    y = scaled_latents(ladder_model, rgb, q)
    small, large, busy = 150, 151, ladder.lifted + 1
    y[small] = y[large] = 0
    y[small, 3, 4], y[large, 3, 4] = 0.8, 6.0
    out = rdoq.rd_round(y, ladder, q)
    assert not out[small].any()
    assert out[large, 3, 4] != 0
    assert np.count_nonzero(out[busy]) > rdoq.SPARSE_CHANNEL
    kept = rdoq.rd_round(y, ladder, q, lam=0.0)  # no rate cost: nothing is dropped
    assert kept[small, 3, 4] == 1


def test_without_rate_cost_it_picks_the_closer_reconstruction(ladder_model, rgb):
    ladder, q = ladder_model.ladder, 50
    y = scaled_latents(ladder_model, rgb, q)
    out = rdoq.rd_round(y, ladder, q, lam=0.0)[ladder.lifted:]
    offset = ladder.offset[ladder.anchor[q]][ladder.lifted:, None, None]
    a = np.abs(y[ladder.lifted:]).astype(np.float64)
    nearest = np.floor(a + 0.5)
    rebuilt = lambda n: np.where(n > 0, np.maximum(n - offset, 0), 0)  # noqa: E731  (0 stays 0)
    error = lambda n: (a - rebuilt(n)) ** 2  # noqa: E731
    expected = np.where(error(np.maximum(nearest - 1, 0)) < error(nearest), np.maximum(nearest - 1, 0), nearest)
    np.testing.assert_array_equal(np.abs(out), expected)


@pytest.mark.parametrize("centre", [-0.45, -0.2, 0.0, 0.3])
def test_the_encoder_prices_the_reconstruction_the_decoder_makes(ladder_model, centre):
    """rdoq.reconstruction is what QualityLadder.dequantize rebuilds, negative offsets included
    (RD-refitted weights put a bin's values above its integer): 0 stays 0, n ≠ 0 is |n| − centre."""
    ladder, q = ladder_model.ladder, 60
    saved = ladder.offset
    try:
        ladder.offset = np.full_like(saved, centre)
        magnitudes = np.arange(0, 6).repeat(ladder.offset.shape[1]).reshape(6, -1).T   # (L, 6)
        decoded = ladder.dequantize(magnitudes.astype(np.int32), q) / ladder.steps(q)[:, None]
        np.testing.assert_allclose(decoded, rdoq.reconstruction(magnitudes, centre), rtol=1e-6, atol=1e-6)
        assert (decoded[:, 0] == 0).all() and np.allclose(decoded[:, 1], 1 - centre, atol=1e-6)
    finally:
        ladder.offset = saved


def test_higher_lambda_spends_fewer_bits(ladder_model, rgb):
    y = scaled_latents(ladder_model, rgb, 60)
    sizes = [coded(ladder_model, rgb, rdoq.rd_round(y, ladder_model.ladder, 60, lam), 60)[0]
             for lam in (0.0, rdoq.LAMBDA, 0.5)]
    assert sizes[0] > sizes[1] > sizes[2], sizes


@pytest.mark.parametrize("quality", [30, 60, 85])
def test_beats_dead_zone_rounding_at_equal_rate(ladder_model, rgb, quality):
    """The RD-rounded file sits above the dead-zone rate–distortion curve of the same photo.

    The dead-zone curve is sampled at nearby qualities and interpolated (PSNR
    linear in log bpp) at the RD-rounded file's rate.
    """
    ladder = ladder_model.ladder
    y = scaled_latents(ladder_model, rgb, quality)
    bpp, psnr = coded(ladder_model, rgb, rdoq.rd_round(y, ladder, quality), quality)
    curve = []
    for q in range(quality - 16, quality + 3):  # wide: RD rounding saves the rate of several qualities
        z = ladder.round_scaled(scaled_latents(ladder_model, rgb, q)).astype(np.int32)
        curve.append(coded(ladder_model, rgb, z, q))
    rates, quality_db = np.log([c[0] for c in curve]), np.array([c[1] for c in curve])
    assert np.all(np.diff(rates) > 0) and rates[0] < np.log(bpp) < rates[-1], (bpp, curve)
    reference = float(np.interp(np.log(bpp), rates, quality_db))
    assert psnr > reference + 0.05, (quality, bpp, psnr, reference)


@pytest.mark.parametrize("quality", [25, 60, 95])
def test_the_tables_it_hands_the_coder_are_the_coders(ladder_model, rgb, quality):
    """With ``search`` (``--effort 2``) the table set rd_round picks for each coded channel is the
    one the coder's own search picks (which prices every set on the final latents); without it
    (``--effort 1``) the first :data:`rdoq.SEARCHED_CHANNELS` channels pick alike and the others
    keep the quality's own set; the table indices and DC pyramid steps it records are what the
    coder computes from the final latents (the decoder's): the coder reuses them, so they must be
    exact."""
    from walloc_cli import entropy, pyramid

    ladder = ladder_model.ladder
    y = scaled_latents(ladder_model, rgb, quality)
    known = entropy.KnownTables.empty(y.shape[0], y[0].size)
    out = rdoq.rd_round(y, ladder, quality, known=known, search=True)
    coded = np.flatnonzero(out.reshape(out.shape[0], -1).any(axis=1))
    coded = coded[coded >= ladder.lifted]
    assert coded.size > 3
    own = entropy.KnownTables.empty(y.shape[0], y[0].size)
    np.testing.assert_array_equal(rdoq.rd_round(y, ladder, quality, known=own), out)  # the search rounds alike
    first = coded[coded < rdoq.SEARCHED_CHANNELS]
    assert first.size and (own.choice[first] == known.choice[first]).all()
    np.testing.assert_array_equal(own.ac[first], known.ac[first])
    rest = coded[coded >= rdoq.SEARCHED_CHANNELS]
    assert (own.choice[rest] == ladder.CHOICES.index(0)).all()
    activity, magnitude = entropy.batch_contexts(out, 0, ladder.depth, coded)
    sets = ladder.table_sets(quality)
    for s, (_, thresholds) in enumerate(sets):
        which = entropy.batch_table_index(activity, magnitude, thresholds, thresholds.shape[1] + 1,
                                          tuple(ladder.neighbour_cuts), coded,
                                          diagonal_cuts=ladder.diagonal_cuts)
        for record in (known, own):
            mine = record.choice[coded] == s
            np.testing.assert_array_equal(record.ac[coded][mine], which[mine])
    assert len(set(known.choice[coded].tolist())) > 1  # channels do pick other sets
    for c in range(ladder.lifted):
        steps = pyramid.analyse(out[c], ladder.pyramid_pairs)
        assert len(steps) == len(known.dc)
        for (tables, residuals), (dc_tables, dc_residuals) in zip(steps, known.dc):
            np.testing.assert_array_equal(dc_tables[c], tables)
            np.testing.assert_array_equal(dc_residuals[c], residuals)
    # the file coded with them is the file the coder's search codes (up to ties in its estimate)
    searched = api._encode_latents(ladder_model, out, quality, effort=2)
    payload = api._encode_latents(ladder_model, out, quality, known=known)
    assert abs(len(payload) - len(searched)) <= 8
    # no larger than effort 1's file, which searches the first 16 channels' sets itself (at low
    # qualities few channels beyond them are coded, so the two can be the same size)
    assert len(payload) <= len(api._encode_latents(ladder_model, out, quality))
    np.testing.assert_array_equal(api._decode_latents(ladder_model, payload, quality, out.shape), out)
    # effort 1: the rounding's choices are the coder's own effort-1 search (up to ties in its estimate)
    effort_1 = api._encode_latents(ladder_model, out, quality, known=own)
    assert abs(len(effort_1) - len(api._encode_latents(ladder_model, out, quality))) <= 8
    assert len(effort_1) < len(entropy.encode_with_context(
        out, ladder.tables, sets, ladder.depth, ladder.lifted, ladder.CHOICES.index(0), ladder.neighbour_cuts,
        pyramid=ladder.dc_pyramid(quality), diagonal_cuts=ladder.diagonal_cuts))  # every channel its own set
    np.testing.assert_array_equal(api._decode_latents(ladder_model, effort_1, quality, out.shape), out)


def test_its_choices_are_priced_on_the_final_values_not_the_dead_zone_rounding(ladder_model, rgb):
    """Rounding in coding order on the true contexts differs from pricing every choice with the
    dead-zone rounding's contexts: a value's neighbours and predecessors are what the file holds."""
    ladder, q = ladder_model.ladder, 30
    y = scaled_latents(ladder_model, rgb, q)
    out = rdoq.rd_round(y, ladder, q)
    lifted = ladder.lifted
    dead = ladder.round_scaled(y).astype(np.int32)
    assert (out[lifted:] != dead[lifted:]).mean() > 0.001
    nearest = np.floor(np.abs(y[lifted:]) + 0.5)
    free = np.abs(out[lifted:]).astype(np.float64)
    assert np.all((free == nearest) | (free == nearest - 1) | (free == 0))


@pytest.mark.parametrize("quality", [35, 60, 90])
def test_sparse_channels_round_as_the_whole_channel_pass_rounds_them(ladder_model, rgb, quality, monkeypatch):
    """A channel with few candidates is rounded on its candidates' own tables first
    (_Contexts.round_sparse): the same values and the same tables handed to the coder as the
    whole-channel pass gives every channel (SPARSE_FRACTION so large that none is sparse), and
    as rounding every channel that way first (SPARSE_FRACTION 1)."""
    from walloc_cli import entropy

    ladder = ladder_model.ladder
    y = scaled_latents(ladder_model, rgb, quality)
    results = []
    for fraction in (rdoq.SPARSE_FRACTION, 1 << 40, 1):
        monkeypatch.setattr(rdoq, "SPARSE_FRACTION", fraction)
        for search in (False, True):
            known = entropy.KnownTables.empty(y.shape[0], y[0].size)
            out = rdoq.rd_round(y, ladder, quality, known=known, search=search)
            results.append((search, out, known))
    for search, out, known in results[2:]:
        first = results[int(search)]
        np.testing.assert_array_equal(out, first[1])
        np.testing.assert_array_equal(known.choice, first[2].choice)
        np.testing.assert_array_equal(known.ac, first[2].ac)
    assert np.count_nonzero(results[0][1][ladder.lifted:].reshape(y.shape[0] - ladder.lifted, -1).any(axis=1)) > 3
