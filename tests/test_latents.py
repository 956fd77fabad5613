"""Latents as a product: `walloc latents`, the short Python API, and the torch view of the codec."""
from __future__ import annotations

import copy
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner
from PIL import Image

import walloc_cli
from walloc_cli import api, wavelets
from walloc_cli.cli import main
from walloc_cli.errors import WallocError
from walloc_cli.model import load_model

from .conftest import DATA, psnr

GOLDEN = DATA / "golden"


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    for name in ("small.png", "music.flac"):
        shutil.copy(DATA / name, tmp_path / name)
    shutil.copy(GOLDEN / "v1-rgb.wlc", tmp_path / "small.wlc")
    return tmp_path


@pytest.fixture(scope="module")
def image_model():
    return load_model("rgb-16x")


@pytest.fixture(scope="module")
def small_latents(image_model) -> np.ndarray:
    rgb = np.asarray(Image.open(DATA / "small.png").convert("RGB"))
    return api.image_to_latents(image_model, rgb)[0]


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("walloc: error:")]


# -- the command ----------------------------------------------------------------------------------
def test_image_latents_next_to_the_input(work, small_latents):
    r = run("latents", str(work / "small.png"))
    assert r.exit_code == 0, r.output
    z = np.load(work / "small.npy")
    assert z.dtype == np.int32 and z.shape == (12, 8, 12)
    np.testing.assert_array_equal(z, small_latents)


def test_wlc_latents_equal_the_image_latents(work, small_latents):
    """The golden file was encoded from small.png: entropy decoding gives the encoder's latents back."""
    r = run("latents", str(work / "small.wlc"), "-o", str(work / "from-file.npy"))
    assert r.exit_code == 0, r.output
    z = np.load(work / "from-file.npy")
    np.testing.assert_array_equal(z, small_latents)
    np.testing.assert_array_equal(z, np.load(GOLDEN / "v1-rgb.latents.npy"))


def test_wlc_is_told_by_its_magic_bytes(work, small_latents):
    (work / "small.wlc").rename(work / "renamed.bin")
    assert run("latents", str(work / "renamed.bin"), "-o", str(work / "x.npy")).exit_code == 0
    np.testing.assert_array_equal(np.load(work / "x.npy"), small_latents)


def test_audio_latents_are_what_encode_stores(work):
    r = run("latents", str(work / "music.flac"))
    assert r.exit_code == 0, r.output
    z = np.load(work / "music.npy")
    # audio latents are stereo-ms's (the compact learned model), whatever encode's default is
    stored = api.file_latents(api.encode_audio(str(work / "music.flac"), "stereo-ms").data)
    assert z.dtype == np.int32 and z.shape == (2 * 54, -(-132300 // 256))  # mid + side, 256 samples each
    np.testing.assert_array_equal(z, stored.latents)


def test_float_latents(work, small_latents):
    r = run("latents", str(work / "small.wlc"), "--float", "-o", str(work / "f.npy"))
    assert r.exit_code == 0, r.output
    z = np.load(work / "f.npy")
    step = api.file_latents((work / "small.wlc").read_bytes()).step
    assert z.dtype == np.float32
    np.testing.assert_array_equal(z, small_latents.astype(np.float32) * np.float32(step))


def test_several_inputs_go_into_one_npz_with_metadata(work, small_latents, monkeypatch):
    monkeypatch.chdir(work)
    r = run("latents", "small.png", "small.wlc", "music.flac")
    assert r.exit_code == 0, r.output
    with np.load(work / "latents.npz", allow_pickle=False) as z:
        assert sorted(z.files) == sorted(["small.png", "small.png.meta", "small.wlc", "small.wlc.meta",
                                          "music.flac", "music.flac.meta"])
        np.testing.assert_array_equal(z["small.png"], small_latents)
        np.testing.assert_array_equal(z["small.wlc"], small_latents)
        image_meta = json.loads(str(z["small.png.meta"]))
        file_meta = json.loads(str(z["small.wlc.meta"]))
        audio_meta = json.loads(str(z["music.flac.meta"]))
    assert image_meta == file_meta
    assert image_meta["height"] == 64 and image_meta["width"] == 96 and image_meta["pad"] == [0, 0]
    assert image_meta["model"] == "rgb-16x" and image_meta["block"] == 8 and image_meta["step"] == 1.0
    assert audio_meta["frames"] == 132300 and audio_meta["coding"] == "mid-side" and audio_meta["signals"] == 2


def test_padding_is_recorded(work, image_model):
    Image.new("RGB", (13, 10), (200, 30, 90)).save(work / "odd.png")
    assert run("latents", str(work / "odd.png"), "-o", str(work / "odd.npz")).exit_code == 0
    with np.load(work / "odd.npz") as z:
        assert z["odd.png"].shape == (12, 2, 2)  # 16×16 padded pixels
        meta = json.loads(str(z["odd.png.meta"]))
    assert (meta["height"], meta["width"], meta["pad"]) == (10, 13, [6, 3])


def test_one_npy_per_input_into_a_folder(work):
    r = run("latents", str(work / "small.png"), str(work / "music.flac"), "-o", str(work / "out") + "/")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (work / "out").iterdir()) == ["music.npy", "small.npy"]


def test_stdout(work, small_latents):
    r = run("latents", str(work / "small.png"), "-o", "-")
    assert r.exit_code == 0
    np.testing.assert_array_equal(np.load(io.BytesIO(r.stdout_bytes)), small_latents)


def test_refuses_to_overwrite_without_force(work):
    (work / "small.npy").write_bytes(b"precious")
    r = run("latents", str(work / "small.png"))
    assert r.exit_code == 1 and "exists" in r.stderr and "--force" in r.stderr
    assert (work / "small.npy").read_bytes() == b"precious"
    assert run("latents", str(work / "small.png"), "--force").exit_code == 0
    assert np.load(work / "small.npy").shape == (12, 8, 12)
    (work / "all.npz").write_bytes(b"precious too")
    r = run("latents", str(work / "small.png"), str(work / "small.wlc"), "-o", str(work / "all.npz"))
    assert r.exit_code == 1 and len(error_lines(r)) == 1
    assert (work / "all.npz").read_bytes() == b"precious too"


def test_a_bad_file_is_one_error_line_and_the_others_are_kept(work):
    (work / "bad.png").write_bytes(b"not really a png")
    (work / "bad.wlc").write_bytes(b"WLOC garbage")
    (work / "cut.flac").write_bytes((work / "music.flac").read_bytes()[:3000])
    r = run("latents", str(work / "small.png"), str(work / "bad.png"), str(work / "bad.wlc"), str(work / "cut.flac"),
            "-o", str(work / "x.npz"))
    assert r.exit_code == 1
    errors = error_lines(r)
    assert len(errors) == 3 and "Traceback" not in r.output
    assert errors[0].startswith(f"walloc: error: {work / 'bad.png'}: ") and "not an image" in errors[0]
    assert errors[1].startswith(f"walloc: error: {work / 'bad.wlc'}: ")
    assert errors[2].startswith(f"walloc: error: {work / 'cut.flac'}: ")
    assert "1 of 4 files, 3 failed" in r.stderr
    with np.load(work / "x.npz") as z:
        assert sorted(z.files) == ["small.png", "small.png.meta"]
    assert not [p for p in work.iterdir() if p.name.endswith(".part")]


def test_model_mismatch_and_missing_file(work):
    r = run("latents", str(work / "small.wlc"), "-m", "stereo-ms", "-o", str(work / "x.npy"))
    assert r.exit_code == 1 and "written with model rgb-16x" in r.stderr
    r = run("latents", str(work / "music.flac"), "-m", "rgb-16x", "-o", str(work / "x.npy"))
    assert r.exit_code == 1 and "codes image, not audio" in r.stderr
    r = run("latents", str(work / "small.png"), "-q", "50", "-o", str(work / "x.npy"))
    assert r.exit_code == 1 and "single operating point" in r.stderr
    r = run("latents", str(work / "nothing.png"))
    assert r.exit_code == 1 and error_lines(r) == [f"walloc: error: {work / 'nothing.png'}: no such file"]


@pytest.mark.parametrize("output", ["x.npy", "x.txt"])
def test_usage_errors(work, output):
    r = run("latents", str(work / "small.png"), str(work / "small.wlc"), "-o", str(work / output))
    assert r.exit_code == 2 and not (work / output).exists()


def test_latents_of_a_wlc_file_do_not_import_torch(tmp_path):
    code = f"""
import sys
from walloc_cli.cli import main
from walloc_cli.errors import WallocError
try:
    main(["latents", {str(GOLDEN / 'v1-stereo.wlc')!r}, {str(GOLDEN / 'v1-rgb.wlc')!r},
          "-o", {str(tmp_path / 'x.npz')!r}, "--quiet"])
except SystemExit as exit:
    assert exit.code == 0, exit.code
assert "torch" not in sys.modules, "walloc latents pulled in torch"
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    with np.load(tmp_path / "x.npz") as z:
        np.testing.assert_array_equal(z["v1-stereo.wlc"], np.load(GOLDEN / "v1-stereo.latents.npy"))


# -- the short Python API ---------------------------------------------------------------------------
def test_package_exports_are_lazy():
    code = """
import sys, walloc_cli
assert "walloc_cli.simple" not in sys.modules
assert callable(walloc_cli.to_latents) and "torch" not in sys.modules
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_image_round_trips(small_rgb, small_latents):
    wlc = walloc_cli.encode(small_rgb, model="rgb-16x")
    assert wlc[:4] == b"WLOC"
    decoded = walloc_cli.decode(wlc)
    assert decoded.dtype == np.uint8 and decoded.shape == small_rgb.shape
    assert psnr(decoded, small_rgb) > 24
    for source in (small_rgb, wlc, DATA / "small.png", str(DATA / "small.png"), Image.open(DATA / "small.png")):
        np.testing.assert_array_equal(walloc_cli.to_latents(source), small_latents)
    np.testing.assert_array_equal(walloc_cli.from_latents(small_latents, size=small_rgb.shape[:2]), decoded)
    from_path = walloc_cli.encode(DATA / "small.png", model="rgb-16x")
    assert from_path == api.encode_image((DATA / "small.png").read_bytes(), "rgb-16x").data


def test_image_array_forms():
    gray = (np.arange(20 * 30) % 256).astype(np.uint8).reshape(20, 30)
    z = walloc_cli.to_latents(gray)
    np.testing.assert_array_equal(z, walloc_cli.to_latents(np.repeat(gray[:, :, None], 3, axis=2)))
    assert walloc_cli.from_latents(z).shape == (24, 32, 3)  # the padded grid without size
    assert walloc_cli.from_latents(z, size=(20, 30)).shape == (20, 30, 3)
    rgba = np.dstack([np.repeat(gray[:, :, None], 3, axis=2), gray])
    assert api.decode_image(walloc_cli.encode(rgba, model="rgb-16x")).mode == "RGBA"
    with pytest.raises(WallocError, match="uint8"):
        walloc_cli.encode(gray / 255.0)
    with pytest.raises(WallocError, match="do not fit"):
        walloc_cli.from_latents(np.zeros((5, 2, 2), np.int32))


def test_audio_round_trips():
    samples, rate = soundfile.read(DATA / "music.flac", frames=11025)
    default = walloc_cli.decode(walloc_cli.encode((samples, rate)))  # the perceptual ladder
    assert default.dtype == np.float32 and default.shape == samples.shape
    wlc = walloc_cli.encode((samples, rate), model="stereo-ms")     # the latent model's own file
    decoded = walloc_cli.decode(wlc)
    assert decoded.dtype == np.float32 and decoded.shape == samples.shape
    assert 10 * np.log10(1 / np.mean((decoded - samples) ** 2)) > 30
    z = walloc_cli.to_latents((samples, rate))
    np.testing.assert_array_equal(z, walloc_cli.to_latents(wlc))
    again = walloc_cli.from_latents(z, size=(len(samples),))
    np.testing.assert_allclose(np.clip(again, -1, 1), decoded, atol=1e-6)
    mono = walloc_cli.to_latents((samples[:, 0], rate))
    assert mono.shape == (54, z.shape[1])


# -- the torch view ------------------------------------------------------------------------------------
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def views():
    from walloc_cli.torch_view import load

    return load("rgb-16x")


@pytest.mark.parametrize("levels,dims", [(3, 2), (1, 2), (8, 1), (2, 1)])
def test_packet_transform_matches_the_reference(levels, dims):
    from walloc_cli.torch_view import PacketTransform

    transform = PacketTransform(levels, dims=dims)
    b = 2**levels
    generator = torch.Generator().manual_seed(levels)
    for shape in ([(2, 3, 2 * b, 3 * b), (1, 1, b, b)] if dims == 2 else [(2, 3, 5 * b), (1, 1, b)]):
        x = torch.randn(shape, generator=generator)
        y = transform(x)
        reference = wavelets.wpt2d(x, levels) if dims == 2 else wavelets.wpt1d(x, levels)
        torch.testing.assert_close(y, reference, atol=2e-5, rtol=0)
        torch.testing.assert_close(transform.inverse(y), x, atol=2e-5, rtol=0)


def test_encoder_matches_the_numpy_encoder(views, image_model):
    encoder, _ = views
    photo = np.asarray(Image.open(DATA / "photo.jpg").convert("RGB"))[:160, :240]
    signal = photo.transpose(2, 0, 1).astype(np.float32) / 255 - 0.5
    with torch.no_grad():
        z = encoder(torch.from_numpy(signal)[None])[0].numpy()
    expected = image_model.float_latents(signal)
    np.testing.assert_allclose(z, expected, atol=1e-4, rtol=0)
    integers = api.image_to_latents(image_model, photo)[0]
    differs = np.rint(z) != integers
    assert differs.mean() < 1e-3 and np.all(np.abs(np.rint(z) - integers) <= 1)  # only exact ties may differ


def test_input_ranges_batches_and_rounding(small_rgb, small_latents):
    from walloc_cli.torch_view import WallocEncoder

    pixels = torch.from_numpy(small_rgb.transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        by_model = WallocEncoder(input_range="model")(pixels.float() / 255 - 0.5)
        by_unit = WallocEncoder(input_range="unit")(pixels.float() / 255)
        rounded = WallocEncoder(input_range="uint8", quantize="round")(torch.cat([pixels, pixels.flip(0)]))
    torch.testing.assert_close(by_unit, by_model, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(rounded[0].numpy(), small_latents)
    torch.testing.assert_close(rounded[1], rounded[0])
    with pytest.raises(ValueError, match="multiples of 8"):
        WallocEncoder()(torch.zeros(1, 3, 12, 16))


def test_modules_follow_to(views, small_rgb):
    """.to() moves every weight and filter (what .to("cuda") relies on); index buffers stay integers."""
    encoder, decoder = (copy.deepcopy(m).to(torch.float64) for m in views)
    x = torch.from_numpy(small_rgb.transpose(2, 0, 1).copy())[None].double() / 255 - 0.5
    with torch.no_grad():
        z = encoder(x)
        y = decoder(z)
        z32 = views[0](x.float())
    assert z.dtype == y.dtype == torch.float64 and encoder.transform.order.dtype == torch.int64
    torch.testing.assert_close(z.float(), z32, atol=1e-4, rtol=0)


def test_decoder_matches_the_numpy_decoder(views, image_model, small_latents):
    _, decoder = views
    with torch.no_grad():
        x = decoder(torch.from_numpy(small_latents).float()[None])[0].numpy()
    expected = np.concatenate(list(image_model.from_latents(small_latents, 1 << 20)), axis=1)
    assert x.shape == (3, 64, 96)
    np.testing.assert_allclose(x, expected, atol=1e-4, rtol=0)


def test_gradients_flow_through_both_halves(views):
    encoder, decoder = views
    x = (torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(0)) - 0.5).requires_grad_()
    loss = (decoder(encoder(x)) - x).square().mean()
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert encoder.weight.grad is not None and decoder.net.linear.weight.grad is not None


def test_the_decoder_module_is_a_copy(image_model):
    from walloc_cli.torch_view import WallocDecoder

    decoder = WallocDecoder(image_model)
    with torch.no_grad():
        decoder.net.linear.bias.add_(1.0)  # fine-tuning the module ...
    original = torch.from_numpy(image_model._decoder_arrays["linear.bias"].astype(np.float32))
    torch.testing.assert_close(image_model.decoder().linear.bias, original)  # ... leaves the codec alone


def test_audio_view_matches_the_numpy_path():
    from walloc_cli.torch_view import load

    model = load_model("stereo-ms")
    encoder, decoder = load(model)
    signal = np.random.default_rng(0).standard_normal((1, 256 * 12)) * 0.1
    with torch.no_grad():
        z = encoder(torch.from_numpy(signal).float()[None])[0].numpy()
        np.testing.assert_allclose(z, model.float_latents(signal), atol=1e-4, rtol=0)
        integers = model.latents_of_window(signal)
        x = decoder(torch.from_numpy(integers).float()[None])[0].numpy()
    expected = np.concatenate(list(model.from_latents(integers, 1 << 20)), axis=1)
    np.testing.assert_allclose(x, expected, atol=1e-4, rtol=0)


def test_linear_decoder_models(image_model, small_latents):
    """Quality-ladder models decode with a 1×1 linear map (numpy in the codec): the view copies it."""
    import dataclasses

    from walloc_cli.model import CodecModel
    from walloc_cli.torch_view import WallocDecoder

    with np.load(DATA.parent.parent / "weights" / "rgb-16x.npz") as arrays:
        kept = {k: arrays[k] for k in arrays.files if not k.startswith("decoder.") or k.startswith("decoder.linear.")}
    linear = CodecModel(dataclasses.replace(image_model.config, decoder_kind="linear"), kept)
    with torch.no_grad():
        x = WallocDecoder(linear)(torch.from_numpy(small_latents).float()[None])[0].numpy()
    expected = np.concatenate(list(linear.from_latents(small_latents, 1 << 20)), axis=1)
    np.testing.assert_allclose(x, expected, atol=1e-4, rtol=0)
