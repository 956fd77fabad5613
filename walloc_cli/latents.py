"""Latents as a product: the integer latents of an image, a sound or a ``.wlc`` file.

WaLLoC's latents are a compact, spatially arranged representation that models
can learn from directly (the "compressed learning" use of the codec).  This
module gets them without the neural decoder, so it never imports torch:

* images and audio: the numpy encoder (wavelet packet transform + 1×1 projection
  + rounding), exactly the latents ``walloc encode`` would store;
* ``.wlc`` files: entropy decoding only (:func:`walloc_cli.api.file_latents`).

It also holds the plumbing of ``walloc latents`` (which output goes where, and
writing ``.npy`` / ``.npz`` safely); the click command in :mod:`walloc_cli.cli`
only parses options.

Layout of what comes out (also in the README):

* image: int32 ``(L, H'/B, W'/B)`` where ``B = 2^J`` (8 for ``rgb-16x``) and
  ``H' × W'`` is the image mirror-padded at the bottom and right to multiples of
  ``B``; latent ``[:, i, j]`` describes pixels ``[i·B:(i+1)·B, j·B:(j+1)·B]``.
* audio: int32 ``(S·L, T'/B)``, ``S`` signals stacked on axis 0: mono = 1 signal,
  stereo = mid (L+R)/2 then side (L−R)/2, more channels = one signal each;
  ``T'`` is the length padded (mirrored) to a multiple of ``B`` (256 for ``stereo-ms``).
* ``--float``: float32 dequantized latents, the decoder's input: ``latents · step``
  (quality-ladder models: per-channel steps, values nudged toward zero to their
  bins' centroids, as :meth:`walloc_cli.model.CodecModel.dequantize` does).

The default image model is :data:`walloc_cli.model.DEFAULT_LATENT_MODEL` (the
compact 12-channel representation), whatever ``walloc encode`` stores by default.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from . import audio_ladder, api, batch, container, media
from .errors import WallocError
from .model import DEFAULT_AUDIO_LATENT_MODEL, DEFAULT_LATENT_MODEL, CodecModel

# Single-point models round the encoder's output to integers: their step is 1.
NATIVE_STEP = 1.0


@dataclass(frozen=True)
class Latents:
    """Integer latents plus what is needed to use them: the model, its quality, the size facts."""

    values: np.ndarray               # int32, layout in the module docstring
    model: CodecModel
    quality: int | None = None       # quality-ladder models only
    meta: dict[str, Any] = field(default_factory=dict)  # JSON-able: modality, model, step, sizes, padding
    steps: np.ndarray | None = None  # the audio ladder's step of every latent (they vary by band and frame)

    def as_float(self) -> np.ndarray:
        """Dequantized float32 latents: exactly what the decoder takes (values · step for single-point models;
        for the audio ladder, values · their own steps: the wavelet packet coefficients before noise filling)."""
        if self.steps is not None:
            return (self.values * self.steps).astype(np.float32)
        return self.model.dequantize(self.values, self.quality)


# -- what an input is ----------------------------------------------------------------------
def is_wlc(head: bytes, name: str = "") -> bool:
    """A ``.wlc`` file: its magic bytes, or its suffix (so a damaged one still gets a .wlc error message)."""
    return bytes(head[:4]) == container.MAGIC or Path(name).suffix.lower() == ".wlc"


def kind_of(name: str, head: bytes) -> str:
    """"wlc", "audio" or "image": magic bytes first, then the suffix, then sniffing (as encode does)."""
    if is_wlc(head, name):
        return "wlc"
    suffix = Path(name).suffix.lower()
    if suffix in media.AUDIO_SUFFIXES or (suffix not in media.IMAGE_SUFFIXES and media.looks_like_audio(head)):
        return "audio"
    return "image"


def _model(model: str | CodecModel | None, modality: str) -> CodecModel:
    if isinstance(model, CodecModel):
        return model
    default = DEFAULT_LATENT_MODEL if modality == "image" else DEFAULT_AUDIO_LATENT_MODEL
    return api.model_of_kind(model or default, modality)


def step_of(model: CodecModel, quality: int | None) -> float | list[float]:
    """The quantization step, JSON-able: one number, or one per channel for quality-ladder models."""
    if quality is None or not model.has_quality:
        return NATIVE_STEP
    return [float(s) for s in model.ladder.steps(quality)]


def _model_meta(model: CodecModel, modality: str, quality: int | None) -> dict[str, Any]:
    cfg = model.config
    meta = {"modality": modality, "model": cfg.name, "weights": cfg.short_hash, "block": cfg.block,
            "step": step_of(model, quality)}
    if quality is not None:
        meta["quality"] = quality
    return meta


# -- latents of each kind -----------------------------------------------------------------------
def image_latents(image: media.ImageData, model: str | CodecModel | None = None,
                  quality: int | None = None) -> Latents:
    """The latents ``walloc encode`` would store for this image (alpha is not part of them).

    ``quality`` applies to quality-ladder models (default: encode's default) and is
    refused by single-point models, as by ``walloc encode``.
    """
    codec = _model(model, "image")
    quality = api.quality_of(codec, quality)
    values, pad = api.image_to_latents(codec, image.rgb, quality)
    meta = {**_model_meta(codec, "image", quality), "height": image.height, "width": image.width,
            "pad": list(pad), "mode": image.mode}
    return Latents(values, codec, quality, meta)


def audio_latents(source: media.AudioSource, model: str | CodecModel | None = None) -> Latents:
    """The latents ``walloc encode`` would store for this audio, read window by window.

    The same path as :func:`walloc_cli.api.encode_audio` (same mixes, windows and
    padding), minus the entropy coding.
    """
    codec = _model(model, "audio")
    values, coding, pad = api.audio_to_latents(codec, source)
    meta = {**_model_meta(codec, "audio", None), "sample_rate": source.rate, "channels": source.channels,
            "frames": source.frames, "pad": pad, "coding": coding,
            "signals": values.shape[0] // codec.config.latent_channels}
    return Latents(values, codec, None, meta)


_HEADER_FACTS = {"image": ("height", "width", "pad", "mode"),
                 "audio": ("sample_rate", "channels", "frames", "pad", "coding")}


def wlc_latents(data: bytes, model_name: str | None = None) -> Latents:
    """The latents stored in a ``.wlc`` file: entropy decoding only, no decoder net, no torch.

    ``model_name``, when given, must be the file's model: the latents of a file
    are those of the model it was written with, and silently handing back another
    model's latents would mislabel them.
    """
    found = api.file_latents(data)
    if model_name is not None and model_name != found.model:
        raise WallocError(f"written with model {found.model}, not {model_name}")
    header = found.header
    codec = api.load_model(found.model)  # already loaded (and its weights checked) by file_latents
    if found.modality == "raster":  # N-band (#15): (K KLT components, their subbands flattened)
        meta = {"modality": "raster", "model": codec.config.name, "weights": codec.config.short_hash,
                "step": found.step, "quality": header["quality"], "layout": "components × subband coefficients",
                **{k: header[k] for k in ("width", "height", "bands", "dtype", "levels", "components", "wavelengths")
                   if k in header}}
        return Latents(found.latents, codec, header["quality"], meta, steps=np.float32(found.step))
    if isinstance(codec, audio_ladder.LadderModel):  # (signals, 256 frequency bands, positions)
        cfg = codec.config
        meta = {"modality": "audio", "model": cfg.name, "weights": cfg.short_hash, "block": cfg.block,
                "step": "per latent (--float multiplies by it)", "quality": header["quality"],
                "tune": header["tune"], "signals": int(found.latents.shape[0]),
                **{k: header[k] for k in _HEADER_FACTS["audio"] if k in header}}
        return Latents(found.latents, codec, header["quality"], meta, steps=found.step)
    quality = header.get("quality") if codec.has_quality else None
    meta = {**_model_meta(codec, found.modality, quality),
            **{k: header[k] for k in _HEADER_FACTS[found.modality] if k in header}}
    if found.modality == "audio":
        meta["signals"] = found.latents.shape[0] // codec.config.latent_channels
    return Latents(found.latents, codec, quality, meta)


def read_latents(source: str | os.PathLike, model_name: str | None = None, quality: int | None = None) -> Latents:
    """Latents of a file (image, audio or ``.wlc``), or of stdin when ``source`` is ``"-"``.

    Audio files given by path are read window by window, never whole.  ``quality``
    applies to images coded with a quality-ladder model.
    """
    name = os.fspath(source)
    if name == batch.STDIO:
        data = batch.read_input(name)
        head = data[:12]
    else:
        data = None
        with open(name, "rb") as f:
            head = f.read(12)
    kind = kind_of(name if name != batch.STDIO else "", head)
    if kind == "audio":
        audio = media.open_audio(data if data is not None else name)
        try:
            return audio_latents(audio, model_name)
        except RuntimeError as exc:  # libsndfile failing mid-file (a truncated FLAC, say)
            raise media.MediaError(f"unreadable audio ({str(exc).splitlines()[0]})") from None
        finally:
            audio.handle.close()
    if data is None:
        data = batch.read_input(name)
    if kind == "wlc":
        return wlc_latents(data, model_name)
    if api.input_modality(data, name if name != batch.STDIO else "") == "raster":  # N-band, 9–16 bits (#15)
        return wlc_latents(api.encode_raster(data, name, model_name, quality).data)
    return image_latents(media.read_image(data), model_name, quality)


# -- the `walloc latents` command -----------------------------------------------------------
DEFAULT_ARCHIVE = "latents.npz"


class UsageProblem(Exception):
    """The request as a whole cannot be carried out (nothing has been done); exit status 2."""


@dataclass(frozen=True)
class Plan:
    """Where the latents go: one ``.npy`` per input (``targets``) or one ``.npz`` (``archive``)."""

    inputs: tuple[str, ...]
    targets: tuple[str, ...] = ()   # per input, a path or "-" (stdout); empty for an archive
    archive: str | None = None      # the .npz path (or "-")
    keys: tuple[str, ...] = ()      # per input, its array's name in the archive


def archive_keys(inputs: tuple[str, ...]) -> tuple[str, ...]:
    """Each input's array name in a ``.npz``: its file name, which must be unique."""
    keys = tuple("stdin" if s == batch.STDIO else Path(s).name for s in inputs)
    seen: dict[str, str] = {}
    for source, key in zip(inputs, keys):
        if key in seen:
            raise UsageProblem(f"{seen[key]} and {source} have the same file name {key!r}; "
                               "write one .npy per input with -o DIR/")
        seen[key] = source
    return keys


def plan(inputs: tuple[str, ...], output: str | None) -> Plan:
    """Decide the outputs before any work (rules in the ``walloc latents`` help)."""
    several = len(inputs) > 1
    if output is not None and output != batch.STDIO and (Path(output).is_dir() or output.endswith(("/", os.sep))):
        if batch.STDIO in inputs:
            raise UsageProblem("stdin input needs -o FILE.npy, -o FILE.npz or -o -")
        targets = tuple(str(Path(output) / Path(s).with_suffix(".npy").name) for s in inputs)
        if len(set(targets)) != len(targets):
            raise UsageProblem("several inputs have the same name; write them to one .npz instead")
        return Plan(inputs, targets)
    if output is None:
        output = DEFAULT_ARCHIVE if several else None
    if output is not None and output.lower().endswith(".npz"):
        return Plan(inputs, archive=output, keys=archive_keys(inputs))
    if several:
        what = "-o - (stdout) takes exactly one input" if output == batch.STDIO else f"{output}: several inputs"
        raise UsageProblem(f"{what}; write several to -o FILE.npz or -o DIR/")
    source = inputs[0]
    if output is None:
        output = batch.STDIO if source == batch.STDIO else str(Path(source).with_suffix(".npy"))
    elif output != batch.STDIO and not output.lower().endswith(".npy"):
        raise UsageProblem(f"{output}: the output must end in .npy or .npz, be a folder (DIR/), or be -")
    if output != batch.STDIO and source != batch.STDIO and os.path.realpath(output) == os.path.realpath(source):
        raise UsageProblem(f"{source}: output would overwrite the input")
    return Plan(inputs, (output,))


def npy_writer(array: np.ndarray) -> Callable[[Any], None]:
    """Payload for :func:`walloc_cli.batch.write_atomic`: one array as ``.npy``."""
    return lambda f: np.save(f, array, allow_pickle=False)


def npz_writer(arrays: dict[str, np.ndarray]) -> Callable[[Any], None]:
    """Payload for :func:`walloc_cli.batch.write_atomic`: a compressed ``.npz`` (latents are small integers)."""
    return lambda f: np.savez_compressed(f, **arrays)


def meta_array(meta: dict[str, Any]) -> np.ndarray:
    """Metadata as a 0-d unicode array: readable with ``allow_pickle=False``, unlike an object array."""
    return np.array(json.dumps(meta, sort_keys=True))


def problem_of(exc: BaseException) -> str | None:
    """The one-line message of an expected failure, or None for a bug (to be raised)."""
    if isinstance(exc, (WallocError, FileExistsError)):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, PermissionError):
        return f"permission denied ({exc.filename})"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return None


def _exists_problem(target: str, force: bool) -> str | None:
    if target != batch.STDIO and Path(target).exists() and not force:
        return f"{target} exists (use --force to overwrite)"
    return None


class Report(Protocol):
    """What :func:`run_command` tells the user (the CLI's Reporter)."""

    def error(self, source: str, message: str) -> None: ...
    def detail(self, message: str) -> None: ...


def _attempt(source: str, work: Callable[[], Any], report: Report) -> tuple[bool, Any]:
    """Run ``work``; an expected failure becomes one error line and (False, None)."""
    try:
        return True, work()
    except Exception as exc:
        message = problem_of(exc)
        if message is None:
            raise
    report.error(source, message)
    return False, None


DTYPES = ("int8", "int16", "int32", "float32")


def cast(values: np.ndarray, dtype: str | None) -> np.ndarray:
    """Latents stored as ``dtype`` (None: as they come, int32 or float32 with ``--float``).

    An integer type that cannot hold every value is refused, never wrapped around or
    clipped: ``rgb-16x`` latents of photos span about −40…48 and fit int8, but a
    quality-ladder model at high quality, or an unusual image, may not.
    """
    if dtype is not None and dtype not in DTYPES:
        raise WallocError(f"unknown dtype {dtype!r} (one of {', '.join(DTYPES)})")
    if dtype is None or values.dtype == np.dtype(dtype):
        return values
    if dtype == "float32":
        return values.astype(np.float32)
    if values.dtype.kind == "f":
        raise WallocError(f"float latents cannot be stored as {dtype} (drop --float, or use --dtype float32)")
    info = np.iinfo(dtype)
    low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
    if low < info.min or high > info.max:
        wider = next(d for d in DTYPES if d == "float32" or (np.iinfo(d).min <= low and high <= np.iinfo(d).max))
        raise WallocError(f"latents span {low}..{high}, outside {dtype}'s {info.min}..{info.max} "
                          f"(use --dtype {wider})")
    return values.astype(dtype)


def _array_of(source: str, as_float: bool, model_name: str | None, quality: int | None, dtype: str | None = None
              ) -> tuple[np.ndarray, Latents]:
    found = read_latents(source, model_name, quality)
    return cast(found.as_float() if as_float else found.values, dtype), found


LATENT_SOURCES = media.IMAGE_SUFFIXES | media.AUDIO_SUFFIXES | {".wlc"}


def accepts(path: Path) -> bool:
    """What ``walloc latents -r`` takes from a folder: images, audio and .wlc files (by suffix)."""
    return path.suffix.lower() in LATENT_SOURCES


def job_work(job: batch.Job, options: dict) -> tuple[batch.Payload, list[str], str, str]:
    """One input of a ``.npy``-per-input run (``-r``, ``-o DIR/``, ``-j``, ``--dask``): the CLI's
    batch runner calls it, checks the target before and writes the payload atomically after."""
    array, _ = _array_of(job.source, options["float"], options["model"], options["quality"], options["dtype"])
    return npy_writer(array), [], f"{array.dtype} {tuple(array.shape)}", job.target


def skip_existing(jobs: list[batch.Job]) -> tuple[list[batch.Job], int]:
    """``-n``: the jobs whose output does not exist yet, and how many were dropped.

    Outputs are only ever published complete (temporary file, then a link), so an
    existing output is a finished one and an interrupted run resumes where it stopped.
    """
    keep = [j for j in jobs if j.problem or j.target == batch.STDIO or not os.path.lexists(j.target)]
    return keep, len(jobs) - len(keep)


def run_command(plan_: Plan, as_float: bool, model_name: str | None, quality: int | None, force: bool,
                report: Report, dtype: str | None = None) -> int:
    """Compute and write the latents of every input, past failures; returns how many inputs failed.

    A failed input costs only its own output: with an archive, the others still go into it.
    """
    try:
        return _write_all(plan_, as_float, model_name, quality, force, report, dtype)
    except KeyboardInterrupt:
        batch.remove_partial_outputs([*plan_.targets, plan_.archive or ""])
        raise


def _write_all(plan_: Plan, as_float: bool, model_name: str | None, quality: int | None, force: bool,
               report: Report, dtype: str | None = None) -> int:
    failed = 0
    if plan_.archive is None:
        for source, target in zip(plan_.inputs, plan_.targets):
            def one(source: str = source, target: str = target) -> None:
                problem = _exists_problem(target, force)
                if problem:  # before the work, not after it
                    raise FileExistsError(problem)
                array, _ = _array_of(source, as_float, model_name, quality, dtype)
                batch.write_atomic(target, npy_writer(array), force)
                report.detail(f"{source} -> {target}: {array.dtype} {tuple(array.shape)}")

            failed += not _attempt(source, one, report)[0]
        return failed
    problem = _exists_problem(plan_.archive, force)
    if problem:
        report.error(plan_.archive, problem)
        return len(plan_.inputs)
    arrays: dict[str, np.ndarray] = {}
    for source, key in zip(plan_.inputs, plan_.keys):
        ok, got = _attempt(source, lambda source=source: _array_of(source, as_float, model_name, quality, dtype),
                              report)
        if not ok:
            failed += 1
            continue
        array, found = got
        arrays[key] = array
        arrays[f"{key}.meta"] = meta_array(found.meta)
        report.detail(f"{source} -> {plan_.archive}[{key}]: {array.dtype} {tuple(array.shape)}")
    if arrays and not _attempt(plan_.archive, lambda: batch.write_atomic(plan_.archive, npz_writer(arrays), force),
                               report)[0]:
        return len(plan_.inputs)
    return failed
