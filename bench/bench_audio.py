"""Audio benchmark: walloc's quality sweep against Opus, scored by ViSQOL.

    python bench/bench_audio.py --data data/audio/val [--limit N] [--seconds 10]
        [--qualities 10,20,...|none] [--tune perceptual|psnr] [--model NAME]
        [--opus 12,16,...] [--per-channel] [--workers 2] [--json out.json] [--plot out.png]

Why it looks like this (issue #10, "Measure"): walloc's audio codec is meant to
compete with Opus, a perceptual codec, so PSNR alone would flatter an
MSE-trained walloc and punish Opus for discarding what nobody hears.  The
headline metric is therefore ViSQOL (MOS-LQO, 1–5, audio mode), with a
log-mel distance, the energy error above 8 kHz (the band a perceptual codec
starves first, so it says *how* a codec degrades) and PSNR beside it.

Protocol.  One excerpt per track (``--seconds``, default 10 s) from the middle
of the track, at the track's own level: no normalisation, since level is part
of what a codec is given; samples are only clipped to [-1, 1] (a Vorbis decode
can overshoot).  Each excerpt is written as a float WAV; that file is the
reference, walloc's input (through the real ``api.encode_audio`` /
``api.decode_audio``, file bytes and headers counted) and Opus's input
(``opusenc --bitrate K``; ``opusdec --rate <clip rate> --float``, trimmed or
padded to the clip length).  kbps counts whole files: the .wlc, or the .opus
with its Ogg pages and tags.

Opus alignment.  ``opusdec`` removes the pre-skip (312 samples at 48 kHz)
and trims the tail to the end granule position, so the decode should line up
with the input.  Checked by cross-correlation on all ten validation tracks
(10 s excerpts, opus-tools 0.2 / libopus 1.3.1, 12–96 kbps): the decoded length
equals the input's on every clip, and the lag is within 0.2 samples of zero
(opus-tools' 44.1↔48 kHz resampler) at 16 kbps and up.  At 12 kbps two of the
ten clips (music_tech, manolo_camp-medieval) come out 2 samples (45 µs) early,
steadily over every second and in the band below 3 kHz alike: a real offset,
probably of the low-rate SILK/hybrid path, not a flat correlation peak.  It is
left uncorrected, as a listener would get it: ViSQOL aligns by itself,
log-mel compares magnitudes, and PSNR loses about 0.1 dB (shifting it back
gives 27.71 instead of 27.59 dB on manolo_camp).  Every row records its own
lag (``lag``: samples, negative = decode early, parabolic sub-sample peak of
the mono mixes' cross-correlation) and the run prints the largest per
bitrate, so an opus-tools build that mishandles pre-skip shows up at once.

Metrics, per clip, averaged per operating point:

- ViSQOL: both signals mixed to mono (what ViSQOL does with a stereo file)
  and resampled to 48 kHz, the rate its audio model is defined at.  A mono
  mix hides stereo errors (a codec could swap or collapse the side signal
  and lose nothing), so ``--per-channel`` also scores L and R separately and
  reports their mean: the stereo-honest number, at twice the cost.
- log-mel distance: mean |Δ log10 mel energy|, 128 bands, 2048-point STFT
  (lower is better), unchanged from earlier versions of this bench.
- HF dB: 10·log10(decoded energy above 8 kHz / original energy above 8 kHz)
  from the same STFT; negative = the codec dropped treble.  Averaged signed
  (the bias) and absolute (the size).
- PSNR: −10·log10(MSE) over all samples, full scale ±1.

ViSQOL takes about 0.1 s per second of audio, so clips are coded and scored
in a process pool (``--workers``), and Opus rows are cached in
``cache/bench-audio-opus.json`` (keyed by track, excerpt start and length, and
bitrate; invalidated when the metrics or the opus-tools version change), so a
rerun recomputes only walloc.

The earlier linear-PCA baseline (``--train``) is gone: it compared PSNR on
peak-normalised clips against a codec design walloc no longer uses.
"""
from __future__ import annotations

import argparse
import inspect
import io
import json
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from walloc_cli import api  # noqa: E402  (imports numpy only; torch loads when a decoder first runs)

AUDIO_SUFFIXES = {".ogg", ".flac", ".wav", ".mp3", ".aiff", ".aif"}
DEFAULT_QUALITIES = "10,20,30,40,50,60,70,80,90"
DEFAULT_OPUS = "12,16,24,32,48,64,96"
COMPARE_OPUS_RANGE = (16, 64)  # Opus bitrates (kbps) the comparison block reports
VISQOL_RATE = 48_000  # ViSQOL's audio mode is defined at 48 kHz
HF_CUTOFF_HZ = 8_000.0
N_FFT, HOP = 2048, 512
MAX_LAG = 2048  # cross-correlation search range (samples) for the alignment check
DEFAULT_CACHE = Path("cache/bench-audio-opus.json")
# Bump when a metric's definition changes: cached Opus rows computed under another version are dropped.
METRICS_VERSION = 1
BASE_FIELDS = ("kbps", "visqol", "log_mel", "hf_db", "psnr", "lag")
CHANNEL_FIELDS = ("visqol_l", "visqol_r", "visqol_lr")
# A lag beyond this many samples is an alignment bug (pre-skip is hundreds), not codec phase.
LAG_ALARM = 8


# --------------------------------------------------------------------------- clips and settings

@dataclass(frozen=True)
class Clip:
    """One excerpt: where it came from (for the cache key) and the WAV that holds it."""

    track: str  # path relative to --data: unique even when two folders hold the same file name
    start: int  # first frame of the excerpt in the track
    frames: int
    rate: int
    wav: str  # the excerpt as a float WAV: reference and codec input at once

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


@dataclass(frozen=True)
class Setting:
    """One operating point: a walloc (model, quality, tune) or an Opus bitrate."""

    codec: str  # "walloc" or "opus"
    quality: int | None = None
    tune: str | None = None
    model: str | None = None
    bitrate: int | None = None  # Opus target, kbps

    @property
    def label(self) -> str:
        if self.codec == "opus":
            return f"{self.bitrate}k"
        parts = [f"q{self.quality}" if self.quality is not None else "default"]
        parts += [p for p in (self.tune, self.model) if p]
        return " ".join(parts)

    def walloc_kwargs(self) -> dict[str, Any]:
        """Only the arguments that were asked for, so that the API's own defaults apply otherwise
        (and so that a single-point model can be benchmarked with an API that has no quality)."""
        given = {"model_name": self.model, "quality": self.quality, "tune": self.tune}
        return {k: v for k, v in given.items() if v is not None}


def select_clips(folder: Path, seconds: float, limit: int | None, out_dir: Path) -> list[Clip]:
    """The middle ``seconds`` of each track (the whole track if shorter), clipped to ±1 and written
    as a float WAV.  The WAV's samples are the reference, so codec input and reference cannot differ."""
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)[:limit]
    clips = []
    for i, path in enumerate(paths):
        info = soundfile.info(str(path))
        frames = min(info.frames, int(round(seconds * info.samplerate)))
        start = (info.frames - frames) // 2
        x, rate = soundfile.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
        wav = out_dir / f"clip{i:03d}.wav"
        soundfile.write(str(wav), np.clip(x, -1.0, 1.0), rate, subtype="FLOAT")
        clips.append(Clip(path.relative_to(folder).as_posix(), start, len(x), rate, str(wav)))
    return clips


def parse_list(text: str) -> list[int | None]:
    """``"10,20,30"`` -> [10, 20, 30]; ``"none"`` -> [None] (one run without the argument)."""
    if text.strip().lower() == "none":
        return [None]
    return [int(v) for v in text.split(",") if v.strip()]


# --------------------------------------------------------------------------- metrics

def psnr(x: np.ndarray, y: np.ndarray) -> float:
    return float(-10 * np.log10(max(np.mean((x - y) ** 2), 1e-20)))


def _stft_power(signal: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """|STFT|² of a 1-D signal, Hann window, frames × (n_fft/2 + 1)."""
    frames = np.lib.stride_tricks.sliding_window_view(signal, n_fft)[::hop] * np.hanning(n_fft)
    return np.abs(np.fft.rfft(frames, axis=-1)) ** 2


def _mel_filters(rate: int, n_fft: int, bands: int) -> np.ndarray:
    def hz_to_mel(f: np.ndarray | float) -> np.ndarray | float:
        return 2595 * np.log10(1 + f / 700)

    mels = np.linspace(hz_to_mel(0), hz_to_mel(rate / 2), bands + 2)
    hz = 700 * (10 ** (mels / 2595) - 1)
    bins = np.fft.rfftfreq(n_fft, 1 / rate)
    fb = np.zeros((bands, len(bins)))
    for i in range(bands):
        lo, mid, hi = hz[i], hz[i + 1], hz[i + 2]
        fb[i] = np.clip(np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)), 0, None)
    return fb


def log_mel_distance(x: np.ndarray, y: np.ndarray, rate: int) -> float:
    """Mean |log10 mel energy difference| over 128 bands, frames and channels (lower is better)."""
    fb = _mel_filters(rate, N_FFT, 128)

    def logmel(s: np.ndarray) -> np.ndarray:
        return np.log10(_stft_power(s) @ fb.T + 1e-8)

    return float(np.mean([np.mean(np.abs(logmel(x[:, c]) - logmel(y[:, c]))) for c in range(x.shape[1])]))


def hf_energy_db(x: np.ndarray, y: np.ndarray, rate: int, cutoff: float = HF_CUTOFF_HZ) -> float:
    """10·log10 of the decoded over the original STFT energy above ``cutoff``, all channels.

    NaN when the original has no energy there (or no band above the cutoff); a decode with none is
    floored at −120 dB rather than −inf, so one silent band cannot swamp an average."""
    band = np.fft.rfftfreq(N_FFT, 1 / rate) >= cutoff
    if not band.any():
        return math.nan
    ex = sum(float(_stft_power(x[:, c])[:, band].sum()) for c in range(x.shape[1]))
    ey = sum(float(_stft_power(y[:, c])[:, band].sum()) for c in range(y.shape[1]))
    return math.nan if ex <= 0 else 10 * math.log10(max(ey, 1e-12 * ex) / ex)


def lag_samples(x: np.ndarray, y: np.ndarray, max_lag: int = MAX_LAG) -> float:
    """Delay of ``y`` against ``x`` in samples (positive: ``y`` late), from the peak of the
    cross-correlation of their mono mixes, refined to a fraction of a sample by a parabola."""
    a, b = x.mean(axis=1), y.mean(axis=1)
    n = 1 << int(math.ceil(math.log2(len(a) + len(b))))
    cc = np.fft.irfft(np.conj(np.fft.rfft(a, n)) * np.fft.rfft(b, n), n)
    window = np.concatenate([cc[-max_lag:], cc[: max_lag + 1]])  # lags -max_lag … +max_lag
    i = int(np.argmax(window))
    if 0 < i < len(window) - 1:
        y0, y1, y2 = window[i - 1 : i + 2]
        curvature = y0 - 2 * y1 + y2
        offset = 0.5 * (y0 - y2) / curvature if curvature < 0 else 0.0
    else:
        offset = 0.0
    return float(i - max_lag + offset)


_VISQOL: Any = None


def visqol(x: np.ndarray, y: np.ndarray, rate: int) -> float:
    """ViSQOL audio-mode MOS-LQO of two 1-D signals, resampled to 48 kHz (160/147 from 44.1 kHz)."""
    global _VISQOL
    from scipy.signal import resample_poly

    if _VISQOL is None:  # one instance per process; importing visqol pulls in numba
        from visqol import VisqolApi

        _VISQOL = VisqolApi()
        _VISQOL.create(mode="audio")
    g = math.gcd(VISQOL_RATE, rate)
    up, down = VISQOL_RATE // g, rate // g
    return float(_VISQOL.measure_from_arrays(resample_poly(x, up, down), resample_poly(y, up, down),
                                             VISQOL_RATE).moslqo)


def metrics(x: np.ndarray, y: np.ndarray, rate: int, per_channel: bool) -> dict[str, float]:
    """Every per-clip quality number for reference ``x`` and decode ``y`` (frames × channels)."""
    row = {"visqol": visqol(x.mean(axis=1), y.mean(axis=1), rate),
           "log_mel": log_mel_distance(x, y, rate), "hf_db": hf_energy_db(x, y, rate),
           "psnr": psnr(x, y), "lag": lag_samples(x, y)}
    if per_channel:
        side = [visqol(x[:, c], y[:, c], rate) for c in (0, -1)]  # mono files: L = R
        row.update(visqol_l=side[0], visqol_r=side[1], visqol_lr=float(np.mean(side)))
    return row


# --------------------------------------------------------------------------- codecs

def fit_length(y: np.ndarray, frames: int) -> np.ndarray:
    """Trim or zero-pad a decode to the reference length."""
    y = y[:frames]
    return np.pad(y, ((0, frames - len(y)), (0, 0))) if len(y) < frames else y


_WARM: set[tuple[tuple[str, Any], ...]] = set()


def _warm_up(setting: Setting, rate: int) -> None:
    """Code 0.1 s of silence once per process and setting, so that loading torch and the model
    is not billed to the first clip's decoding speed."""
    kwargs = setting.walloc_kwargs()
    if tuple(sorted(kwargs.items())) not in _WARM:
        buf = io.BytesIO()
        soundfile.write(buf, np.zeros((rate // 10, 2)), rate, subtype="FLOAT", format="WAV")
        api.decode_audio(api.encode_audio(buf.getvalue(), **kwargs).data)
        _WARM.add(tuple(sorted(kwargs.items())))


def code_walloc(clip: Clip, setting: Setting, tmp: Path) -> tuple[int, np.ndarray, float, float]:
    """Bytes, decode and encode/decode seconds through the in-process API."""
    _warm_up(setting, clip.rate)
    data = Path(clip.wav).read_bytes()
    t0 = time.perf_counter()
    wlc = api.encode_audio(data, **setting.walloc_kwargs()).data
    t1 = time.perf_counter()
    out = api.decode_audio(wlc, ".wav", "FLOAT")
    t2 = time.perf_counter()
    y, _ = soundfile.read(io.BytesIO(out), dtype="float64", always_2d=True)
    return len(wlc), y, t1 - t0, t2 - t1


def _run(cmd: list[str]) -> None:
    """A tool run whose chatter (opusenc warns about the float WAV's PEAK chunk) is kept quiet
    unless it fails."""
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")


def code_opus(clip: Clip, setting: Setting, tmp: Path) -> tuple[int, np.ndarray, float, float]:
    """Bytes, decode and encode/decode seconds through opusenc/opusdec (whole processes)."""
    enc, dec = tmp / "x.opus", tmp / "x.wav"
    t0 = time.perf_counter()
    _run(["opusenc", "--quiet", "--bitrate", str(setting.bitrate), clip.wav, str(enc)])
    t1 = time.perf_counter()
    _run(["opusdec", "--quiet", "--rate", str(clip.rate), "--float", str(enc), str(dec)])
    t2 = time.perf_counter()
    y, _ = soundfile.read(str(dec), dtype="float64", always_2d=True)
    return enc.stat().st_size, y, t1 - t0, t2 - t1


CODERS: dict[str, Callable[[Clip, Setting, Path], tuple[int, np.ndarray, float, float]]] = {
    "walloc": code_walloc, "opus": code_opus}


def measure(clip: Clip, setting: Setting, per_channel: bool) -> dict[str, Any]:
    """Code one clip at one setting and score it: one per-clip row (runs in a pool worker)."""
    x, _ = soundfile.read(clip.wav, dtype="float64", always_2d=True)
    with tempfile.TemporaryDirectory() as tmp:
        nbytes, y, enc_s, dec_s = CODERS[setting.codec](clip, setting, Path(tmp))
    decoded_frames = len(y)
    y = fit_length(y, clip.frames)
    return {"codec": setting.codec, "setting": setting.label, **asdict(setting), "clip": clip.track,
            "start": clip.start, "frames": clip.frames, "seconds": clip.seconds, "decoded_frames": decoded_frames,
            "bytes": nbytes,
            "kbps": 8 * nbytes / clip.seconds / 1000, **metrics(x, y, clip.rate, per_channel),
            "encode_s": enc_s, "decode_s": dec_s}


# --------------------------------------------------------------------------- Opus cache

def opus_version() -> str:
    done = subprocess.run(["opusenc", "--version"], capture_output=True, text=True)
    return (done.stdout or done.stderr).splitlines()[0].strip()


class OpusCache:
    """Opus rows by (track, excerpt start, length, bitrate): Opus does not change between runs,
    walloc does, so only walloc should cost time on a rerun."""

    def __init__(self, path: Path, version: str) -> None:
        self.path, self.stamp = path, {"metrics_version": METRICS_VERSION, "opus": version}
        self.rows: dict[str, dict[str, Any]] = {}
        try:
            saved = json.loads(path.read_text())
            if saved.get("stamp") == self.stamp:
                self.rows = saved["rows"]
        except (OSError, ValueError, KeyError, AttributeError):
            pass  # missing or unreadable: start afresh

    @staticmethod
    def key(clip: Clip, setting: Setting) -> str:
        return f"{clip.track}|{clip.start}|{clip.frames}|{setting.bitrate}"

    def get(self, clip: Clip, setting: Setting, fields: Iterable[str]) -> dict[str, Any] | None:
        row = self.rows.get(self.key(clip, setting))
        return row if row is not None and all(f in row for f in fields) else None

    def put(self, clip: Clip, setting: Setting, row: dict[str, Any]) -> None:
        self.rows[self.key(clip, setting)] = row

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"stamp": self.stamp, "rows": self.rows}, indent=1))  # NaN kept: read back by Python
        tmp.replace(self.path)


# --------------------------------------------------------------------------- running

def run_jobs(jobs: Sequence[tuple[Clip, Setting]], per_channel: bool, workers: int,
             done: Callable[[Clip, Setting, dict[str, Any]], None]) -> None:
    """Measure every job, ``workers`` at a time, calling ``done`` as each finishes.

    Workers are spawned, not forked: they load torch (walloc's decoder) and numba's thread pool,
    neither of which survives a fork well.  Each gets cpu_count/workers numba threads, so ViSQOL's
    parallel loops do not oversubscribe the cores the pool already fills."""
    if workers <= 1:
        for clip, setting in jobs:
            done(clip, setting, measure(clip, setting, per_channel))
        return
    os.environ.setdefault("NUMBA_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(measure, clip, setting, per_channel): (clip, setting) for clip, setting in jobs}
        for future in as_completed(futures):
            done(*futures[future], future.result())


def measure_all(clips: Sequence[Clip], walloc: Sequence[Setting], opus: Sequence[Setting], cache: OpusCache | None,
                per_channel: bool, workers: int) -> list[dict[str, Any]]:
    """Per-clip rows for every clip × setting: Opus from the cache where it has them, the rest
    measured (progress on stderr).  The cache is saved even when a measurement fails."""
    fields = BASE_FIELDS + (CHANNEL_FIELDS if per_channel else ())
    rows: list[dict[str, Any]] = []
    jobs = []
    for clip in clips:
        for setting in opus:
            hit = cache.get(clip, setting, fields) if cache else None
            if hit is not None:
                rows.append(hit)
            else:
                jobs.append((clip, setting))
        jobs += [(clip, setting) for setting in walloc]
    cached = len(rows)

    def done(clip: Clip, setting: Setting, row: dict[str, Any]) -> None:
        rows.append(row)
        if cache is not None and setting.codec == "opus":
            cache.put(clip, setting, row)
        print(f"  [{len(rows) - cached}/{len(jobs)}] {setting.codec} {setting.label:14} {clip.track}: "
              f"{row['kbps']:.1f} kbps, ViSQOL {row['visqol']:.3f}", file=sys.stderr, flush=True)

    print(f"bench: {len(clips)} clips, {len(jobs)} codings to measure ({cached} Opus rows cached), "
          f"{workers} workers", file=sys.stderr, flush=True)
    try:
        run_jobs(jobs, per_channel, workers, done)
    finally:
        if cache is not None:
            cache.save()
    return rows


def check_api(settings: Sequence[Setting]) -> None:
    """Stop before any work if this walloc's ``api.encode_audio`` lacks an argument the sweep needs."""
    accepted = inspect.signature(api.encode_audio).parameters
    missing = sorted({k for s in settings if s.codec == "walloc" for k in s.walloc_kwargs()} - set(accepted))
    if missing:
        sys.exit(f"bench: this walloc's api.encode_audio takes no {', '.join(missing)} (it has "
                 f"{', '.join(accepted)}); benchmark a single-point model with --model stereo-ms --qualities none")


def _mean(values: Sequence[float]) -> float:
    """Mean over the clips where a metric is defined (HF dB is NaN for a clip without treble)."""
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def summarise(rows: Sequence[dict[str, Any]], settings: Sequence[Setting]) -> list[dict[str, Any]]:
    """Per operating point: the mean of every metric over clips (HF dB also as mean |·|, lag as max |·|)."""
    out = []
    for s in settings:
        mine = [r for r in rows if r["codec"] == s.codec and r["setting"] == s.label]
        if not mine:
            continue
        point: dict[str, Any] = {"codec": s.codec, "setting": s.label, "quality": s.quality,
                                 "bitrate": s.bitrate, "clips": len(mine)}
        for field in ("bytes", *BASE_FIELDS[:-1], *CHANNEL_FIELDS):
            if all(field in r for r in mine):
                point[field] = _mean([r[field] for r in mine])
        point["hf_db_abs"] = _mean([abs(r["hf_db"]) for r in mine])
        point["worst_lag"] = max((r["lag"] for r in mine), key=abs)
        seconds = sum(r["seconds"] for r in mine)
        point["encode_x_realtime"] = seconds / sum(r["encode_s"] for r in mine)
        point["decode_x_realtime"] = seconds / sum(r["decode_s"] for r in mine)
        out.append(point)
    return out


# --------------------------------------------------------------------------- comparison

def interpolate(points: Sequence[dict[str, Any]], metric: str, kbps: float) -> float | None:
    """``metric`` of a curve at ``kbps``, linear in log-kbps; None outside the measured range."""
    pts = sorted(points, key=lambda p: p["kbps"])
    if len(pts) < 2 or not pts[0]["kbps"] <= kbps <= pts[-1]["kbps"]:
        return None
    return float(np.interp(math.log(kbps), [math.log(p["kbps"]) for p in pts], [p[metric] for p in pts]))


def rate_to_match(points: Sequence[dict[str, Any]], metric: str, target: float) -> tuple[str, float]:
    """The lowest kbps at which a curve reaches ``target`` (log-kbps interpolation), as
    (relation, kbps): ("=", k) found; ("<", k) already above it at its lowest rate k;
    (">", k) never reaches it up to its highest rate k."""
    pts = sorted(points, key=lambda p: p["kbps"])
    if pts[0][metric] >= target:
        return "<", pts[0]["kbps"]
    for a, b in zip(pts, pts[1:]):
        if a[metric] < target <= b[metric]:
            t = (target - a[metric]) / (b[metric] - a[metric])
            return "=", math.exp(math.log(a["kbps"]) + t * (math.log(b["kbps"]) - math.log(a["kbps"])))
    return ">", pts[-1]["kbps"]


def compare(summary: Sequence[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """For each Opus bitrate in COMPARE_OPUS_RANGE: walloc's ``metric`` at Opus's measured rate and
    the walloc rate that matches Opus's ``metric``.  ``loses``: walloc scores lower at equal rate
    (or, off walloc's measured range, needs more bits than Opus)."""
    walloc = [p for p in summary if p["codec"] == "walloc" and metric in p]
    opus = [p for p in summary if p["codec"] == "opus" and metric in p
            and COMPARE_OPUS_RANGE[0] <= p["bitrate"] <= COMPARE_OPUS_RANGE[1]]
    if len(walloc) < 2:
        return []
    rows = []
    for o in sorted(opus, key=lambda p: p["bitrate"]):
        at = interpolate(walloc, metric, o["kbps"])
        relation, kbps = rate_to_match(walloc, metric, o[metric])
        ratio = kbps / o["kbps"]
        loses = at < o[metric] if at is not None else relation == ">" or (relation == "=" and ratio > 1)
        rows.append({"metric": metric, "opus_bitrate": o["bitrate"], "opus_kbps": o["kbps"], "opus": o[metric],
                     "walloc_at_rate": at, "delta": None if at is None else at - o[metric],
                     "walloc_kbps_to_match": kbps, "match_relation": relation, "ratio": ratio, "walloc_loses": loses})
    return rows


# --------------------------------------------------------------------------- output

def _fmt(value: float | None, spec: str) -> str:
    """``format(value, spec)``, or a dash of the same width for a missing or undefined value."""
    if value is None or math.isnan(value):
        return "—".rjust(len(format(0.0, spec)))
    return format(value, spec)


def print_table(summary: Sequence[dict[str, Any]], per_channel: bool) -> None:
    columns = [("kbps", "kbps", "7.1f"), ("ViSQOL", "visqol", "7.3f")]
    if per_channel:
        columns.append(("L/R", "visqol_lr", "7.3f"))
    columns += [("log-mel", "log_mel", "8.3f"), ("HF dB", "hf_db", "+7.2f"), ("|HF|dB", "hf_db_abs", "7.2f"),
                ("PSNR", "psnr", "6.2f")]
    print(f"{'codec':7} {'setting':18}" + "".join(f" {h:>{len(_fmt(0.0, s))}}" for h, _, s in columns))
    for p in summary:
        print(f"{p['codec']:7} {p['setting']:18}" + "".join(f" {_fmt(p.get(k), s)}" for _, k, s in columns))


def print_comparison(summary: Sequence[dict[str, Any]], metric: str, title: str) -> list[dict[str, Any]]:
    rows = compare(summary, metric)
    walloc = [p for p in summary if p["codec"] == "walloc" and metric in p]
    opus = [p for p in summary if p["codec"] == "opus" and metric in p]
    if not walloc or not opus:
        return rows
    if not rows:  # a single walloc point: the only fair view is Opus at walloc's rate
        print(f"\n{title}, Opus interpolated in log-kbps at walloc's rate:")
        span = f"{min(p['kbps'] for p in opus):.1f}–{max(p['kbps'] for p in opus):.1f} kbps"
        for w in walloc:
            at = interpolate(opus, metric, w["kbps"])
            verdict = f"outside Opus's measured {span}" if at is None else \
                f"Opus there: {at:.3f}, so walloc {'loses' if w[metric] < at else 'wins'} by {abs(w[metric] - at):.3f}"
            print(f"  walloc {w['setting']}: {w['kbps']:.1f} kbps, {title} {w[metric]:.3f}; {verdict}")
        return rows
    print(f"\n{title} at Opus's bitrates (walloc interpolated in log-kbps between its measured points):")
    print(f"  {'opus':>5} {'kbps':>6} {'Opus':>6} | {'walloc':>6} {'Δ':>6} |"
          f" {'walloc kbps to match':>20} {'ratio':>7} |")
    for r in rows:
        bound = "" if r["match_relation"] == "=" else r["match_relation"]  # "<" / ">": off walloc's measured range
        print(f"  {r['opus_bitrate']:>4}k {r['opus_kbps']:6.1f} {r['opus']:6.3f} | {_fmt(r['walloc_at_rate'], '6.3f')}"
              f" {_fmt(r['delta'], '+6.3f')} | {bound + format(r['walloc_kbps_to_match'], '.1f'):>20}"
              f" {bound + format(r['ratio'], '.2f') + '×':>7} | walloc {'loses' if r['walloc_loses'] else 'wins'}")
    lost = [str(r["opus_bitrate"]) for r in rows if r["walloc_loses"]]
    held = [str(r["opus_bitrate"]) for r in rows if not r["walloc_loses"]]
    if not lost:
        print(f"  walloc matches or beats Opus on {title} at every bitrate compared.")
    else:
        print(f"  walloc LOSES to Opus on {title} at {', '.join(lost)} kbps"
              + (f"; matches or beats it at {', '.join(held)} kbps." if held else " (every bitrate compared)."))
    return rows


def print_alignment(summary: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]) -> None:
    """The largest decode offset per Opus bitrate, and any decode of the wrong length."""
    opus = [p for p in summary if p["codec"] == "opus"]
    if not opus:
        return
    wrong = sum(r["decoded_frames"] != r["frames"] for r in rows if r["codec"] == "opus")
    worst = max(abs(p["worst_lag"]) for p in opus)
    print("Opus alignment, largest cross-correlation lag per bitrate (samples): "
          + ", ".join(f"{p['setting']} {p['worst_lag']:+.2f}" for p in opus)
          + f"; {wrong} decodes of a length other than the input's"
          + (f" — CHECK: a lag of {worst:.0f} samples means a misaligned decode" if worst > LAG_ALARM else ""))


def print_speed(rows: Sequence[dict[str, Any]], workers: int) -> None:
    coded = [r for r in rows if r["codec"] == "walloc"]
    if coded:
        audio = sum(r["seconds"] for r in coded)
        print(f"walloc speed: encode {audio / sum(r['encode_s'] for r in coded):.0f}×, decode "
              f"{audio / sum(r['decode_s'] for r in coded):.0f}× real time (in process, {workers} workers "
              f"sharing {os.cpu_count()} cores; per setting in the JSON)")


def _json_safe(value: Any) -> Any:
    """NaN (an undefined HF dB) as null, so the JSON is strict JSON that any reader accepts."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def plot(summary: Sequence[dict[str, Any]], path: Path, per_channel: bool) -> None:
    """ViSQOL and log-mel against kbps (log axis), one line per codec."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for codec, style in (("walloc", "o-"), ("opus", "s-")):
        pts = sorted((p for p in summary if p["codec"] == codec), key=lambda p: p["kbps"])
        if not pts:
            continue
        kbps = [p["kbps"] for p in pts]
        line, = ax1.plot(kbps, [p["visqol"] for p in pts], style, label=f"{codec} (mono mix)")
        if per_channel:
            ax1.plot(kbps, [p["visqol_lr"] for p in pts], style.replace("-", "--"), color=line.get_color(),
                     alpha=0.6, label=f"{codec} (mean of L, R)")
        ax2.plot(kbps, [p["log_mel"] for p in pts], style, label=codec)
        for p in pts:
            ax1.annotate(p["setting"].split()[0], (p["kbps"], p["visqol"]), fontsize=7,
                         textcoords="offset points", xytext=(3, -9))
    rates = [p["kbps"] for p in summary]
    ticks = [t for t in (6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384)
             if min(rates) / 1.5 <= t <= max(rates) * 1.5]
    for ax, ylabel in ((ax1, "ViSQOL MOS-LQO (higher is better)"), (ax2, "log-mel distance (lower is better)")):
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(t) for t in ticks])  # bitrates people know, not powers of ten
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("kbps (whole file)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/audio/val"))
    parser.add_argument("--seconds", type=float, default=10.0, help="excerpt length (default 10)")
    parser.add_argument("--limit", type=int, default=None, help="first N tracks only")
    parser.add_argument("--qualities", default=DEFAULT_QUALITIES,
                        help=f"walloc qualities, comma list, or 'none' for a single-point model "
                             f"(default {DEFAULT_QUALITIES})")
    parser.add_argument("--tune", choices=("perceptual", "psnr"), default=None,
                        help="walloc tuning (default: the API's, perceptual)")
    parser.add_argument("--model", default=None, help="walloc model (default: the API's)")
    parser.add_argument("--opus", default=DEFAULT_OPUS,
                        help=f"Opus bitrates in kbps (default {DEFAULT_OPUS}; '' for none)")
    parser.add_argument("--per-channel", action="store_true", help="also ViSQOL on L and R separately (twice the cost)")
    parser.add_argument("--workers", type=int, default=2, help="processes coding and scoring clips (default 2)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help=f"Opus result cache (default {DEFAULT_CACHE})")
    parser.add_argument("--json", type=Path, default=None, help="write settings, summary, comparison and per-clip rows")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG of ViSQOL and log-mel against kbps")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"bench: {args.data}: no such folder (fetch it: make fetch-audio)")

    walloc = [Setting("walloc", q, args.tune, args.model) for q in parse_list(args.qualities)]
    opus = [Setting("opus", bitrate=b) for b in parse_list(args.opus) if b is not None] if args.opus.strip() else []
    if opus and not (shutil.which("opusenc") and shutil.which("opusdec")):
        print("bench: opusenc/opusdec not found (Debian: opus-tools): Opus skipped", file=sys.stderr)
        opus = []
    check_api(walloc)

    with tempfile.TemporaryDirectory(prefix="bench-audio-") as tmp:
        clips = select_clips(args.data, args.seconds, args.limit, Path(tmp))
        if not clips:
            sys.exit(f"bench: {args.data}: no audio files")
        cache = OpusCache(args.cache, opus_version()) if opus else None
        t0 = time.perf_counter()
        rows = measure_all(clips, walloc, opus, cache, args.per_channel, args.workers)
        elapsed = time.perf_counter() - t0

    summary = summarise(rows, walloc + opus)
    print(f"{len(clips)} clips, {sum(c.seconds for c in clips) / len(clips):.1f} s each on average, from the middle "
          f"of each track in {args.data} (own level, clipped to ±1); measured in {elapsed:.0f} s")
    print_table(summary, args.per_channel)
    print_alignment(summary, rows)
    comparison = print_comparison(summary, "visqol", "ViSQOL")
    if args.per_channel:
        comparison += print_comparison(summary, "visqol_lr", "ViSQOL L/R")
    print_speed(rows, args.workers)

    if args.json:
        args.json.write_text(json.dumps(_json_safe({
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "opus_version": cache.stamp["opus"] if cache else None, "metrics_version": METRICS_VERSION,
            "clips": [{k: v for k, v in asdict(c).items() if k != "wav"} for c in clips],
            "summary": summary, "comparison": comparison, "per_clip": rows}), indent=1))
    if args.plot:
        plot(summary, args.plot, args.per_channel)


if __name__ == "__main__":
    main()
