"""BD-rate of one codec's curve in a ``walloc bench --json`` file against the same codec in another.

Why: a model refit is judged against the weights it replaces on the same photos, in the same
run, split by quality range (a gain at low qualities and a loss at high ones can cancel in one
overall number).  ``walloc bench`` compares codecs within one run; this compares two runs:

    WALLOC_WEIGHTS=old/ walloc bench PHOTOS --codecs walloc,webp --json old.json
    walloc bench PHOTOS --codecs walloc,webp --json new.json
    python bench/compare_runs.py old.json new.json

(``old/`` holds the previous weights as ``rgb-1x.json`` / ``rgb-1x.npz``, e.g. copied from
``weights/previous/``.)  Negative = the second run needs fewer bits for the same quality.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from walloc_cli.benchmark import bd_rate

RANGES = ((1, 35), (35, 100), (1, 100))


def curve(path: Path, codec: str, lo: int, hi: int) -> tuple[list[float], list[float], list[float]]:
    """(bpp, PSNR, MS-SSIM dB) of ``codec``'s per-quality means with lo ≤ quality ≤ hi."""
    rows = sorted((r for r in json.loads(path.read_text())["summary"]
                   if r["codec"] == codec and lo <= r["quality"] <= hi), key=lambda r: r["quality"])
    return [r["bpp"] for r in rows], [r["psnr"] for r in rows], [r["ms_ssim_db"] for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("anchor", type=Path, help="bench JSON of the reference run")
    parser.add_argument("test", type=Path, help="bench JSON of the run to judge")
    parser.add_argument("--codec", default="walloc")
    args = parser.parse_args()
    for lo, hi in RANGES:
        a, t = curve(args.anchor, args.codec, lo, hi), curve(args.test, args.codec, lo, hi)
        cells = []
        for name, k in (("PSNR", 1), ("MS-SSIM", 2)):
            result = bd_rate(a[0], a[k], t[0], t[k])
            cells.append(f"{name} {result.value:+.2f} %" if result.value is not None else f"{name} n/a")
        print(f"q {lo}-{hi}: " + "  ".join(cells))


if __name__ == "__main__":
    main()
