"""Audio benchmark: walloc vs Opus on 30-second clips of the validation tracks.

    python bench/bench_audio.py --data data/audio/val [--seconds 30] [--json out.json]

Each clip is taken from the middle of a track, made zero-mean and peak-normalised
to 0.5 (the WaLLoC paper's audio protocol), and coded through the real
``walloc`` API (file bytes, headers included).  Reported per codec: kbps, PSNR
= −10·log10(MSE) over all samples, and a log-mel-spectrogram distance (mean
absolute difference of log10 mel energies, 128 bands, 2048-point STFT: lower
is better; PSNR flatters MSE-trained codecs against a perceptual codec like
Opus, the mel distance less so).  Speed is reported as × real time for the
in-process encode and decode.  Opus runs through ``opusenc``/``opusdec``
(Debian package opus-tools) when they are installed, at bitrates around
walloc's.
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from walloc_cli import api  # noqa: E402
from walloc_cli.model import DEFAULT_AUDIO_MODEL, load_model  # noqa: E402


def clips(folder: Path, seconds: float) -> list[tuple[str, np.ndarray, int]]:
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".ogg", ".flac", ".wav"}):
        info = soundfile.info(path)
        n = int(seconds * info.samplerate)
        start = max(0, info.frames // 2 - n // 2)
        x, rate = soundfile.read(path, start=start, frames=n, dtype="float64", always_2d=True)
        x = x - x.mean(axis=0)
        x = x * (0.5 / max(np.abs(x).max(), 1e-12))
        out.append((path.name, x, rate))
    return out


def psnr(x: np.ndarray, y: np.ndarray) -> float:
    return float(-10 * np.log10(max(np.mean((x - y) ** 2), 1e-20)))


def _mel_filters(rate: int, n_fft: int, bands: int) -> np.ndarray:
    def hz_to_mel(f):
        return 2595 * np.log10(1 + f / 700)

    mels = np.linspace(hz_to_mel(0), hz_to_mel(rate / 2), bands + 2)
    hz = 700 * (10 ** (mels / 2595) - 1)
    bins = np.fft.rfftfreq(n_fft, 1 / rate)
    fb = np.zeros((bands, len(bins)))
    for i in range(bands):
        lo, mid, hi = hz[i], hz[i + 1], hz[i + 2]
        fb[i] = np.clip(np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)), 0, None)
    return fb


def log_mel_distance(x: np.ndarray, y: np.ndarray, rate: int, n_fft: int = 2048, hop: int = 512) -> float:
    fb = _mel_filters(rate, n_fft, 128)
    window = np.hanning(n_fft)

    def logmel(s: np.ndarray) -> np.ndarray:
        frames = np.lib.stride_tricks.sliding_window_view(s, n_fft)[::hop] * window
        power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2
        return np.log10(power @ fb.T + 1e-8)

    return float(np.mean([np.mean(np.abs(logmel(x[:, c]) - logmel(y[:, c]))) for c in range(x.shape[1])]))


def run_walloc(items, model_name: str) -> dict:
    load_model(model_name).decoder()  # warm
    rows, enc_t, dec_t, seconds = [], 0.0, 0.0, 0.0
    for name, x, rate in items:
        buf = io.BytesIO()
        soundfile.write(buf, x, rate, subtype="FLOAT", format="WAV")
        t0 = time.perf_counter()
        wlc = api.encode_audio(buf.getvalue(), model_name).data
        t1 = time.perf_counter()
        out = api.decode_audio(wlc, ".wav", "FLOAT")
        t2 = time.perf_counter()
        y, _ = soundfile.read(io.BytesIO(out), dtype="float64", always_2d=True)
        dur = len(x) / rate
        enc_t, dec_t, seconds = enc_t + t1 - t0, dec_t + t2 - t1, seconds + dur
        rows.append({"clip": name, "kbps": 8 * len(wlc) / dur / 1000, "psnr": psnr(x, y),
                     "log_mel": log_mel_distance(x, y, rate)})
    return {"codec": f"walloc {model_name}", "kbps": float(np.mean([r["kbps"] for r in rows])),
            "psnr": float(np.mean([r["psnr"] for r in rows])),
            "log_mel": float(np.mean([r["log_mel"] for r in rows])),
            "encode_x_realtime": seconds / enc_t, "decode_x_realtime": seconds / dec_t, "per_clip": rows}


def run_opus(items, kbps: int) -> dict | None:
    if not (shutil.which("opusenc") and shutil.which("opusdec")):
        return None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, x, rate in items:
            src, enc, dec = Path(tmp) / "in.wav", Path(tmp) / "x.opus", Path(tmp) / "out.wav"
            soundfile.write(src, x, rate, subtype="FLOAT")
            subprocess.run(["opusenc", "--quiet", "--bitrate", str(kbps), str(src), str(enc)], check=True)
            subprocess.run(["opusdec", "--quiet", "--rate", str(rate), "--float", str(enc), str(dec)], check=True)
            y, _ = soundfile.read(dec, dtype="float64", always_2d=True)
            y = y[: len(x)]
            if len(y) < len(x):
                y = np.pad(y, ((0, len(x) - len(y)), (0, 0)))
            dur = len(x) / rate
            rows.append({"clip": name, "kbps": 8 * enc.stat().st_size / dur / 1000, "psnr": psnr(x, y),
                         "log_mel": log_mel_distance(x, y, rate)})
    return {"codec": f"opus {kbps}k", "kbps": float(np.mean([r["kbps"] for r in rows])),
            "psnr": float(np.mean([r["psnr"] for r in rows])),
            "log_mel": float(np.mean([r["log_mel"] for r in rows])), "per_clip": rows}


def linear_codec_curve(train: Path, items, levels: int, latents: int, steps: list[float]) -> list[dict]:
    """The purely linear codec (PCA of J-level WPT of mid/side, uniform step, per-role integer
    tables fitted on training music, real range coding) at several steps."""
    from walloc_cli import entropy, wavelets
    from walloc_cli.train import normalise_track

    block = 2**levels
    rng = np.random.default_rng(0)
    files = sorted(p for p in train.rglob("*") if p.suffix.lower() in {".ogg", ".flac", ".wav"})
    coeffs = {0: [], 1: []}
    for path in [files[i] for i in sorted(rng.choice(len(files), min(40, len(files)), replace=False))]:
        info = soundfile.info(path)
        n = min(info.frames, 20 * info.samplerate)
        start = max(0, info.frames // 2 - n // 2)
        x, _ = soundfile.read(path, start=start, frames=n - n % block, dtype="float64", always_2d=True)
        for role, signal in enumerate(normalise_track(x)):
            coeffs[min(role, 1)].append(wavelets.wpt1d(signal[None], levels).T)
    pooled = np.concatenate(coeffs[0] + coeffs[1])
    mean = pooled.mean(0)
    evals, evecs = np.linalg.eigh(np.cov((pooled - mean).T))
    basis = evecs[:, np.argsort(evals)[::-1][:latents]]
    curve = []
    for step in steps:
        tables = [entropy.fit_tables(np.rint((np.concatenate(coeffs[r]) - mean) @ basis / step).astype(np.int32))
                  for r in (0, 1)]
        kbps, psnrs = [], []
        for _, x, rate in items:
            n = len(x) - len(x) % block
            x = x[:n]
            mid, side = (x[:, 0] + x[:, 1]) / 2, (x[:, 0] - x[:, 1]) / 2
            nbytes, rec = 0, []
            for role, signal in enumerate((mid, side)):
                c = wavelets.wpt1d(signal[None], levels)
                z = np.rint((c.T - mean) @ basis / step).astype(np.int32)
                nbytes += len(entropy.encode(np.ascontiguousarray(z.T), tables[role]))
                rec.append(wavelets.iwpt1d(((z * step) @ basis.T + mean).T, levels)[0])
            y = np.stack([rec[0] + rec[1], rec[0] - rec[1]], axis=1)
            kbps.append(8 * nbytes / (n / rate) / 1000)
            psnrs.append(psnr(x, y))
        curve.append({"step": step, "kbps": float(np.mean(kbps)), "psnr": float(np.mean(psnrs))})
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/audio/val"))
    parser.add_argument("--model", default=DEFAULT_AUDIO_MODEL)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--train", type=Path, default=None, help="training music, for the linear PCA baseline")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"bench: {args.data}: no such folder (fetch it: ../shared/data/audio/fetch-audio.sh data/audio)")
    items = clips(args.data, args.seconds)[: args.limit]
    results = [run_walloc(items, args.model)]
    base = results[0]["kbps"]
    for kbps in sorted({max(6, round(base * f)) for f in (0.5, 1.0, 2.0)}):
        opus = run_opus(items, kbps)
        if opus:
            results.append(opus)
    print(f"{len(items)} clips of {args.seconds:.0f} s (zero-mean, peak 0.5) from {args.data}")
    print(f"{'codec':24} {'kbps':>7} {'PSNR dB':>8} {'log-mel':>8}")
    for r in results:
        print(f"{r['codec']:24} {r['kbps']:7.1f} {r['psnr']:8.2f} {r['log_mel']:8.3f}")
    w = results[0]
    if args.train:
        cfg = load_model(args.model).config
        curve = linear_codec_curve(args.train, items, cfg.levels, cfg.latent_channels,
                                   [float(x) for x in np.geomspace(0.005, 0.08, 7)])
        print(f"linear PCA codec (J={cfg.levels}, {cfg.latent_channels} latents per mid/side signal, real range coding):")
        for row in curve:
            print(f"  step {row['step']:.4f}: {row['kbps']:6.1f} kbps  {row['psnr']:.2f} dB")
        pts = sorted(curve, key=lambda r: r["kbps"])
        if pts[0]["kbps"] <= w["kbps"] <= pts[-1]["kbps"]:
            at = float(np.interp(w["kbps"], [p["kbps"] for p in pts], [p["psnr"] for p in pts]))
            print(f"at {w['kbps']:.1f} kbps: linear {at:.2f} dB vs walloc {w['psnr']:.2f} dB ({w['psnr'] - at:+.2f} dB)")
        results.append({"codec": "linear PCA", "curve": curve})
    print(f"walloc speed: encode {w['encode_x_realtime']:.0f}× real time, decode {w['decode_x_realtime']:.0f}× "
          "real time (in process, 2 cores)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
