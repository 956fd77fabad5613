"""The short Python API: arrays and paths in, bytes or arrays out.

    import walloc_cli
    wlc = walloc_cli.encode("photo.png")          # bytes of a .wlc file
    rgb = walloc_cli.decode(wlc)                  # uint8 (H, W, 3)
    z = walloc_cli.to_latents(rgb)                # int32 (12, H'/8, W'/8), model rgb-16x
    rgb2 = walloc_cli.from_latents(z, size=rgb.shape[:2])

:mod:`walloc_cli.api` stays the bytes-level API with every option; this module
only turns what people hold in a notebook (a numpy array, a Pillow image, a
path, a ``(samples, rate)`` pair) into what api takes.  ``walloc_cli`` re-exports
these four functions lazily, so ``import walloc_cli`` still imports no torch;
``decode`` and ``from_latents`` import it when the decoder runs.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Union

import numpy as np

from . import api, latents, media
from .errors import WallocError
from .model import (DEFAULT_AUDIO_LATENT_MODEL, DEFAULT_AUDIO_MODEL, DEFAULT_IMAGE_MODEL, DEFAULT_LATENT_MODEL,
                    CodecModel, load_model)

Input = Union[np.ndarray, "PIL.Image.Image", str, os.PathLike, bytes, tuple]  # noqa: F821
Model = Union[str, CodecModel, None]


# -- turning inputs into what api takes ---------------------------------------------------------
def _model_name(model: Model) -> str | None:
    return model.config.name if isinstance(model, CodecModel) else model


def image_from_array(array: np.ndarray) -> media.ImageData:
    """uint8 (H, W), (H, W, 3) or (H, W, 4) -> ImageData; float arrays are refused, not guessed at.

    Why refuse floats: 0..1 and 0..255 floats are both common, and guessing wrong
    would silently code a black or a white image.
    """
    if array.dtype != np.uint8:
        raise WallocError(f"images must be uint8 arrays, not {array.dtype} "
                          "(for floats in 0..1: np.rint(x * 255).astype(np.uint8))")
    if array.ndim == 2:
        return media.ImageData(np.repeat(array[:, :, None], 3, axis=2), "L")
    if array.ndim == 3 and array.shape[2] == 3:
        return media.ImageData(np.ascontiguousarray(array), "RGB")
    if array.ndim == 3 and array.shape[2] == 4:
        return media.ImageData(np.ascontiguousarray(array[:, :, :3]), "RGBA", np.ascontiguousarray(array[:, :, 3]))
    raise WallocError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4), not {array.shape}")


def image_from_pillow(im: Any) -> media.ImageData:
    """A Pillow image -> ImageData, by way of media's reader so every mode is handled as for files."""
    # TIFF keeps nearly every mode Pillow has (CMYK, 16-bit, palette with transparency) and the ICC profile
    icc = im.info.get("icc_profile")
    buf = io.BytesIO()
    try:
        im.save(buf, format="TIFF", icc_profile=icc)
    except (OSError, ValueError):  # HSV and the like: TIFF cannot hold them, RGB can
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="TIFF", icc_profile=icc)
    return media.read_image(buf.getvalue())


def _is_pillow(x: Any) -> bool:
    return type(x).__module__.startswith("PIL.")


def audio_bytes(samples: np.ndarray, rate: int) -> bytes:
    """(samples, rate) -> an in-memory 64-bit float WAV, which api reads like any file (nothing is rounded)."""
    import soundfile

    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim not in (1, 2):
        raise WallocError(f"audio must be (frames,) or (frames, channels), not {samples.shape}")
    buf = io.BytesIO()
    soundfile.write(buf, samples, int(rate), subtype="DOUBLE", format="WAV")
    return buf.getvalue()


def _read_path(x: str | os.PathLike) -> tuple[bytes | None, str]:
    """(bytes, name) of a path, bytes left None for audio (api reads audio files window by window)."""
    name = os.fspath(x)
    if Path(name).suffix.lower() in media.AUDIO_SUFFIXES:
        return None, name
    with open(name, "rb") as f:
        return f.read(), name


# -- the four functions -------------------------------------------------------------------------
def encode(x: Input, model: Model = None, quality: int | None = None) -> bytes:
    """Compress an image or a sound to ``.wlc`` bytes.

    ``x``: a uint8 image array ((H, W), (H, W, 3) or (H, W, 4)), a Pillow image,
    a path, image or audio file bytes, or audio as ``(samples, rate)`` with
    samples (frames,) or (frames, channels) at full scale ±1.  ``model``: a model
    name (default: ``walloc encode``'s); ``quality``: 1–100 for quality-ladder image models.
    """
    name = _model_name(model)
    if isinstance(x, tuple):
        return api.encode_audio(audio_bytes(*x), name or DEFAULT_AUDIO_MODEL).data
    if isinstance(x, np.ndarray):
        return api.encode_image_data(image_from_array(x), name or DEFAULT_IMAGE_MODEL, quality)
    if _is_pillow(x):
        return api.encode_image_data(image_from_pillow(x), name or DEFAULT_IMAGE_MODEL, quality)
    if isinstance(x, (str, os.PathLike)):
        data, hint = _read_path(x)
        if data is None:
            return api.encode_audio(hint, name or DEFAULT_AUDIO_MODEL).data
    elif isinstance(x, (bytes, bytearray, memoryview)):
        data, hint = bytes(x), ""
    else:
        raise TypeError(f"cannot encode a {type(x).__name__}")
    if latents.is_wlc(data[:4]):
        raise WallocError("already a walloc file")
    return api.encode_bytes(data, hint, name, quality).data


def decode(data: bytes) -> np.ndarray:
    """``.wlc`` bytes -> uint8 (H, W, 3) for images, float32 (frames, channels) for audio.

    Alpha, the original mode and the ICC profile are in :func:`walloc_cli.api.decode_image`.
    """
    if api.modality_of(data) == "image":
        return api.decode_image(data).rgb
    import soundfile

    samples, _ = soundfile.read(io.BytesIO(api.decode_audio(data, ".wav", "FLOAT")), dtype="float32",
                                always_2d=True)
    return samples


def to_latents(x: Input, model: Model = None, quality: int | None = None) -> np.ndarray:
    """Integer latents (int32) of anything :func:`encode` takes, or of ``.wlc`` bytes or a ``.wlc`` path.

    Images default to model rgb-16x (``DEFAULT_LATENT_MODEL``: 12 channels at 1/8
    resolution); a ``.wlc`` file gives the latents of the model it was written with.
    Layout: see :mod:`walloc_cli.latents` (images (L, H'/8, W'/8) of the image
    mirror-padded to multiples of 8; audio (signals·L, T'/256)).  For the size facts
    too, use :func:`walloc_cli.latents.read_latents`.
    """
    name = _model_name(model)
    if isinstance(x, tuple):
        return _audio_values(audio_bytes(*x), model)
    if isinstance(x, np.ndarray):
        return latents.image_latents(image_from_array(x), model, quality).values
    if _is_pillow(x):
        return latents.image_latents(image_from_pillow(x), model, quality).values
    if isinstance(x, (str, os.PathLike)):
        return latents.read_latents(x, name, quality).values
    if isinstance(x, (bytes, bytearray, memoryview)):
        data = bytes(x)
        kind = latents.kind_of("", data[:12])
        if kind == "wlc":
            return latents.wlc_latents(data, name).values
        if kind == "audio":
            return _audio_values(data, model)
        return latents.image_latents(media.read_image(data), model, quality).values
    raise TypeError(f"cannot take the latents of a {type(x).__name__}")


def _audio_values(data: bytes, model: str | CodecModel | None) -> np.ndarray:
    audio = media.open_audio(data)
    try:
        return latents.audio_latents(audio, model).values
    finally:
        audio.handle.close()


def _decoder_model(z: np.ndarray, model: Model) -> CodecModel:
    """The model to decode with; without one, the default of the modality the latents' rank says."""
    if isinstance(model, CodecModel):
        codec = model
    else:
        codec = load_model(model or (DEFAULT_LATENT_MODEL if z.ndim == 3 else DEFAULT_AUDIO_LATENT_MODEL))
    cfg = codec.config
    signals = z.shape[0] // cfg.latent_channels if z.ndim else 0
    if z.ndim != cfg.dims + 1 or z.shape[0] % cfg.latent_channels or (cfg.dims == 2 and signals != 1):
        raise WallocError(f"latents of shape {z.shape} do not fit model {cfg.name} "
                          f"({cfg.latent_channels} latent channels, {cfg.modality})")
    return codec


def from_latents(z: np.ndarray, model: Model = None, size: tuple[int, ...] | None = None,
                 quality: int | None = None) -> np.ndarray:
    """Decode integer latents with the model's decoder (the neural one imports torch).

    Images: uint8 (H, W, 3); without ``size`` the whole padded grid (L, h, w) ->
    (8h, 8w), with ``size=(H, W)`` cropped to it.  Audio: float32 (frames, channels),
    not clipped (stereo latents are mid then side, as :func:`to_latents` gives them);
    ``size=(frames,)`` crops.  ``model`` and ``quality`` must be those the latents were
    made with (default rgb-16x for images, stereo-ms for audio).
    """
    z = np.asarray(z)
    codec = _decoder_model(z, model)
    quality = api.quality_of(codec, quality)
    block = codec.config.block
    if codec.config.dims == 2:
        height, width = size if size is not None else (z.shape[1] * block, z.shape[2] * block)
        if not (0 < height <= z.shape[1] * block and 0 < width <= z.shape[2] * block):
            raise WallocError(f"size {size} is outside the latents' {z.shape[1] * block}×{z.shape[2] * block} pixels")
        return api.latents_to_image(codec, z, int(height), int(width), quality)
    frames = size[0] if size is not None else z.shape[1] * block
    coding = api.channel_mixes(z.shape[0] // codec.config.latent_channels)[0]
    return np.concatenate(list(api.latents_to_audio(codec, z, coding)))[:frames].astype(np.float32)
