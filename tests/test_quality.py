"""The quality ladder: -q / --bpp, monotonic rate and quality, context coding round trips."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from walloc_cli import api, container, entropy
from walloc_cli.cli import main
from walloc_cli.errors import WallocError
from walloc_cli.model import load_model

DATA = Path(__file__).parent / "data"
LADDER = "rgb-1x"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


@pytest.fixture(scope="module")
def photo() -> tuple[bytes, np.ndarray]:
    data = (DATA / "photo.jpg").read_bytes()
    return data, np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture(scope="module")
def sweep(photo):
    data, rgb = photo
    out = []
    for q in (5, 25, 50, 75, 95):
        wlc = api.encode_image(data, LADDER, q).data
        out.append((q, 8 * len(wlc) / (rgb.shape[0] * rgb.shape[1]), psnr(rgb, api.decode_image(wlc).rgb)))
    return out


def test_rate_and_quality_grow_with_q(sweep):
    bpp = [b for _, b, _ in sweep]
    quality = [p for _, _, p in sweep]
    assert all(np.diff(bpp) > 0), sweep
    assert all(np.diff(quality) > 0), sweep


def test_ladder_spans_low_to_high_rates(sweep):
    """The issue's range: at least 0.1 to 2 bpp on a photo."""
    assert sweep[0][1] < 0.2 and sweep[-1][1] > 2.0, sweep


def test_default_quality_is_recorded(photo):
    wlc = api.encode_image(photo[0], LADDER).data
    assert container.unpack(wlc).header["quality"] == api.DEFAULT_QUALITY


def test_context_coding_round_trips_exactly(photo):
    model = load_model(LADDER)
    for q in (3, 60, 100):
        latents, _ = api.image_to_latents(model, photo[1], q)
        sets = model.ladder.table_sets(q)
        ladder = model.ladder
        for lifted, cuts in ((0, ()), (ladder.lifted, ladder.neighbour_cuts)):
            for default in (None, 2):
                data = entropy.encode_with_context(latents, ladder.tables, sets, ladder.depth, lifted, default, cuts,
                                                   diagonal_cuts=ladder.diagonal_cuts)
                back = entropy.decode_with_context(data, ladder.tables, sets, ladder.depth, latents.shape, lifted,
                                                   cuts, diagonal_cuts=ladder.diagonal_cuts)
                np.testing.assert_array_equal(back, latents)


def test_zero_channel_flags_round_trip_and_save_bytes(photo):
    """Coder version 2 flags all-zero channels (PCA order: most of the last ones at low q) instead
    of coding their latents: same latents back, fewer bytes; version 1 payloads still decode."""
    model = load_model(LADDER)
    ladder = model.ladder
    latents, _ = api.image_to_latents(model, photo[1], 25)
    latents[ladder.lifted + 2] = 0  # a zero channel among nonzero ones, beside the trailing zeros
    assert latents[ladder.lifted + 3].any()
    skip = np.zeros(latents.shape[0], bool)
    skip[latents.shape[0] - 1] = True  # an extra skipped channel (as a grey image's) is still honoured
    sets = ladder.table_sets(25)
    sizes = {}
    for flags in (False, True):
        data = entropy.encode_with_context(latents, ladder.tables, sets, ladder.depth, ladder.lifted, None,
                                           ladder.neighbour_cuts, skip, flags,
                                           diagonal_cuts=ladder.diagonal_cuts)
        back = entropy.decode_with_context(data, ladder.tables, sets, ladder.depth, latents.shape, ladder.lifted,
                                           ladder.neighbour_cuts, skip, flags,
                                           diagonal_cuts=ladder.diagonal_cuts)
        np.testing.assert_array_equal(back, latents)
        sizes[flags] = len(data)
    assert sizes[True] < sizes[False], sizes


def test_zero_channel_flags_never_leave_out_the_dc_channels():
    """The DC (lifted) channels are always coded, so a tiny payload cannot announce a huge image;
    a payload whose flags leave one out is corrupt."""
    import constriction

    model = load_model(LADDER)
    ladder = model.ladder
    shape = (model.config.latent_channels, 4, 4)
    encoder = constriction.stream.queue.RangeEncoder()
    encoder.encode(np.array([ladder.lifted - 1], np.int32), constriction.stream.model.Uniform(shape[0] + 1))
    encoder.encode(np.zeros(64, np.int32), constriction.stream.model.Uniform(2))
    data = encoder.get_compressed().astype("<u4").tobytes()
    with pytest.raises(entropy.EntropyError, match="always coded"):
        entropy.decode_with_context(data, ladder.tables, ladder.table_sets(50), ladder.depth, shape, ladder.lifted,
                                    ladder.neighbour_cuts, diagonal_cuts=ladder.diagonal_cuts)
    with pytest.raises(entropy.EntropyError, match="payload too short"):
        entropy.check_context_payload(8, ladder.tables, ladder.table_sets(50), (shape[0], 2048, 2048),
                                      ladder.neighbour_cuts, None, True, ladder.lifted,
                                      diagonal_cuts=ladder.diagonal_cuts)


def test_channels_pick_the_cheaper_table_set(photo):
    """Sending a per-channel choice among neighbouring anchors' tables never costs much and usually saves."""
    model = load_model(LADDER)
    latents, _ = api.image_to_latents(model, photo[1], 50)
    sets = model.ladder.table_sets(50)
    ladder = model.ladder
    cuts = ladder.neighbour_cuts
    chosen = entropy.encode_with_context(latents, ladder.tables, sets, ladder.depth, ladder.lifted, None, cuts,
                                         diagonal_cuts=ladder.diagonal_cuts)
    own = entropy.encode_with_context(latents, ladder.tables, sets, ladder.depth, ladder.lifted, 2, cuts,
                                      diagonal_cuts=ladder.diagonal_cuts)
    assert len(chosen) <= len(own)


def test_context_coding_codes_any_int32():
    """Values far outside every table escape and still round-trip."""
    model = load_model(LADDER)
    sets = model.ladder.table_sets(50)
    rng = np.random.default_rng(5)
    latents = rng.integers(-3, 4, size=(model.config.latent_channels, 5, 7)).astype(np.int32)
    latents[0, 0, 0], latents[7, 2, 3], latents[100, 4, 6] = 2**31 - 1, -(2**31) + 1, 77777
    ladder = model.ladder
    cuts = ladder.neighbour_cuts
    data = entropy.encode_with_context(latents, ladder.tables, sets, ladder.depth, ladder.lifted, None, cuts,
                                       diagonal_cuts=ladder.diagonal_cuts)
    back = entropy.decode_with_context(data, ladder.tables, sets, ladder.depth, latents.shape, ladder.lifted, cuts,
                                       diagonal_cuts=ladder.diagonal_cuts)
    np.testing.assert_array_equal(back, latents)


@pytest.mark.parametrize("bad", [0, 101, -5, 2.5, True, "75"])
def test_bad_quality_is_refused(photo, bad):
    with pytest.raises(WallocError, match="quality"):
        api.encode_image(photo[0], LADDER, bad)


def test_single_point_model_refuses_quality(photo):
    with pytest.raises(WallocError, match="single operating point"):
        api.encode_image(photo[0], "rgb-16x", 50)


def test_corrupt_quality_field_is_a_format_error(photo):
    wlc = api.encode_image(photo[0], LADDER, 40).data
    box = container.unpack(wlc)
    for bad in (0, 101, "40", None):
        header = {**box.header, "quality": bad}
        with pytest.raises(WallocError):
            api.decode_image(container.pack(header, box.sections))


def test_target_bpp_picks_the_highest_quality_that_fits(photo):
    data, rgb = photo
    pixels = rgb.shape[0] * rgb.shape[1]
    result = api.encode_image_to_bpp(data, 0.8, LADDER)
    q = container.unpack(result.data).header["quality"]
    assert 8 * len(result.data) <= 0.8 * pixels
    if q < 100:
        assert 8 * len(api.encode_image(data, LADDER, q + 1).data) > 0.8 * pixels


def test_cli_quality_and_bpp(tmp_path):
    src = tmp_path / "p.jpg"
    src.write_bytes((DATA / "photo.jpg").read_bytes())
    runner = CliRunner()
    r = runner.invoke(main, ["encode", str(src), "-q", "30", "-o", str(tmp_path / "a.wlc")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["encode", str(src), "-q", "90", "-o", str(tmp_path / "b.wlc")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "a.wlc").stat().st_size < (tmp_path / "b.wlc").stat().st_size
    r = runner.invoke(main, ["encode", str(src), "--bpp", "0.5", "-o", str(tmp_path / "c.wlc")])
    assert r.exit_code == 0, r.output
    w, h = Image.open(src).size
    assert 8 * (tmp_path / "c.wlc").stat().st_size <= 0.5 * w * h
    r = runner.invoke(main, ["encode", str(src), "-q", "101", "-o", str(tmp_path / "d.wlc")])
    assert r.exit_code == 2 and not (tmp_path / "d.wlc").exists()
    r = runner.invoke(main, ["encode", str(src), "-q", "50", "--bpp", "1", "-o", str(tmp_path / "e.wlc")])
    assert r.exit_code == 2 and not (tmp_path / "e.wlc").exists()
    r = runner.invoke(main, ["decode", str(tmp_path / "a.wlc"), "-o", str(tmp_path / "a.png")])
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "a.png").size == (w, h)


def test_context_coding_does_not_depend_on_its_channel_batches(photo, monkeypatch):
    """The encoder works a few channels at a time (bounded memory); the bytes must not show it."""
    model = load_model(LADDER)
    ladder = model.ladder
    latents, _ = api.image_to_latents(model, photo[1], 60)
    sets = ladder.table_sets(60)
    coded = {}
    for batch in (5, 24, latents.shape[0]):
        monkeypatch.setattr(entropy, "_ENCODE_CHANNELS_PER_BATCH", batch)
        coded[batch] = entropy.encode_with_context(latents, ladder.tables, sets, ladder.depth, ladder.lifted, None,
                                                   ladder.neighbour_cuts, diagonal_cuts=ladder.diagonal_cuts)
    assert coded[5] == coded[24] == coded[latents.shape[0]]


def test_highest_quality_within_is_the_largest_that_fits():
    from walloc_cli.quality import highest_quality_within

    calls = []

    def encode(q: int) -> bytes:
        calls.append(q)
        return bytes(10 * q)  # size grows with quality, as every ladder's does

    assert highest_quality_within(encode, 8 * 375) == (37, bytes(370))
    assert len(calls) <= 8
    assert highest_quality_within(encode, 8 * 5) == (None, bytes(10))   # even q 1 is too big
    assert highest_quality_within(encode, 8 * 5000)[0] == 100


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
def test_tabulated_dequantization_is_the_formula_bit_for_bit(dtype):
    """Small-range latents are dequantized through a per-channel table; every float32 must
    be the one the formula gives (decoded pixels depend on it), whatever the latents' dtype."""
    ladder = load_model("rgb-1x").ladder
    rng = np.random.default_rng(7)
    for quality in (5, 50, 95):
        latents = rng.integers(-120, 120, size=(192, 7, 9)).astype(dtype)
        latents[0, 0, 0] = np.iinfo(dtype).min if dtype == np.int8 else -3000
        steps = ladder.steps(quality).reshape(-1, 1, 1)
        offset = ladder.offset[ladder.anchor[quality]].reshape(-1, 1, 1)
        formula = (np.sign(latents) * np.maximum(np.abs(latents) - offset, 0) * steps).astype(np.float32)
        tabulated = ladder.dequantize(latents, quality)
        assert tabulated.dtype == np.float32 and tabulated.shape == latents.shape
        np.testing.assert_array_equal(tabulated.view(np.uint32), formula.view(np.uint32))
