"""rgb-1x codes huge images in strips: bounded memory, format version 2, version 1 still read (#11 item 11)."""
from __future__ import annotations

import json
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from walloc_cli import api, container, entropy, strips
from walloc_cli.errors import WallocError
from walloc_cli.model import load_model


@pytest.fixture
def few_positions(monkeypatch):
    """Strips of 16 latent rows (128 pixel rows, the fewest) whatever the width: small images get several."""
    monkeypatch.setattr(strips, "STRIP_POSITIONS", 8)


@pytest.fixture(scope="module")
def photo(photo_path) -> np.ndarray:
    return np.asarray(Image.open(photo_path).convert("RGB"))


def _image(rgb: np.ndarray) -> api.media.ImageData:
    return api.media.ImageData(np.ascontiguousarray(rgb), "RGB", None, None, [])


def reseal(header: dict, sections: dict[str, bytes], version: int = 2) -> bytes:
    head = json.dumps({**header, "sections": [[k, len(v)] for k, v in sections.items()]}).encode()
    payload = b"".join(sections.values())
    body = struct.pack("<4sBI", container.MAGIC, version, len(head)) + head + struct.pack("<Q", len(payload)) + payload
    return body + struct.pack("<I", zlib.crc32(body))


def test_a_strip_coded_file_records_its_layout_and_decodes_like_the_whole(few_positions, photo):
    wlc = api.encode_image_data(_image(photo), "rgb-1x", 70)
    box = container.unpack(wlc)
    rows = -(-photo.shape[0] // 8)  # latent rows: the height in whole 8-pixel blocks
    assert box.version == container.VERSION >= 2 and box.header["strip_rows"] == strips.MIN_STRIP_ROWS == 16
    assert len(box.sections["strips"]) == 4 * -(-rows // 16) > 4
    model = load_model("rgb-1x")
    latents = api.file_latents(wlc).latents
    np.testing.assert_array_equal(latents, api.image_to_latents(model, photo, 70)[0])
    # decoding strip by strip gives the pixels of the whole latent grid decoded at once
    whole = api.latents_to_image(model, latents, *photo.shape[:2], 70, mean_shift=box.header.get("mean_shift"),
                                 mean=box.header.get("mean"))
    np.testing.assert_array_equal(api.decode_image(wlc).rgb, whole)
    # the strips' zero-channel flags name the channels the whole grid holds (past the 3 DC
    # channels, which are always coded), so the decoder's product has the same shape
    lazy = api._image_latents(box, model, latents.shape, 70)
    nonzero = latents.reshape(latents.shape[0], -1).any(axis=1)
    assert isinstance(lazy, strips.StripLatents) and (lazy.nonzero[3:] == nonzero[3:]).all() and lazy.nonzero[:3].all()


def test_a_strip_coded_file_decodes_in_the_windows_of_the_whole_grid(few_positions, photo, monkeypatch):
    """Decoding windows follow the image's width, not its strips: windows of 24 latent rows
    across strips of 16 give the pixels of the whole grid decoded in those windows (float
    products may round differently for windows of other heights: api.latents_to_image)."""
    wlc = api.encode_image_data(_image(photo), "rgb-1x", 40)
    box = container.unpack(wlc)
    monkeypatch.setattr(api, "DECODE_WINDOW_POSITIONS", 24 * -(-photo.shape[1] // 8))
    assert api.window_rows(-(-photo.shape[1] // 8)) == 24 and box.header["strip_rows"] == 16
    decoded = []
    real = strips.StripLatents.strip
    monkeypatch.setattr(strips.StripLatents, "strip", lambda self, k: decoded.append(k) or real(self, k))
    model = load_model("rgb-1x")
    whole = api.latents_to_image(model, api.file_latents(wlc).latents, *photo.shape[:2], 40,
                                 mean_shift=box.header.get("mean_shift"), mean=box.header.get("mean"))
    np.testing.assert_array_equal(api.decode_image(wlc).rgb, whole)
    assert sorted(set(decoded)) == list(range(len(box.sections["strips"]) // 4))  # every strip was read


def test_strips_cost_little(few_positions, photo):
    """Even strips of 128 pixel rows (the shipped rule gives 4 MP strips) cost under 1 % in bytes.
    (They may even save: each strip flags and drops its own zero and sparse channels.)"""
    cut = len(api.encode_image_data(_image(photo), "rgb-1x", 70))
    strips.STRIP_POSITIONS = 1 << 16
    whole = len(api.encode_image_data(_image(photo), "rgb-1x", 70))
    assert cut < 1.01 * whole


def test_the_decoder_keeps_few_strips_and_decodes_each_about_once(few_positions, photo, monkeypatch):
    wlc = api.encode_image_data(_image(photo), "rgb-1x", 50)
    # windows as tall as the strips, as the shipped rules make them for a huge photo
    monkeypatch.setattr(api, "DECODE_WINDOW_POSITIONS", strips.MIN_STRIP_ROWS * -(-photo.shape[1] // 8))
    decoded, held = [], []
    original = strips.StripLatents.strip

    def counting(self, k):
        if k not in self._cache:
            decoded.append(k)
        out = original(self, k)
        held.append(len(self._cache))
        return out

    monkeypatch.setattr(strips.StripLatents, "strip", counting)
    api.decode_image(wlc)
    count = len(container.unpack(wlc).sections["strips"]) // 4
    assert sorted(set(decoded)) == list(range(count)) and len(decoded) <= count + 2
    assert max(held) <= 3   # a window's strip and one on each side


def test_encoding_memory_is_a_strip_not_the_image(monkeypatch):
    """Peak allocations while encoding 1 MP in strips of 16 latent rows: below the 16 bytes
    per pixel of issue #11's target, where whole-image coding took 55 (the working set is a
    strip plus the transform's window, a fixed number of rows: the taller the image, the
    smaller its share)."""
    monkeypatch.setattr(strips, "STRIP_POSITIONS", 16 * 64)
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:2048, 0:512]
    base = 128 + 60 * np.sin(x / 37) * np.cos(y / 23) + rng.normal(0, 12, (2048, 512))
    rgb = np.clip(base[..., None] * [1, 0.8, 0.6], 0, 255).astype(np.uint8)
    image = _image(rgb)
    api.encode_image_data(image, "rgb-1x", 75)   # warm caches (tables, models) outside the measurement
    tracemalloc.start()
    try:
        api.encode_image_data(image, "rgb-1x", 75)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * rgb.shape[0] * rgb.shape[1], f"{peak / rgb.shape[0] / rgb.shape[1]:.1f} bytes per pixel"


def test_version_1_files_still_decode_whole():
    """The version 1 goldens (one context-coded payload) decode as before: see test_reliability."""
    data = (api.Path(__file__).parent / "data" / "golden" / "v1-rgb-1x-q75.wlc").read_bytes()
    box = container.unpack(data)
    assert box.version == 1 and "strip_rows" not in box.header
    assert api.decode_image(data).rgb.shape == (96, 128, 3)


@pytest.fixture(scope="module")
def cut_file(photo_path) -> container.Container:
    original, strips.STRIP_POSITIONS = strips.STRIP_POSITIONS, 8   # 4 strips of 16 rows
    try:
        return container.unpack(api.encode_image(photo_path.read_bytes(), "rgb-1x", 40).data)
    finally:
        strips.STRIP_POSITIONS = original


def _variant(box: container.Container, header: dict | None = None, sections: dict | None = None,
             version: int = 2) -> bytes:
    """The file resealed in an older format, whose headers state the padding and latent shape
    (format 4 derives them)."""
    model = load_model(box.header["model"])
    _, _, shape = api._image_layout(box.header, model, api.DEFAULT_MAX_PIXELS, box.version)
    pad = api.image_padding(box.header["height"], box.header["width"], model.config.block)
    stated = {"pad": list(pad), "latent_shape": list(shape)}
    return reseal({**box.header, **stated, **(header or {})}, {**box.sections, **(sections or {})}, version)


@pytest.mark.parametrize("change, message", [
    (dict(header={"strip_rows": 0}), "field 'strip_rows'"),
    (dict(header={"strip_rows": True}), "field 'strip_rows'"),
    (dict(header={"strip_rows": "8"}), "field 'strip_rows'"),
    (dict(header={"strip_rows": 31}), "strip index does not match"),
    (dict(sections={"strips": b"\0\0\0"}), "strip index does not match"),
    (dict(version=1), "not strip-coded"),
])
def test_a_damaged_strip_layout_is_one_clear_line(cut_file, change, message):
    data = _variant(cut_file, **change)
    for read in (api.decode_image, api.file_latents):
        with pytest.raises(WallocError, match=message):
            read(data)


def test_strip_sizes_that_do_not_add_up_are_refused(cut_file):
    sizes = np.frombuffer(cut_file.sections["strips"], "<u4").copy()
    sizes[0] += 4
    sizes[1] -= 4
    # The payload splits elsewhere (in a crafted file: the CRC is resealed): a range decoder error,
    # or an image of the announced size decoded from shifted bits — never a crash
    try:
        image = api.decode_image(_variant(cut_file, sections={"strips": sizes.astype("<u4").tobytes()}))
    except WallocError:
        pass
    else:
        assert (image.height, image.width) == (cut_file.header["height"], cut_file.header["width"])
    sizes[1] += 8
    with pytest.raises(WallocError, match="strip sizes do not match the payload"):
        api.decode_image(_variant(cut_file, sections={"strips": sizes.astype("<u4").tobytes()}))


def test_a_single_point_model_file_with_strips_is_refused(small_path):
    box = container.unpack(api.encode_image(small_path.read_bytes(), "rgb-16x").data)
    with pytest.raises(WallocError, match="not strip-coded"):
        api.decode_image(_variant(box, header={"strip_rows": 8}))


def test_a_strip_bomb_is_refused_before_allocating(cut_file):
    """16384 × 16384 announced over many small strips: every strip's payload is checked first."""
    header = {"width": 16384, "height": 16384, "pad": [0, 0], "latent_shape": [192, 2048, 2048], "strip_rows": 16}
    count = 2048 // 16
    sections = {"latents": b"\0" * 4 * count, "strips": np.full(count, 4, "<u4").tobytes()}
    with pytest.raises(entropy.EntropyError, match="payload too short"):
        api.decode_image(_variant(cut_file, header, sections))
