"""Beyond RGB (#15): N-band and 9–16-bit images through nband-1x (modality "raster").

The crops in tests/data/beyond/ come from ../shared/data/beyond-rgb (their README names
them); everything else is built here from them, deterministically.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from walloc_cli import api, container, multiband, raster, raster_codec, strips
from walloc_cli.cli import main
from walloc_cli.errors import WallocError

DATA = Path(__file__).parent / "data" / "beyond"


@pytest.fixture(scope="module")
def jasper() -> np.ndarray:
    return np.load(DATA / "jasper_crop.npy")


@pytest.fixture(scope="module")
def signed() -> np.ndarray:
    return np.load(DATA / "santabarbara_crop.npy")


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def round_trip(data: bytes, name: str, quality: int = 60, suffix: str | None = None) -> bytes:
    wlc = api.encode_bytes(data, name, quality=quality).data
    assert api.modality_of(wlc) == "raster"
    return api.decode_raster_file(wlc, suffix)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    peak = max(float(a.max() - a.min()), 1.0)
    return 10 * np.log10(peak**2 / max(float(np.mean((a - b) ** 2)), 1e-12))


# -- what the container restores exactly --------------------------------------------------------
@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", ">u2", ">i2"])
def test_npy_restores_dtype_byte_order_and_shape(jasper, dtype):
    kind = np.dtype(dtype)
    info = np.iinfo(kind)
    a = np.clip(jasper.astype(np.int64) // (8 if kind.itemsize == 1 else 1) + info.min // 2, info.min, info.max)
    a = a.astype(kind)
    out = np.load(io.BytesIO(round_trip(npy_bytes(a), "x.npy")))
    assert out.dtype == a.dtype and out.shape == a.shape
    assert psnr(a, out) > 35


def test_npy_two_dimensional_and_fortran_order_come_back(jasper):
    plane = jasper[:, :, 3]
    out = np.load(io.BytesIO(round_trip(npy_bytes(plane), "p.npy")))
    assert out.shape == plane.shape and out.dtype == plane.dtype
    fortran = np.asfortranarray(jasper)
    out = np.load(io.BytesIO(round_trip(npy_bytes(fortran), "f.npy")))
    assert out.flags.f_contiguous and not out.flags.c_contiguous and out.shape == jasper.shape


def test_band_order_is_kept(jasper):
    """Each band keeps its place: the decoded band means follow the originals, band for band."""
    shuffled = jasper[:, :, np.random.default_rng(0).permutation(jasper.shape[2])]
    out = np.load(io.BytesIO(round_trip(npy_bytes(shuffled), "s.npy", quality=80)))
    means_in, means_out = shuffled.mean(axis=(0, 1)), out.mean(axis=(0, 1))
    assert np.abs(means_in - means_out).max() < 0.02 * (shuffled.max() - shuffled.min())


def test_signed_cube_with_negative_values(signed):
    assert signed.min() < 0
    out = np.load(io.BytesIO(round_trip(npy_bytes(signed), "sb.npy", quality=90)))
    assert out.dtype == np.int16 and out.shape == signed.shape
    assert out.min() < 0 and psnr(signed, out) > 50


@pytest.mark.parametrize("layout", ["hwb", "bhw", "pages", "hw"])
def test_tiff_layouts_come_back(jasper, layout):
    import tifffile

    a = jasper[:, :, :6] if layout != "hw" else jasper[:, :, 0]
    buf = io.BytesIO()
    if layout == "hwb":
        tifffile.imwrite(buf, a, photometric="minisblack", planarconfig="contig")
    elif layout == "bhw":
        tifffile.imwrite(buf, np.moveaxis(a, 2, 0), photometric="minisblack", planarconfig="separate")
    elif layout == "pages":
        with tifffile.TiffWriter(buf) as tif:
            for b in range(a.shape[2]):
                tif.write(a[:, :, b], photometric="minisblack")
    else:
        tifffile.imwrite(buf, a, photometric="minisblack")
    data = buf.getvalue()
    assert api.input_modality(data, "x.tif") == "raster"
    out = raster.read_raster(round_trip(data, "x.tif"))
    assert out.layout == layout and out.dtype == "uint16"
    assert out.array.shape == (a.shape[0], a.shape[1], 1 if a.ndim == 2 else a.shape[2])
    assert psnr(a.reshape(out.array.shape), out.array) > 35


def test_sixteen_bit_png_is_coded_at_its_depth():
    import png

    data = (DATA / "weld16_crop.png").read_bytes()
    original = raster.read_raster(data).array
    assert original.dtype == np.uint16 and original.shape == (24, 32, 3) and original.max() > 255
    decoded = round_trip(data, "weld.png", quality=90)
    width, height, _, info = png.Reader(bytes=decoded).asDirect()
    assert (width, height, info["bitdepth"], info["planes"]) == (32, 24, 16, 3)
    out = raster.read_raster(decoded).array
    assert psnr(original, out) > 45


def test_sixteen_bit_pnm_keeps_its_maxval(jasper):
    plane = np.minimum(jasper[:, :, 5], 1023).astype(">u2")
    data = b"P5\n12 16\n1023\n" + plane.tobytes()
    assert api.input_modality(data, "x.pgm") == "raster"
    decoded = round_trip(data, "x.pgm")
    assert decoded.startswith(b"P5\n12 16\n1023\n")
    assert raster.read_raster(decoded).array.shape == (16, 12, 1)


def test_eight_bit_images_keep_the_eight_bit_path():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buf, format="PNG")
    assert api.input_modality(buf.getvalue(), "x.png") == "image"
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buf, format="TIFF")
    assert api.input_modality(buf.getvalue(), "x.tif") == "image"


def test_other_container_on_request(jasper):
    """-o x.tif for an .npy source writes an interleaved TIFF; PNG refuses 40 bands in one line."""
    import tifffile

    wlc = api.encode_bytes(npy_bytes(jasper), "j.npy", quality=40).data
    tif = tifffile.imread(io.BytesIO(api.decode_raster_file(wlc, ".tif")))
    assert tif.shape == jasper.shape and tif.dtype == jasper.dtype
    with pytest.raises(WallocError, match="PNG holds 1–4 unsigned bands"):
        api.decode_raster_file(wlc, ".png")


def test_constant_image_is_exact():
    a = np.full((9, 7, 5), 1234, np.uint16)
    out = np.load(io.BytesIO(round_trip(npy_bytes(a), "c.npy", quality=1)))
    assert np.array_equal(a, out)


# -- the codec ---------------------------------------------------------------------------------
def test_quality_is_monotonic(jasper):
    sizes, qualities = [], []
    for q in (5, 30, 60, 90):
        wlc = api.encode_bytes(npy_bytes(jasper), "j.npy", quality=q).data
        sizes.append(len(wlc))
        qualities.append(psnr(jasper, api.decode_raster(wlc).array))
    assert sizes == sorted(sizes) and qualities == sorted(qualities)
    assert qualities[-1] > 60


def test_encoding_is_deterministic_and_header_says_what_it_holds(jasper):
    first = api.encode_bytes(npy_bytes(jasper), "j.npy", quality=50).data
    assert first == api.encode_bytes(npy_bytes(jasper), "j.npy", quality=50).data
    meta = api.info(first)
    assert (meta["bands"], meta["dtype"], meta["bit_depth"], meta["container"]) == (40, "uint16", 16, "npy")
    assert meta["samples"] == jasper.size and 0 < meta["bits_per_sample"] < 16


def test_rate_target_counts_bits_per_sample(jasper):
    result = api.encode_bytes(npy_bytes(jasper), "j.npy", target_bpp=1.0)
    assert 8 * len(result.data) <= 1.0 * jasper.size
    assert any(n.startswith("quality ") for n in result.notes)


def test_wavelengths_are_carried(jasper):
    image = raster.Raster(jasper, "npy", wavelengths=[400.0 + 10 * i for i in range(40)])
    wlc = raster_codec.encode(image, 30)
    assert api.info(wlc)["wavelengths"][:2] == [400.0, 410.0]
    assert api.decode_raster(wlc).wavelengths[-1] == 790.0
    with pytest.raises(WallocError, match="wavelengths"):
        raster_codec.encode(raster.Raster(jasper, "npy", wavelengths=[1.0]), 30)


def test_latents_of_a_raster_file(jasper):
    wlc = api.encode_bytes(npy_bytes(jasper), "j.npy", quality=40).data
    latents = api.file_latents(wlc)
    assert latents.modality == "raster" and latents.latents.dtype == np.int32
    assert latents.latents.shape[0] == api.info(wlc)["components"]


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("array, message", [
    (np.zeros((4, 4, 3), np.float32), "floating-point samples"),
    (np.zeros((4, 4, 3), np.int32), "not supported"),
    (np.zeros((2, 4, 4, 3), np.uint16), "expected a 2-D image"),
    (np.zeros((0, 4), np.uint16), "expected a 2-D image"),
])
def test_bad_arrays_are_one_line_errors(array, message):
    with pytest.raises(WallocError, match=message) as err:
        api.encode_bytes(npy_bytes(array), "bad.npy")
    assert "\n" not in str(err.value)


def test_float_tiff_and_truncated_npy_are_refused(jasper):
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, jasper[:, :, :5].astype(np.float32), photometric="minisblack")
    with pytest.raises(WallocError, match="floating-point"):
        api.encode_bytes(buf.getvalue(), "f.tif")
    with pytest.raises(WallocError, match=".npy"):
        api.encode_bytes(npy_bytes(jasper)[:300], "t.npy")


def test_sample_limit_counts_bands(jasper):
    with pytest.raises(WallocError, match="samples"):
        api.encode_raster(npy_bytes(jasper), "j.npy", max_samples=jasper.size - 1)
    wlc = api.encode_bytes(npy_bytes(jasper), "j.npy", quality=20).data
    with pytest.raises(WallocError, match="samples"):
        api.decode_raster(wlc, max_samples=16 * 12 * 39)  # fits as pixels, not as samples


def test_cli_max_pixels_raises_or_lowers_the_sample_limit(jasper, tmp_path, monkeypatch):
    """`walloc encode --max-pixels N` is the encoder's limit (samples for rasters, pixels for
    images): below the input it refuses in one line and writes nothing; a file encoded above
    the decoder's default needs the same --max-pixels to decode."""
    source = tmp_path / "cube.npy"
    source.write_bytes(npy_bytes(jasper))
    runner = CliRunner()
    refused = runner.invoke(main, ["encode", str(source), "--max-pixels", str(jasper.size - 1)])
    assert refused.exit_code == 1 and "samples" in refused.output and "Traceback" not in refused.output
    assert not (tmp_path / "cube.wlc").exists()
    monkeypatch.setattr(api, "DEFAULT_MAX_PIXELS", jasper.size - 1)  # a raster above the default limit
    assert runner.invoke(main, ["encode", str(source)]).exit_code == 1
    done = runner.invoke(main, ["encode", str(source), "--max-pixels", str(jasper.size)])
    assert done.exit_code == 0, done.output
    assert runner.invoke(main, ["decode", str(tmp_path / "cube.wlc"), "-o", str(tmp_path / "a.npy")]).exit_code == 1
    out = runner.invoke(main, ["decode", str(tmp_path / "cube.wlc"), "-o", str(tmp_path / "b.npy"),
                               "--max-pixels", str(jasper.size)])
    assert out.exit_code == 0 and np.load(tmp_path / "b.npy").shape == jasper.shape


# -- fuzzed header fields ---------------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [
    ("bands", 0), ("bands", 41), ("bands", 10**9), ("bands", True), ("width", 10**12), ("height", -1),
    ("components", 41), ("components", -1), ("levels", 0), ("levels", 13), ("levels", 2), ("step", 0),
    ("step", 1 << 41), ("dtype", "float32"), ("dtype", 7), ("bit_depth", 17), ("bit_depth", 0),
    ("container", "exe"), ("layout", "zyx"), ("byteorder", "|"), ("quality", 101), ("maxval", 1 << 20),
    ("wavelengths", [1.0]), ("wavelengths", "nm"),
    ("container", ["npy"]), ("layout", {"hw": 1}), ("byteorder", ["<"]),  # unhashable: were TypeErrors
])
def test_fuzzed_header_fields_are_refused_in_one_line(jasper, field, value):
    box = container.unpack(api.encode_bytes(npy_bytes(jasper), "j.npy", quality=20).data)
    header = {**box.header, field: value}
    with pytest.raises(WallocError) as err:
        api.decode_raster(container.pack(header, box.sections))
    assert "\n" not in str(err.value)


def test_huge_announced_sizes_fail_before_allocating(jasper):
    """width × height × bands at the limit's edge with a tiny payload: refused by the limit or by the
    payload-size check, never by allocating a cube of that size."""
    box = container.unpack(api.encode_bytes(npy_bytes(jasper), "j.npy", quality=20).data)
    for width, height, bands in ((1 << 16, 1 << 16, 40), (1 << 14, 1 << 14, 40), (1, 1, 40)):
        header = {**box.header, "width": width, "height": height, "bands": bands}
        with pytest.raises(WallocError):
            api.decode_raster(container.pack(header, box.sections))


def test_damaged_payload_is_an_error_not_a_crash(jasper):
    box = container.unpack(api.encode_bytes(npy_bytes(jasper), "j.npy", quality=50).data)
    latents = bytearray(box.sections["latents"])
    for i in range(0, len(latents), max(1, len(latents) // 7)):
        latents[i] ^= 0x5A
    damaged = container.pack(box.header, {**box.sections, "latents": bytes(latents)})
    try:
        out = api.decode_raster(damaged)
    except WallocError:
        return
    assert out.array.shape == jasper.shape  # a garbled but well-formed stream still decodes to the shape


# -- command line ----------------------------------------------------------------------------------
def test_cli_encode_decode_info(tmp_path, jasper):
    src = tmp_path / "cube.npy"
    np.save(src, jasper)
    runner = CliRunner()
    result = runner.invoke(main, ["encode", str(src), "-q", "50", "-v"])
    assert result.exit_code == 0, result.output
    assert "bits per sample" in result.output
    wlc = tmp_path / "cube.wlc"
    result = runner.invoke(main, ["info", "--json", str(wlc)])
    meta = json.loads(result.output)
    assert meta["bands"] == 40 and meta["dtype"] == "uint16"
    result = runner.invoke(main, ["decode", str(wlc)])
    assert result.exit_code == 0, result.output
    out = np.load(tmp_path / "cube.decoded.npy")
    assert out.shape == jasper.shape and out.dtype == jasper.dtype
    result = runner.invoke(main, ["decode", str(wlc), "-o", str(tmp_path / "cube.tif")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cube.tif").stat().st_size > 0


def test_walloc_latents_of_an_npy_cube_and_its_wlc(tmp_path, jasper):
    src = tmp_path / "cube.npy"
    np.save(src, jasper)
    runner = CliRunner()
    result = runner.invoke(main, ["latents", str(src), "-o", str(tmp_path / "lat.npy")])
    assert result.exit_code == 0, result.output
    direct = np.load(tmp_path / "lat.npy")
    assert direct.dtype == np.int32 and direct.shape[0] <= jasper.shape[2]
    runner.invoke(main, ["encode", str(src)])
    result = runner.invoke(main, ["latents", "--float", str(tmp_path / "cube.wlc"), "-o", str(tmp_path / "f.npy")])
    assert result.exit_code == 0, result.output
    floats = np.load(tmp_path / "f.npy")
    assert floats.dtype == np.float32 and floats.shape == direct.shape  # both at the default quality


def frequency_dependent_bands() -> np.ndarray:
    """Three bands mixing a smooth picture and a fine texture in different proportions: the
    bands correlate one way in the low band and another way in the details, so the per-level
    rotations pay for themselves (as on Landsat-8)."""
    rng = np.random.default_rng(0)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(64, 64)), 0), 1)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min()) * 20000
    texture = rng.normal(size=(64, 64)) * 800
    bands = [smooth + texture + 5000, 0.5 * smooth - 0.8 * texture + 9000, 0.2 * smooth + 0.5 * texture + 3000]
    return np.clip(np.stack(bands, axis=2), 0, 65535).astype(np.uint16)


def test_per_level_rotations_are_chosen_when_they_pay_and_decode_exactly_the_same_way():
    a = frequency_dependent_bands()
    wlc = api.encode_bytes(npy_bytes(a), "r.npy", quality=60).data
    assert api.info(wlc)["rotations"] == 1
    assert psnr(a, api.decode_raster(wlc).array) > 55
    box = container.unpack(wlc)
    for bad in (0, 2):  # dropping the flag desynchronises the stream; 2 is no flag value
        with pytest.raises(WallocError):
            out = api.decode_raster(container.pack({**box.header, "rotations": bad}, box.sections))
            assert psnr(a, out.array) > 55, "decoded without the rotations it was written with"


@pytest.mark.parametrize("shape", [(1, 1), (1, 1, 5), (1, 2, 2), (2, 1, 3), (3, 3, 3), (1, 9, 4), (2, 2, 300)])
def test_tiny_and_thin_rasters_round_trip(shape):
    """Subbands of 1×1 have no white checkerboard square: an empty phase sends nothing."""
    a = np.random.default_rng(sum(shape)).integers(0, 60000, shape).astype(np.uint16)
    out = np.load(io.BytesIO(round_trip(npy_bytes(a), "t.npy", quality=100)))
    assert out.shape == a.shape and out.dtype == a.dtype
    assert np.abs(out.astype(np.int64) - a).max() < 0.01 * 60000


def test_sixteen_bit_rgb_tiff_stays_rgb():
    import tifffile

    rgb = raster.read_raster((DATA / "weld16_crop.png").read_bytes()).array
    buf = io.BytesIO()
    tifffile.imwrite(buf, rgb, photometric="rgb")
    decoded = round_trip(buf.getvalue(), "w.tif", quality=80)
    with tifffile.TiffFile(io.BytesIO(decoded)) as tif:
        assert tif.pages[0].photometric == 2 and tif.series[0].shape == rgb.shape
    assert raster.read_raster(decoded).layout == "rgb"


# -- strips: bounded memory for tall rasters ----------------------------------------------------
@pytest.fixture
def small_strips(monkeypatch):
    """The rule of huge rasters (strips of about STRIP_SAMPLES samples) scaled to a test array:
    64×64×3 -> four strips of 16 rows."""
    monkeypatch.setattr(multiband, "STRIP_SAMPLES", 16 * 64 * 3)
    monkeypatch.setattr(multiband, "MIN_STRIP_ROWS", 4)


def test_tall_raster_is_coded_in_strips_and_decodes_bit_exactly(small_strips, monkeypatch):
    """Each strip's stream holds exactly the integers the encoder quantized (the file's latents),
    the per-level rotations chosen on the first strip ride in every strip, and the picture is
    as good as coded whole."""
    a = frequency_dependent_bands()
    coded: dict[bytes, list[np.ndarray]] = {}
    original = multiband._code

    def recording(model, matrix, bits, rotation, q, levels):
        payload = original(model, matrix, bits, rotation, q, levels)
        coded[payload] = q
        return payload

    monkeypatch.setattr(multiband, "_code", recording)
    monkeypatch.setattr(multiband, "STRIP_SAMPLES", 32 * 64 * 3)  # strips of 32 rows: rotations pay there
    wlc = api.encode_bytes(npy_bytes(a), "tall.npy", quality=60).data
    box = container.unpack(wlc)
    assert box.header["strip_rows"] == 32 and box.header["rotations"] == 1
    payloads = strips.split(box.sections["latents"], box.sections["strips"], 64, 32)
    assert len(payloads) == 2
    sent = np.concatenate([b.reshape(b.shape[0], -1) for p in payloads for b in coded[p]], axis=1)
    np.testing.assert_array_equal(api.file_latents(wlc).latents, sent)
    first, again = api.decode_raster(wlc).array, api.decode_raster(wlc).array
    np.testing.assert_array_equal(first, again)
    monkeypatch.setattr(multiband, "STRIP_SAMPLES", 1 << 23)
    whole = api.encode_bytes(npy_bytes(a), "tall.npy", quality=60).data
    assert "strip_rows" not in container.unpack(whole).header
    assert psnr(a, first) > psnr(a, api.decode_raster(whole).array) - 1.0


def test_strips_bound_what_the_coder_holds(small_strips, monkeypatch):
    """No wavelet transform, forward or inverse, ever sees more rows than a strip: the working set
    is a strip's, whatever the raster's height."""
    heights: list[int] = []
    analyse, synthesise = multiband.analyse, multiband.synthesise
    monkeypatch.setattr(multiband, "analyse", lambda y, levels: heights.append(y.shape[1]) or analyse(y, levels))
    monkeypatch.setattr(multiband, "synthesise",
                        lambda s, h, w, levels: heights.append(h) or synthesise(s, h, w, levels))
    a = np.tile(frequency_dependent_bands(), (3, 1, 1))  # 192 rows: 12 strips of 16
    wlc = api.encode_bytes(npy_bytes(a), "tall.npy", quality=40).data
    assert api.decode_raster(wlc).array.shape == a.shape
    assert heights and max(heights) == 16


@pytest.mark.parametrize("change", ["no strip_rows", "strip_rows 0", "strip_rows = height", "strip_rows 15",
                                    "no strips section", "short strips section", "strips in a whole file"])
def test_fuzzed_strip_fields_are_refused_in_one_line(small_strips, change):
    a = frequency_dependent_bands()
    box = container.unpack(api.encode_bytes(npy_bytes(a), "tall.npy", quality=30).data)
    header, sections = dict(box.header), dict(box.sections)
    if change == "strips in a whole file":
        box = container.unpack(api.encode_bytes(npy_bytes(a[:8]), "short.npy", quality=30).data)
        header, sections = dict(box.header), {**box.sections, "strips": strips.pack_sizes([box.sections["latents"]])}
    elif change == "no strip_rows":
        del header["strip_rows"]
    elif change == "no strips section":
        del sections["strips"]
    elif change == "short strips section":
        sections["strips"] = sections["strips"][:-4]
    else:
        header["strip_rows"] = {"strip_rows 0": 0, "strip_rows = height": 64, "strip_rows 15": 15}[change]
    with pytest.raises(WallocError) as err:
        api.decode_raster(container.pack(header, sections))
    assert "\n" not in str(err.value)


# -- Y4M stills (the shared 10-bit frame) ---------------------------------------------------------
def test_ten_bit_y4m_frame_is_coded_at_its_depth_and_comes_back_as_the_same_stream():
    """A 4:4:4 10-bit frame: three bands of 10 bits, decoded to a Y4M whose header is the original's."""
    data = (DATA / "cosmos10_crop.y4m").read_bytes()
    wlc = api.encode_bytes(data, "frame.y4m", quality=70).data
    meta = api.info(wlc)
    assert (meta["bands"], meta["bit_depth"], meta["container"]) == (3, 10, "y4m")
    back = api.decode_raster_file(wlc)
    head = data[: data.index(b"FRAME\n") + 6]
    assert back.startswith(head) and len(back) == len(data)
    original, decoded = raster.read_raster(data).array, raster.read_raster(back).array
    assert decoded.max() < 1024 and psnr(original, decoded) > 40


@pytest.mark.parametrize("stream, message", [
    (b"YUV4MPEG2 W4 H2 F25:1 C420p10\nFRAME\n" + bytes(24), "chroma 420p10"),
    (b"YUV4MPEG2 W4 H2 Cmono\nFRAME\n" + bytes(8) + b"FRAME\n" + bytes(8), "several frames"),
    (b"YUV4MPEG2 W4 H2 C444p10\nFRAME\n" + bytes(20), "truncated Y4M frame"),
    (b"YUV4MPEG2 W4 C444\nFRAME\n" + bytes(24), "width \\(W\\) and height \\(H\\)"),
    (b"YUV4MPEG2 W2 H1 C444p10\nFRAME\n" + b"\xff\xff" * 6, "above its 10-bit range"),
])
def test_y4m_it_cannot_hold_is_refused_in_one_line(stream, message):
    with pytest.raises(WallocError, match=message) as err:
        api.encode_bytes(stream, "v.y4m", quality=50)
    assert "\n" not in str(err.value)


def test_y4m_out_of_an_npy_and_a_fuzzed_tag_field(jasper):
    grey = np.ascontiguousarray(jasper[:, :, :1])
    wlc = api.encode_bytes(npy_bytes(grey), "g.npy", quality=60).data
    assert api.decode_raster_file(wlc, ".y4m").startswith(b"YUV4MPEG2 W12 H16 Cmono16\nFRAME\n")
    box = container.unpack(api.encode_bytes((DATA / "cosmos10_crop.y4m").read_bytes(), "f.y4m", quality=30).data)
    for bad in ("F25:1\nFRAME", 7, "x" * 2000):
        with pytest.raises(WallocError, match="y4m_tags"):
            api.decode_raster(container.pack({**box.header, "y4m_tags": bad}, box.sections))


def test_rd_rounding_moves_values_at_most_one_step_toward_zero_or_zeroes_a_whole_group():
    """The encoder's RD rounding picks the nearest integer or the next toward zero, never the
    other way, and zeroes only whole (component, subband) groups; the coder then codes what it
    chose (the decoder sees plain integers)."""
    model = raster_codec.raster_model()
    rng = np.random.default_rng(3)
    levels = 2
    shapes = multiband.subband_shapes(16, 16, levels)
    scaled = [rng.laplace(0, 0.3 + 2.0 * (i == 0), (3, *shape)) for i, shape in enumerate(shapes)]
    scaled[-1][2] = rng.laplace(0, 0.05, scaled[-1][2].shape)  # a nearly empty group: worth dropping
    dead = [multiband.dead_zone_round(y, model.deadzone) for y in scaled]
    out = multiband.rd_round(model, scaled, dead, levels, multiband.RD_LAMBDA)
    dropped = 0
    for y, q in zip(scaled, out):
        nearest = np.floor(np.abs(y) + 0.5)
        assert (np.abs(q) <= nearest).all() and (q * y >= 0).all()
        for k in range(q.shape[0]):
            if not q[k].any():
                dropped += int(nearest[k].any())
                continue
            assert (np.abs(q[k]) >= nearest[k] - 1).all()
    assert dropped >= 1
    assert any((a != b).any() for a, b in zip(out, dead))
