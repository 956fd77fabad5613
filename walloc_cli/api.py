"""The Python API: bytes in, bytes out.  The CLI is a thin layer over this.

    from walloc_cli import api
    wlc = api.encode_image(open("photo.png", "rb").read())
    png = api.decode_to_bytes(wlc, ".png")

Data flows one way: media (pixels) -> model (latents) -> entropy (bytes) ->
container (file), and back.  No module below this one knows about files,
paths or the command line.
"""
from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Sequence

import numpy as np

from . import audio_ladder, container, entropy, meancolour, media, multiband, raster, raster_codec, rdoq, strips
from .errors import WallocError
from .quality import check_quality, highest_quality_within
from .model import DEFAULT_AUDIO_MODEL, DEFAULT_IMAGE_MODEL, CodecModel, contiguous_runs, find_model, load_model
from .threads import one_blas_thread

DEFAULT_MAX_PIXELS = 1 << 28  # 268 MP: far above any camera, far below an allocation bomb
DEFAULT_QUALITY = 75          # ladder models: cwebp's and cjxl's default, a good photo at ~1 bpp
BENCH_QUALITIES = (5, 15, 25, 35, 45, 55, 65, 75, 85, 95)  # `walloc bench`'s sweep


@dataclass(frozen=True)
class EncodeResult:
    data: bytes
    notes: list[str]


# -- images -----------------------------------------------------------------------------
ENCODE_WINDOW_SAMPLES = 1 << 22   # float64 samples per encoder window (≈ 32 MB + WPT temporaries)
AUDIO_WINDOW_SAMPLES = 1 << 20    # samples per audio encoder window (24 s at 44.1 kHz)
DECODE_WINDOW_POSITIONS = 1 << 15  # latent positions per decoder window: ≈ 0.5 GB working set


def _mirror(index: np.ndarray, size: int) -> np.ndarray:
    """Symmetric (mirror) padding as an index map: size, size+1, ... -> size-1, size-2, ...

    Mirroring keeps the border smooth so the padding costs few bits, and it works
    for images smaller than the padding (1×1 included).
    """
    index = index % (2 * size)
    return np.where(index < size, index, 2 * size - 1 - index)


def image_reader(rgb: np.ndarray, padded_width: int):
    """read(rows) for :meth:`CodecModel.to_latents`: padded rows as float32 (3, rows, W') in [-0.5, 0.5]."""
    height, width = rgb.shape[:2]
    columns = _mirror(np.arange(padded_width), width)

    def read(rows: np.ndarray) -> np.ndarray:
        window = rgb[_mirror(rows, height)]
        if padded_width != width:
            window = window[:, columns]
        # (C, rows, W) as a view of channel-last memory: the encoder's fast path wants (H, W, C)
        return (window.astype(np.float32) * np.float32(1 / 255.0) - np.float32(0.5)).transpose(2, 0, 1)

    return read


def image_padding(height: int, width: int, block: int) -> tuple[int, int]:
    """Rows and columns the encoder adds (mirrored) to reach whole blocks: the one rule the
    encoder pads by and a format-4 decoder derives ``pad`` by."""
    return (-height) % block, (-width) % block


def image_to_latents(model: CodecModel, rgb: np.ndarray, quality: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """uint8 (H, W, 3) -> integer latents (L, H'/2^J, W'/2^J) and the padding (rows, columns).

    Ladder models round each strip with that strip's contexts, as the file codes it
    (:mod:`walloc_cli.strips`), so these are exactly the latents :func:`file_latents` reads back."""
    cut, pad = image_strips(model, rgb, quality)
    parts = [latents for _, latents, _ in cut]
    return (parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)), pad


def image_strips(model: CodecModel, rgb: np.ndarray, quality: int | None = None, grey: bool | None = None,
                 effort: int = 1) -> tuple[Iterator[tuple[tuple[int, int], np.ndarray, entropy.KnownTables | None]],
                                           tuple[int, int]]:
    """uint8 (H, W, 3) -> (iterator of ((first, stop) latent rows, int32 latents of those rows,
    the coder's table choices the rounding made or None), padding).  Ladder models yield one
    strip at a time (:func:`walloc_cli.strips.rows_per_strip`), so a huge photo never has all
    its latents in memory; other models yield the whole grid.  A grey image's (``grey``, default
    :func:`is_grey`) colour-only latents are zeroed, as its file codes them
    (:attr:`CodecModel.colour_only_channels`).  Ladder models also yield the coder's table
    choices, made as the latents were rounded (:class:`entropy.KnownTables`: each channel's
    table set — with ``effort`` 2 the cheapest of the neighbouring anchors' — and the table
    of every value)."""
    block = model.config.block
    h, w = rgb.shape[:2]
    pad = image_padding(h, w, block)
    padded_w = w + pad[1]
    rows = (h + pad[0]) // block
    chunk = max(8, ENCODE_WINDOW_SAMPLES // (3 * padded_w * block))
    read = image_reader(rgb, padded_w)

    def generate() -> Iterator[tuple[tuple[int, int], np.ndarray, entropy.KnownTables | None]]:
        if not model.has_quality:
            with one_blas_thread():  # bit-exact whatever the caller's BLAS threads (threads.py)
                yield (0, rows), model.to_latents(read, h + pad[0], chunk, quality), None
            return
        q = model.ladder.check(quality)
        skip = skipped_channels(model, is_grey(rgb) if grey is None else grey)
        for r0, r1 in strips.bounds(rows, strips.rows_per_strip(padded_w // block)):
            with one_blas_thread():  # entered per strip: a suspended generator must not hold it
                scaled = model.to_latents(read, h + pad[0], chunk, q, scaled=True, start=r0, stop=r1)
                if skip is not None:  # zeroed before rounding, so the contexts it prices are the file's
                    scaled[skip] = 0
                # rounding that knows what each value costs in its context (the strip's own)
                known = entropy.KnownTables.empty(scaled.shape[0], scaled[0].size)
                latents = rdoq.rd_round(scaled, model.ladder, q, known=known, search=effort >= 2)
            del scaled
            if skip is not None:
                latents[skip] = 0
            yield (r0, r1), latents, known

    return generate(), pad


def window_rows(latent_width: int) -> int:
    """Latent rows per decoding window for an image ``latent_width`` positions wide: about
    :data:`DECODE_WINDOW_POSITIONS` positions (taller windows were 35 % slower on a 12 MP photo,
    their arrays outgrowing the caches), never fewer than 16 rows."""
    return max(16, DECODE_WINDOW_POSITIONS // max(1, latent_width))


def latents_to_image(model: CodecModel, latents: np.ndarray | strips.StripLatents, height: int, width: int,
                     quality: int | None = None, chunk: int | None = None,
                     mean_shift: Sequence[int] | None = None, mean: Sequence[int] | None = None) -> np.ndarray:
    """Integer latents -> uint8 (H, W, 3), decoded in windows of :func:`window_rows` latent rows
    (or ``chunk``, when smaller: a caller's memory limit).  Windows of the same height for a
    strip-coded file and for the whole grid: float products on some CPUs round differently for
    arrays of different heights (OpenBLAS on an AMD EPYC: 5 pixels of a 481×321 photo one level
    apart when its file was cut into strips of 16 rows and decoded strip by strip), so windows
    that follow the image's width alone give a file the same pixels however its encoder cut it.
    ``mean``: the original's mean colour (1/16 level); when given, the shift is solved on the
    decoded values so that the rounded and clipped pixels have that mean
    (:mod:`walloc_cli.meancolour`).  ``mean_shift`` (files of the session before): a fixed
    per-colour shift in 1/16 of a level, added before rounding."""
    shift = np.zeros(3) if mean_shift is None else np.asarray(mean_shift, np.float64) / meancolour.UNITS
    default = window_rows(latents.shape[2])
    chunk = default if chunk is None else min(chunk, default)

    def windows() -> Iterator[tuple[int, np.ndarray]]:
        """(first row, decoded levels (3, rows, width) before the shift) of each window."""
        row = 0
        for strip in model.from_latents(latents, chunk, quality):
            rows = min(strip.shape[1], height - row)
            if rows > 0:
                levels = strip[:, :rows, :width] + 0.5  # a new array: scaled in place, not copied again
                levels *= 255.0
                yield row, levels
            row += strip.shape[1]

    with one_blas_thread():  # the same pixels whatever the caller's BLAS threads (threads.py)
        if mean is not None:
            return meancolour.solved_pixels(windows(), height, width, mean, shift)
        rgb = np.empty((height, width, 3), np.uint8)
        for row, levels in windows():
            pixels = np.rint(levels + shift.reshape(3, 1, 1))
            rgb[row : row + levels.shape[1]] = np.clip(pixels, 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return rgb


# -- mean colour ---------------------------------------------------------------------------
# Dead-zone rounding pulls every latent toward zero, and the colour latents' zero is not the
# photo's own colour: at q 25 the mean colour of a validation photo moved by up to 11 levels
# (mean +2.6 red, −1.7 green), and clipping at black and white moves it again.  A file carries
# the original's mean colour (``mean``) and the decoder solves for the shift that gives its
# rounded, clipped pixels that mean (:mod:`walloc_cli.meancolour`).  Files of the session
# before carry ``mean_shift`` instead (the encoder's closed-form estimate, in 1/16 of a
# level, which ignored clipping): decoders still add it.
MEAN_SHIFT_LIMIT = 255 * meancolour.UNITS  # the legacy field's range, 1/16 level


def _mean_field(header: dict[str, Any]) -> list[int] | None:
    try:
        return meancolour.mean_field(header.get("mean"))
    except ValueError as error:
        raise container.FormatError(str(error)) from None


def _mean_shift_field(header: dict[str, Any]) -> list[int] | None:
    value = header.get("mean_shift")
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) != 3
            or any(not isinstance(v, int) or isinstance(v, bool) or abs(v) > MEAN_SHIFT_LIMIT for v in value)):
        raise container.FormatError("corrupt header (field 'mean_shift')")
    return value


def model_of_kind(name: str, modality: str) -> CodecModel | audio_ladder.LadderModel:
    model = load_model(name)
    if model.config.modality != modality:
        raise WallocError(f"model {name} codes {model.config.modality}, not {modality}")
    return model


def _header(model: CodecModel, modality: str, **fields: Any) -> dict[str, Any]:
    """The header fields every .wlc file has, plus the modality's own."""
    return {"modality": modality, "model": model.config.name, "weights": model.config.short_hash,
            "coder": _coder(model), **fields}


def quality_of(model: CodecModel, quality: int | None) -> int | None:
    """The quality a file of ``model`` is written at (None for single-point models)."""
    if not model.has_quality:
        if quality is not None:
            raise WallocError(f"model {model.config.name} has a single operating point (no --quality); "
                              f"use {DEFAULT_IMAGE_MODEL} for a quality ladder")
        return None
    return model.ladder.check(DEFAULT_QUALITY if quality is None else quality)


def _encode_latents(model: CodecModel, latents: np.ndarray, quality: int | None, effort: int = 1,
                    skip: np.ndarray | None = None, known: entropy.KnownTables | None = None) -> bytes:
    """Entropy-code latents; ``skip``: channels known to be zero, not coded (ladder models);
    ``known``: the table sets and tables the rounding chose, as :func:`image_strips` yields
    them.  ``effort`` 2 lets every channel search the neighbouring table sets, ``effort`` 1
    the first :data:`rdoq.SEARCHED_CHANNELS` (the DC among them) and the others code with
    their quality's own — with or without ``known``, whose choices follow the same rule."""
    if model.has_quality:
        own = None if effort >= 2 else model.ladder.CHOICES.index(0)
        return entropy.encode_with_context(latents, model.ladder.tables, model.ladder.table_sets(quality),
                                           model.ladder.depth, model.ladder.lifted, own, model.ladder.neighbour_cuts,
                                           skip, pyramid=model.ladder.dc_pyramid(quality), known=known,
                                           diagonal_cuts=model.ladder.diagonal_cuts, searched=rdoq.SEARCHED_CHANNELS)
    return entropy.encode(latents, model.tables_for(0))


def _decode_latents(model: CodecModel, payload: bytes, quality: int | None, shape: tuple[int, ...],
                    skip: np.ndarray | None = None, coder: str = entropy.CONTEXT_CODER) -> np.ndarray:
    """Inverse of :func:`_encode_latents`; ``coder``: the file's (ladder models read every
    context coder version their tables allow: :func:`_coders`)."""
    if model.has_quality:
        return entropy.decode_with_context(payload, model.ladder.tables, model.ladder.table_sets(quality),
                                           model.ladder.depth, shape, model.ladder.lifted, model.ladder.neighbour_cuts,
                                           skip, entropy.zero_flags_of(coder), _dc_pyramid(model, quality, coder),
                                           model.ladder.diagonal_cuts)
    return entropy.decode(payload, model.tables_for(0), shape)


def _dc_pyramid(model: CodecModel, quality: int | None, coder: str) -> entropy.DcPyramid | None:
    """The DC pyramid tables a payload of ``coder`` is decoded with (None: Haar levels)."""
    return model.ladder.dc_pyramid(quality) if entropy.pyramid_of(coder) else None


def encode_image_data(image: media.ImageData, model_name: str = DEFAULT_IMAGE_MODEL,
                      quality: int | None = None, effort: int = 1, max_pixels: int | None = None) -> bytes:
    """Code an :class:`~walloc_cli.media.ImageData` into ``.wlc`` bytes.

    ``quality`` (1–100, default :data:`DEFAULT_QUALITY`) applies to ladder models;
    single-point models such as ``rgb-16x`` refuse it.  Ladder models let the DC and the first
    :data:`rdoq.SEARCHED_CHANNELS` latent channels take the neighbouring anchor's table set that
    codes them in the fewest bits; ``effort`` 2 lets every channel do so (0.2–0.4 % smaller
    files at q 50 and up, for about a third more encoding work).
    ``max_pixels``: the largest coded grid accepted (None: what a decoder accepts by default).
    """
    model = model_of_kind(model_name, "image")
    quality = quality_of(model, quality)
    block = model.config.block
    pad = image_padding(image.height, image.width, block)
    _check_grid(image.width, image.height, image.width + pad[1], image.height + pad[0],
                DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)
    grey = is_grey(image.rgb)  # also every L / LA image (read as three equal channels)
    parts, _ = image_strips(model, image.rgb, quality, grey, effort)
    payloads: list[bytes] = []
    layout: dict[str, int] = {}
    correct_mean = model.has_quality and model.config.decoder_kind == "linear"
    skip = skipped_channels(model, grey)
    for _, latents, known in parts:  # one strip in memory at a time
        payloads.append(_encode_latents(model, latents, quality, effort, skip, known))
        columns = latents.shape[2]
        del latents
    sections = {"latents": b"".join(payloads)}
    if len(payloads) > 1:  # strip-coded (format version 2): the layout a decoder needs
        layout = {"strip_rows": strips.rows_per_strip(columns)}
        sections["strips"] = strips.pack_sizes(payloads)
    if image.alpha is not None:
        sections["alpha"] = zlib.compress(np.ascontiguousarray(image.alpha).tobytes(), 9)
    if image.icc:
        sections["icc"] = bytes(image.icc)
    if image.exif:
        sections["exif"] = bytes(image.exif)
    if image.xmp:
        sections["xmp"] = bytes(image.xmp)
    fields: dict[str, Any] = {} if quality is None else {"quality": quality}
    if correct_mean:
        fields["mean"] = meancolour.image_mean(image.rgb)  # the decoder solves its shift (meancolour.py)
    if grey:
        fields["grey"] = True  # colour latents not coded; decoded exactly grey (see decode_image)
    # format 4 and later leave out "pad" and "latent_shape": the size and the model determine them (_image_layout)
    header = _header(model, "image", width=image.width, height=image.height, mode=image.mode, **fields, **layout)
    return container.pack(header, sections)


def is_grey(rgb: np.ndarray) -> bool:
    """True when every pixel has R = G = B (a greyscale photo, or one saved as RGB: common for
    scans and JPEGs).  Such a file is flagged ``"grey": true``: ladder models leave the colour
    latents out (:attr:`CodecModel.colour_only_channels`: 27 % of a grey photo's bytes at
    q 25 went to coding their zeros), and the decoder gives back the mean of the decoded
    channels, repeated: exactly grey instead of tinted."""
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def skipped_channels(model: CodecModel, grey: bool) -> np.ndarray | None:
    """Latent channels a file leaves out: a grey image's colour-only channels under a ladder
    model (context-coded, so the channels can be skipped); None otherwise.  One rule for the
    encoder, the decoder and :func:`image_to_latents`."""
    return model.colour_only_channels if grey and model.has_quality else None


def _grey_field(header: dict[str, Any]) -> bool:
    grey = header.get("grey", False)
    if not isinstance(grey, bool):
        raise container.FormatError("corrupt header (field 'grey')")
    return grey


def encode_image(data: bytes, model_name: str = DEFAULT_IMAGE_MODEL, quality: int | None = None,
                 effort: int = 1, metadata: bool = True, max_pixels: int | None = None) -> EncodeResult:
    """Image file bytes (PNG, JPEG, WebP, TIFF, BMP, ...) -> ``.wlc`` bytes and notes.

    The ICC profile, EXIF and XMP are kept unless ``metadata`` is False (``--strip``)."""
    image = _read_image(data, metadata)
    return EncodeResult(encode_image_data(image, model_name, quality, effort, max_pixels), image.notes)


def _read_image(data: bytes, metadata: bool = True) -> media.ImageData:
    image = media.read_image(data)
    return image if metadata else image.without_metadata()


def _int_field(header: dict[str, Any], key: str, minimum: int = 0) -> int:
    value = header.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise container.FormatError(f"corrupt header (field {key!r})")
    return value


def _image_layout(header: dict[str, Any], model: CodecModel, max_pixels: int,
                  version: int) -> tuple[int, int, tuple[int, int, int]]:
    """Check every size field against the others *before* allocating anything.

    The padding (to whole blocks) and the latent shape follow from the size and the model;
    files before format 4 store them, format 4 and later leave them out (a header that has them
    anyway must agree)."""
    width, height = _int_field(header, "width", 1), _int_field(header, "height", 1)
    if width * height > max_pixels:
        raise WallocError(f"image of {width}×{height} pixels exceeds the limit of {max_pixels} pixels")
    block = model.config.block
    derived = version >= 4
    pad = header.get("pad", list(image_padding(height, width, block)) if derived else None)
    if (not isinstance(pad, list) or len(pad) != 2
            or any(not isinstance(p, int) or isinstance(p, bool) or not 0 <= p < block for p in pad)):
        raise container.FormatError("corrupt header (field 'pad')")
    _check_grid(width, height, width + pad[1], height + pad[0], max_pixels)
    if (height + pad[0]) % block or (width + pad[1]) % block:
        raise container.FormatError("corrupt header (padding does not match the size)")
    shape = (model.config.latent_channels, (height + pad[0]) // block, (width + pad[1]) // block)
    if header.get("latent_shape", list(shape) if derived else None) != list(shape):
        raise container.FormatError("corrupt header (latent shape does not match the size)")
    if header.get("mode") not in ("RGB", "L", "RGBA", "LA"):
        raise container.FormatError(f"corrupt header (unknown image mode {header.get('mode')!r})")
    return width, height, shape


def _check_grid(width: int, height: int, padded_width: int, padded_height: int, max_pixels: int) -> None:
    """The limit counts what is allocated: the grid padded to whole blocks, not width × height
    (a 1 × (2^28 − 1) image pads to 8 columns: eight times the pixels, 24 GiB of work arrays)."""
    if padded_width * padded_height > max_pixels:
        raise WallocError(f"image of {width}×{height} pixels is coded on a {padded_width}×{padded_height} grid "
                          f"(sides padded to whole blocks), above the limit of {max_pixels} pixels")


def _open(data: bytes, modality: str) -> tuple[container.Container, CodecModel]:
    """Verify a file, that it holds ``modality``, and find the exact weights it was written with."""
    box = container.unpack(data)
    return box, _model_of(box, modality)


def _model_of(box: container.Container, modality: str) -> CodecModel:
    """The exact weights an unpacked file was written with, once its header names ``modality``,
    a coder those weights write and (ladder models) a valid quality."""
    header = box.header
    if header.get("modality") != modality:
        raise WallocError(f"file holds {header.get('modality')!r}, not {modality}")
    name, weights = header.get("model"), header.get("weights")
    if not isinstance(name, str) or not isinstance(weights, str):
        raise container.FormatError("corrupt header (model fields)")
    # a raster's sections are checked per coded grid by raster_codec (band groups: latents.0, …)
    if modality != raster_codec.MODALITY and "latents" not in box.sections:
        raise container.FormatError("corrupt file (no latents section)")
    model = find_model(name, weights)
    if header.get("coder") not in _coders(model):
        raise container.FormatError(f"unsupported entropy coder {header.get('coder')!r}")
    if model.has_quality:
        quality = header.get("quality")
        if not isinstance(quality, int) or isinstance(quality, bool) or not 1 <= quality <= 100:
            raise container.FormatError("corrupt header (field 'quality')")
    elif "quality" in header:
        raise container.FormatError("corrupt header (quality given for a single-point model)")
    return model


def _coder(model: CodecModel) -> str:
    """The entropy coder files of ``model`` are written with."""
    return _coders(model)[-1]


def _coders(model: CodecModel) -> tuple[str, ...]:
    """The entropy coders ``model``'s files are read with, oldest first; the last is written."""
    if isinstance(model, audio_ladder.LadderModel):
        return (audio_ladder.CODER,)
    if isinstance(model, multiband.MultibandModel):
        return (multiband.CODER,)
    if not model.has_quality:
        return (entropy.CODER,)
    # versions 3 and 4 need the pyramid's tables, each its own kind (4: with pair contexts): weights
    # fitted before them write and read up to version 2; version 5 is the only one of weights
    # with diagonal contexts (their table layout is version 5's)
    if model.ladder.diagonal_cuts:
        return (entropy.CONTEXT_CODER,)
    older = entropy.CONTEXT_CODERS[:2]
    if model.ladder.pyramid is None:
        return older
    return (*older, entropy.CONTEXT_CODER_V4 if model.ladder.pyramid_pairs else entropy.CONTEXT_CODER_V3)


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> media.ImageData:
    """``.wlc`` bytes -> :class:`~walloc_cli.media.ImageData` (mode, alpha, ICC restored)."""
    box, model = _open(data, "image")
    header = box.header
    width, height, shape = _image_layout(header, model, max_pixels, box.version)
    quality = header.get("quality")
    mean_shift = _mean_shift_field(header)
    mean = _mean_field(header)
    latents = _image_latents(box, model, shape, quality)
    rgb = latents_to_image(model, latents, height, width, quality, mean_shift=mean_shift, mean=mean)
    del latents
    mode = header["mode"]
    if mode in ("L", "LA") or _grey_field(header):
        # the rounded mean of three uint8 values, (sum + 1) // 3 exactly (a sum/3 is never
        # a half), in integers: a float copy of a 96 MP image would be 1.2 GB
        gray = ((rgb.sum(axis=2, dtype=np.uint16) + 1) // 3).astype(np.uint8)
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
    alpha = None
    if mode in ("RGBA", "LA"):
        alpha = _alpha_plane(box.sections.get("alpha"), width, height)
    icc = box.sections.get("icc") or None
    return media.ImageData(np.ascontiguousarray(rgb), mode, alpha, icc, [], box.sections.get("exif") or None,
                           box.sections.get("xmp") or None)


def _image_latents(box: container.Container, model: CodecModel, shape: tuple[int, int, int],
                   quality: int | None) -> np.ndarray | strips.StripLatents:
    """An image file's latents as the decoder reads them.

    Ladder-model files of format version 2 taller than one strip are coded in strips
    (:mod:`walloc_cli.strips`; header field ``strip_rows``, section ``strips``): they decode
    strip by strip as the inverse transform asks for rows.  Every strip's payload is
    checked against its announced latents before anything is allocated.  A one-strip
    image, a version 1 file or a single-point model's is one whole-grid payload."""
    header = box.header
    skip = skipped_channels(model, _grey_field(header))
    coder, flags = header["coder"], entropy.zero_flags_of(header["coder"])
    cut = "strip_rows" in header or "strips" in box.sections
    if cut and (not model.has_quality or box.version < 2):
        raise container.FormatError("corrupt header (strips in a file that is not strip-coded)")
    if not cut:
        return _decode_latents(model, box.sections["latents"], quality, shape, skip, coder)
    strip_rows = _int_field(header, "strip_rows", 1)
    payloads = strips.split(box.sections["latents"], box.sections.get("strips"), shape[1], strip_rows)
    shapes = [(shape[0], r1 - r0, shape[2]) for r0, r1 in strips.bounds(shape[1], strip_rows)]
    sets = model.ladder.table_sets(quality)
    for payload, strip_shape in zip(payloads, shapes):  # a decompression bomb stops here
        entropy.check_context_payload(len(payload), model.ladder.tables, sets, strip_shape, model.ladder.neighbour_cuts,
                                      skip, flags, model.ladder.lifted, _dc_pyramid(model, quality, coder),
                                      model.ladder.diagonal_cuts)

    def decode(payload: bytes, strip_shape: tuple[int, int, int]) -> np.ndarray:
        return _decode_latents(model, payload, quality, strip_shape, skip, coder)

    if len(payloads) == 1:
        return decode(payloads[0], shape)
    reach = model.context_margin + model.decoder_radius
    # the channels any strip codes: the decoder's product then has the whole grid's shape
    nonzero = (np.logical_or.reduce([entropy.coded_channels(p, shape[0], skip, model.ladder.lifted) for p in payloads])
               if flags else None)
    return strips.StripLatents(payloads, shape, strip_rows, decode, reach, window_rows(shape[2]), nonzero)


def _alpha_plane(section: bytes | None, width: int, height: int) -> np.ndarray:
    if section is None:
        raise container.FormatError("corrupt file (alpha section missing)")
    expected = width * height
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(section, expected + 1)  # bounded: a zlib bomb stops here
    except zlib.error:
        raise container.FormatError("corrupt alpha section") from None
    if len(raw) != expected:
        raise container.FormatError("corrupt alpha section (wrong size)")
    return np.frombuffer(raw, np.uint8).reshape(height, width).copy()


def decode_to_bytes(data: bytes, suffix: str = ".png", max_pixels: int = DEFAULT_MAX_PIXELS,
                    output: media.ImageOutput = media.DEFAULT_OUTPUT, metadata: bool = True) -> bytes:
    """``.wlc`` bytes -> image file bytes in the format named by ``suffix``.

    ``output`` sets JPEG / WebP quality; ``metadata`` False leaves out the ICC profile, EXIF
    and XMP the file carries."""
    return decode_image_file(data, suffix, max_pixels, output, metadata)[0]


def decode_image_file(data: bytes, suffix: str = ".png", max_pixels: int = DEFAULT_MAX_PIXELS,
                      output: media.ImageOutput = media.DEFAULT_OUTPUT, metadata: bool = True
                      ) -> tuple[bytes, list[str]]:
    """As :func:`decode_to_bytes`, with notes (metadata the output format could not hold)."""
    fmt = media.output_format(suffix)
    image = decode_image(data, max_pixels)
    if not metadata:
        image = image.without_metadata()
    out = media.write_image(image, fmt, output)
    return out, image.notes


# -- audio ------------------------------------------------------------------------------
# Stereo is coded as mid = (L+R)/2 and side = (L−R)/2: music's two channels are mostly
# alike, so side is quiet and cheap, and the ladder masks side's noise with mid's energy.
# Mono is one signal; more than two channels are coded as independent mono signals.
# Model units are the samples themselves (full scale = ±1).  Two families code audio:
# the perceptual ladder (stereo-1x, the default: quality, --kbps, noise filling, no torch)
# and the learned single-point autoencoder (stereo-ms, kept so its files still decode).
MAX_AUDIO_CHANNELS = 64
DEFAULT_MAX_FRAMES = 1 << 34  # about 108 hours at 44.1 kHz
DEFAULT_AUDIO_QUALITY = 50    # stereo-1x: about 48 kbps for typical stereo music


def channel_mixes(channels: int, coding: str | None = None) -> tuple[str, np.ndarray, list[int]]:
    """(coding name, mix matrix (signals, channels), role of each signal: 0 mid/mono, 1 side).

    Stereo is mid-side unless ``coding`` says "left-right" (the ladder's choice for
    channels that are barely alike, see :func:`_stereo_coding`)."""
    if channels == 1:
        return "mono", np.ones((1, 1)), [0]
    if channels == 2 and coding != "left-right":
        return "mid-side", np.array([[0.5, 0.5], [0.5, -0.5]]), [0, 1]
    if channels == 2:
        return "left-right", np.eye(2), [0, 0]
    return "independent", np.eye(channels), [0] * channels


def _unmix(coding: str, signals: np.ndarray) -> np.ndarray:
    """(samples, signals) -> (samples, channels): inverse of :func:`channel_mixes`."""
    if coding == "mid-side":
        mid, side = signals[:, 0], signals[:, 1]
        return np.stack([mid + side, mid - side], axis=1)
    return signals


def _signals_reader(source: media.AudioSource, rows: np.ndarray, lead: int = 0):
    """read(index) -> mixed signals (len(rows), len(index)) at padded sample positions: sample
    ``index − lead`` of the file, mirrored beyond either end."""

    def read(index: np.ndarray) -> np.ndarray:
        frames = _mirror(index - lead, source.frames)
        if (np.diff(frames) == 1).all():  # the usual window: one contiguous read, no bookkeeping
            return (source.read(int(frames[0]), len(frames)) @ rows.T).T
        ordered = np.sort(frames)  # sort + dedupe: several times faster than np.unique's hashing here
        needed = ordered[np.concatenate(([True], np.diff(ordered) != 0))]
        parts = [source.read(a, b - a) for a, b in contiguous_runs(needed)]
        block = np.concatenate(parts, axis=0) @ rows.T
        return block[np.searchsorted(needed, frames)].T

    return read


def _signal_groups(channels: int, coding: str | None = None) -> list[tuple[np.ndarray, list[int]]]:
    """Signals coded together (one mix matrix and its roles each): a stereo pair; else one at a time."""
    coding, mix, roles = channel_mixes(channels, coding)
    if coding == "independent":
        return [(mix[i : i + 1], [0]) for i in range(channels)]
    return [(mix, roles)]


STEREO_READ_FRAMES = 1 << 20


def _stereo_coding(source: media.AudioSource, tune: str = audio_ladder.DEFAULT_TUNE) -> str:
    """The ladder's channel coding of a file: for stereo, one pass over its energies decides
    between mid-side and left-right (:func:`audio_ladder.stereo_coding`); tune psnr always
    takes mid-side, which concentrates the energy of alike channels (the MSE choice)."""
    if source.channels != 2 or tune == "psnr":
        return channel_mixes(source.channels)[0]
    mid = side = 0.0
    for start in range(0, source.frames, STEREO_READ_FRAMES):
        x = source.read(start, min(STEREO_READ_FRAMES, source.frames - start))
        mid += float(((x[:, 0] + x[:, 1]) ** 2).sum())
        side += float(((x[:, 0] - x[:, 1]) ** 2).sum())
    return audio_ladder.stereo_coding(mid, side)


def _check_channels(channels: int) -> list[str]:
    if channels > MAX_AUDIO_CHANNELS:
        raise WallocError(f"{channels} channels is more than walloc codes ({MAX_AUDIO_CHANNELS})")
    return [f"{channels} channels are coded as independent mono signals"] if channels > 2 else []


# The learned single-point model (stereo-ms) -----------------------------------------------
def audio_to_latents(model: CodecModel, source: media.AudioSource) -> tuple[np.ndarray, str, int]:
    """Integer latents of an opened audio file, window by window: (latents, channel coding, padding).

    Stereo gives mid latents then side latents, each ``latent_channels`` rows.
    """
    _check_channels(source.channels)
    block = model.config.block
    pad = (-source.frames) % block
    chunk = max(8, AUDIO_WINDOW_SAMPLES // block)
    coding, mixes, _ = channel_mixes(source.channels)
    width = model.config.latent_channels
    latents = np.empty((len(mixes) * width, (source.frames + pad) // block), np.int32)
    for i, mix in enumerate(mixes):
        read = _signals_reader(source, mix[None])
        latents[i * width : (i + 1) * width] = model.to_latents(read, source.frames + pad, chunk)
    return latents, coding, pad


def latents_to_audio(model: CodecModel, latents: np.ndarray, coding: str) -> Iterator[np.ndarray]:
    """Decoded audio (samples, channels) float64, window by window, from mixed-signal latents."""
    width = model.config.latent_channels
    chunk = max(8, DECODE_WINDOW_POSITIONS // 4)
    streams = [model.from_latents(latents[i * width : (i + 1) * width], chunk)
               for i in range(latents.shape[0] // width)]
    for windows in zip(*streams):
        yield _unmix(coding, np.stack([w[0] for w in windows], axis=1).astype(np.float64))


def _encode_audio_autoencoder(source: media.AudioSource, model: CodecModel) -> bytes:
    latents, coding, pad = audio_to_latents(model, source)
    tables = model.tables_for(*channel_mixes(source.channels)[2])
    header = _header(model, "audio", sample_rate=source.rate, channels=source.channels, frames=source.frames,
                     pad=pad, coding=coding, source_subtype=source.subtype, latent_shape=list(latents.shape))
    return container.pack(header, {"latents": entropy.encode(latents, tables)})


# The perceptual ladder (stereo-1x) ---------------------------------------------------------
def _encode_audio_ladder(source: media.AudioSource, model: audio_ladder.LadderModel, quality: int,
                         tune: str, coding: str) -> bytes:
    """Each signal group is coded in segments; the segments' byte lengths go in the ``index`` section.

    The audio is padded by mirroring: ``lead`` samples before it and ``pad`` after it.
    """
    lead = model.edge
    pad = model.edge + (-(source.frames + 2 * model.edge)) % model.unit
    length = lead + source.frames + pad
    segments: list[bytes] = []
    for rows, roles in _signal_groups(source.channels, coding):
        segments += model.encode(_signals_reader(source, rows, lead), length, roles, quality, tune)
    _, mix, _ = channel_mixes(source.channels, coding)
    p = model.params
    header = _header(model, "audio", sample_rate=source.rate, channels=source.channels, frames=source.frames,
                     lead=lead, pad=pad, coding=coding, source_subtype=source.subtype, quality=quality, tune=tune,
                     latent_shape=[len(mix), p.bands, length // p.block])
    index = np.array([len(s) for s in segments], "<u4").tobytes()
    return container.pack(header, {"latents": b"".join(segments), "index": index})


def _audio_ladder_to_kbps(source: media.AudioSource, model: audio_ladder.LadderModel, target_kbps: float,
                          tune: str) -> tuple[bytes, list[str]]:
    """The highest quality whose file (header included) fits ``target_kbps``: a binary search, ~7 encodes."""
    seconds = source.frames / source.rate
    coding = _stereo_coding(source, tune)
    quality, wlc = highest_quality_within(lambda q: _encode_audio_ladder(source, model, q, tune, coding),
                                          target_kbps * 1000 * seconds)
    if quality is None:
        return wlc, [f"even quality 1 needs {8 * len(wlc) / seconds / 1000:.1f} kbps, above the {target_kbps:g} asked"]
    return wlc, [f"quality {quality}"]


def encode_audio(data: bytes | str | Path, model_name: str | None = None, quality: int | None = None,
                 tune: str | None = None, target_kbps: float | None = None) -> EncodeResult:
    """Audio file bytes or path (WAV, FLAC, OGG, AIFF, MP3, ...) -> ``.wlc`` bytes and notes.

    ``quality`` 1–100 (default :data:`DEFAULT_AUDIO_QUALITY`) or ``target_kbps`` (the
    highest quality that fits) and ``tune`` ("perceptual", the default, or "psnr")
    apply to the ladder model; the single-point ``stereo-ms`` refuses them.  Given a
    path, the file is read window by window and never held in memory whole.
    """
    source = media.open_audio(data)
    model = model_of_kind(model_name or DEFAULT_AUDIO_MODEL, "audio")
    notes = _check_channels(source.channels)
    if not isinstance(model, audio_ladder.LadderModel):
        if quality is not None or tune is not None or target_kbps is not None:
            raise WallocError(f"model {model.config.name} has a single operating point (no --quality, --kbps "
                              f"or --tune); use {DEFAULT_AUDIO_MODEL} for a quality ladder")
        return EncodeResult(_encode_audio_autoencoder(source, model), notes)
    tune = audio_ladder.check_tune(audio_ladder.DEFAULT_TUNE if tune is None else tune)
    if target_kbps is not None:
        wlc, more = _audio_ladder_to_kbps(source, model, target_kbps, tune)
        return EncodeResult(wlc, notes + more)
    quality = check_quality(DEFAULT_AUDIO_QUALITY if quality is None else quality)
    return EncodeResult(_encode_audio_ladder(source, model, quality, tune, _stereo_coding(source, tune)), notes)


def _audio_layout(header: dict[str, Any], model, max_frames: int) -> tuple[int, int, int, str, tuple]:
    """Check every size field of an audio header against the others before allocating anything."""
    rate = _int_field(header, "sample_rate", 1)
    channels = _int_field(header, "channels", 1)
    frames = _int_field(header, "frames", 1)
    pad = _int_field(header, "pad", 0)
    if channels > MAX_AUDIO_CHANNELS:
        raise container.FormatError("corrupt header (channel count)")
    if frames > max_frames:
        raise WallocError(f"audio of {frames} frames exceeds the limit of {max_frames} frames")
    ladder = isinstance(model, audio_ladder.LadderModel)
    lead = _int_field(header, "lead", 0) if ladder else 0
    unit = model.unit if ladder else model.config.block
    limit = unit + 2 * model.edge if ladder else unit
    if pad >= limit or lead >= limit or (lead + frames + pad) % unit:
        raise container.FormatError("corrupt header (padding does not match the length)")
    coding, mixes, _ = channel_mixes(channels, header.get("coding") if ladder else None)
    if header.get("coding") != coding:
        raise container.FormatError("corrupt header (channel coding)")
    if ladder:
        if header.get("tune") not in audio_ladder.TUNES:
            raise container.FormatError("corrupt header (field 'tune')")
        p = model.params
        shape = (len(mixes), p.bands, (lead + frames + pad) // p.block)
    else:
        shape = (len(mixes) * model.config.latent_channels, (frames + pad) // model.config.block)
    if header.get("latent_shape") != list(shape):
        raise container.FormatError("corrupt header (latent shape does not match the length)")
    return rate, channels, frames, coding, shape


def _ladder_segments(box: container.Container, model: audio_ladder.LadderModel, channels: int,
                     length: int) -> list[list[bytes]]:
    """Split the payload into each signal group's segments, checking the index against the header."""
    index = box.sections.get("index")
    groups = len(_signal_groups(channels, box.header.get("coding")))
    per_group = model.segment_count(length)
    if index is None or len(index) != 4 * groups * per_group:
        raise container.FormatError("corrupt file (segment index does not match the length)")
    sizes = np.frombuffer(index, "<u4").astype(np.int64)
    payload = box.sections["latents"]
    if int(sizes.sum()) != len(payload) or (sizes % 4).any():
        raise container.FormatError("corrupt file (segment sizes do not match the payload)")
    ends = np.cumsum(sizes)
    pieces = [payload[e - n : e] for e, n in zip(ends.tolist(), sizes.tolist())]
    return [pieces[g * per_group : (g + 1) * per_group] for g in range(groups)]


def _ladder_windows(box: container.Container, model: audio_ladder.LadderModel, channels: int, frames: int,
                    coding: str) -> Iterator[np.ndarray]:
    """Decoded audio (samples, channels), window by window, the padding before it already dropped."""
    header = box.header
    lead = header["lead"]
    length = lead + frames + header["pad"]
    streams = [model.decode(segments, len(roles), length, roles, header["quality"], header["tune"])
               for segments, (_, roles) in zip(_ladder_segments(box, model, channels, length),
                                               _signal_groups(channels, coding))]
    position = 0
    for windows in zip(*streams):
        samples = _unmix(coding, np.concatenate(windows, axis=0).T)
        skip = min(len(samples), max(0, lead - position))
        position += len(samples)
        if skip < len(samples):
            yield samples[skip:]


def decode_audio_to(data: bytes, fileobj: BinaryIO, suffix: str = ".wav", subtype: str = "PCM_16",
                    max_frames: int = DEFAULT_MAX_FRAMES) -> None:
    """``.wlc`` bytes -> audio written to ``fileobj`` window by window (bounded memory)."""
    fmt = media.audio_output_format(suffix)
    box, model = _open(data, "audio")
    rate, channels, frames, coding, shape = _audio_layout(box.header, model, max_frames)
    if isinstance(model, audio_ladder.LadderModel):
        windows = _ladder_windows(box, model, channels, frames, coding)
    else:
        latents = entropy.decode(box.sections["latents"], model.tables_for(*channel_mixes(channels)[2]), shape)
        windows = latents_to_audio(model, latents, coding)
    sink = media.AudioSink(fileobj, fmt, rate, channels, subtype)
    written = 0
    try:
        for samples in windows:
            take = min(len(samples), frames - written)
            if take > 0:
                sink.write(samples[:take])
            written += len(samples)
    finally:
        sink.close()


def decode_audio(data: bytes, suffix: str = ".wav", subtype: str = "PCM_16",
                 max_frames: int = DEFAULT_MAX_FRAMES) -> bytes:
    """``.wlc`` bytes -> audio file bytes (WAV unless ``suffix`` says otherwise)."""
    buf = io.BytesIO()
    decode_audio_to(data, buf, suffix, subtype, max_frames)
    return buf.getvalue()


def encode_image_to_bpp(data: bytes, target_bpp: float, model_name: str = DEFAULT_IMAGE_MODEL,
                        effort: int = 1, metadata: bool = True, max_pixels: int | None = None
                        ) -> EncodeResult:
    """The highest quality whose file fits ``target_bpp`` (file bytes, header included).

    Binary search over q = 1…100 (size grows with q): about 7 encodes.  Falls
    back to q = 1 with a note if even that is larger.  Metadata (kept unless ``metadata``
    is False) counts in the file's size.
    """
    image = _read_image(data, metadata)
    model = model_of_kind(model_name, "image")
    if not model.has_quality:
        raise WallocError(f"model {model_name} has a single operating point (no --bpp)")
    pixels = image.width * image.height
    quality, wlc = highest_quality_within(lambda q: encode_image_data(image, model_name, q, effort, max_pixels),
                                          target_bpp * pixels)
    notes = list(image.notes)
    if quality is None:
        notes.append(f"even quality 1 needs {8 * len(wlc) / pixels:.3f} bpp, above the {target_bpp} asked")
    else:
        notes.append(f"quality {quality}")
    return EncodeResult(wlc, notes)


def input_modality(data: bytes, name_hint: str = "") -> str:
    """"image", "raster" (N-band or deeper than 8 bits: :mod:`walloc_cli.raster`) or "audio" for an
    input file: by its name's extension, else by sniffing its bytes."""
    suffix = Path(name_hint).suffix.lower()
    if suffix not in media.AUDIO_SUFFIXES and raster.is_raster(data, suffix):
        return "raster"
    audio = suffix in media.AUDIO_SUFFIXES or (suffix not in media.IMAGE_SUFFIXES and media.looks_like_audio(data))
    return "audio" if audio else "image"


def encode_bytes(data: bytes, name_hint: str = "", model_name: str | None = None,
                 quality: int | None = None, target_bpp: float | None = None, effort: int = 1,
                 target_kbps: float | None = None, tune: str | None = None, metadata: bool = True,
                 max_pixels: int | None = None) -> EncodeResult:
    """Image or audio bytes -> ``.wlc``; the kind is told by the file name, else by sniffing.

    ``quality`` applies to both; ``target_bpp`` and ``effort`` to images, ``target_kbps`` and
    ``tune`` to audio — an option that does not apply to a file is noted, so one call can
    code a folder of photos and songs.  Metadata (an image's ICC profile, EXIF and XMP, a
    sound's tags) is kept unless ``metadata`` is False.  ``max_pixels``: the largest image
    (pixels) or N-band raster (samples) accepted (None: what a decoder accepts by default).
    """
    modality = input_modality(data, name_hint)
    audio = modality == "audio"
    notes = ignored_options("audio" if audio else "image", target_bpp, target_kbps, tune)
    if modality == "raster":
        result = encode_raster(data, name_hint, model_name, quality, target_bpp,
                               DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)
    elif audio:
        result = encode_audio(data, model_name, quality, tune, target_kbps)
        if metadata:
            result = EncodeResult(attach_tags(result.data, media.read_audio_tags(data)), result.notes)
    elif target_bpp is not None:
        result = encode_image_to_bpp(data, target_bpp, model_name or DEFAULT_IMAGE_MODEL, effort, metadata,
                                     max_pixels)
    else:
        result = encode_image(data, model_name or DEFAULT_IMAGE_MODEL, quality, effort, metadata, max_pixels)
    return EncodeResult(result.data, result.notes + notes)


def encode_raster(data: bytes, name_hint: str = "", model_name: str | None = None, quality: int | None = None,
                  target_bps: float | None = None, max_samples: int = DEFAULT_MAX_PIXELS) -> EncodeResult:
    """N-band or high-bit-depth file bytes (.npy, TIFF, 16-bit PNG/PNM) -> ``.wlc``; ``target_bps``
    (``--bpp`` for these files) is bits per *sample*.  An image model name is ignored with a note."""
    image = raster.read_raster(data, Path(name_hint).suffix)
    notes = list(image.notes)
    if model_name is not None and load_model(model_name).config.modality != raster_codec.MODALITY:
        notes.append(f"model {model_name} codes 8-bit images; this one is coded with {raster_codec.DEFAULT_RASTER_MODEL}")
        model_name = None
    if target_bps is not None:
        wlc, more = raster_codec.encode_to_rate(image, target_bps, model_name, max_samples)
        return EncodeResult(wlc, notes + more)
    return EncodeResult(raster_codec.encode(image, quality, model_name, max_samples), notes)


def decode_raster(data: bytes, max_samples: int = DEFAULT_MAX_PIXELS) -> raster.Raster:
    """``.wlc`` bytes of modality ``raster`` -> :class:`~walloc_cli.raster.Raster` (dtype, bands, layout)."""
    box, model = _open(data, raster_codec.MODALITY)
    return raster_codec.decode(box, model, max_samples)


def decode_raster_file(data: bytes, suffix: str | None = None, max_samples: int = DEFAULT_MAX_PIXELS) -> bytes:
    """``.wlc`` bytes -> a file of the recorded container type (or the one ``suffix`` names)."""
    return raster.write_raster(decode_raster(data, max_samples), suffix)


def attach_tags(wlc: bytes, tags: dict[str, str]) -> bytes:
    """A ``.wlc`` file with an audio file's tags (title, artist, ...) added as its ``tags`` section
    (docs/FORMAT.md); the file as it was when there are none."""
    tags = media.clean_tags(tags)
    if not tags:
        return wlc
    box = container.unpack(wlc)
    return container.pack(box.header, {**box.sections, "tags": media.tags_section(tags)}, box.version)


def file_tags(data: bytes) -> dict[str, str]:
    """The audio tags a ``.wlc`` file carries ({} when none)."""
    section = container.unpack(data).sections.get("tags")
    return media.parse_tags_section(section) if section else {}


def ignored_options(modality: str, target_bpp: float | None, target_kbps: float | None,
                    tune: str | None) -> list[str]:
    """Notes for options given that do not apply to this kind of file (a batch may mix photos and songs)."""
    if modality == "audio" and target_bpp is not None:
        return ["--bpp applies to images; ignored for this audio file (use --kbps)"]
    if modality == "image" and (target_kbps is not None or tune is not None):
        return ["--kbps and --tune apply to audio; ignored for this image"]
    return []


def modality_of(data: bytes) -> str:
    """"image" or "audio", from a ``.wlc`` file's header (the file is fully verified)."""
    modality = container.unpack(data).header.get("modality")
    if modality not in ("image", "audio", raster_codec.MODALITY):
        raise container.FormatError(f"corrupt header (unknown modality {modality!r})")
    return modality


# -- latents ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FileLatents:
    """The integer latents stored in a ``.wlc`` file and how to read them as floats."""

    latents: np.ndarray   # int32 (L, H', W') for images, (signals·L, T') for audio
    step: float | np.ndarray  # float latents = latents · step (ladder models: per-channel (L, 1, 1))
    model: str
    modality: str
    header: dict[str, Any]


def file_latents(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, max_frames: int = DEFAULT_MAX_FRAMES) -> FileLatents:
    """The latents of a ``.wlc`` file by entropy decoding alone: no neural decoder, no torch."""
    modality = modality_of(data)
    box, model = _open(data, modality)
    if modality == raster_codec.MODALITY:
        latents, step = raster_codec.latents(box, model, max_pixels)
        return FileLatents(latents, step, model.config.name, modality, box.header)
    if modality == "image":
        _, _, shape = _image_layout(box.header, model, max_pixels, box.version)
        quality = box.header.get("quality")
        latents = _image_latents(box, model, shape, quality)
        if isinstance(latents, strips.StripLatents):
            latents = latents.full()
        return FileLatents(latents, model.ladder.steps(quality)[:, None, None] if model.has_quality else 1.0,
                           model.config.name, modality, box.header)
    _, channels, frames, _, shape = _audio_layout(box.header, model, max_frames)
    if isinstance(model, audio_ladder.LadderModel):
        latents, steps = _ladder_latents(box, model, channels, frames)
        return FileLatents(latents, steps, model.config.name, modality, box.header)
    tables = model.tables_for(*channel_mixes(channels)[2])
    return FileLatents(entropy.decode(box.sections["latents"], tables, shape), 1.0, model.config.name, modality,
                       box.header)


def _ladder_latents(box: container.Container, model: audio_ladder.LadderModel, channels: int,
                    frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer latents (signals, bands, positions) of a ladder file and each one's step (float32)."""
    header = box.header
    length = header["lead"] + frames + header["pad"]
    latents, steps = [], []
    for segments, (_, roles) in zip(_ladder_segments(box, model, channels, length),
                                    _signal_groups(channels, header["coding"])):
        parts = [model.decode_segment(data, i, len(roles), length, roles, header["quality"], header["tune"])
                 for i, data in enumerate(segments)]
        latents.append(np.concatenate([q for q, _, _ in parts], axis=2))
        steps.append(np.concatenate([audio_ladder.per_coefficient_steps(k, model.params) for _, _, k in parts],
                                    axis=2))
    return np.concatenate(latents), np.concatenate(steps)


# -- inspection -------------------------------------------------------------------------
def info(data: bytes) -> dict[str, Any]:
    """Header fields plus derived figures (bytes, bpp).  Reads no model, except for the fields a
    format-4 image leaves out of its header (``pad``, ``latent_shape``: :func:`_derived_image_fields`)."""
    box = container.unpack(data)
    out: dict[str, Any] = {"format_version": box.version, **box.header}
    out["file_bytes"] = len(data)
    out["sections"] = {name: len(b) for name, b in box.sections.items()}
    kept = [label for name, label in (("icc", "ICC profile"), ("exif", "EXIF"), ("xmp", "XMP"), ("tags", "tags"))
            if box.sections.get(name)]
    out["metadata"] = kept
    if "tags" in box.sections:
        out["tags"] = media.parse_tags_section(box.sections["tags"])
    header = box.header
    if header.get("modality") == "audio":
        rate, frames = header.get("sample_rate"), header.get("frames")
        if isinstance(rate, int) and isinstance(frames, int) and rate > 0:
            try:  # any int fits a JSON header: a duration too long or too short for a float is left out
                seconds = frames / rate
                out["duration_s"] = round(seconds, 3)
                if seconds > 0:
                    out["kbps"] = round(8 * len(data) / seconds / 1000, 2)
            except (OverflowError, ZeroDivisionError):
                out.pop("duration_s", None)
    if header.get("modality") == raster_codec.MODALITY:
        out.update(raster_codec.info(header, len(data)))
    if box.header.get("modality") == "image":
        w, h = box.header.get("width"), box.header.get("height")
        if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0:
            out["bpp"] = round(8 * len(data) / (w * h), 4)
            out["latent_bpp"] = round(8 * len(box.sections.get("latents", b"")) / (w * h), 4)
            out.update(_derived_image_fields(box))
    return out


def _derived_image_fields(box: container.Container) -> dict[str, Any]:
    """``pad`` and ``latent_shape`` of an image file whose header leaves them out (format 4
    derives them from the size and the model), so that ``walloc info`` shows them for every
    version; by the decoder's own rule (:func:`_image_layout`).  Nothing when the header has
    them, or when the file's model is not installed or the file does not open: ``info`` still
    shows the rest."""
    if "latent_shape" in box.header:
        return {}
    try:
        model = _model_of(box, "image")
        width, height, shape = _image_layout(box.header, model, DEFAULT_MAX_PIXELS, box.version)
    except WallocError:
        return {}
    return {"pad": list(image_padding(height, width, model.config.block)), "latent_shape": list(shape)}
