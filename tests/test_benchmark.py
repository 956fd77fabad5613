"""`walloc bench`: the metrics, the BD-rate, and the command on a folder of two small images."""
from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from walloc_cli import benchmark
from walloc_cli.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def smooth_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic photo-like test image: gradients plus some texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / width, yy * 255 / height, 128 + 60 * np.sin(xx / 7) * np.cos(yy / 11)], axis=-1)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def with_noise(rgb: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, rgb.shape)
    return np.clip(rgb + noise, 0, 255).astype(np.uint8)


# -- metrics ------------------------------------------------------------------------------

def test_psnr_known_values():
    a = np.zeros((4, 5, 3), np.uint8)
    assert benchmark.psnr(a, a) == math.inf
    assert benchmark.psnr(a, a + 1) == pytest.approx(10 * math.log10(255**2))  # MSE 1: 48.13 dB
    b = a.copy()
    b[..., 0] = 16  # error in one channel only: the MSE is over all three, 256 / 3
    assert benchmark.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / (256 / 3)))
    with pytest.raises(ValueError):
        benchmark.psnr(a, a[:2])


def test_ms_ssim_is_one_for_identical_images_and_falls_with_noise():
    x = smooth_image(192, 200)  # big enough for all 5 scales
    assert benchmark.ms_ssim_scales(192, 200) == (5, 11)
    assert benchmark.ms_ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    scores = [benchmark.ms_ssim(x, with_noise(x, s)) for s in (2, 8, 25, 60)]
    assert all(0 < s < 1 for s in scores)
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.99 and scores[-1] < 0.9


def test_ms_ssim_small_images_use_fewer_scales():
    assert benchmark.ms_ssim_scales(176, 400) == (5, 11)
    assert benchmark.ms_ssim_scales(175, 400) == (4, 11)
    assert benchmark.ms_ssim_scales(20, 30) == (1, 11)
    assert benchmark.ms_ssim_scales(6, 9) == (1, 5)
    for shape in ((40, 30, 3), (6, 9, 3), (1, 1, 3), (12, 12)):
        x = smooth_image(*shape[:2])
        x = x if len(shape) == 3 else x[..., 0]
        assert benchmark.ms_ssim(x, x) == pytest.approx(1.0)
        assert 0 <= benchmark.ms_ssim(x, with_noise(x, 30)) <= 1
    with pytest.raises(ValueError):
        benchmark.ms_ssim(np.zeros(3), np.zeros(3))


def test_ms_ssim_db():
    assert benchmark.ms_ssim_db(0.99) == pytest.approx(20.0)
    assert benchmark.ms_ssim_db(1.0) == math.inf


# -- BD-rate ------------------------------------------------------------------------------

RATES = [0.25, 0.5, 1.0, 2.0, 4.0]
PSNRS = [27.0, 30.5, 33.6, 36.9, 40.2]


def test_bd_rate_identical_curves_is_zero():
    r = benchmark.bd_rate(RATES, PSNRS, RATES, PSNRS)
    assert r.value == pytest.approx(0.0, abs=1e-9)
    assert (r.low, r.high) == (27.0, 40.2)


def test_bd_rate_half_and_double_rate():
    half = benchmark.bd_rate(RATES, PSNRS, [x / 2 for x in RATES], PSNRS)
    double = benchmark.bd_rate(RATES, PSNRS, [x * 2 for x in RATES], PSNRS)
    assert half.value == pytest.approx(-50.0, abs=1e-6)
    assert double.value == pytest.approx(100.0, abs=1e-6)


def test_bd_rate_half_rate_on_shifted_points():
    # The same underlying curve, sampled at other qualities: still exactly half the rate everywhere.
    def rate(q):
        return np.exp(0.002 * q**3 - 0.15 * q**2 + 4 * q - 40)
    anchor_q = np.array([28.0, 31.0, 34.0, 37.0, 40.0])
    test_q = np.array([29.0, 32.5, 35.0, 38.5, 41.0])
    r = benchmark.bd_rate(rate(anchor_q), anchor_q, rate(test_q) / 2, test_q)
    assert r.value == pytest.approx(-50.0, abs=1e-6)
    assert (r.low, r.high) == (29.0, 40.0)


def test_bd_rate_is_robust_to_order_duplicates_and_bad_points():
    order = [3, 0, 4, 1, 2]
    rates = [RATES[i] for i in order] + [RATES[2], math.nan, 0.0]
    psnrs = [PSNRS[i] for i in order] + [PSNRS[2], 35.0, 50.0]
    r = benchmark.bd_rate(RATES, PSNRS, rates, psnrs)
    assert r.value == pytest.approx(0.0, abs=1e-9)


def test_bd_rate_not_available():
    no_overlap = benchmark.bd_rate(RATES, PSNRS, RATES, [p + 20 for p in PSNRS])
    assert no_overlap.value is None and "no overlap" in no_overlap.reason
    assert no_overlap.describe().startswith("n/a (no overlap")
    too_few = benchmark.bd_rate(RATES, PSNRS, [1.0], [30.0])
    assert too_few.value is None and "test: 1 distinct point" in too_few.reason
    duplicates = benchmark.bd_rate(RATES, PSNRS, [1, 2, 3, 4], [30, 30, 31, 31])
    assert duplicates.value is None and "2 distinct points" in duplicates.reason
    infinite = benchmark.bd_rate(RATES, [math.inf] * 5, RATES, PSNRS)
    assert infinite.value is None and infinite.reason.startswith("anchor:")


# -- codecs and the command ---------------------------------------------------------------

def test_pillow_codecs_round_trip():
    rgb = smooth_image(40, 56)
    for name in ("jpeg", "webp"):
        codec, _ = benchmark.make_codec(name)
        data = codec.encode(rgb, 50)
        assert data[:4] in (b"\xff\xd8\xff\xe0", b"RIFF") and codec.decode(data).shape == rgb.shape
        assert len(codec.encode(rgb, 90)) > len(codec.encode(rgb, 10))


@pytest.mark.skipif(not (shutil.which("cjxl") and shutil.which("djxl")), reason="cjxl / djxl not installed")
def test_jxl_codec_round_trips_through_its_command_line_tools():
    rgb = smooth_image(40, 56)
    codec, _ = benchmark.make_codec("jxl")
    data = codec.encode(rgb, 50)
    assert data[:2] == b"\xff\x0a" and codec.decode(data).shape == rgb.shape  # a bare JPEG XL codestream
    assert len(codec.encode(rgb, 90)) > len(codec.encode(rgb, 10))


def test_jxl_without_its_tools_is_skipped_with_a_note(monkeypatch):
    monkeypatch.setattr(benchmark.shutil, "which", lambda name: None)
    codec, note = benchmark.make_codec("jxl")
    assert codec is None and "cjxl" in note and "libjxl-tools" in note


@pytest.fixture
def folder(tmp_path: Path, small_path: Path, photo_path: Path) -> Path:
    """Two small images; a crop of the photo keeps the sweep fast."""
    images = tmp_path / "images"
    images.mkdir()
    Image.open(small_path).save(images / "a.png")
    Image.open(photo_path).convert("RGB").crop((0, 0, 120, 88)).save(images / "b.jpg", quality=92)
    (images / "notes.txt").write_text("not an image")
    return images


def test_cli_sweeps_and_writes_json(folder: Path, tmp_path: Path):
    out = tmp_path / "out" / "rd.json"
    r = run("bench", str(folder), "--codecs", "jpeg,webp", "--json", str(out))
    assert r.exit_code == 0, r.output
    assert "jpeg vs" not in r.stdout and "webp vs jpeg" in r.stdout and "PSNR:" in r.stdout
    assert "libwebp" in r.stdout
    doc = json.loads(out.read_text())
    assert doc["images"] == ["a.png", "b.jpg"]
    n = len(benchmark.STANDARD_QUALITIES)
    assert len(doc["measurements"]) == 2 * 2 * n
    m = doc["measurements"][0]
    assert {"image", "codec", "quality", "bpp", "psnr", "ms_ssim", "encode_s", "decode_s"} <= set(m)
    assert all(x["bpp"] > 0 and 0 < x["ms_ssim"] <= 1 for x in doc["measurements"])
    assert [p["codec"] for p in doc["summary"]] == ["jpeg"] * n + ["webp"] * n
    assert all(p["images"] == 2 for p in doc["summary"])
    (bd,) = doc["bd_rate"]
    assert (bd["test"], bd["anchor"]) == ("webp", "jpeg") and bd["psnr"]["value"] is not None


def test_cli_limit_and_unreadable_image(folder: Path, tmp_path: Path):
    (folder / "0-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "rd.json"
    r = run("bench", str(folder), "--codecs", "jpeg", "--limit", "2", "--json", str(out))
    assert r.exit_code == 1  # like encode: a file failed, the others were still measured
    assert "0-broken.png" in r.stderr and "unreadable" in r.stderr and "Traceback" not in r.output
    doc = json.loads(out.read_text())
    assert doc["images"] == ["a.png"] and doc["skipped"][0]["image"] == "0-broken.png"


@pytest.mark.parametrize("setup, message", [("missing", "no such directory"), ("empty", "no images"),
                                            ("file", "not a directory")])
def test_cli_bad_directory_is_one_error_line(tmp_path: Path, setup: str, message: str):
    target = tmp_path / "x"
    if setup == "empty":
        target.mkdir()
    elif setup == "file":
        target.write_text("x")
    r = run("bench", str(target), "--codecs", "jpeg")
    assert r.exit_code != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"walloc: error: {target}: ") and message in lines[0]


def test_cli_unknown_codec_is_a_usage_error(folder: Path):
    r = run("bench", str(folder), "--codecs", "jpeg,gif")
    assert r.exit_code == 2 and "unknown codec 'gif'" in r.stderr


def test_plot_without_matplotlib_fails_before_the_run(folder: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib... raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.backend_bases", None)
    with pytest.raises(benchmark.BenchError, match="matplotlib"):
        benchmark.check_plot_target("rd.png")
    r = run("bench", str(folder), "--codecs", "jpeg", "--plot", "rd.png")
    assert r.exit_code == 1 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        "walloc: error: --plot: needs matplotlib, which is not installed (pip install 'walloc[bench]')"]


def test_plot_writes_png(folder: Path, tmp_path: Path):
    pytest.importorskip("matplotlib")
    with pytest.raises(benchmark.BenchError, match=r"\.xyz"):
        benchmark.check_plot_target(tmp_path / "rd.xyz")
    target = tmp_path / "plots" / "rd.png"
    r = run("bench", str(folder), "--codecs", "jpeg,webp", "--limit", "1", "--plot", str(target))
    assert r.exit_code == 0, r.output
    with Image.open(target) as im:
        assert im.format == "PNG" and im.width > 500


def test_walloc_at_one_quality(tmp_path: Path, small_path: Path, monkeypatch):
    """walloc in the sweep, at a single setting so that it stays fast; its BD-rate is then n/a."""
    from walloc_cli import api

    monkeypatch.setattr(api, "BENCH_QUALITIES", api.BENCH_QUALITIES[:1])
    images = tmp_path / "images"
    images.mkdir()
    Image.open(small_path).convert("RGB").crop((0, 0, 48, 32)).save(images / "a.png")
    out = tmp_path / "rd.json"
    r = run("bench", str(images), "--codecs", "walloc,jpeg", "--json", str(out))
    assert r.exit_code == 0, r.output
    assert "walloc vs jpeg" in r.stdout and "n/a (test: 1 distinct point" in r.stdout
    doc = json.loads(out.read_text())
    (w,) = [m for m in doc["measurements"] if m["codec"] == "walloc"]
    assert w["quality"] == api.BENCH_QUALITIES[0] and w["bpp"] > 0 and w["psnr"] > 15


def test_colour_shift_is_the_largest_mean_channel_drift() -> None:
    from walloc_cli.benchmark import colour_shift

    rgb = np.random.default_rng(0).integers(0, 200, (16, 16, 3), dtype=np.uint8)
    shifted = rgb.copy()
    shifted[..., 1] += 2
    assert colour_shift(rgb, rgb) == 0.0
    assert colour_shift(rgb, shifted) == pytest.approx(2.0)
