"""Encoding speed: walloc against cwebp and Pillow's JPEG / WebP on the same photos, same run.

    python bench/speed.py --data ../shared/data/images/val [--images 40] [--json out.json]

Two figures, as a user meets them:

* **one photo**: wall time of ``walloc encode photo.png`` (the default ``rgb-1x``
  at -q 75, and ``-m rgb-16x``) for a 768×512 photo,
  interpreter start and imports included (the median of 5 runs), next to
  ``cwebp`` on the same file;
* **a folder**: throughput in megapixels per second of encoding every photo of a
  folder — ``walloc encode -r DIR`` (one process, and ``-j 2``), ``cwebp`` once per
  file (as a shell loop does, and two at a time), and Pillow's JPEG and WebP in
  one Python process (the libraries without process start-up).

Inputs are PNG copies of the photos (lossless, so every encoder starts from
the same pixels and pays for decoding its input).  Nothing is timed while
another benchmark runs; the machine's load is printed with the results.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

WALLOC = [sys.executable, "-m", "walloc_cli"]


def _prepare(data: Path, count: int, work: Path) -> tuple[list[Path], Path, float]:
    """PNG copies of the first ``count`` photos, plus one 768×512 photo; total megapixels."""
    folder = work / "photos"
    folder.mkdir()
    files = sorted(p for p in data.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})[:count]
    paths, pixels = [], 0
    for f in files:
        im = Image.open(f).convert("RGB")
        out = folder / (f.stem + ".png")
        im.save(out, compress_level=1)
        paths.append(out)
        pixels += im.width * im.height
    big = work / "photo-768x512.png"
    Image.open(files[0]).convert("RGB").resize((768, 512), Image.LANCZOS).save(big, compress_level=1)
    return paths, big, pixels / 1e6


def _wall(command: list[str], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _throughput(run, megapixels: float, repeat: int = 2) -> float:
    best = min(_timed(run) for _ in range(repeat))
    return megapixels / best


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/images/val"))
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--quality", type=int, default=75, help="walloc -q, cwebp -q, Pillow quality")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    cwebp = shutil.which("cwebp")
    results: dict[str, float | str] = {"load_average": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths, big, megapixels = _prepare(args.data, args.images, work)
        q = str(args.quality)
        out = work / "out"

        def walloc_batch(jobs: int, model: str | None = None):
            options = ["-m", model] if model else ["-q", q]

            def run() -> None:
                shutil.rmtree(out, ignore_errors=True)
                subprocess.run(WALLOC + ["encode", "-r", str(work / "photos"), "-o", str(out), *options,
                                         "-j", str(jobs), "--quiet"], check=True)
            return run

        def cwebp_batch(parallel: int):
            def one(p: Path) -> None:
                subprocess.run([cwebp, "-quiet", "-q", q, str(p), "-o", str(p.with_suffix(".webp"))], check=True)

            def run() -> None:
                with ThreadPoolExecutor(parallel) as pool:
                    list(pool.map(one, paths))
            return run

        def pillow(fmt: str):
            def run() -> None:
                for p in paths:
                    im = Image.open(p)
                    im.load()
                    im.save(io.BytesIO(), fmt, quality=args.quality)
            return run

        results["single_walloc_encode_s"] = _wall(WALLOC + ["encode", str(big), "-o", str(work / "big.wlc"),
                                                             "-f", "-q", q, "--quiet"])
        results["single_walloc_16x_encode_s"] = _wall(WALLOC + ["encode", str(big), "-o", str(work / "big16.wlc"),
                                                                 "-f", "-m", "rgb-16x", "--quiet"])
        if cwebp:
            results["single_cwebp_s"] = _wall([cwebp, "-quiet", "-q", q, str(big), "-o", str(work / "big.webp")])
        results["batch_walloc_j1_MPps"] = _throughput(walloc_batch(1), megapixels)
        results["batch_walloc_j2_MPps"] = _throughput(walloc_batch(2), megapixels)
        results["batch_walloc_16x_j1_MPps"] = _throughput(walloc_batch(1, "rgb-16x"), megapixels)
        results["batch_walloc_16x_j2_MPps"] = _throughput(walloc_batch(2, "rgb-16x"), megapixels)
        if cwebp:
            results["batch_cwebp_loop_MPps"] = _throughput(cwebp_batch(1), megapixels)
            results["batch_cwebp_2parallel_MPps"] = _throughput(cwebp_batch(2), megapixels)
        results["batch_pillow_webp_MPps"] = _throughput(pillow("WEBP"), megapixels)
        results["batch_pillow_jpeg_MPps"] = _throughput(pillow("JPEG"), megapixels)
        results["photos"] = f"{len(paths)} PNGs, {megapixels:.2f} MP, from {args.data}"
    width = max(len(k) for k in results)
    for k, v in results.items():
        print(f"{k:{width}}  {v:.3f}" if isinstance(v, float) else f"{k:{width}}  {v}")
    for label, key in (("rgb-1x", "batch_walloc"), ("rgb-16x", "batch_walloc_16x")):
        if "batch_cwebp_loop_MPps" in results:
            print(f"{label}: -j1 / cwebp loop {results[key + '_j1_MPps'] / results['batch_cwebp_loop_MPps']:.2f}x; "
                  f"-j2 / cwebp ×2 {results[key + '_j2_MPps'] / results['batch_cwebp_2parallel_MPps']:.2f}x; "
                  f"-j1 / Pillow WebP {results[key + '_j1_MPps'] / results['batch_pillow_webp_MPps']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
