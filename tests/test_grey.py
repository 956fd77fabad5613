"""Greyscale photos saved as RGB (R = G = B) decode exactly grey (issue #14)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from walloc_cli import api, container
from walloc_cli.errors import WallocError

from .conftest import png_bytes, psnr


@pytest.fixture(scope="module")
def grey_rgb(photo_path: Path) -> np.ndarray:
    return np.asarray(Image.open(photo_path).convert("L").convert("RGB"))


@pytest.mark.parametrize("quality", [20, 60])
def test_grey_rgb_decodes_exactly_grey_and_closer(grey_rgb: np.ndarray, quality: int, monkeypatch) -> None:
    data = png_bytes(Image.fromarray(grey_rgb))
    wlc = api.encode_image(data, quality=quality).data
    assert container.unpack(wlc).header["grey"] is True
    out = api.decode_image(wlc)
    assert out.mode == "RGB"
    assert (out.rgb[..., 0] == out.rgb[..., 1]).all() and (out.rgb[..., 1] == out.rgb[..., 2]).all()
    # the same file decoded without the flag (as before it existed) is tinted and further away
    monkeypatch.setattr(api, "is_grey", lambda rgb: False)
    tinted = api.decode_image(api.encode_image(data, quality=quality).data).rgb
    assert np.abs(tinted.astype(int) - tinted.mean(axis=2, keepdims=True)).max() > 1
    assert psnr(out.rgb, grey_rgb) > psnr(tinted, grey_rgb)


def test_colour_photo_is_not_flagged(small_rgb: np.ndarray) -> None:
    wlc = api.encode_image(png_bytes(Image.fromarray(small_rgb)), quality=50).data
    assert "grey" not in container.unpack(wlc).header
    one_off = small_rgb.copy()
    grey = np.repeat(one_off[..., :1], 3, axis=2)
    grey[0, 0, 2] ^= 1  # a single pixel that is not grey: not a greyscale image
    assert not api.is_grey(grey)


def test_corrupt_grey_field_is_one_line_error(grey_rgb: np.ndarray) -> None:
    wlc = api.encode_image(png_bytes(Image.fromarray(grey_rgb[:64, :64])), quality=50).data
    box = container.unpack(wlc)
    header = dict(box.header, grey="yes")
    with pytest.raises(WallocError, match="grey"):
        api.decode_image(container.pack(header, box.sections))
