"""Write the golden .wlc files of tests/data/golden (run once per format or model version).

    python -m tests.make_golden

Each golden file is kept with the integer latents it holds (``.latents.npy``) and
its decoded content (``.expected.npy``), so later versions of walloc can prove
that they still read it.  Never regenerate existing files to make a test pass:
add new ones.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile
from PIL import Image

from walloc_cli import api, blocks, container, entropy, multiband, strips
from walloc_cli.model import load_model

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden"


def _save(name: str, wlc: bytes, expected: np.ndarray) -> None:
    path = GOLDEN / f"{name}.wlc"
    if path.exists():
        print(f"{path} exists, kept")
        return
    latents = api.file_latents(wlc).latents
    path.write_bytes(wlc)
    np.save(path.with_suffix(".latents.npy"), latents)
    np.save(path.with_suffix(".expected.npy"), expected)
    print(f"wrote {path}")


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def main() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    small = Image.open(DATA / "small.png").convert("RGB")
    wlc = api.encode_image((DATA / "small.png").read_bytes(), "rgb-16x").data
    _save(f"v{container.VERSION}-rgb", wlc, api.decode_image(wlc).rgb)
    crop = io.BytesIO()
    Image.open(DATA / "photo.jpg").convert("RGB").crop((100, 60, 228, 156)).save(crop, format="PNG")
    # the quality-ladder model: context-coded latents, linear decoder; named by the context
    # coder's version from its second on (version 2: zero-channel flags)
    # and, from the weights with the decoder's filter on, by the weights' hash (a refit keeps
    # the old weights in weights/previous/ so that the older golden files still decode)
    weights = load_model("rgb-1x")
    ladder = f"v{container.VERSION}-rgb-1x" + ("" if entropy.CONTEXT_CODER == entropy.CONTEXT_CODER_V1
                                               else f"-ctx{entropy.CONTEXT_CODER[-1]}")
    if weights.ladder.filter is not None:
        ladder += f"-{weights.config.short_hash[:8]}"
    for quality in (20, 75):
        wlc = api.encode_image(crop.getvalue(), "rgb-1x", quality).data
        _save(f"{ladder}-q{quality}", wlc, api.decode_image(wlc).rgb)
    if entropy.CONTEXT_CODER != entropy.CONTEXT_CODER_V1:  # a grey photo: skipped and flagged channels
        grey = io.BytesIO()
        Image.open(DATA / "photo.jpg").convert("L").crop((100, 60, 228, 156)).save(grey, format="PNG")
        wlc = api.encode_image(grey.getvalue(), "rgb-1x", 40).data
        _save(f"{ladder}-grey-q40", wlc, api.decode_image(wlc).rgb)
    if container.VERSION >= 2:  # strip-coded rgb-1x: strips of 4 latent rows (fewer than the inverse
        # transform reaches, so decoding a strip reads its neighbours'), three in this crop
        rule = strips.STRIP_POSITIONS, strips.MIN_STRIP_ROWS
        strips.STRIP_POSITIONS, strips.MIN_STRIP_ROWS = 64, 4
        try:
            wlc = api.encode_image(crop.getvalue(), "rgb-1x", 60).data
        finally:
            strips.STRIP_POSITIONS, strips.MIN_STRIP_ROWS = rule
        _save(f"{ladder}-q60-strips", wlc, api.decode_image(wlc).rgb)
    if container.VERSION >= 2:  # nband-1x (modality raster): the signed Santa Barbara crop, one strip
        cube = np.load(DATA / "beyond" / "santabarbara_crop.npy")
        wlc = api.encode_raster(_npy(cube), "cube.npy", quality=40).data
        _save(f"v{container.VERSION}-nband-q40", wlc, api.decode_raster(wlc).array)
        if hasattr(multiband, "STRIP_SAMPLES"):  # strip-coded nband-1x: strips of 4 rows, three of them
            cube = np.load(DATA / "beyond" / "jasper_crop.npy")[:12, :, :6]
            rule = multiband.STRIP_SAMPLES, multiband.MIN_STRIP_ROWS
            multiband.STRIP_SAMPLES, multiband.MIN_STRIP_ROWS = 4 * 12 * 6, 4
            try:
                wlc = api.encode_raster(_npy(cube), "cube.npy", quality=50).data
            finally:
                multiband.STRIP_SAMPLES, multiband.MIN_STRIP_ROWS = rule
            _save(f"v{container.VERSION}-nband-q50-strips", wlc, api.decode_raster(wlc).array)
    if container.VERSION >= 3:  # nband-1x band groups: a resampled stack (bands in 2×2 and 3×3 blocks)
        cube = np.load(DATA / "beyond" / "jasper_crop.npy")[:, :, :6]
        cube[:, :, 1] = np.repeat(np.repeat(cube[::2, ::2, 1], 2, axis=0), 2, axis=1)
        cube[:, :, 4] = np.repeat(np.repeat(cube[::3, ::3, 4], 3, axis=0), 3, axis=1)[:16, :12]
        cube[:, :, 5] = np.repeat(np.repeat(cube[::2, ::2, 5], 2, axis=0), 2, axis=1)
        wlc = api.encode_raster(_npy(cube), "cube.npy", quality=45).data
        assert len(container.unpack(wlc).header["groups"]) == 3
        _save(f"v{container.VERSION}-nband-q45-groups", wlc, api.decode_raster(wlc).array)
        # a 2×2 group predicted from the full-resolution bands (section predict.1)
        full = np.load(DATA / "beyond" / "jasper_crop.npy")[:, :, [0, 10, 30]].astype(np.int64)
        sums, counts = blocks.block_sums(full, blocks.Blocks(2, 2, 0, 0))
        means = sums / counts[..., None]
        noise = np.random.default_rng(5).normal(0, 3, means.shape[:2] + (2,))
        coarse = np.stack([0.7 * means[..., 0] + 0.4 * means[..., 2], 1.1 * means[..., 1] + 300], axis=2) + noise
        grown = blocks.grow(np.clip(np.rint(coarse), 0, 65535), blocks.Blocks(2, 2, 0, 0), 16, 12)
        cube = np.concatenate([full, grown], axis=2).astype(np.uint16)
        wlc = api.encode_raster(_npy(cube), "cube.npy", quality=50).data
        assert "predict.1" in container.unpack(wlc).sections
        _save(f"v{container.VERSION}-nband-q50-predicted", wlc, api.decode_raster(wlc).array)
    la = small.convert("L")
    la.putalpha(Image.fromarray((np.arange(64 * 96) % 251).astype(np.uint8).reshape(64, 96)))
    buf = io.BytesIO()
    la.save(buf, format="PNG")
    wlc = api.encode_image(buf.getvalue(), "rgb-16x").data
    _save(f"v{container.VERSION}-gray-alpha", wlc, api.decode_image(wlc).rgb)
    samples, rate = soundfile.read(DATA / "music.flac", frames=22050)
    buf = io.BytesIO()
    soundfile.write(buf, samples, rate, subtype="PCM_16", format="WAV")
    wlc = api.encode_audio(buf.getvalue()).data
    decoded, _ = soundfile.read(io.BytesIO(api.decode_audio(wlc)), dtype="int16", always_2d=True)
    # the default audio model, once per version of its weights (a refit keeps the old weights in
    # weights/previous/ so that these files still decode)
    header = container.unpack(wlc).header
    _save(f"v{container.VERSION}-{header['model']}-{header['weights'][:8]}", wlc, decoded)


if __name__ == "__main__":
    main()
