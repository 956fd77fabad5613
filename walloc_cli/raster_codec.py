"""``.wlc`` files of modality ``raster``: N-band and high-bit-depth images (docs/FORMAT.md).

The glue between :mod:`walloc_cli.raster` (files in and out), :mod:`walloc_cli.multiband`
(the model) and :mod:`walloc_cli.container`: which header fields such a file has, and
the checks every one of them passes before anything is allocated.  :mod:`walloc_cli.api`
calls in here; nothing here knows about paths or the command line.
"""
from __future__ import annotations

import math
from typing import Any, Iterator

import numpy as np

from . import container, multiband, raster, strips
from .errors import WallocError
from .model import load_model
from .quality import highest_quality_within

DEFAULT_RASTER_MODEL = "nband-1x"
DEFAULT_QUALITY = 75
MODALITY = "raster"
LAYOUTS = ("hw", "hwb", "bhw", "pages", "rgb", "hw-f", "hwb-f")


def raster_model(name: str | None = None) -> multiband.MultibandModel:
    model = load_model(name or DEFAULT_RASTER_MODEL)
    if not isinstance(model, multiband.MultibandModel):
        raise WallocError(f"model {model.config.name} codes {model.config.modality}, not N-band images "
                          f"(use {DEFAULT_RASTER_MODEL})")
    return model


def check_samples(width: int, height: int, bands: int, max_samples: int) -> None:
    """The limit counts samples (height × width × bands), not pixels: a 200-band cube of 1 MP
    allocates what a 200 MP grey image does."""
    if width * height * bands > max_samples:
        raise WallocError(f"image of {width}×{height}×{bands} = {width * height * bands} samples exceeds the "
                          f"limit of {max_samples} samples")


def encode(image: raster.Raster, quality: int | None = None, model_name: str | None = None,
           max_samples: int = 1 << 28) -> bytes:
    """A :class:`~walloc_cli.raster.Raster` -> ``.wlc`` bytes."""
    model = raster_model(model_name)
    quality = model.check_quality(DEFAULT_QUALITY if quality is None else quality)
    check_samples(image.width, image.height, image.bands, max_samples)
    if image.wavelengths is not None and len(image.wavelengths) != image.bands:
        raise WallocError(f"{len(image.wavelengths)} wavelengths given for {image.bands} bands")
    fields, sections = multiband.encode(model, image.array, quality)
    header = {"modality": MODALITY, "model": model.config.name, "weights": model.config.short_hash,
              "coder": multiband.CODER, "width": image.width, "height": image.height, **image.describe(), **fields}
    return container.pack(header, sections)


def encode_to_rate(image: raster.Raster, bits_per_sample: float, model_name: str | None = None,
                   max_samples: int = 1 << 28) -> tuple[bytes, list[str]]:
    """The highest quality whose file (header included) stays within ``bits_per_sample``."""
    samples = image.width * image.height * image.bands
    quality, wlc = highest_quality_within(lambda q: encode(image, q, model_name, max_samples),
                                          bits_per_sample * samples)
    if quality is None:
        return wlc, [f"even quality 1 needs {8 * len(wlc) / samples:.3f} bits per sample, above the "
                     f"{bits_per_sample} asked"]
    return wlc, [f"quality {quality}"]


def _int(header: dict[str, Any], key: str, low: int, high: int) -> int:
    value = header.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise container.FormatError(f"corrupt header (field {key!r})")
    return value


def layout(header: dict[str, Any], max_samples: int) -> dict[str, Any]:
    """Every field of a raster header checked against the others and the sample limit."""
    width, height = _int(header, "width", 1, 1 << 31), _int(header, "height", 1, 1 << 31)
    bands = _int(header, "bands", 1, raster.MAX_BANDS)
    strip_rows = _int(header, "strip_rows", 1, height - 1) if "strip_rows" in header else height
    levels = _int(header, "levels", 1, multiband.MAX_LEVELS)
    if levels != multiband.levels_for(strip_rows, width):
        raise container.FormatError("corrupt header (field 'levels')")
    check_samples(width, height, bands, max_samples)
    if header.get("dtype") not in raster.DTYPES:
        raise container.FormatError(f"corrupt header (unknown dtype {header.get('dtype')!r})")
    itembits = 8 * np.dtype(header["dtype"]).itemsize
    _int(header, "bit_depth", 1, itembits)
    if any(not isinstance(header.get(key), str) for key in ("container", "layout", "byteorder")) \
            or header["container"] not in raster.DEFAULT_SUFFIX or header["layout"] not in LAYOUTS \
            or header["byteorder"] not in ("<", ">"):  # strings first: a list or dict is unhashable
        raise container.FormatError("corrupt header (container, layout or byte order)")
    if "maxval" in header:
        _int(header, "maxval", 1, (1 << itembits) - 1)
    wavelengths = header.get("wavelengths")
    if wavelengths is not None and (not isinstance(wavelengths, list) or len(wavelengths) != bands
                                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               and math.isfinite(v) for v in wavelengths)):
        raise container.FormatError("corrupt header (field 'wavelengths')")
    tags = header.get("y4m_tags", "")
    if not isinstance(tags, str) or len(tags) > 1024 or (tags and not raster.Y4M_TAGS.fullmatch(tags)):
        raise container.FormatError("corrupt header (field 'y4m_tags')")
    _int(header, "quality", 1, 100)
    step = _int(header, "step", 1, 1 << 40)
    components = _int(header, "components", 0, bands)
    rotations = bool(_int(header, "rotations", 0, 1)) if "rotations" in header else False
    if rotations and not 2 <= components <= multiband.ROTATE_MAX:
        raise container.FormatError("corrupt header (field 'rotations')")
    return {"width": width, "height": height, "bands": bands, "levels": levels, "step": step,
            "components": components, "rotations": rotations, "strip_rows": strip_rows}


def _strips(box: container.Container, model: multiband.MultibandModel, fields: dict[str, Any]
            ) -> Iterator[tuple[tuple[int, int], tuple[np.ndarray, np.ndarray, list[np.ndarray],
                                                       list[np.ndarray] | None, list[np.ndarray]]]]:
    """Each strip's rows and its entropy-decoded content (:func:`multiband.decode`), one strip at
    a time (a generator: the caller keeps what it needs of a strip, then the next is decoded)."""
    height, rows = fields["height"], fields["strip_rows"]
    cut = rows < height
    if cut != ("strips" in box.sections):
        raise container.FormatError("corrupt file (strip index and header field 'strip_rows' disagree)")
    payloads = strips.split(box.sections["latents"], box.sections["strips"], height, rows) if cut \
        else [box.sections["latents"]]
    known = None
    for (r0, r1), payload in zip(strips.bounds(height, rows), payloads):
        decoded = multiband.decode(model, payload, fields["bands"], fields["components"], r1 - r0,
                                   fields["width"], fields["levels"], fields["rotations"], known)
        known = decoded[0], decoded[1]
        yield (r0, r1), decoded


def decode(box: container.Container, model: multiband.MultibandModel, max_samples: int) -> raster.Raster:
    """A verified container of modality ``raster`` -> :class:`~walloc_cli.raster.Raster`."""
    header = box.header
    fields = layout(header, max_samples)
    if "spectral" not in box.sections:
        raise container.FormatError("corrupt file (no spectral section)")
    ranges = multiband.parse_ranges(box.sections["spectral"], fields["bands"])
    dtype = np.dtype(header["dtype"])
    info = np.iinfo(dtype)
    if ranges["low"].min() < info.min or ranges["high"].max() > info.max:
        raise container.FormatError("corrupt spectral section (ranges outside the dtype)")
    array = np.empty((fields["height"], fields["width"], fields["bands"]), dtype)
    for (r0, r1), (matrix, bits, q, rotation, tables) in _strips(box, model, fields):
        array[r0:r1] = multiband.reconstruct(model, q, fields["step"], matrix, bits, ranges, r1 - r0,
                                             fields["width"], fields["levels"], dtype.name, rotation, tables)
    return raster.Raster(array, header["container"], header["layout"], header["byteorder"],
                         header["bit_depth"] if header["bit_depth"] < 8 * dtype.itemsize else 0,
                         header.get("maxval", 0), header.get("wavelengths"), header.get("y4m_tags", ""))


def latents(box: container.Container, model: multiband.MultibandModel, max_samples: int
            ) -> tuple[np.ndarray, float]:
    """The quantized coefficients by entropy decoding alone: (K, N) int32, each KLT component's
    subbands flattened in coding order (LL_D first) strip after strip, and their quantization step."""
    fields = layout(box.header, max_samples)
    flat = np.concatenate([b.reshape(b.shape[0], -1) for _, (_, _, q, _, _) in _strips(box, model, fields)
                           for b in q], axis=1)
    return flat.astype(np.int32), fields["step"] / multiband.STEP_UNIT


def info(header: dict[str, Any], file_bytes: int) -> dict[str, Any]:
    """Derived figures for ``walloc info``: bits per sample."""
    w, h, b = header.get("width"), header.get("height"), header.get("bands")
    if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (w, h, b)):
        return {"samples": w * h * b, "bits_per_sample": round(8 * file_bytes / (w * h * b), 4)}
    return {}
