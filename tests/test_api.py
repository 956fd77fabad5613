"""Image round trips through the Python API, including the awkward images people have."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from walloc_cli import api, container, entropy
from walloc_cli.errors import WallocError
from walloc_cli.model import DEFAULT_IMAGE_MODEL, load_model

from .conftest import png_bytes, psnr


def decode_pil(wlc: bytes) -> Image.Image:
    return Image.open(io.BytesIO(api.decode_to_bytes(wlc, ".png")))


@pytest.mark.parametrize("model_name, bpp_range, min_psnr", [
    # measured with the shipped weights on this (textured) photo:
    ("rgb-16x", (0.2, 1.2), 22.5),   # ≈ 0.6 bpp, ≈ 24 dB: the 12-latent bottleneck
    ("rgb-1x", (1.5, 4.0), 33.0),    # default quality 75: 2.70 bpp, 35.3 dB
])
def test_real_photo_round_trip(photo_path, model_name, bpp_range, min_psnr):
    original = Image.open(photo_path)
    result = api.encode_image(photo_path.read_bytes(), model_name)
    out = decode_pil(result.data)
    assert out.size == original.size and out.mode == "RGB"
    bpp = 8 * len(result.data) / (original.width * original.height)
    quality = psnr(np.asarray(original), np.asarray(out))
    assert bpp_range[0] < bpp < bpp_range[1]
    assert quality > min_psnr


def test_encoding_is_deterministic(small_path):
    data = small_path.read_bytes()
    assert api.encode_image(data).data == api.encode_image(data).data


def test_encoding_does_not_depend_on_thread_count(small_path, tmp_path):
    """Same bytes with 1 and 2 BLAS/OpenMP threads (separate processes)."""
    outputs = []
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        out = tmp_path / f"t{threads}.wlc"
        code = ("import sys; from walloc_cli import api; "
                f"open({str(out)!r}, 'wb').write(api.encode_image(open({str(small_path)!r}, 'rb').read()).data)")
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_decoded_pixels_do_not_depend_on_thread_count(photo_path, tmp_path):
    """The ladder's decoder is floating point (the refiner at q 30, the linear filter alone at
    q 75, the inverse transform): the same pixels with 1 and 2 BLAS/OpenMP threads, on a photo
    large enough for BLAS to split its products (separate processes)."""
    files = {q: api.encode_image(photo_path.read_bytes(), "rgb-1x", q).data for q in (30, 75)}
    decoded = []
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        outputs = []
        for q, data in files.items():
            (tmp_path / f"q{q}.wlc").write_bytes(data)
            out = tmp_path / f"q{q}-t{threads}.npy"
            code = ("import numpy as np; from walloc_cli import api; "
                    f"np.save({str(out)!r}, api.decode_image(open({str(tmp_path / f'q{q}.wlc')!r}, 'rb').read()).rgb)")
            subprocess.run([sys.executable, "-c", code], check=True, env=env)
            outputs.append(np.load(out))
        decoded.append(outputs)
    for one, two in zip(*decoded):
        assert one.shape == (481, 321, 3)  # a portrait photo
        assert np.array_equal(one, two)


def test_neural_decoder_runs_on_one_thread_whatever_the_caller_set(small_path):
    """torch's convolutions sum in a thread-count-dependent order (1-LSB pixel changes were
    measured between `-j 1` and `-j 2`), so the decoder pins one thread and restores the caller's."""
    torch = pytest.importorskip("torch")
    model = load_model("rgb-16x")
    net = model.decoder()
    seen = []
    hook = net.register_forward_pre_hook(lambda module, args: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        api.decode_image(api.encode_image(small_path.read_bytes(), "rgb-16x").data)
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        hook.remove()
        torch.set_num_threads(before)


def test_latents_decode_bit_exactly(small_path):
    model = load_model("rgb-16x")
    wlc = api.encode_image(small_path.read_bytes(), "rgb-16x").data
    box = container.unpack(wlc)
    assert "latent_shape" not in box.header and "pad" not in box.header  # format 4 derives them
    _, _, shape = api._image_layout(box.header, model, api.DEFAULT_MAX_PIXELS, box.version)
    z = entropy.decode(box.sections["latents"], model.tables_for(0), shape)
    rgb = np.asarray(Image.open(small_path).convert("RGB"))
    np.testing.assert_array_equal(z, api.image_to_latents(model, rgb)[0])


def test_ladder_latents_decode_bit_exactly(small_path):
    model = load_model(DEFAULT_IMAGE_MODEL)
    rgb = np.asarray(Image.open(small_path).convert("RGB"))
    for quality in (10, 75, 100):
        wlc = api.encode_image(small_path.read_bytes(), quality=quality).data
        np.testing.assert_array_equal(api.file_latents(wlc).latents, api.image_to_latents(model, rgb, quality)[0])


@pytest.mark.parametrize("quality", [20, 75])
def test_effort_2_codes_the_same_latents_in_no_more_bytes(photo_path, quality):
    """--effort 2 only lets each channel take a neighbouring anchor's tables (the cheapest, priced
    on the final latents): the rounding is effort 1's, so the file decodes to the same latents,
    and the pick may only save bits (the estimate it picks by is within a few bytes of the
    coder's)."""
    data = photo_path.read_bytes()
    plain, searched = (api.encode_image(data, quality=quality, effort=e).data for e in (1, 2))
    np.testing.assert_array_equal(api.file_latents(searched).latents, api.file_latents(plain).latents)
    assert len(searched) <= len(plain) + 4


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (7, 5), (9, 17), (64, 8)])
def test_any_size(size):
    rng = np.random.default_rng(sum(size))
    im = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    out = decode_pil(api.encode_image(png_bytes(im)).data)
    assert out.size == size and out.mode == "RGB"


def test_flat_image_is_nearly_exact():
    im = Image.new("RGB", (40, 24), (120, 64, 200))
    out = np.asarray(decode_pil(api.encode_image(png_bytes(im)).data))
    assert psnr(np.asarray(im), out) > 40  # measured 49.0 dB with the shipped rgb-1x at quality 75


def test_grayscale_stays_grayscale(small_rgb):
    gray = Image.fromarray(small_rgb).convert("L")
    out = decode_pil(api.encode_image(png_bytes(gray)).data)
    assert out.mode == "L" and out.size == gray.size
    assert psnr(np.asarray(gray), np.asarray(out)) > 22


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_lossless(small_rgb, mode):
    base = Image.fromarray(small_rgb).convert(mode[:-1])
    alpha = Image.fromarray((np.arange(small_rgb.shape[0] * small_rgb.shape[1]) % 256)
                            .astype(np.uint8).reshape(small_rgb.shape[:2]))
    base.putalpha(alpha)
    out = decode_pil(api.encode_image(png_bytes(base)).data)
    assert out.mode == mode
    np.testing.assert_array_equal(np.asarray(out.getchannel("A")), np.asarray(alpha))


def test_palette_with_and_without_transparency(small_rgb):
    pal = Image.fromarray(small_rgb).convert("P", palette=Image.ADAPTIVE, colors=16)
    assert decode_pil(api.encode_image(png_bytes(pal)).data).mode == "RGB"
    pal.info["transparency"] = 0
    out = decode_pil(api.encode_image(png_bytes(pal, transparency=0)).data)
    assert out.mode == "RGBA"
    expected = np.asarray(pal.convert("RGBA").getchannel("A"))
    np.testing.assert_array_equal(np.asarray(out.getchannel("A")), expected)


def test_icc_profile_is_preserved(small_rgb):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im = Image.fromarray(small_rgb)
    out = decode_pil(api.encode_image(png_bytes(im, icc_profile=icc)).data)
    assert out.info.get("icc_profile") == icc


def test_exif_orientation_is_applied(small_rgb):
    im = Image.fromarray(small_rgb)  # 96 wide, 64 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif, quality=95)
    out = decode_pil(api.encode_image(buf.getvalue()).data)
    assert out.size == (64, 96)


def test_sixteen_bit_gray_is_reduced_with_a_note(small_rgb):
    gray16 = (np.asarray(Image.fromarray(small_rgb).convert("L")).astype(np.uint16) * 257)
    im = Image.frombytes("I;16", (gray16.shape[1], gray16.shape[0]), gray16.astype("<u2").tobytes())
    data = png_bytes(im)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")  # really a 16-bit PNG
    result = api.encode_image(data)
    assert any("16-bit" in n for n in result.notes)
    out = decode_pil(result.data)
    assert out.mode == "L"
    assert psnr(gray16 / 257, np.asarray(out)) > 22


def test_cmyk_is_converted_with_a_note(small_rgb):
    im = Image.fromarray(small_rgb).convert("CMYK")
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=95)
    result = api.encode_image(buf.getvalue())
    assert any("CMYK" in n for n in result.notes)
    assert decode_pil(result.data).mode == "RGB"


def test_output_formats(small_path):
    wlc = api.encode_image(small_path.read_bytes()).data
    for suffix, fmt in [(".png", "PNG"), (".jpg", "JPEG"), (".webp", "WEBP"), (".tiff", "TIFF"), (".bmp", "BMP")]:
        assert Image.open(io.BytesIO(api.decode_to_bytes(wlc, suffix))).format == fmt
    with pytest.raises(WallocError, match="cannot write"):
        api.decode_to_bytes(wlc, ".gifx")


def test_jpeg_output_refuses_alpha(small_rgb):
    im = Image.fromarray(small_rgb).convert("RGBA")
    wlc = api.encode_image(png_bytes(im)).data
    with pytest.raises(WallocError, match="alpha"):
        api.decode_to_bytes(wlc, ".jpg")


def test_not_an_image():
    with pytest.raises(WallocError, match="not an image"):
        api.encode_image(b"hello, world")
    with pytest.raises(WallocError):
        api.encode_image(b"")


def test_truncated_image_is_an_error(small_path):
    data = small_path.read_bytes()
    with pytest.raises(WallocError):
        api.encode_image(data[: len(data) // 2])


def _reseal_with_header(wlc: bytes, **changes) -> bytes:
    box = container.unpack(wlc)
    return container.pack({**box.header, **changes}, box.sections)


def test_wrong_weights_are_refused(small_path):
    wlc = api.encode_image(small_path.read_bytes()).data
    with pytest.raises(WallocError, match="weights"):
        api.decode_image(_reseal_with_header(wlc, weights="0000000000000000"))
    with pytest.raises(WallocError, match="unknown model"):
        api.decode_image(_reseal_with_header(wlc, model="no-such-model"))


def test_format_4_derives_the_padding_and_latent_shape_and_older_formats_need_them(small_path):
    """Format 4 headers leave out "pad" and "latent_shape" (the size and the model give them);
    a header that carries them must agree; a file of format 3 without them is corrupt."""
    wlc = api.encode_image(small_path.read_bytes()).data
    box = container.unpack(wlc)
    model = load_model(DEFAULT_IMAGE_MODEL)
    layout = api._image_layout(box.header, model, api.DEFAULT_MAX_PIXELS, box.version)
    assert layout == (96, 64, (model.config.latent_channels, 8, 12))
    stated = {**box.header, "pad": [0, 0], "latent_shape": list(layout[2])}
    assert api._image_layout(stated, model, api.DEFAULT_MAX_PIXELS, 4) == layout
    assert api._image_layout(stated, model, api.DEFAULT_MAX_PIXELS, 3) == layout
    with pytest.raises(container.FormatError, match="pad"):
        api._image_layout(box.header, model, api.DEFAULT_MAX_PIXELS, 3)
    np.testing.assert_array_equal(api.decode_image(container.pack(stated, box.sections)).rgb,
                                  api.decode_image(wlc).rgb)


@pytest.mark.parametrize("changes", [
    {"width": 10**9, "height": 10**9},
    {"width": 0},
    {"width": "96"},
    {"pad": [0, 99]},
    {"latent_shape": [12, 1, 1]},
    {"mode": "CMYK"},
    {"modality": "audio"},
    {"coder": "huffman"},
])
def test_inconsistent_headers_are_refused(small_path, changes):
    wlc = api.encode_image(small_path.read_bytes()).data
    with pytest.raises(WallocError):
        api.decode_image(_reseal_with_header(wlc, **changes))


def test_pixel_limit(small_path):
    wlc = api.encode_image(small_path.read_bytes()).data
    with pytest.raises(WallocError, match="exceeds the limit"):
        api.decode_image(wlc, max_pixels=100)


def test_alpha_bomb_is_refused(small_rgb):
    im = Image.fromarray(small_rgb).convert("RGBA")
    wlc = api.encode_image(png_bytes(im)).data
    box = container.unpack(wlc)
    bomb = zlib.compress(b"\0" * (50 * 1024 * 1024))
    with pytest.raises(WallocError, match="alpha"):
        api.decode_image(container.pack(box.header, {**box.sections, "alpha": bomb}))


def test_info_reports_fields(small_path):
    wlc = api.encode_image(small_path.read_bytes()).data
    meta = api.info(wlc)
    assert meta["width"] == 96 and meta["height"] == 64 and meta["model"] == DEFAULT_IMAGE_MODEL
    assert meta["file_bytes"] == len(wlc)
    assert meta["bpp"] == pytest.approx(8 * len(wlc) / (96 * 64), abs=1e-3)


@pytest.mark.parametrize("model_name", ["rgb-1x", "rgb-16x"])
def test_info_shows_the_layout_a_format_4_header_leaves_out(photo_path, model_name):
    """Format 4 derives an image's padding and latent shape from its size and model; `info`
    shows them as earlier versions' headers did: what the decoder derives, read from the file."""
    rgb = np.asarray(Image.open(photo_path).convert("RGB"))[:61, :90]  # neither side a multiple of 8
    wlc = api.encode_image(png_bytes(Image.fromarray(rgb)), model_name).data
    assert "latent_shape" not in container.unpack(wlc).header
    meta = api.info(wlc)
    assert meta["pad"] == [3, 6]
    assert meta["latent_shape"] == list(api.file_latents(wlc).latents.shape)
    unknown = container.unpack(wlc)
    # a file whose model is not installed still shows everything else
    other = api.info(container.pack({**unknown.header, "model": "no-such-model"}, unknown.sections))
    assert "latent_shape" not in other and other["width"] == 90


def _whole_image_latents(model, rgb, quality=None):
    """Reference: pad the whole image, one WPT, one projection."""
    block = model.config.block
    h, w = rgb.shape[:2]
    padded = np.pad(rgb, ((0, (-h) % block), (0, (-w) % block), (0, 0)), mode="symmetric")
    return model.latents_of_window(padded.transpose(2, 0, 1).astype(np.float64) / 255.0 - 0.5, quality)


@pytest.mark.parametrize("model_name, quality", [("rgb-16x", None), ("rgb-1x", 60)])
@pytest.mark.parametrize("chunk", [1, 3, 8, 1000])
def test_windowed_encoding_equals_whole_image_transform(photo_path, chunk, model_name, quality):
    model = load_model(model_name)
    rgb = np.asarray(Image.open(photo_path).convert("RGB"))[:200, :150]
    reference = _whole_image_latents(model, rgb, quality)
    h, w = rgb.shape[:2]
    pw = w + (-w) % model.config.block
    got = model.to_latents(api.image_reader(rgb, pw), h + (-h) % model.config.block, chunk, quality)
    np.testing.assert_array_equal(got, reference)


@pytest.mark.parametrize("chunk", [2, 5, 1000])
def test_windowed_decoding_matches_whole_image_decoding(photo_path, chunk):
    model = load_model("rgb-16x")
    rgb = np.asarray(Image.open(photo_path).convert("RGB"))[:160, :120]
    latents = _whole_image_latents(model, rgb)
    import torch

    with torch.inference_mode():
        whole = model.synthesise(model.decoder()(torch.from_numpy(latents.astype(np.float32))[None])[0].numpy())
    strips = np.concatenate(list(model.from_latents(latents, chunk)), axis=1)
    np.testing.assert_allclose(strips, whole, atol=2e-5)


@pytest.mark.parametrize("chunk", [2, 5, 1000])
def test_windowed_linear_decoding_matches_whole_image_decoding(photo_path, chunk):
    model = load_model("rgb-1x")
    rgb = np.asarray(Image.open(photo_path).convert("RGB"))[:160, :120]
    latents = _whole_image_latents(model, rgb, 60)
    whole = model.synthesise(model._linear_decoder(None, 60)(model.dequantize(latents, 60)))  # the filter too
    strips = np.concatenate(list(model.from_latents(latents, chunk, 60)), axis=1)
    np.testing.assert_allclose(strips, whole, atol=2e-5)
