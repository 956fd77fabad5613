"""The quality ladder's decoder-side 3×3 filter (walloc_cli/postfilter.py): what it computes,
that its fit finds a known filter, and that it makes decoded photos closer to the original."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from walloc_cli import api, postfilter
from walloc_cli.model import load_model

from .conftest import psnr


def _naive(z: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The filter by definition: out[k, i, j] = Σ over taps (di, dj) and channels c of
    weight[k, t·K + c] · z[c, i + di − 1, j + dj − 1], zeros beyond the edges."""
    channels, height, width = z.shape
    out = np.zeros((weight.shape[0], height, width))
    for i in range(height):
        for j in range(width):
            for t in range(9):
                di, dj = divmod(t, 3)
                y, x = i + di - 1, j + dj - 1
                if 0 <= y < height and 0 <= x < width:
                    out[:, i, j] += weight[:, t * channels : (t + 1) * channels] @ z[:, y, x]
    return out


def test_correction_is_the_3x3_filter_with_zero_edges():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(4, 5, 6)).astype(np.float32)
    weight = rng.normal(size=(4, 36)).astype(np.float32)
    np.testing.assert_allclose(postfilter.correction(z, weight), _naive(z, weight), rtol=1e-4, atol=1e-4)


def test_fit_recovers_a_known_filter():
    rng = np.random.default_rng(4)
    weight = (0.1 * rng.normal(size=(3, 27))).astype(np.float32)
    pairs = []
    for _ in range(4):
        decoded = rng.normal(size=(3, 20, 24)).astype(np.float32)
        pairs.append((decoded, decoded + postfilter.correction(decoded, weight)))
    np.testing.assert_allclose(postfilter.fit_weight(pairs, ridge=1e-9), weight, atol=1e-4)


@pytest.fixture(scope="module")
def photo(photo_path) -> np.ndarray:
    return np.asarray(Image.open(photo_path).convert("RGB"))


def test_the_shipped_ladder_has_a_filter_and_it_brings_photos_closer(photo):
    """Same file, decoded with and without the filter: closer to the original with it."""
    model = load_model("rgb-1x")
    assert model.ladder.filter_channels > 0
    for quality in (15, 40):
        latents, _ = api.image_to_latents(model, photo, quality)
        h, w = photo.shape[:2]
        with_filter = api.latents_to_image(model, latents, h, w, quality)
        kept, model.ladder.filter = model.ladder.filter, None
        try:
            without = api.latents_to_image(model, latents, h, w, quality)
        finally:
            model.ladder.filter = kept
        # on this photo, filter and refiner together: +0.12 dB at q 15, +0.04 at q 40 (session 9's
        # filter); +0.27 / +0.020 (session 17's weights), +0.27 / +0.014 (session 22's)
        assert psnr(with_filter, photo) > psnr(without, photo) + (0.1 if quality < 30 else 0.005), quality


def test_decoding_in_windows_gives_the_same_pixels(photo):
    """The filter reads one latent position around each: a window's edge rows come from its
    neighbours (decoder_radius), so narrow windows decode exactly as one."""
    model = load_model("rgb-1x")
    latents, _ = api.image_to_latents(model, photo, 30)
    h, w = photo.shape[:2]
    whole = api.latents_to_image(model, latents, h, w, 30)
    windows = api.latents_to_image(model, latents, h, w, 30, chunk=3)
    assert np.abs(whole.astype(int) - windows).max() <= 1
    assert (whole != windows).mean() < 1e-3


def test_coded_pairs_are_what_the_filter_is_fitted_and_applied_on(photo):
    """ladder.coded_pair (what fit_filter and bench/decoder_probe.py learn from): the decoder's
    dequantized latents and the encoder's unrounded ones, both in steps; the shipped filter,
    applied to the decoded side, moves it toward the true side."""
    from walloc_cli.fit.ladder import coded_pair

    model, quality = load_model("rgb-1x"), 20
    ladder, k = model.ladder, model.ladder.filter_channels
    decoded, true = coded_pair(model, photo, quality, k)
    coded, _ = api.image_to_latents(model, photo, quality)
    steps = ladder.steps(quality)[:k].reshape(-1, 1, 1)
    np.testing.assert_allclose(decoded * steps, ladder.dequantize(coded[:k], quality, np.arange(k)), rtol=1e-6)
    assert np.abs(true - decoded).max() < 2.0  # RD rounding moves a value by at most one step past nearest
    kernel = ladder.filter[ladder.anchor[quality]]
    before = float(((true - decoded) ** 2).sum())
    after = float(((true - decoded - postfilter.correction(decoded, kernel)) ** 2).sum())
    assert after < before


def _random_refiner(channels: int = 4, hidden: int = 6, anchors: int = 2, seed: int = 5):
    """A torch refiner with random weights (its output layer too), exported as the decoder reads it."""
    import torch

    from walloc_cli.fit import refiner as refiner_fit

    torch.manual_seed(seed)
    net = refiner_fit._net(channels, hidden)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.3 * torch.randn_like(p))
    linear = (0.1 * np.random.default_rng(seed).normal(size=(anchors, channels, 9 * channels))).astype(np.float32)
    log_steps = np.log(np.array([2.0, 0.5][:anchors], np.float32))
    gains = np.array([1.0, 0.5][:anchors])
    return net, linear, log_steps, gains


def test_the_numpy_refiner_computes_what_the_torch_net_was_trained_as():
    """postfilter.refine (numpy, the decoder) = linear filter + gain × the trained net
    (torch, zero padding at every layer), anchor by anchor (the quality enters as a bias)."""
    import torch

    from walloc_cli.fit import refiner as refiner_fit

    net, linear, log_steps, gains = _random_refiner()
    refiner = postfilter.Refiner.from_arrays(refiner_fit.export(net, log_steps, gains), linear)
    z = np.random.default_rng(6).normal(size=(4, 7, 9)).astype(np.float32)
    for anchor in range(2):
        with torch.no_grad():
            expected = gains[anchor] * net(torch.from_numpy(z[None]), torch.tensor([log_steps[anchor]]))[0].numpy()
        expected += postfilter.correction(z, linear[anchor])
        np.testing.assert_allclose(postfilter.refine(z, refiner, anchor), expected, rtol=1e-4, atol=1e-4)


def test_the_refiner_reads_two_cells_around_each_position():
    """Its receptive radius is Refiner.RADIUS = 2 (what decoding windows must overlap by):
    a change three cells away leaves a position's result exactly as it was."""
    from walloc_cli.fit import refiner as refiner_fit

    net, linear, log_steps, gains = _random_refiner()
    refiner = postfilter.Refiner.from_arrays(refiner_fit.export(net, log_steps, gains), linear)
    z = np.random.default_rng(7).normal(size=(4, 9, 9)).astype(np.float32)
    changed = z.copy()
    changed[:, 7, 4] += 5.0
    before, after = postfilter.refine(z, refiner, 0), postfilter.refine(changed, refiner, 0)
    differs = np.abs(before - after).max(axis=0) > 0
    assert differs[5, 4] and not differs[4, 4]
    assert refiner.RADIUS == 2


def test_a_refiner_array_of_the_wrong_shape_is_named():
    from walloc_cli.fit import refiner as refiner_fit

    net, linear, log_steps, gains = _random_refiner()
    arrays = refiner_fit.export(net, log_steps, gains)
    arrays["refine.c_bias"] = arrays["refine.c_bias"][:, :2]
    with pytest.raises(ValueError, match="refine.c_bias"):
        postfilter.Refiner.from_arrays(arrays, linear)


def test_the_shipped_refiner_brings_photos_closer_than_the_linear_filter(photo):
    """Same file, decoded with the refiner and with the linear filter alone (the refiner's
    arrays removed): closer to the original with the refiner at low quality, where it pays."""
    model = load_model("rgb-1x")
    assert model.ladder.refiner is not None and model.decoder_radius == postfilter.Refiner.RADIUS
    latents, _ = api.image_to_latents(model, photo, 10)
    h, w = photo.shape[:2]
    refined = api.latents_to_image(model, latents, h, w, 10)
    kept, model.ladder.refiner = model.ladder.refiner, None
    try:
        linear = api.latents_to_image(model, latents, h, w, 10)
    finally:
        model.ladder.refiner = kept
    assert psnr(refined, photo) > psnr(linear, photo) + 0.05


def test_an_anchor_with_a_zero_output_layer_runs_the_linear_filter_alone():
    """The fit zeroes the refiner's output where it is not worth its decoding time; such an
    anchor gives exactly the linear filter's correction (not merely close to it)."""
    from walloc_cli.fit import refiner as refiner_fit

    net, linear, log_steps, gains = _random_refiner()
    gains[1] = 0.0
    refiner = postfilter.Refiner.from_arrays(refiner_fit.export(net, log_steps, gains), linear)
    assert refiner.active.tolist() == [True, False]
    z = np.random.default_rng(8).normal(size=(4, 6, 7)).astype(np.float32)
    np.testing.assert_array_equal(postfilter.refine(z, refiner, 1), postfilter.correction(z, linear[1]))
    assert np.abs(postfilter.refine(z, refiner, 0) - postfilter.correction(z, linear[0])).max() > 1e-3


def test_the_refiner_learns_a_nonlinear_error_the_linear_filter_cannot():
    """refiner_fit.train on synthetic pairs whose residual is |neighbour|-shaped (no linear
    filter can predict an even function of a symmetric input): the trained network, run by
    the numpy decoder, removes most of it."""
    from walloc_cli.fit import refiner as refiner_fit

    rng = np.random.default_rng(9)
    log_steps = np.array([0.0], np.float32)
    photos = []
    for _ in range(6):
        d = rng.normal(size=(2, 24, 24)).astype(np.float32)
        residual = 0.5 * np.abs(d[::-1]) - 0.4  # each channel's error from the other's magnitude
        photos.append([(d.astype(np.float16), residual.astype(np.float16), 0.0)])
    net = refiner_fit.train(photos, log_steps, hidden=16, steps=400, threads=1)
    refiner = postfilter.Refiner.from_arrays(refiner_fit.export(net, log_steps, np.ones(1)),
                                             np.zeros((1, 2, 18), np.float32))
    before = sum(float((r.astype(np.float32) ** 2).sum()) for [(_, r, _)] in photos)
    after = sum(float(((r.astype(np.float32) - postfilter.refine(d.astype(np.float32), refiner, 0)) ** 2).sum())
                for [(d, r, _)] in photos)
    assert after < 0.3 * before


# -- the wide filter: channels K … K1 − 1 from channels 0 … K1 − 1, low rank ----------------------
def _random_wide(first: int = 2, channels: int = 5, rank: int = 3, anchors: int = 2, seed: int = 11):
    rng = np.random.default_rng(seed)
    into = rng.normal(size=(anchors, rank, 9 * channels)).astype(np.float32)
    out = rng.normal(size=(anchors, channels - first, rank)).astype(np.float32)
    return postfilter.WideFilter(into, out)


def test_the_wide_filter_is_its_factored_3x3_filter_with_zero_edges():
    """Applied tap by tap it computes exactly the 3×3 filter ``out · in`` over the K1 channels."""
    wide = _random_wide()
    assert (wide.first, wide.channels) == (2, 5)
    z = np.random.default_rng(12).normal(size=(5, 6, 7)).astype(np.float32)
    for anchor in range(2):
        np.testing.assert_allclose(wide.correction(z, anchor), _naive(z, wide.weight(anchor)), rtol=1e-4, atol=1e-4)


def test_the_wide_filter_reads_one_cell_around_each_position():
    wide = _random_wide()
    z = np.random.default_rng(13).normal(size=(5, 8, 8)).astype(np.float32)
    changed = z.copy()
    changed[:, 6, 3] += 4.0
    differs = np.abs(wide.correction(z, 1) - wide.correction(changed, 1)).max(axis=0) > 0
    assert differs[5, 3] and differs[5, 2] and not differs[4, 3] and differs.sum() == 9
    assert wide.RADIUS == 1


def test_wide_filter_arrays_of_the_wrong_shape_are_refused():
    rng = np.random.default_rng(14)
    with pytest.raises(ValueError, match="wide filter"):
        postfilter.WideFilter(rng.normal(size=(2, 3, 44)), rng.normal(size=(2, 3, 3)))  # 44 is not 9·K1
    with pytest.raises(ValueError, match="wide filter"):
        postfilter.WideFilter(rng.normal(size=(2, 3, 45)), rng.normal(size=(2, 3, 4)))  # rank 3 against 4


def test_the_low_rank_fit_is_the_least_squares_filter_at_full_rank_and_finds_a_rank_one_filter():
    """fit.wide.low_rank: at full rank the factors multiply back to the ridge solution of the
    normal equations; a filter that truly has rank 1 is recovered from rank 1."""
    from walloc_cli.fit.wide import low_rank

    rng = np.random.default_rng(15)
    x = rng.normal(size=(18, 400))                      # 9 taps × 2 channels, 400 positions
    true = np.outer(rng.normal(size=3), rng.normal(size=18))  # (3 outputs, 18): rank 1
    y = true @ x
    gram, cross = x @ x.T, x @ y.T
    into, out = low_rank(gram, cross, np.array([1.0, 2.0, 0.5]), rank=1, ridge=1e-12)
    np.testing.assert_allclose(out @ into, true, rtol=1e-6, atol=1e-8)
    noisy = y + 0.1 * rng.normal(size=y.shape)
    gram, cross = x @ x.T, x @ noisy.T
    into, out = low_rank(gram, cross, np.ones(3), rank=3, ridge=1e-12)
    np.testing.assert_allclose(out @ into, np.linalg.solve(gram, cross).T, rtol=1e-6, atol=1e-8)


def test_the_shipped_ladder_has_a_wide_filter_and_it_brings_photos_closer(photo):
    """Same file decoded with and without the wide filter: closer to the original with it at the
    qualities it was fitted for (its gain is largest from q 60 up), and the decoder keeps its K1
    channels even where the file holds only zeros."""
    model = load_model("rgb-1x")
    wide = model.ladder.wide
    assert wide is not None and wide.first == model.ladder.filter_channels
    assert model.ladder.filtered_channels == wide.channels
    for quality in (70, 90):
        latents, _ = api.image_to_latents(model, photo, quality)
        h, w = photo.shape[:2]
        with_wide = api.latents_to_image(model, latents, h, w, quality)
        model.ladder.wide = None
        try:
            without = api.latents_to_image(model, latents, h, w, quality)
        finally:
            model.ladder.wide = wide
        assert psnr(with_wide, photo) > psnr(without, photo) + 0.005
