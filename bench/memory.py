"""Peak memory (RSS) of `walloc encode` / `walloc decode` on huge inputs.

    python bench/memory.py [--hours 1] [--megapixels 96] [--models rgb-1x rgb-16x]
                           [--raster-heights 1000 4000 --raster-width 1500 --raster-bands 13]

Writes a synthetic stereo WAV of the given length (music-like: a few tones and
noise) and a synthetic 12000×8000 RGB PNG into a temporary folder, then runs
the real CLI on them in subprocesses and reports each one's wall time and peak
resident memory (VmHWM of the child); images once per image model, with the
peak in bytes per pixel (issue #11's budget: 16).  N-band rasters (#15): a
synthetic uint16 ``.npy`` tile of each height (nband-1x codes it in strips), with
the peak in bytes per sample: it should not grow with the height.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def run(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS in MB of one walloc command (fresh child process)."""
    # VmHWM of the child's own address space: ru_maxrss would carry over the parent's
    # high-water mark across fork+exec on Linux.
    code = ("import sys; from walloc_cli.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
            "    print(hwm, file=sys.stderr); raise")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"walloc {' '.join(args)} failed: {done.stderr}")
    rss_kb = int(done.stderr.strip().splitlines()[-1])
    return wall, rss_kb / 1024


def synthetic_audio(path: Path, hours: float, rate: int = 44100) -> None:
    import soundfile

    total = int(hours * 3600 * rate)
    rng = np.random.default_rng(0)
    with soundfile.SoundFile(path, "w", rate, 2, "PCM_16") as f:
        step = rate * 60
        for start in range(0, total, step):
            n = min(step, total - start)
            t = (start + np.arange(n)) / rate
            tone = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 330 * t + np.sin(t))
            noise = 0.02 * rng.standard_normal((n, 2))
            f.write(np.stack([tone, 0.8 * tone], axis=1) + noise)


def synthetic_image(path: Path, megapixels: float) -> int:
    """Write a 3:2 RGB PNG of about ``megapixels``; returns its pixel count."""
    from PIL import Image

    w = int(np.sqrt(megapixels * 1e6 * 1.5))
    h = int(megapixels * 1e6 / w)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack([128 + 100 * np.sin(x / 300), 128 + 100 * np.cos(y / 200), 128 + 50 * np.sin((x + y) / 50)], -1)
    Image.fromarray(rgb.astype(np.uint8)).save(path, compress_level=1)
    return w * h


def synthetic_raster(path: Path, height: int, width: int, bands: int) -> int:
    """Write an (height, width, bands) uint16 ``.npy`` of smooth, band-correlated fields plus
    noise (a multispectral tile's statistics, roughly), row block by row block; returns its samples."""
    out = np.lib.format.open_memmap(path, "w+", np.uint16, (height, width, bands))
    rng = np.random.default_rng(0)
    x = np.arange(width, dtype=np.float32)
    weights = rng.uniform(0.5, 1.5, (3, bands)).astype(np.float32)
    for r0 in range(0, height, 256):
        y = np.arange(r0, min(height, r0 + 256), dtype=np.float32)[:, None]
        fields = np.stack([np.sin(x / 300 + y / 200), np.cos((x - y) / 90), np.sin((x + 2 * y) / 35)], -1)
        block = 8000 + 3000 * fields @ weights + rng.normal(0, 300, (y.size, width, bands))
        out[r0 : r0 + y.size] = np.clip(block, 0, 65535).astype(np.uint16)
    out.flush()
    return height * width * bands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--megapixels", type=float, default=96.0)
    parser.add_argument("--models", nargs="+", default=["rgb-1x", "rgb-16x"], help="image models to measure")
    parser.add_argument("--raster-heights", nargs="*", type=int, default=[1000, 4000],
                        help="heights of the synthetic N-band tiles (none: skip them)")
    parser.add_argument("--raster-width", type=int, default=1500)
    parser.add_argument("--raster-bands", type=int, default=13)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = []  # (title, source, decoded, extra encode arguments, pixels or None)
        if args.hours > 0:
            wav = tmp / "long.wav"
            synthetic_audio(wav, args.hours)
            cases.append((f"audio: {args.hours:g} h stereo 44.1 kHz 16-bit WAV", wav, tmp / "back.wav", [], None))
        if args.megapixels > 0:
            png = tmp / "huge.png"
            pixels = synthetic_image(png, args.megapixels)
            for name in args.models:
                cases.append((f"image: {args.megapixels:g} MP RGB PNG, {name}", png, tmp / "back.png",
                              ["-m", name], pixels))
        for height in args.raster_heights:
            npy = tmp / f"tile-{height}.npy"
            samples = synthetic_raster(npy, height, args.raster_width, args.raster_bands)
            cases.append((f"raster: {height}×{args.raster_width}×{args.raster_bands} uint16 .npy, nband-1x", npy,
                          tmp / f"back-{height}.npy", ["-q", "40"], samples))
        for title, source, decoded, extra, pixels in cases:
            coded = source.with_suffix(".wlc")
            print(f"{title}, {source.stat().st_size / 1e6:.0f} MB")
            for verb, args_ in (("encode", [str(source), "-o", str(coded), "--force", *extra]),
                                ("decode", [str(coded), "-o", str(decoded), "--force"])):
                wall, rss = run([verb, *args_])
                unit = "sample" if title.startswith("raster") else "pixel"
                per_pixel = f"  {rss * 2**20 / pixels:5.1f} bytes/{unit}" if pixels else ""
                print(f"  {verb}  {wall:7.1f} s  peak RSS {rss:6.0f} MB{per_pixel}", flush=True)
            print(f"  .wlc    {coded.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
