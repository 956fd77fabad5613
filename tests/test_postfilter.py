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
    out = np.zeros(z.shape)
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
        # refitted with the DC's RD rounding (session 9): +0.12 dB at q 15, +0.04 at q 40 on this photo
        assert psnr(with_filter, photo) > psnr(without, photo) + 0.02, quality


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
    from walloc_cli.ladder import coded_pair

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
