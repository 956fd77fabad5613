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

from . import blocks, container, multiband, raster, strips
from .errors import WallocError
from .model import load_model
from .quality import highest_quality_within

DEFAULT_RASTER_MODEL = "nband-1x"
DEFAULT_QUALITY = 75
MODALITY = "raster"
LAYOUTS = ("hw", "hwb", "bhw", "pages", "rgb", "hw-f", "hwb-f")
GROUP_FIELDS = ("step", "levels", "components", "rotations", "strip_rows")  # a band group's, after its 4 block numbers


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
    """A :class:`~walloc_cli.raster.Raster` -> ``.wlc`` bytes.

    Bands that repeat each sample over k×k blocks (a stack resampled by nearest neighbour:
    :mod:`walloc_cli.blocks`) are coded on their own coarse grid, one group per block size;
    a raster without such bands is coded whole, as it always was."""
    model = raster_model(model_name)
    quality = model.check_quality(DEFAULT_QUALITY if quality is None else quality)
    check_samples(image.width, image.height, image.bands, max_samples)
    if image.wavelengths is not None and len(image.wavelengths) != image.bands:
        raise WallocError(f"{len(image.wavelengths)} wavelengths given for {image.bands} bands")
    groups = blocks.groups(image.array)
    if len(groups) == 1 and groups[0][0].trivial:
        fields, sections = multiband.encode(model, image.array, quality)
    else:
        fields, sections = _encode_groups(model, image.array, quality, groups)
    header = {"modality": MODALITY, "model": model.config.name, "weights": model.config.short_hash,
              "coder": multiband.CODER, "width": image.width, "height": image.height, **image.describe(), **fields}
    return container.pack(header, sections)


def _encode_groups(model: multiband.MultibandModel, array: np.ndarray, quality: int,
                   groups: list[tuple[blocks.Blocks, list[int]]]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Each group of bands thinned to its blocks and coded as a raster of its own.

    The step is the raster's (its quality over its whole dynamic range) divided by
    √(block area): a coarse sample's error is repeated over its block, so equal slopes of
    distortion against rate — the MSE optimum across groups — need a step that much finer
    (on Sentinel-2 scene 0, BD-rate vs JPEG 2000: area^0.25 −67.0 %, ^0.5 −67.9 %, ^0.75 −66.9 %).

    The full-resolution group is coded first; each coarse group is then also tried as its
    difference from a prediction made from the decoded full-resolution bands (section
    ``predict``: :func:`blocks.predict`), and kept so when that is smaller.  The encoder decodes
    the full-resolution group for this, so it does so only while that group fits one strip."""
    step = model.step_of(quality, int(array.max()) - int(array.min()))
    height, width = array.shape[:2]
    reference = next((g for g, (b, _) in enumerate(groups) if b.trivial), None)
    decoded = None
    entries: list[list[int]] = [[] for _ in groups]
    coded: list[dict[str, bytes]] = [{} for _ in groups]
    for g in sorted(range(len(groups)), key=lambda i: i != reference):
        b, bands = groups[g]
        coarse = blocks.thin(array[:, :, bands], b)
        own = max(1, int(round(step / math.sqrt(b.factor_y * b.factor_x))))
        fields, parts = multiband.encode(model, coarse, quality, step=own)
        if decoded is not None:
            sums, counts = blocks.block_sums(decoded, b)
            weights = blocks.fit_weights(coarse, sums, counts)
            residual = coarse.astype(np.int64) - blocks.predict(sums, counts, weights)
            small = residual.size and -(1 << 15) <= residual.min() and residual.max() < (1 << 15)
            residual = residual.astype(np.int16 if small else np.int32)  # its ranges: 2 or 4 bytes each
            tried = multiband.encode(model, residual, quality, step=own)
            tried[1]["predict"] = weights.astype("<i2").tobytes()
            if sum(map(len, tried[1].values())) < sum(map(len, parts.values())):
                fields, parts = tried
        entries[g] = [*b, *(int(fields.get(key, 0)) for key in GROUP_FIELDS)]
        coded[g] = parts
        if g == reference and len(groups) > 1 and height * width * len(bands) <= multiband.STRIP_SAMPLES:
            coding = _coding({k: v for k, v in fields.items() if k in GROUP_FIELDS}, height, width, len(bands))
            decoded = _decode_grid(container.Container({}, parts), model, coding, array.dtype, container.VERSION)
    block_of = [0] * array.shape[2]
    for g, (_, bands) in enumerate(groups):
        for band in bands:
            block_of[band] = g
    sections = {f"{name}.{g}": data for g, parts in enumerate(coded) for name, data in parts.items()}
    return {"quality": quality, "block_of": block_of, "groups": entries}, sections


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


def _coding(entry: dict[str, Any], height: int, width: int, bands: int, version: int = container.VERSION
            ) -> dict[str, Any]:
    """The coding fields of one coded grid (the raster, or one group's coarse grid) checked."""
    strip_rows = _int(entry, "strip_rows", 1, height - 1) if "strip_rows" in entry else height
    levels = _int(entry, "levels", 1, multiband.MAX_LEVELS)
    margin = multiband.LEVELS_MARGIN if version >= 3 else multiband.LEVELS_MARGIN_V2
    if levels != multiband.levels_for(strip_rows, width, margin):
        raise container.FormatError("corrupt header (field 'levels')")
    step = _int(entry, "step", 1, 1 << 40)
    components = _int(entry, "components", 0, bands)
    rotations = bool(_int(entry, "rotations", 0, 1)) if "rotations" in entry else False
    if rotations and not 2 <= components <= multiband.ROTATE_MAX:
        raise container.FormatError("corrupt header (field 'rotations')")
    return {"width": width, "height": height, "bands": bands, "levels": levels, "step": step,
            "components": components, "rotations": rotations, "strip_rows": strip_rows}


def _groups(header: dict[str, Any], height: int, width: int, bands: int, version: int
            ) -> list[tuple[blocks.Blocks, list[int], dict[str, Any]]]:
    """The band groups of a file with block-replicated bands: fields ``groups`` (per group: block
    factor and offset along rows and columns, then GROUP_FIELDS) and ``block_of`` (each band's group)."""
    entries, block_of = header.get("groups"), header.get("block_of")
    if not isinstance(entries, list) or not 1 <= len(entries) <= bands or not isinstance(block_of, list) \
            or len(block_of) != bands or any(not isinstance(g, int) or isinstance(g, bool)
                                             or not 0 <= g < len(entries) for g in block_of):
        raise container.FormatError("corrupt header (fields 'groups', 'block_of')")
    out = []
    for g, entry in enumerate(entries):
        if not isinstance(entry, list) or len(entry) != 4 + len(GROUP_FIELDS):
            raise container.FormatError("corrupt header (field 'groups')")
        named = dict(zip(("factor_y", "factor_x", "offset_y", "offset_x", *GROUP_FIELDS), entry))
        if named["strip_rows"] == 0:  # 0: the group is coded in one piece
            del named["strip_rows"]
        fy, fx = (_int(named, key, 1, blocks.MAX_FACTOR) for key in ("factor_y", "factor_x"))
        b = blocks.Blocks(fy, fx, _int(named, "offset_y", 0, fy - 1), _int(named, "offset_x", 0, fx - 1))
        members = [band for band, of in enumerate(block_of) if of == g]
        if not members:
            raise container.FormatError("corrupt header (a band group without bands)")
        out.append((b, members, _coding(named, blocks.coarse_size(height, fy, b.offset_y),
                                        blocks.coarse_size(width, fx, b.offset_x), len(members), version)))
    return out


def layout(header: dict[str, Any], max_samples: int, version: int = container.VERSION) -> dict[str, Any]:
    """Every field of a raster header checked against the others and the sample limit.

    ``parts``: (blocks, bands, coding fields) of each coded grid — one covering every band, or
    one per group of block-replicated bands (fields ``groups`` and ``block_of``)."""
    width, height = _int(header, "width", 1, 1 << 31), _int(header, "height", 1, 1 << 31)
    bands = _int(header, "bands", 1, raster.MAX_BANDS)
    check_samples(width, height, bands, max_samples)
    if "groups" in header or "block_of" in header:
        parts = _groups(header, height, width, bands, version)
    else:
        parts = [(blocks.NONE, list(range(bands)), _coding(header, height, width, bands, version))]
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
    return {"width": width, "height": height, "bands": bands, "parts": parts}




def _part_box(box: container.Container, index: int) -> container.Container:
    """The sections of one coded grid under their plain names (``latents.2`` -> ``latents``)."""
    if "groups" not in box.header:
        return box
    suffix = f".{index}"
    return container.Container(box.header, {name[: -len(suffix)]: data for name, data in box.sections.items()
                                            if name.endswith(suffix)}, box.version)


def _strips(box: container.Container, model: multiband.MultibandModel, fields: dict[str, Any]
            ) -> Iterator[tuple[tuple[int, int], tuple[np.ndarray, np.ndarray, list[np.ndarray],
                                                       list[np.ndarray] | None, list[np.ndarray]]]]:
    """Each strip's rows and its entropy-decoded content (:func:`multiband.decode`), one strip at
    a time (a generator: the caller keeps what it needs of a strip, then the next is decoded).
    ``box`` holds one coded grid's sections, ``fields`` its coding fields (:func:`_coding`)."""
    height, rows = fields["height"], fields["strip_rows"]
    cut = rows < height
    if "latents" not in box.sections:
        raise container.FormatError("corrupt file (no latents section)")
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


def _decode_grid(part: container.Container, model: multiband.MultibandModel, coding: dict[str, Any],
                 dtype: np.dtype, version: int, out: np.ndarray | None = None,
                 columns: list[int] | None = None) -> np.ndarray:
    """One coded grid's samples (rows, columns, its bands) of ``dtype``: written strip by strip
    into ``out[..., columns]`` when given (the full-resolution grid goes straight into the
    output), else into a new array."""
    if "spectral" not in part.sections:
        raise container.FormatError("corrupt file (no spectral section)")
    ranges = multiband.parse_ranges(part.sections["spectral"], coding["bands"], dtype if version >= 3 else None)
    info = np.iinfo(dtype)
    if ranges["low"].min() < info.min or ranges["high"].max() > info.max:
        raise container.FormatError("corrupt spectral section (ranges outside the dtype)")
    grid = np.empty((coding["height"], coding["width"], coding["bands"]), dtype) if out is None else out
    for (r0, r1), (matrix, bits, q, rotation, tables) in _strips(part, model, coding):
        rows = multiband.reconstruct(model, q, coding["step"], matrix, bits, ranges, r1 - r0, coding["width"],
                                     coding["levels"], dtype.name, rotation, tables)
        if columns is None:
            grid[r0:r1] = rows
        else:
            grid[r0:r1, :, columns] = rows
    return grid


def _reference(parts: list[tuple[blocks.Blocks, list[int], dict[str, Any]]]) -> int | None:
    """Index of the full-resolution group, the one coarse groups are predicted from (if any)."""
    return next((i for i, (b, _, _) in enumerate(parts) if b.trivial), None)


def _weights(section: bytes, coarse_bands: int, reference_bands: int) -> np.ndarray:
    if len(section) != 2 * coarse_bands * reference_bands:
        raise container.FormatError("corrupt file (prediction weights of the wrong size)")
    return np.frombuffer(section, "<i2").reshape(coarse_bands, reference_bands)


def decode(box: container.Container, model: multiband.MultibandModel, max_samples: int) -> raster.Raster:
    """A verified container of modality ``raster`` -> :class:`~walloc_cli.raster.Raster`."""
    header = box.header
    fields = layout(header, max_samples, box.version)
    dtype = np.dtype(header["dtype"])
    array = np.empty((fields["height"], fields["width"], fields["bands"]), dtype)
    parts = fields["parts"]
    reference = _reference(parts)
    # the full-resolution group first: the coarse groups' predictions are made from it
    for index in sorted(range(len(parts)), key=lambda i: i != reference):
        b, bands, coding = parts[index]
        part = _part_box(box, index)
        if b.trivial:
            _decode_grid(part, model, coding, dtype, box.version, array, None if len(bands) == fields["bands"] else bands)
            continue
        if "predict" not in part.sections:
            array[:, :, bands] = blocks.grow(_decode_grid(part, model, coding, dtype, box.version), b,
                                             fields["height"], fields["width"])
            continue
        if reference is None:
            raise container.FormatError("corrupt file (a predicted band group but no full-resolution group)")
        ref_bands = parts[reference][1]
        weights = _weights(part.sections["predict"], len(bands), len(ref_bands))
        # the residual's ranges are int16 when they fit, else int32: the spectral section's size says which
        wide = len(part.sections.get("spectral", b"")) == 12 * len(bands)
        residual = _decode_grid(part, model, coding, np.dtype(np.int32 if wide else np.int16), box.version)
        sums, counts = blocks.block_sums(array, b, ref_bands)
        info = np.iinfo(dtype)
        coarse = np.clip(residual.astype(np.int64) + blocks.predict(sums, counts, weights), info.min, info.max)
        coarse = coarse.astype(dtype)
        array[:, :, bands] = blocks.grow(coarse, b, fields["height"], fields["width"])
    return raster.Raster(array, header["container"], header["layout"], header["byteorder"],
                         header["bit_depth"] if header["bit_depth"] < 8 * dtype.itemsize else 0,
                         header.get("maxval", 0), header.get("wavelengths"), header.get("y4m_tags", ""))


def latents(box: container.Container, model: multiband.MultibandModel, max_samples: int
            ) -> tuple[np.ndarray, float | np.ndarray]:
    """The quantized coefficients by entropy decoding alone: (K, N) int32, each KLT component's
    subbands flattened in coding order (LL_D first) strip after strip, and their quantization step.

    A file with groups of block-replicated bands gives each group's columns after the previous
    group's (K the largest group's, fewer components padded with zero rows) and a step per
    column, (1, N): the groups are coded at different steps."""
    fields = layout(box.header, max_samples, box.version)
    flats, steps = [], []
    for index, (_, _, coding) in enumerate(fields["parts"]):
        part = _part_box(box, index)
        subbands = [b.reshape(b.shape[0], b.shape[1] * b.shape[2])  # explicit sizes: K may be 0
                    for _, (_, _, q, _, _) in _strips(part, model, coding) for b in q]
        flats.append(np.concatenate(subbands, axis=1))
        steps.append(coding["step"] / multiband.STEP_UNIT)
    if len(flats) == 1:
        return flats[0].astype(np.int32), steps[0]
    rows = max(f.shape[0] for f in flats)
    out = np.concatenate([np.pad(f, ((0, rows - f.shape[0]), (0, 0))) for f in flats], axis=1).astype(np.int32)
    return out, np.concatenate([np.full(f.shape[1], s, np.float64) for f, s in zip(flats, steps)])[None, :]


def info(header: dict[str, Any], file_bytes: int) -> dict[str, Any]:
    """Derived figures for ``walloc info``: bits per sample."""
    w, h, b = header.get("width"), header.get("height"), header.get("bands")
    out: dict[str, Any] = {}
    if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (w, h, b)):
        out = {"samples": w * h * b, "bits_per_sample": round(8 * file_bytes / (w * h * b), 4)}
    groups, block_of = header.get("groups"), header.get("block_of")
    if isinstance(groups, list) and isinstance(block_of, list):
        try:  # "4 bands at full resolution, 6 in 2×2 blocks, 3 in 6×6 blocks"
            out["band_groups"] = ", ".join(
                f"{block_of.count(g)} {'at full resolution' if entry[:2] == [1, 1] else f'in {entry[0]}×{entry[1]} blocks'}"
                for g, entry in enumerate(groups))
        except (TypeError, IndexError):  # a corrupt field: decoding says so; info shows the rest
            pass
    return out
