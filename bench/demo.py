"""`make demo`: compress a sample photo with the walloc command and report what happened.

Runs the real CLI (as a user would), then measures size ratio, bpp and PSNR.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "data" / "photo.jpg"
OUT = ROOT / "demo-out"


def walloc(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "walloc_cli", *args], check=True)
    return time.perf_counter() - started


def main() -> None:
    OUT.mkdir(exist_ok=True)
    wlc, png = OUT / "photo.wlc", OUT / "photo.png"
    print(f"$ walloc encode {SAMPLE.relative_to(ROOT)} -o {wlc.relative_to(ROOT)} --force")
    t_enc = walloc("encode", str(SAMPLE), "-o", str(wlc), "--force")
    print(f"$ walloc info {wlc.relative_to(ROOT)}")
    walloc("info", str(wlc))
    print(f"$ walloc decode {wlc.relative_to(ROOT)} -o {png.relative_to(ROOT)} --force")
    t_dec = walloc("decode", str(wlc), "-o", str(png), "--force")
    original = np.asarray(Image.open(SAMPLE).convert("RGB")).astype(np.float64)
    decoded = np.asarray(Image.open(png).convert("RGB")).astype(np.float64)
    h, w = original.shape[:2]
    raw = h * w * 3
    size = wlc.stat().st_size
    psnr = 10 * np.log10(255.0**2 / np.mean((original - decoded) ** 2))
    print()
    print(f"image        {w}×{h} RGB ({raw} bytes raw, {SAMPLE.stat().st_size} bytes as the source JPEG)")
    print(f"walloc file  {size} bytes: ratio {raw / size:.1f}:1 vs raw, {8 * size / (h * w):.3f} bpp")
    print(f"quality      PSNR {psnr:.2f} dB")
    print(f"time         encode {t_enc:.2f} s, decode {t_dec:.2f} s (whole commands, interpreter start included)")
    print()
    print("quality ladder (walloc encode -q Q; same photo):")
    print("   Q      bpp     PSNR")
    for q in (10, 30, 50, 75, 95):
        walloc("encode", str(SAMPLE), "-q", str(q), "-o", str(wlc), "--force", "--quiet")
        walloc("decode", str(wlc), "-o", str(png), "--force", "--quiet")
        decoded = np.asarray(Image.open(png).convert("RGB")).astype(np.float64)
        q_psnr = 10 * np.log10(255.0**2 / np.mean((original - decoded) ** 2))
        print(f"  {q:2d}   {8 * wlc.stat().st_size / (h * w):6.3f}   {q_psnr:5.2f} dB")


if __name__ == "__main__":
    main()
