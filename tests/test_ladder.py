"""The closed-form fit of a quality-ladder model (``python -m walloc_cli.fit.ladder``), at toy scale."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from walloc_cli import api, benchmark
from walloc_cli.fit import ladder
from walloc_cli.model import load_model

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ladder")
    (root / "data" / "train").mkdir(parents=True)
    shutil.copy(DATA / "photo.jpg", root / "data" / "train" / "photo.jpg")
    rgb = np.asarray(Image.open(DATA / "photo.jpg").convert("RGB"))
    Image.fromarray(np.ascontiguousarray(rgb[::-1, ::-1])).save(root / "data" / "train" / "flipped.png")
    return ladder.fit(root / "data", root / "weights", "rgb-ladder-test", max_images=2, seed=0)


def test_fitted_model_codes_a_photo(fitted, monkeypatch):
    monkeypatch.setenv("WALLOC_WEIGHTS", str(fitted.parent))
    config = json.loads(fitted.with_suffix(".json").read_text())
    assert config["coding"] == "context" and config["latent_channels"] == 192
    model = load_model("rgb-ladder-test")
    data = (DATA / "photo.jpg").read_bytes()
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    sizes, quality = [], []
    for q in (30, 70):
        wlc = api.encode_image(data, "rgb-ladder-test", q).data
        z = api.file_latents(wlc).latents
        np.testing.assert_array_equal(z, api.image_to_latents(model, rgb, q)[0])
        sizes.append(len(wlc))
        quality.append(benchmark.psnr(rgb, api.decode_image(wlc).rgb))
    assert sizes[0] < sizes[1] and quality[0] + 3 < quality[1], (sizes, quality)
    assert quality[1] > 30, quality


def test_rd_refit_tables_what_the_encoder_writes(fitted, tmp_path, monkeypatch):
    """fit_rd (``--rd-only``) refits the tables and offsets on the encoder's own RD rounding, then
    the DC pyramid's tables likewise: on the photos it was fitted on, the files shrink, the model
    still codes bit-exactly, and reconstruction offsets may come out negative (a bin's values lie
    above its integer once RD rounding has sent its lower part to the bin below)."""
    weights = tmp_path / "weights"
    shutil.copytree(fitted.parent, weights)
    name, data = "rgb-ladder-test", fitted.parent.parent / "data"
    ladder.fit_pyramid(weights, name, data, max_images=2)
    monkeypatch.setenv("WALLOC_WEIGHTS", str(weights))
    photo = (DATA / "photo.jpg").read_bytes()
    rgb = np.asarray(Image.open(io.BytesIO(photo)).convert("RGB"))

    def sizes() -> list[int]:
        load_model.cache_clear()
        out = []
        for q in (30, 70):
            wlc = api.encode_image(photo, name, q).data
            np.testing.assert_array_equal(api.file_latents(wlc).latents, api.image_to_latents(load_model(name), rgb, q)[0])
            out.append(len(wlc))
        return out

    before = sizes()
    ladder.fit_rd(weights, name, data, max_images=2)
    after = sizes()
    load_model.cache_clear()
    config = json.loads((weights / f"{name}.json").read_text())
    assert config["info"]["pyramid"]["rounding"] == "rd" and "rd_refit" in config["info"]
    assert sum(after) < sum(before), (before, after)
    offsets = load_model(name).ladder.offset
    assert offsets.min() > -0.5 and (offsets < 0).any()
    load_model.cache_clear()
