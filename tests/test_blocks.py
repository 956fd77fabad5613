"""Resampled band stacks (#15): bands that are nearest-neighbour copies of a coarser grid are
coded on that grid (walloc_cli.blocks, raster_codec's band groups) and come back exactly so."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from walloc_cli import api, blocks, container
from walloc_cli.errors import WallocError

DATA = Path(__file__).parent / "data" / "beyond"


def nearest(coarse: np.ndarray, factor: int, offset: int, height: int, width: int) -> np.ndarray:
    """What a resampler does: each coarse sample over a factor × factor block, the first block
    row and column cut to ``offset`` when the grids do not align."""
    rows = (np.arange(height) + (factor - offset) % factor) // factor
    columns = (np.arange(width) + (factor - offset) % factor) // factor
    return coarse[rows][:, columns]


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    """30×36×7 uint16 from the Jasper crop: 3 bands at full resolution, 2 in 2×2 blocks (offset
    1), 2 in 6×6 blocks — the band order interleaved as in a Sentinel-2 stack."""
    jasper = np.load(DATA / "jasper_crop.npy").astype(np.int64)
    big = np.concatenate([np.tile(jasper, (1, 4, 1)), np.tile(jasper[::-1], (1, 4, 1))], axis=0)  # 32×48
    full = big[:30, :36]
    h, w = 30, 36
    bands = [full[:, :, 0], nearest(big[::2, ::2, 5], 2, 1, h, w), full[:, :, 10],
             nearest(big[::6, ::6, 20], 6, 0, h, w), full[:, :, 30], nearest(big[::2, ::2, 35], 2, 1, h, w),
             nearest(big[::6, ::6, 39], 6, 0, h, w)]
    return np.stack(bands, axis=2).astype(np.uint16)


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def test_detect_finds_factor_and_offset_and_thin_grow_is_exact(stack):
    found = [blocks.detect(stack[:, :, b]) for b in range(stack.shape[2])]
    assert found[0] == found[2] == found[4] == blocks.NONE
    assert found[1] == found[5] == blocks.Blocks(2, 2, 1, 1)
    assert found[3] == found[6] == blocks.Blocks(6, 6, 0, 0)
    for b, band in zip(found, np.moveaxis(stack, 2, 0)):
        coarse = blocks.thin(band, b)
        assert coarse.shape == (blocks.coarse_size(30, b.factor_y, b.offset_y),
                                blocks.coarse_size(36, b.factor_x, b.offset_x))
        assert np.array_equal(blocks.grow(coarse, b, 30, 36), band)
    assert [bands for _, bands in blocks.groups(stack)] == [[0, 2, 4], [1, 5], [3, 6]]


def test_detect_does_not_see_blocks_in_detail_or_partial_repeats():
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 1000, (20, 24))
    assert blocks.detect(noise) == blocks.NONE
    pairs = np.repeat(noise[:, ::2], 2, axis=1)  # repeated along columns only
    assert blocks.detect(pairs) == blocks.Blocks(1, 2, 0, 0)
    broken = np.repeat(np.repeat(noise[::2, ::2], 2, axis=0), 2, axis=1)
    broken[5, 7] += 1  # one sample off: not a block copy any more along either axis
    assert blocks.detect(broken) == blocks.NONE
    assert blocks.detect(np.full((5, 40), 7)) == blocks.Blocks(5, 16, 0, 0)  # constant: the largest blocks


def test_resampled_stack_round_trips_with_groups_and_costs_less(stack, monkeypatch):
    wlc = api.encode_bytes(npy(stack), "s2.npy", quality=50).data
    box = container.unpack(wlc)
    assert box.header["block_of"] == [1, 2, 1, 0, 1, 2, 0] or box.header["block_of"] == [0, 1, 0, 2, 0, 1, 2]
    assert len(box.header["groups"]) == 3 and "latents.2" in box.sections
    out = api.decode_raster(wlc).array
    assert out.dtype == stack.dtype and out.shape == stack.shape
    for b in (1, 3, 5, 6):  # the decoded block bands are block copies again, at the same blocks
        assert blocks.detect(out[:, :, b]) == blocks.detect(stack[:, :, b])
    err = np.mean((out.astype(float) - stack) ** 2)
    # the same raster coded whole (no groups): more bytes at no better error
    monkeypatch.setattr(blocks, "groups", lambda a: [(blocks.NONE, list(range(a.shape[2])))])
    whole = api.encode_bytes(npy(stack), "s2.npy", quality=50).data
    assert "groups" not in container.unpack(whole).header
    whole_err = np.mean((api.decode_raster(whole).array.astype(float) - stack) ** 2)
    assert len(wlc) < 0.85 * len(whole) and err < 1.5 * whole_err
    assert api.decode_raster(wlc).array.tobytes() == out.tobytes()  # deterministic


def test_latents_and_info_of_a_grouped_file(stack):
    wlc = api.encode_bytes(npy(stack), "s2.npy", quality=40).data
    found = api.file_latents(wlc)
    steps = np.asarray(found.step)
    assert found.latents.ndim == 2 and steps.shape == (1, found.latents.shape[1])
    assert len(np.unique(steps)) == 3  # one step per group: finer for larger blocks
    assert api.info(wlc)["band_groups"] == "3 at full resolution, 2 in 2×2 blocks, 2 in 6×6 blocks"


@pytest.mark.parametrize("change", [
    {"groups": [[2, 2, 1, 1, 100, 1, 1, 0, 0]]},            # block_of names a group that is not there
    {"block_of": [0, 0, 0]},                               # too few bands
    {"block_of": [0, 1, 0, 0, 0, 1, 0]},                   # group 2 without bands
    {"groups": "x"}, {"block_of": None},
    {"groups": [[0, 1, 0, 0, 1, 1, 1, 0, 0]] * 3},         # factor 0
    {"groups": [[2, 2, 2, 0, 1, 1, 1, 0, 0]] * 3},         # offset not below the factor
    {"groups": [[17, 1, 0, 0, 1, 1, 1, 0, 0]] * 3},        # factor above the largest
    {"groups": [[1, 1, 0, 0, 1, 1, 1, 0]] * 3},            # an entry too short
])
def test_fuzzed_group_fields_are_refused_in_one_line(stack, change):
    box = container.unpack(api.encode_bytes(npy(stack), "s2.npy", quality=30).data)
    with pytest.raises(WallocError) as err:
        api.decode_raster(container.pack({**box.header, **change}, box.sections))
    assert "\n" not in str(err.value)


def test_a_missing_group_section_is_refused(stack):
    box = container.unpack(api.encode_bytes(npy(stack), "s2.npy", quality=30).data)
    sections = {k: v for k, v in box.sections.items() if k != "spectral.1"}
    with pytest.raises(WallocError, match="spectral"):
        api.decode_raster(container.pack(box.header, sections))


@pytest.fixture(scope="module")
def predictable(stack) -> np.ndarray:
    """The stack's full-resolution bands and two 2×2 bands that are (mostly) a weighted sum of
    their block means, as a red-edge band is of red and near infrared."""
    full = stack[:, :, [0, 2, 4]].astype(np.int64)
    sums, counts = blocks.block_sums(full, blocks.Blocks(2, 2, 1, 1))
    means = sums / counts[..., None]
    rng = np.random.default_rng(5)
    coarse = np.stack([0.7 * means[..., 0] + 0.4 * means[..., 2], 1.1 * means[..., 1] - 0.2 * means[..., 0] + 300],
                      axis=2) + rng.normal(0, 3, means.shape[:2] + (2,))
    grown = blocks.grow(np.clip(np.rint(coarse), 0, 65535), blocks.Blocks(2, 2, 1, 1), 30, 36)
    return np.concatenate([full, grown], axis=2).astype(np.uint16)


def test_integer_prediction_is_exact_arithmetic():
    sums = np.array([[[10, 7]]], np.int64)
    counts = np.array([[4]], np.int64)
    weights = np.array([[256, -128], [3, 0]], np.int16)  # 1.0, -0.5; 3/256
    # (10 − 3.5) / 4 = 1.625 -> 2; 30/256/4 = 0.029 -> 0
    assert blocks.predict(sums, counts, weights).tolist() == [[[2, 0]]]
    rng = np.random.default_rng(0)
    full = rng.integers(0, 4000, (12, 10, 3))
    sums, counts = blocks.block_sums(full, blocks.Blocks(3, 2, 1, 0))
    assert sums.shape == (5, 5, 3) and counts[:, 0].tolist() == [2, 6, 6, 6, 4]  # rows 0 | 1-3 | 4-6 | 7-9 | 10-11
    assert np.array_equal(sums[1, 2], full[1:4, 4:6].sum(axis=(0, 1)))


def test_a_predictable_coarse_group_is_coded_as_its_prediction_residual(predictable, monkeypatch):
    wlc = api.encode_bytes(npy(predictable), "p.npy", quality=50).data
    box = container.unpack(wlc)
    assert "predict.1" in box.sections and len(box.sections["predict.1"]) == 2 * 2 * 3
    out = api.decode_raster(wlc).array
    assert out.dtype == predictable.dtype and out.shape == predictable.shape
    assert blocks.detect(out[:, :, 3]) == blocks.Blocks(2, 2, 1, 1)
    err = np.mean((out.astype(float) - predictable) ** 2)
    # without the prediction: more bytes at no better error
    monkeypatch.setattr(blocks, "fit_weights", lambda c, s, n: np.zeros((c.shape[2], s.shape[2]), np.int16) + 0)
    plain = api.encode_bytes(npy(predictable), "p.npy", quality=50).data
    assert "predict.1" not in container.unpack(plain).sections  # zero weights never pay for themselves
    plain_err = np.mean((api.decode_raster(plain).array.astype(float) - predictable) ** 2)
    assert len(wlc) < 0.95 * len(plain) and err < 1.5 * plain_err


@pytest.mark.parametrize("change", ["short", "no reference"])
def test_bad_prediction_sections_are_refused_in_one_line(predictable, change):
    box = container.unpack(api.encode_bytes(npy(predictable), "p.npy", quality=50).data)
    header, sections = dict(box.header), dict(box.sections)
    if change == "short":
        sections["predict.1"] = sections["predict.1"][:-2]
    else:  # the full-resolution group declared as blocks: no reference to predict from
        header["groups"] = [[2, 2, 0, 0, *header["groups"][0][4:]], header["groups"][1]]
    with pytest.raises(WallocError) as err:
        api.decode_raster(container.pack(header, sections))
    assert "\n" not in str(err.value)
