"""The WPT: agreement with pywt, numpy == torch, perfect reconstruction."""
from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch

from walloc_cli import wavelets


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def test_one_level_matches_pywt_dwt2(rng):
    x = rng.standard_normal((2, 3, 24, 40))
    ours = wavelets.dwt2(x)
    cA, (cH, cV, cD) = pywt.dwt2(x, "bior4.4", mode="periodization")
    for i, ref in enumerate((cA, cH, cV, cD)):
        np.testing.assert_allclose(ours[:, :, i], ref, atol=1e-12)


def test_one_level_1d_matches_pywt(rng):
    x = rng.standard_normal((3, 50))
    lo, hi = wavelets.analysis_1d(x)
    ref_lo, ref_hi = pywt.dwt(x, "bior4.4", mode="periodization")
    np.testing.assert_allclose(lo, ref_lo, atol=1e-12)
    np.testing.assert_allclose(hi, ref_hi, atol=1e-12)
    np.testing.assert_allclose(wavelets.synthesis_1d(lo, hi), pywt.idwt(lo, hi, "bior4.4", mode="periodization"),
                               atol=1e-12)


def test_packet_tree_matches_pywt_wavelet_packet(rng):
    """Full packet decomposition: our channel set equals pywt's level-J packet nodes."""
    x = rng.standard_normal((16, 16))
    ours = wavelets.wpt2d(x[None], 2)  # (16, 4, 4)
    wp = pywt.WaveletPacket2D(x, "bior4.4", mode="periodization", maxlevel=2)
    # pywt node path letters: a=(lo,lo) h=(hi rows) v=(hi cols) d=(hi,hi); ours: band index 0..3 in that order
    letters = "ahvd"
    for b1 in range(4):
        for b2 in range(4):
            node = wp[letters[b1] + letters[b2]].data
            np.testing.assert_allclose(ours[b1 * 4 + b2], node, atol=1e-10)


@pytest.mark.parametrize("shape,levels", [((3, 64, 48), 3), ((1, 8, 8), 3), ((2, 2, 2), 1), ((5, 32, 16), 2)])
def test_2d_perfect_reconstruction(rng, shape, levels):
    x = rng.standard_normal(shape)
    y = wavelets.wpt2d(x, levels)
    assert y.shape == (shape[0] * 4**levels, shape[1] // 2**levels, shape[2] // 2**levels)
    np.testing.assert_allclose(wavelets.iwpt2d(y, levels), x, atol=1e-9)


@pytest.mark.parametrize("length,levels", [(1024, 8), (64, 3), (2, 1)])
def test_1d_perfect_reconstruction(rng, length, levels):
    x = rng.standard_normal((2, length))
    y = wavelets.wpt1d(x, levels)
    assert y.shape == (2 * 2**levels, length // 2**levels)
    np.testing.assert_allclose(wavelets.iwpt1d(y, levels), x, atol=1e-9)


def test_numpy_and_torch_agree(rng):
    x = rng.standard_normal((2, 3, 32, 32))
    y_np = wavelets.wpt2d(x, 3)
    y_t = wavelets.wpt2d(torch.from_numpy(x), 3)
    np.testing.assert_allclose(y_t.numpy(), y_np, atol=1e-12)
    back = wavelets.iwpt2d(torch.from_numpy(y_np), 3)
    np.testing.assert_allclose(back.numpy(), x, atol=1e-9)
    s = rng.standard_normal((2, 256))
    np.testing.assert_allclose(wavelets.wpt1d(torch.from_numpy(s), 4).numpy(), wavelets.wpt1d(s, 4), atol=1e-12)


def test_torch_transform_is_differentiable():
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    wavelets.iwpt2d(wavelets.wpt2d(x, 2), 2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.ones((1, 3, 16, 16)), atol=1e-9)


def test_odd_length_is_refused():
    with pytest.raises(ValueError):
        wavelets.analysis_1d(np.zeros(7))


def test_builtin_taps_are_pywts():
    """The bior4.4 taps are written out (pywt's import is slow); they must be pywt's, exactly."""
    w = pywt.Wavelet("bior4.4")
    assert wavelets.filter_bank("bior4.4") == tuple(tuple(f) for f in (w.dec_lo, w.dec_hi, w.rec_lo, w.rec_hi))


@pytest.mark.parametrize("levels", [1, 2, 3])
@pytest.mark.parametrize("shape", [(3, 24, 40), (1, 8, 8), (2, 64, 16)])
def test_block_filter_transform_matches_reference(rng, levels, shape):
    block = 2**levels
    if shape[1] % block or shape[2] % block:
        pytest.skip("size not a multiple of the block")
    x = rng.standard_normal(shape)
    reference = wavelets.wpt2d(x, levels)
    np.testing.assert_allclose(wavelets.fast_wpt2d(x, levels), reference, atol=1e-12)
    np.testing.assert_allclose(wavelets.fast_iwpt2d(reference, levels), x, atol=1e-9)
    positions = wavelets.wpt2d_positions(x.transpose(1, 2, 0), levels)
    np.testing.assert_allclose(wavelets.iwpt2d_positions(positions, levels), x.transpose(1, 2, 0), atol=1e-9)


def test_block_filter_transform_keeps_float32(rng):
    x = rng.standard_normal((3, 32, 32)).astype(np.float32)
    y = wavelets.fast_wpt2d(x, 3)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, wavelets.wpt2d(x.astype(np.float64), 3), atol=1e-4)
