"""Rate–distortion benchmark: walloc against JPEG, WebP and AVIF (``walloc bench``).

Every codec sweeps a range of quality settings on every image of a folder;
each (image, codec, quality) gives one :class:`Measurement`: bits per pixel of
the real file (headers included, as a user would store it), PSNR, MS-SSIM and
wall-clock encode / decode time in this process.  The per-quality means over
all images form one rate–distortion curve per codec, and the Bjøntegaard delta
rate (BD-rate) condenses two curves into one number: how many percent more
(positive) or fewer (negative) bits the tested codec needs than the anchor for
the same quality, averaged over the quality range both curves cover.

Metric conventions (stated in the printed output and the JSON, because papers
differ and numbers are only comparable under the same convention):

* PSNR: 8-bit RGB, MSE over all three channels together, peak 255; the mean
  over images is the arithmetic mean of per-image PSNR (in dB).
* MS-SSIM: Wang, Simoncelli & Bovik 2003 (11×11 Gaussian, σ = 1.5, K1 = 0.01,
  K2 = 0.03, L = 255, five scales with weights 0.0448, 0.2856, 0.3001, 0.2363,
  0.1333, 2×2 average pooling between scales), computed on R, G and B separately
  and averaged — not on luma, so colour errors count.  Negative contrast terms
  are clamped to 0 (as TensorFlow and pytorch-msssim do) so that a fractional
  power never gives NaN.  Images whose shorter side is below 176 pixels get
  fewer scales (weights renormalised); below 11 pixels the window shrinks.
* MS-SSIM in dB: −10·log10(1 − MS-SSIM) of the per-quality mean MS-SSIM; this
  stretches the region near 1 where modern codecs differ, and is the quality
  axis of the MS-SSIM BD-rate.

Everything here is a plain function or a small class over numpy arrays, so the
metrics can be tested on their own and used from Python without the CLI;
scipy is deliberately not needed, and matplotlib only for :func:`plot`.
"""
from __future__ import annotations

import io
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from PIL import Image, ImageOps, features

from .errors import WallocError
from .media import IMAGE_SUFFIXES

# -- metrics ---------------------------------------------------------------------------

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
PEAK = 255.0


def psnr(reference: np.ndarray, distorted: np.ndarray, peak: float = PEAK) -> float:
    """PSNR in dB with the MSE taken over every sample (all three RGB channels together).

    Returns ``inf`` for identical images: a lossless result is not an error,
    and callers that fit curves drop non-finite points themselves.
    """
    if reference.shape != distorted.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {distorted.shape}")
    mse = float(np.mean((reference.astype(np.float64) - distorted.astype(np.float64)) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(peak * peak / mse)


def _gaussian(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable 2-D filter over the last two axes, 'valid' mode (no padding, as Wang et al.).

    A sum of shifted slices: k multiply-adds per axis over the whole stack at
    once, which in numpy is faster than any per-pixel window and needs no scipy.
    """
    k = len(taps)
    h, w = x.shape[-2] - k + 1, x.shape[-1] - k + 1
    rows = taps[0] * x[..., 0:h, :]
    for i in range(1, k):
        rows += taps[i] * x[..., i : i + h, :]
    out = taps[0] * rows[..., :, 0:w]
    for j in range(1, k):
        out += taps[j] * rows[..., :, j : j + w]
    return out


def _ssim_terms(x: np.ndarray, y: np.ndarray, taps: np.ndarray, c1: float, c2: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean SSIM and mean contrast-structure term of (C, H, W) float arrays."""
    stats = _filter_valid(np.stack([x, y, x * x, y * y, x * y]), taps)
    mu_x, mu_y, e_xx, e_yy, e_xy = stats
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov = e_xy - mu_x * mu_y
    cs = (2.0 * cov + c2) / (var_x + var_y + c2)
    luminance = (2.0 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    return (luminance * cs).mean(axis=(-2, -1)), cs.mean(axis=(-2, -1))


def _pool2(x: np.ndarray) -> np.ndarray:
    """2×2 average pooling over the last two axes; an odd last row / column is dropped."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    return 0.25 * (x[..., 0::2, 0::2] + x[..., 1::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 1::2])


def ms_ssim_scales(height: int, width: int) -> tuple[int, int]:
    """(scales, window) that fit an image: the coarsest scale must hold one whole window.

    Five scales need a shorter side of at least 11·2⁴ = 176 pixels; smaller
    images use fewer scales rather than failing, and images under 11 pixels a
    smaller (odd) window.
    """
    side = min(height, width)
    if side < 1:
        raise ValueError("empty image")
    window = min(SSIM_WINDOW, side if side % 2 else side - 1)
    scales = 1
    while scales < len(MS_SSIM_WEIGHTS) and side // 2**scales >= window:
        scales += 1
    return scales, window


def ms_ssim(reference: np.ndarray, distorted: np.ndarray, peak: float = PEAK) -> float:
    """Multi-scale SSIM of two (H, W) or (H, W, C) images, the mean of the per-channel values.

    See the module docstring for the exact convention.  1.0 for identical
    images; falls towards 0 as the distortion grows.
    """
    if reference.shape != distorted.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {distorted.shape}")
    if reference.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) image, not shape {reference.shape}")
    x = reference.astype(np.float64)
    y = distorted.astype(np.float64)
    if x.ndim == 2:
        x, y = x[None], y[None]
    else:
        x, y = np.moveaxis(x, -1, 0), np.moveaxis(y, -1, 0)
    scales, window = ms_ssim_scales(x.shape[1], x.shape[2])
    taps = _gaussian(window, SSIM_SIGMA)
    weights = np.asarray(MS_SSIM_WEIGHTS[:scales])
    if scales < len(MS_SSIM_WEIGHTS):  # the full set is used as published (its sum is 1.0001)
        weights = weights / weights.sum()
    c1, c2 = (SSIM_K1 * peak) ** 2, (SSIM_K2 * peak) ** 2
    value = np.ones(x.shape[0])
    for scale in range(scales):
        ssim, cs = _ssim_terms(x, y, taps, c1, c2)
        if scale < scales - 1:
            value *= np.maximum(cs, 0.0) ** weights[scale]
            x, y = _pool2(x), _pool2(y)
        else:
            value *= np.maximum(ssim, 0.0) ** weights[scale]
    return float(value.mean())


def ms_ssim_db(value: float) -> float:
    """−10·log10(1 − MS-SSIM): a quality axis in dB that opens up the range near 1."""
    return math.inf if value >= 1.0 else -10.0 * math.log10(1.0 - value)


# -- Bjøntegaard delta rate --------------------------------------------------------------

@dataclass(frozen=True)
class BDRate:
    """A BD-rate in percent over the quality interval [low, high], or ``value=None`` and why."""

    value: float | None
    low: float | None = None
    high: float | None = None
    reason: str = ""

    def describe(self, unit: str = "dB") -> str:
        if self.value is None:
            return f"n/a ({self.reason})"
        return f"{self.value:+.1f} % over {self.low:.2f}–{self.high:.2f} {unit}"


def _rd_curve(rates: Sequence[float], qualities: Sequence[float]) -> tuple[np.ndarray, np.ndarray] | str:
    """Clean points for a fit: finite, positive rate, sorted by quality, duplicate qualities merged.

    Merging (mean of log rate) keeps a codec whose settings collapse onto the
    same output from making the least-squares problem singular.  Returns a
    reason string when fewer than 4 distinct points remain.
    """
    r = np.asarray(rates, dtype=np.float64)
    q = np.asarray(qualities, dtype=np.float64)
    if r.shape != q.shape:
        raise ValueError("rates and qualities differ in length")
    keep = np.isfinite(r) & np.isfinite(q) & (r > 0)
    r, q = r[keep], q[keep]
    unique, inverse = np.unique(q, return_inverse=True)
    if len(unique) < 4:
        return f"{len(unique)} distinct point{'s' if len(unique) != 1 else ''}, a cubic fit needs 4"
    log_rate = np.bincount(inverse, weights=np.log(r)) / np.bincount(inverse)
    return unique, log_rate


def bd_rate(anchor_rates: Sequence[float], anchor_qualities: Sequence[float],
            test_rates: Sequence[float], test_qualities: Sequence[float]) -> BDRate:
    """Bjøntegaard delta rate of *test* against *anchor* (VCEG-M33), in percent.

    log(rate) is fitted as a cubic polynomial of quality for each curve, both
    fits are integrated over the quality interval that both curves cover, and
    the mean difference d gives (exp(d) − 1)·100 %: negative means the test
    codec needs fewer bits for the same quality.  Integrating only over the
    overlap avoids extrapolating a cubic.  Never raises for bad curves: too few
    points or no overlap give ``value=None`` with the reason.
    """
    anchor = _rd_curve(anchor_rates, anchor_qualities)
    test = _rd_curve(test_rates, test_qualities)
    if isinstance(anchor, str) or isinstance(test, str):
        reason = "; ".join(f"{who}: {c}" for who, c in (("anchor", anchor), ("test", test)) if isinstance(c, str))
        return BDRate(None, reason=reason)
    (qa, ra), (qt, rt) = anchor, test
    low, high = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    if not high > low:
        return BDRate(None, reason=f"no overlap (anchor {qa[0]:.2f}–{qa[-1]:.2f}, test {qt[0]:.2f}–{qt[-1]:.2f})")
    # Polynomial.fit maps the qualities onto [-1, 1] first: a well-conditioned fit even at 40 dB.
    fit_a = np.polynomial.Polynomial.fit(qa, ra, 3).integ()
    fit_t = np.polynomial.Polynomial.fit(qt, rt, 3).integ()
    mean_diff = ((fit_t(high) - fit_t(low)) - (fit_a(high) - fit_a(low))) / (high - low)
    return BDRate(float((math.exp(mean_diff) - 1.0) * 100.0), float(low), float(high))


# -- codecs ------------------------------------------------------------------------------

STANDARD_QUALITIES = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
CODEC_NAMES = ("walloc", "jpeg", "webp", "avif", "jxl")


class BenchError(WallocError):
    """Why a benchmark cannot run (bad folder, no images, missing plotting library): one line."""


class Codec:
    """The small interface every codec adapter has: ``encode(rgb, q) -> bytes``, ``decode(bytes) -> rgb``.

    ``quality`` is the codec's own knob (None: the codec's only setting).
    ``prepare`` is called once per image outside the timed region, and
    ``warm_up`` once per run, so that one-off costs (loading a model, building
    the PNG that walloc reads) do not count as encode time.
    """

    name: str = ""
    qualities: tuple[int | None, ...] = ()
    library: str = ""

    def warm_up(self) -> None:
        tiny = np.linspace(0, 255, 32 * 32 * 3).astype(np.uint8).reshape(32, 32, 3)
        self.prepare(tiny)
        for q in self.qualities:
            self.decode(self.encode(tiny, q))

    def prepare(self, rgb: np.ndarray) -> None:
        """Per-image setup that is not part of coding (default: none)."""

    def encode(self, rgb: np.ndarray, quality: int | None) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> np.ndarray:
        raise NotImplementedError


class PillowCodec(Codec):
    """A format Pillow writes (JPEG, WebP, AVIF) with fixed options and a quality sweep."""

    def __init__(self, name: str, fmt: str, qualities: Iterable[int], options: dict[str, Any], library: str) -> None:
        self.name, self.fmt, self.qualities = name, fmt, tuple(qualities)
        self.options, self.library = dict(options), library

    def encode(self, rgb: np.ndarray, quality: int | None) -> bytes:
        buf = io.BytesIO()
        extra = {} if quality is None else {"quality": quality}
        Image.fromarray(rgb, "RGB").save(buf, format=self.fmt, **self.options, **extra)
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))


class WallocCodec(Codec):
    """walloc through its Python API; the image reaches it as PNG bytes, as a user's file would."""

    name = "walloc"

    def __init__(self) -> None:
        from . import api  # imported when walloc is benchmarked, so `walloc bench --codecs jpeg` needs none of it

        self.api = api
        self.qualities = tuple(api.BENCH_QUALITIES)
        self.library = f"walloc {api.DEFAULT_IMAGE_MODEL} (Python API, in process)"
        self._png: tuple[np.ndarray, bytes] | None = None

    def prepare(self, rgb: np.ndarray) -> None:
        # Stored (compress_level=0) PNG: cheap to build here and cheap for walloc to read.
        buf = io.BytesIO()
        Image.fromarray(rgb, "RGB").save(buf, format="PNG", compress_level=0)
        self._png = (rgb, buf.getvalue())

    def encode(self, rgb: np.ndarray, quality: int | None) -> bytes:
        if self._png is None or self._png[0] is not rgb:
            self.prepare(rgb)
        return self.api.encode_image(self._png[1], quality=quality).data

    def decode(self, data: bytes) -> np.ndarray:
        return self.api.decode_image(data).rgb


class CommandCodec(Codec):
    """A codec reached through its command-line tools (JPEG XL: ``cjxl`` / ``djxl``, which Pillow
    does not write): PNG in, PNG out, through a private temporary folder.  Its times include
    starting the two processes and the PNG on each side, as a user's script pays them."""

    def __init__(self, name: str, suffix: str, encode: Sequence[str], decode: Sequence[str],
                 qualities: Iterable[int], library: str) -> None:
        self.name, self.suffix, self.qualities, self.library = name, suffix, tuple(qualities), library
        self.encode_command, self.decode_command = list(encode), list(decode)

    def _run(self, command: list[str]) -> None:
        import subprocess

        done = subprocess.run(command, capture_output=True)
        if done.returncode:
            reason = done.stderr.decode(errors="replace").strip().splitlines()
            raise BenchError(f"{command[0]} failed: {reason[-1] if reason else f'exit status {done.returncode}'}")

    def encode(self, rgb: np.ndarray, quality: int | None) -> bytes:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="walloc-bench-") as work:
            source, coded = Path(work) / "in.png", Path(work) / f"out{self.suffix}"
            Image.fromarray(rgb, "RGB").save(source, format="PNG", compress_level=0)
            self._run([*self.encode_command, str(source), str(coded), "-q", str(quality)])
            return coded.read_bytes()

    def decode(self, data: bytes) -> np.ndarray:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="walloc-bench-") as work:
            coded, out = Path(work) / f"in{self.suffix}", Path(work) / "out.png"
            coded.write_bytes(data)
            self._run([*self.decode_command, str(coded), str(out)])
            with Image.open(out) as im:
                return np.asarray(im.convert("RGB"))


def _tool_version(command: str) -> str:
    """First line of ``command --version`` (cjxl prints 'cjxl v0.7.0 [...]'), or ''."""
    import subprocess

    try:
        done = subprocess.run([command, "--version"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (done.stdout or done.stderr).decode(errors="replace").strip().splitlines()
    return lines[0].split("[")[0].strip() if lines else ""


def make_codec(name: str) -> tuple[Codec | None, str]:
    """The adapter for ``name`` and a note for the output (why it is skipped, or what it uses)."""
    if name == "jpeg":
        turbo = features.version("libjpeg_turbo")
        lib = f"libjpeg-turbo {turbo}" if turbo else f"libjpeg {features.version('jpg')}"
        return PillowCodec("jpeg", "JPEG", STANDARD_QUALITIES, {"optimize": False},
                           f"{lib} via Pillow, 4:2:0, optimize=False"), ""
    if name == "webp":
        if not features.check("webp"):
            return None, "webp skipped: this Pillow has no WebP support"
        note = "webp: Pillow's libwebp is used" + (" (the cwebp CLI on PATH is not)" if shutil.which("cwebp") else "")
        return PillowCodec("webp", "WEBP", STANDARD_QUALITIES, {"method": 4, "lossless": False},
                           f"libwebp {features.version('webp')} via Pillow, method 4"), note
    if name == "avif":
        if not features.check("avif"):
            return None, "avif skipped: this Pillow has no AVIF support (Pillow >= 11.3 with libavif)"
        return PillowCodec("avif", "AVIF", STANDARD_QUALITIES, {},
                           f"libavif {features.version('avif')} via Pillow, default speed"), ""
    if name == "jxl":
        if not (shutil.which("cjxl") and shutil.which("djxl")):
            return None, "jxl skipped: cjxl / djxl are not on PATH (Debian: apt install libjxl-tools)"
        return CommandCodec("jxl", ".jxl", ["cjxl", "-e", "7", "--quiet"], ["djxl", "--quiet"], STANDARD_QUALITIES,
                            f"{_tool_version('cjxl') or 'cjxl'} (command line, effort 7, -q sweep; "
                            f"times include process start)"), ""
    if name == "walloc":
        return WallocCodec(), ""
    raise BenchError(f"unknown codec {name!r} (choose from {', '.join(CODEC_NAMES)})")


def parse_codecs(text: str) -> list[str]:
    """'walloc, jpeg' -> ['walloc', 'jpeg']: lower case, duplicates dropped, names checked."""
    names: list[str] = []
    for part in text.split(","):
        name = part.strip().lower()
        if not name:
            continue
        if name not in CODEC_NAMES:
            raise BenchError(f"unknown codec {name!r} (choose from {', '.join(CODEC_NAMES)})")
        if name not in names:
            names.append(name)
    if not names:
        raise BenchError("no codec given")
    return names


# -- running -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Measurement:
    """One image coded by one codec at one setting."""

    image: str
    codec: str
    quality: int | None
    width: int
    height: int
    bytes: int
    bpp: float
    psnr: float
    ms_ssim: float
    encode_s: float
    decode_s: float
    colour_shift: float = math.nan  # largest |mean(decoded) − mean(original)| of R, G, B, in levels


@dataclass(frozen=True)
class CurvePoint:
    """The mean over images of one codec at one quality setting: one point of its RD curve."""

    codec: str
    quality: int | None
    images: int
    bpp: float
    psnr: float
    ms_ssim: float
    ms_ssim_db: float
    encode_ms: float
    decode_ms: float
    colour_shift: float = math.nan      # mean over images of Measurement.colour_shift
    colour_shift_max: float = math.nan  # … and the worst image


@dataclass(frozen=True)
class Comparison:
    """BD-rate of ``test`` against ``anchor``, on the PSNR and on the MS-SSIM (dB) axis."""

    test: str
    anchor: str
    psnr: BDRate
    ms_ssim: BDRate


@dataclass
class Plan:
    """What a run will do, known before the slow part: images, codecs, notes for the user."""

    directory: str
    images: list[Path]
    codecs: list[Codec]
    notes: list[str] = field(default_factory=list)

    @property
    def steps(self) -> int:
        """Encode+decode pairs in the whole run (the progress bar's length)."""
        return len(self.images) * sum(len(c.qualities) for c in self.codecs)


@dataclass
class BenchResult:
    directory: str
    codecs: list[str]
    libraries: dict[str, str]
    images: list[str]
    measurements: list[Measurement]
    skipped: list[tuple[str, str]]
    notes: list[str]
    summary: list[CurvePoint]
    comparisons: list[Comparison]


def list_images(directory: str | Path, limit: int | None = None) -> list[Path]:
    """Image files directly in ``directory``, sorted by name, at most ``limit`` of them."""
    folder = Path(directory)
    if not folder.exists():
        raise BenchError("no such directory")
    if not folder.is_dir():
        raise BenchError("not a directory")
    try:
        files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                       key=lambda p: p.name)
    except PermissionError:
        raise BenchError("permission denied") from None
    if not files:
        raise BenchError(f"no images in it ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files[:limit] if limit else files


def plan(directory: str | Path, codec_names: Sequence[str], limit: int | None = None) -> Plan:
    """Check the folder and warm up the codecs before the long part; unusable codecs are left out."""
    images = list_images(directory, limit)
    codecs: list[Codec] = []
    notes: list[str] = []
    for name in codec_names:
        codec, note = make_codec(name)
        if note:
            notes.append(note)
        if codec is None:
            continue
        try:
            # Loads the model / plugin now, so that neither a one-off cost lands in the first image's
            # timings nor a missing model surfaces in the middle of the run.
            codec.warm_up()
        except Exception as exc:  # noqa: BLE001 - an unusable codec is skipped with its reason
            notes.append(f"{name} skipped: {_one_line(exc)}")
            continue
        codecs.append(codec)
    if not codecs:
        raise BenchError("none of the requested codecs is available")
    jpegs = sum(p.suffix.lower() in (".jpg", ".jpeg") for p in images)
    if jpegs and "jpeg" in codec_names:
        # Decoded JPEG pixels nearly survive a second JPEG pass at a similar quality and the same
        # subsampling: those points of the jpeg curve are flattered (often ~50 dB at q=95).
        notes.append(f"{jpegs} of {len(images)} inputs are JPEG files: the jpeg curve is flattered "
                     "near the quality they were saved at")
    return Plan(str(directory), images, codecs, notes)


def load_rgb(path: Path) -> np.ndarray:
    """An image file as uint8 (H, W, 3): EXIF orientation applied, any mode converted to RGB."""
    with Image.open(path) as im:
        im.load()
        im = ImageOps.exif_transpose(im)
        return np.ascontiguousarray(np.asarray(im.convert("RGB")))


def measure(codec: Codec, rgb: np.ndarray, quality: int | None, image: str) -> Measurement:
    """Encode and decode once, timing each half, and score the result against the original."""
    t0 = time.perf_counter()
    data = codec.encode(rgb, quality)
    t1 = time.perf_counter()
    decoded = codec.decode(data)
    t2 = time.perf_counter()
    if decoded.shape != rgb.shape:
        raise ValueError(f"decoded shape {decoded.shape} differs from the original {rgb.shape}")
    h, w = rgb.shape[:2]
    return Measurement(image, codec.name, quality, w, h, len(data), 8.0 * len(data) / (w * h),
                       psnr(rgb, decoded), ms_ssim(rgb, decoded), t1 - t0, t2 - t1, colour_shift(rgb, decoded))


def colour_shift(reference: np.ndarray, distorted: np.ndarray) -> float:
    """Largest shift of the image-wide mean of R, G or B, in levels: the drift a viewer sees as a
    cast over the whole photo (PSNR and MS-SSIM barely notice it)."""
    axes = tuple(range(reference.ndim - 1))
    return float(np.abs(distorted.astype(np.float64).mean(axis=axes) - reference.astype(np.float64).mean(axis=axes)).max())


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return float(np.mean(values)) if values else math.nan


def summarize(measurements: Sequence[Measurement], codecs: Sequence[str]) -> list[CurvePoint]:
    """Per-quality means over images, codecs in the given order, qualities ascending."""
    points: list[CurvePoint] = []
    for codec in codecs:
        rows = [m for m in measurements if m.codec == codec]
        qualities = sorted({m.quality for m in rows}, key=lambda q: (q is not None, q or 0))
        for q in qualities:
            group = [m for m in rows if m.quality == q]
            mean_ssim = _mean(m.ms_ssim for m in group)
            points.append(CurvePoint(codec, q, len(group), _mean(m.bpp for m in group), _mean(m.psnr for m in group),
                                     mean_ssim, ms_ssim_db(mean_ssim), 1e3 * _mean(m.encode_s for m in group),
                                     1e3 * _mean(m.decode_s for m in group), _mean(m.colour_shift for m in group),
                                     max((m.colour_shift for m in group), default=math.nan)))
    return points


def compare(summary: Sequence[CurvePoint], codecs: Sequence[str]) -> list[Comparison]:
    """BD-rates on the curves of per-quality means.

    walloc against each baseline when walloc is in the run; otherwise every
    other codec against the first one (e.g. webp and avif against jpeg), which
    is still a useful check of the baselines.
    """
    if "walloc" in codecs:
        pairs = [("walloc", c) for c in codecs if c != "walloc"]
    else:
        pairs = [(c, codecs[0]) for c in codecs[1:]]

    def curve(name: str) -> list[CurvePoint]:
        return [p for p in summary if p.codec == name]

    out = []
    for test, anchor in pairs:
        t, a = curve(test), curve(anchor)
        out.append(Comparison(
            test, anchor,
            bd_rate([p.bpp for p in a], [p.psnr for p in a], [p.bpp for p in t], [p.psnr for p in t]),
            bd_rate([p.bpp for p in a], [p.ms_ssim_db for p in a], [p.bpp for p in t], [p.ms_ssim_db for p in t])))
    return out


def run(job: Plan, progress: Callable[[str], None] | None = None,
        warn: Callable[[str], None] | None = None) -> BenchResult:
    """Measure every image × codec × quality of a :class:`Plan` (whose codecs :func:`plan` warmed up).

    ``progress(label)`` is called after each encode+decode pair (and for the
    pairs of a skipped image), ``warn(message)`` once per skipped image or
    failed codec; an unreadable image or a codec failing on one image is
    recorded in ``skipped`` and the run goes on.
    """
    tick = progress or (lambda label: None)
    report = warn or (lambda message: None)
    measurements: list[Measurement] = []
    skipped: list[tuple[str, str]] = []
    measured: list[str] = []
    for path in job.images:
        try:
            rgb = load_rgb(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is reported and skipped
            reason = f"unreadable image ({_one_line(exc)})"
            skipped.append((path.name, reason))
            report(f"{path}: {reason}, skipped")
            for codec in job.codecs:
                for _ in codec.qualities:
                    tick(path.name)
            continue
        ok = False
        for codec in job.codecs:
            codec.prepare(rgb)
            for q in codec.qualities:
                try:
                    measurements.append(measure(codec, rgb, q, path.name))
                    ok = True
                except Exception as exc:  # noqa: BLE001 - one codec failing on one image must not end the run
                    reason = f"{codec.name} q={q} failed ({_one_line(exc)})"
                    skipped.append((path.name, reason))
                    report(f"{path}: {reason}")
                tick(f"{path.name} {codec.name}")
        if ok:
            measured.append(path.name)
    names = [c.name for c in job.codecs]
    summary = summarize(measurements, names)
    return BenchResult(job.directory, names, {c.name: c.library for c in job.codecs}, measured, measurements,
                       skipped, list(job.notes), summary, compare(summary, names))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# -- output ------------------------------------------------------------------------------

CONVENTIONS = ("bpp = file bytes·8 / (W·H), headers included; PSNR: RGB 8-bit, MSE over all channels; "
               "MS-SSIM: Wang et al. 2003 on R, G, B, averaged; MS-SSIM dB = -10·log10(1 - MS-SSIM); "
               "times: wall clock, in process, per image; colour: largest shift of the mean R, G or B in "
               "levels, mean over images, and max: the worst image")


def _fmt(value: float, spec: str) -> str:
    return "inf" if value == math.inf else ("n/a" if not math.isfinite(value) else format(value, spec))


def format_table(result: BenchResult) -> str:
    """The human-readable report: one row per codec and quality, then the BD-rates."""
    n = len(result.images)
    lines = [f"Rate–distortion on {n} image{'s' if n != 1 else ''} of {result.directory}: "
             "means over images at each quality setting",
             f"  ({CONVENTIONS})"]
    for name in result.codecs:
        lines.append(f"  {name}: {result.libraries.get(name, '')}")
    lines.append("")
    header = (f"{'codec':8} {'q':>4} {'bpp':>7} {'PSNR dB':>8} {'MS-SSIM':>8} {'MS-SSIM dB':>10} {'enc ms':>8} "
              f"{'dec ms':>8} {'colour':>7} {'max':>6}")
    lines += [header, "-" * len(header)]
    previous = None
    for p in result.summary:
        if previous is not None and p.codec != previous:
            lines.append("")
        previous = p.codec
        q = "-" if p.quality is None else str(p.quality)
        lines.append(f"{p.codec:8} {q:>4} {_fmt(p.bpp, '.3f'):>7} {_fmt(p.psnr, '.2f'):>8} "
                     f"{_fmt(p.ms_ssim, '.4f'):>8} {_fmt(p.ms_ssim_db, '.2f'):>10} "
                     f"{_fmt(p.encode_ms, '.1f'):>8} {_fmt(p.decode_ms, '.1f'):>8} "
                     f"{_fmt(p.colour_shift, '.2f'):>7} {_fmt(p.colour_shift_max, '.2f'):>6}")
    lines.append("")
    if result.comparisons:
        test = result.comparisons[0].test
        against = "each baseline" if test == "walloc" else result.comparisons[0].anchor
        lines.append(f"BD-rate of {'walloc' if test == 'walloc' else 'each codec'} against {against} "
                     f"(Bjøntegaard, cubic fit of log rate, on the curves of per-quality means over {n} images; "
                     f"negative = {'walloc needs' if test == 'walloc' else 'it needs'} fewer bits)")
        width = max(len(f"{c.test} vs {c.anchor}") for c in result.comparisons)
        for c in result.comparisons:
            lines.append(f"  {f'{c.test} vs {c.anchor}':{width}}  PSNR: {c.psnr.describe('dB')}")
            lines.append(f"  {'':{width}}  MS-SSIM: {c.ms_ssim.describe('dB')}")
    else:
        lines.append("BD-rate: n/a (needs two codecs)")
    if result.skipped:
        lines.append("")
        lines.append(f"{len(result.skipped)} skipped: " + "; ".join(f"{img}: {why}" for img, why in result.skipped))
    return "\n".join(lines)


def _finite(value: Any) -> Any:
    """JSON has no inf / NaN: such values become null (a lossless PSNR is then null, not a crash)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def to_json(result: BenchResult) -> dict[str, Any]:
    """Everything measured (every image × codec × quality) plus the summary and the BD-rates."""
    return _finite({
        "directory": result.directory,
        "conventions": CONVENTIONS,
        "bd_rate_method": "Bjøntegaard: cubic fit of ln(bpp) vs quality, integrated over the overlap; "
                          "curves = per-quality means over all images",
        "codecs": {name: {"library": result.libraries.get(name, "")} for name in result.codecs},
        "images": result.images,
        "notes": result.notes,
        "skipped": [{"image": img, "reason": why} for img, why in result.skipped],
        "summary": [asdict(p) for p in result.summary],
        "bd_rate": [{"test": c.test, "anchor": c.anchor, "psnr": asdict(c.psnr), "ms_ssim": asdict(c.ms_ssim)}
                    for c in result.comparisons],
        "measurements": [asdict(m) for m in result.measurements],
    })


def write_json(result: BenchResult, path: str | Path) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(to_json(result), indent=1, allow_nan=False) + "\n", encoding="utf-8")


def check_plot_target(path: str | Path) -> None:
    """Fail before the long run when --plot cannot work: no matplotlib, or a format it cannot write."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise BenchError("needs matplotlib, which is not installed (pip install 'walloc[bench]')") from None
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix and suffix not in FigureCanvasBase.get_supported_filetypes():
        raise BenchError(f"matplotlib cannot write .{suffix} files (use .png)")


def plot(result: BenchResult, path: str | Path) -> None:
    """Two panels, PSNR and MS-SSIM (dB) against bpp, one curve per codec (per-quality means).

    bpp is on a log axis: the sweeps span more than a decade of rate, and the
    BD-rate integrates log rate, so equal horizontal gaps mean equal % savings.
    Uses the Figure API only (no pyplot), so no GUI backend is ever touched.
    """
    check_plot_target(path)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5), layout="constrained")
    axes = fig.subplots(1, 2)
    panels = (("psnr", "PSNR (dB, RGB)"), ("ms_ssim_db", "MS-SSIM (dB) = −10·log10(1 − MS-SSIM)"))
    for ax, (key, label) in zip(axes, panels):
        for name in result.codecs:
            pts = [(p.bpp, getattr(p, key)) for p in result.summary if p.codec == name]
            pts = sorted((x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y) and x > 0)
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o", markersize=3, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("bits per pixel (log scale)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"Rate–distortion, mean over {len(result.images)} images of {result.directory}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, format=None if target.suffix else "png", dpi=120)
