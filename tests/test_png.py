"""walloc's own PNG writer (walloc_cli/png.py): Pillow must read back exactly the pixels and
metadata that were written, in every mode, across strips and IDAT chunks."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageCms

from walloc_cli import allocator, media, png


def _image(mode: str, height: int = 37, width: int = 53, seed: int = 0) -> media.ImageData:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    if mode.startswith("L"):
        rgb[:] = rgb[:, :, :1]
    alpha = rng.integers(0, 256, (height, width), dtype=np.uint8) if mode.endswith("A") else None
    exif = Image.Exif()
    exif[0x010F] = "Maker"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return media.ImageData(rgb, mode, alpha, icc, [], b"Exif\x00\x00" + exif.tobytes(), b"<x:xmpmeta>hi</x:xmpmeta>")


def _expected(image: media.ImageData) -> np.ndarray:
    colour = image.rgb[:, :, 0] if image.mode.startswith("L") else image.rgb
    return colour if image.alpha is None else np.dstack([colour, image.alpha])


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA"])
@pytest.mark.parametrize("level", [0, 1, 9])
def test_pillow_reads_back_the_pixels_and_metadata(mode: str, level: int) -> None:
    image = _image(mode)
    data = media.write_image(image, "PNG", media.ImageOutput(png_level=level))
    im = Image.open(io.BytesIO(data))
    im.load()
    assert im.mode == mode
    assert np.array_equal(np.asarray(im), _expected(image))
    assert im.info.get("icc_profile") == image.icc
    assert im.getexif().get(0x010F) == "Maker"
    assert "hi" in im.info.get("XML:com.adobe.xmp", "")


def test_many_strips_and_idat_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(png, "STRIP_BYTES", 100)   # 1 row a strip
    monkeypatch.setattr(png, "IDAT_BYTES", 64)
    image = media.ImageData(np.random.default_rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8), "RGB")
    data = media.write_image(image, "PNG")
    assert sum(kind == b"IDAT" for kind, _ in png.chunks_of(data)) > 10
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), image.rgb)


def test_sub_filtered_rows_deflate_smaller_than_unfiltered() -> None:
    # a smooth ramp: Sub turns it into near-constant bytes, which is why it is the filter used
    ramp = np.broadcast_to((np.arange(256, dtype=np.uint8)[None, :, None]), (64, 256, 3)).copy()
    template = media._save(Image.new("RGB", (1, 1)), "PNG", {"compress_level": 0})
    filtered = png.assemble(template, [ramp], 1)
    unfiltered = png.assemble(template, [ramp], 0)
    assert len(filtered) < len(unfiltered) / 4
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(filtered))), ramp)


def test_a_metadata_block_pillow_refuses_still_writes_the_pixels() -> None:
    image = _image("RGB")
    image.exif = b"Exif\x00\x00" + b"\x00" * (1 << 17)  # garbage EXIF: Pillow cannot parse it
    data = media.write_image(image, "PNG")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), image.rgb)


def test_allocator_leaves_a_users_malloc_settings_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert allocator.keep_freed_memory() is False


def test_level_1_pixels_are_the_same_with_and_without_isal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Level 1 deflates with ISA-L where the ``isal`` package is installed and with zlib where it
    is not: both are standard zlib streams that Pillow reads back to the same pixels."""
    image = _image("RGB", 70, 90, seed=3)
    with_isal = media.write_image(image, "PNG")
    monkeypatch.setitem(__import__("sys").modules, "isal", None)  # `from isal import …` now fails
    assert png._compressor(1).__class__.__module__ == "zlib"
    without = media.write_image(image, "PNG")
    for data in (with_isal, without):
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), image.rgb)
