"""Why walloc's audio trails Opus above ~50 kbps: two measurements behind the README's claim.

    python bench/audio_gap.py snr  --data data/audio/val [--opus 64] [--qualities 60,75]
    python bench/audio_gap.py gain --data data/audio/val [--steps 0.004,0.01,0.02]

``snr`` — where each codec puts its error.  Per frequency group of the ``stereo-1x``
model (~⅓ octave above 700 Hz), the waveform SNR of the left channel, summed over
the excerpt, for Opus at ``--opus`` kbps and walloc at ``--qualities`` (Opus's
decode is shifted by its integer cross-correlation lag first, so a sample of
resampler delay is not counted as error).  If Opus were only *allocating*
differently, its SNR would be higher in some groups and lower in others at the
same rate; a gap of the same sign in every group is coding efficiency.

``gain`` — how many bits a transform needs at equal quantization step.  Each
transform's coefficients are rounded with one uniform step and costed with an
ideal adaptive coder: a discrete Laplacian whose scale is the mean |value| of
their (frequency group, 23 ms frame) — the same side information for every
transform, so it is left out.  Transforms: the J = 8, 9, 10 bior4.4 packet
trees walloc could use, and MDCTs (sine window, orthonormal, 256/1024/2048
bins) of the kind CELT, Vorbis and AAC use.  Both kinds are (near) orthonormal,
so equal step is (nearly) equal MSE; the packet tree's synthesis noise gain is
printed beside it.

Excerpts are the ones ``bench/bench_audio.py`` uses (the middle 10 s of each track).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_audio import Clip, Setting, code_opus, code_walloc, select_clips  # noqa: E402
from walloc_cli import api, audio_ladder, wavelets  # noqa: E402

def _groups() -> np.ndarray:
    """stereo-1x's frequency groups (band edges in 1/256 of the band), read from the model."""
    return np.asarray(api.model_of_kind("stereo-1x", "audio").params.groups)


def _left(y: np.ndarray, frames: int) -> np.ndarray:
    return y[:frames, 0]


def _align(x: np.ndarray, y: np.ndarray, search: int = 8) -> np.ndarray:
    """``y`` shifted by the integer lag (|lag| ≤ search) that best matches ``x``."""
    middle = slice(len(x) // 4, 3 * len(x) // 4)
    scores = [float(np.dot(x[middle], np.roll(y, lag)[middle])) for lag in range(-search, search + 1)]
    return np.roll(y, int(np.argmax(scores)) - search)


def group_snr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Waveform SNR (dB) of ``y`` against ``x`` in each of stereo-1x's frequency groups."""
    params = api.model_of_kind("stereo-1x", "audio").params
    n = (len(x) // (params.frame * params.block)) * params.frame * params.block
    signal = audio_ladder.band_power(x[None, :n], params)[0].sum(axis=0)
    error = audio_ladder.band_power((y - x)[None, :n], params)[0].sum(axis=0)
    return 10.0 * np.log10(signal / np.maximum(error, 1e-30))


def run_snr(clips: list[Clip], opus_kbps: int, qualities: list[int]) -> None:
    settings = [Setting("opus", bitrate=opus_kbps)] + [Setting("walloc", quality=q) for q in qualities]
    table: dict[str, list[np.ndarray]] = {}
    rates: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips:
            x = _left(soundfile.read(clip.wav, dtype="float64", always_2d=True)[0], clip.frames)
            for setting in settings:
                coder = code_opus if setting.codec == "opus" else code_walloc
                nbytes, y, _, _ = coder(clip, setting, Path(tmp))
                y = _left(np.pad(y, ((0, max(0, clip.frames - len(y))), (0, 0))), clip.frames)
                if setting.codec == "opus":
                    y = _align(x, y)
                table.setdefault(setting.label, []).append(group_snr(x, y))
                rates.setdefault(setting.label, []).append(8 * nbytes / clip.seconds / 1000)
    edges = _groups()[:-1] * clips[0].rate / 2 / 256
    print("SNR per group, left channel, dB (group start in kHz):")
    print(f"{'':14s}" + "".join(f"{e / 1000:6.1f}" for e in edges))
    for label, rows in table.items():
        print(f"{label:5s} {np.mean(rates[label]):6.1f}k " + "".join(f"{v:6.1f}" for v in np.mean(rows, axis=0)))


def mdct(x: np.ndarray, bins: int) -> np.ndarray:
    """Orthonormal MDCT with a sine window (TDAC): (bins, frames)."""
    n = (len(x) // bins) * bins
    padded = np.concatenate([np.zeros(bins), x[:n], np.zeros(bins)])
    t = np.arange(2 * bins)
    window = np.sin(np.pi * (t + 0.5) / (2 * bins))
    basis = np.sqrt(2.0 / bins) * window * np.cos(np.pi / bins * (t[None, :] + 0.5 + bins / 2)
                                                   * (np.arange(bins)[:, None] + 0.5))
    frames = np.lib.stride_tricks.sliding_window_view(padded, 2 * bins)[::bins].T
    return basis @ frames


def packet(x: np.ndarray, levels: int) -> np.ndarray:
    """bior4.4 packet coefficients (bands in frequency order, positions)."""
    n = (len(x) // 4096) * 4096
    coefficients = wavelets.wpt1d(x[None, None, :n], levels, "bior4.4")[0]
    return coefficients[audio_ladder.frequency_order(levels)]


def ideal_bits(coefficients: np.ndarray, step: float, frame: int) -> float:
    """Bits of rounded coefficients under a discrete Laplacian per (group, frame of ``frame`` positions)."""
    bands, positions = coefficients.shape
    q = np.round(coefficients / step)[:, : (positions // frame) * frame].reshape(bands, -1, frame)
    edges = _groups() * bands // 256
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        block = q[lo:hi]
        mean = np.maximum(np.abs(block).mean(axis=(0, 2), keepdims=True), 1e-3)
        theta = np.clip((np.sqrt(1.0 + mean**2) - 1.0) / mean, 1e-12, 1.0 - 1e-9)  # E|k| = 2θ/(1−θ²)
        total -= np.log2((1.0 - theta) / (1.0 + theta) * theta ** np.abs(block)).sum()
    return total


def run_gain(clips: list[Clip], steps: list[float]) -> None:
    hop = 1024  # samples per costing frame: stereo-1x's 23 ms energy frame at 44.1 kHz
    transforms = {f"WPT J={j}": (lambda s, j=j: packet(s, j), max(1, hop >> j)) for j in (8, 9, 10)}
    transforms.update({f"MDCT {b}": (lambda s, b=b: mdct(s, b), max(1, hop // b)) for b in (256, 1024, 2048)})
    rng = np.random.default_rng(0)
    for j in (8, 9, 10):
        noise = wavelets.iwpt1d(rng.standard_normal((1, 2**j, 65536 >> j)), j, "bior4.4")
        print(f"WPT J={j} synthesis noise gain: {float(noise.var()):.3f} (1 = orthonormal)")
    signals = [_left(soundfile.read(c.wav, dtype="float64", always_2d=True)[0], c.frames) for c in clips]
    seconds = sum(c.seconds for c in clips)
    for step in steps:
        cells = []
        for name, (transform, frame) in transforms.items():
            bits = sum(ideal_bits(transform(s), step, frame) for s in signals)
            cells.append(f"{name} {bits / seconds / 1000:6.1f}")
        print(f"step {step}: kbps per channel  " + "   ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("snr", "gain"))
    parser.add_argument("--data", type=Path, default=Path("data/audio/val"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--opus", type=int, default=64)
    parser.add_argument("--qualities", default="60,75")
    parser.add_argument("--steps", default="0.004,0.01,0.02")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"audio_gap: {args.data}: no such folder (make fetch-audio)")
    with tempfile.TemporaryDirectory() as tmp:
        clips = select_clips(args.data, args.seconds, None, Path(tmp))
        if args.what == "snr":
            run_snr(clips, args.opus, [int(q) for q in args.qualities.split(",")])
        else:
            run_gain(clips, [float(s) for s in args.steps.split(",")])


if __name__ == "__main__":
    main()
