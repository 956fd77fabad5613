"""Beyond RGB (#15): nband-1x against per-band JPEG 2000 (and JPEG XL on the 16-bit photo).

For every cube and tile of ../shared/data/beyond-rgb (bench/beyond_data.py): bits per sample
(whole file bytes × 8 / samples) and PSNR over the file's dynamic range (max − min), the
worst band's PSNR and, for hyperspectral cubes, the mean spectral angle (degrees); then the
BD-rate (walloc_cli.benchmark.bd_rate, PSNR) of walloc against JPEG 2000.

JPEG 2000 is OpenJPEG's opj_compress (Debian libopenjp2-tools) on all bands as components
of one codestream (raw planar input, no colour transform: each band coded as its own
component, the rate shared across them by PCRD), swept over -r.  JPEG XL is cjxl on the
16-bit PNG, swept over -d; AVIF is avifenc 0.11 (Debian libavif-bin, aom) at 12 bits
(``-d 12``, YUV 4:4:4, speed 6) swept over the quantizer (``--min Q --max Q``), decoded by
avifdec to a 16-bit PNG (12 bits rescaled to 16, as a viewer would).

    nice -n 19 .venv/bin/python bench/bench_beyond.py --json bench/beyond.json
    nice -n 19 .venv/bin/python bench/bench_beyond.py --only jasper,landsat8 --qualities 20,40,60
    nice -n 19 .venv/bin/python bench/bench_beyond.py --only landsat8 --strip-rows 64   # what strips cost

The split: TUNE names the files that the model's constants (matrix precision margin, step
scale, dead zone, reconstruction offset, table context) were chosen on; every other file
is the confirmation set, reported separately.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import beyond_data  # noqa: E402
from walloc_cli import api, multiband, raster, raster_codec  # noqa: E402
from walloc_cli.benchmark import bd_rate  # noqa: E402

TUNE = {"jasper", "landsat8", "sentinel2-0", "ben-20170613T101031_87_48-10m", "ben-20170613T101031_87_48-20m",
        "ben-20170613T101031_87_48-60m"}
QUALITIES = (10, 20, 30, 40, 50, 60, 70, 80)
J2K_BPS = (0.03, 0.06, 0.12, 0.25, 0.5, 1.0, 2.0, 4.0)
JXL_DISTANCES = (0.05, 0.1, 0.2, 0.3, 0.6, 1.0, 1.5, 2.5, 4.0)
AVIF_QUANTIZERS = (1, 4, 8, 12, 18, 24, 30, 36, 44, 52)


def metrics(original: np.ndarray, decoded: np.ndarray, kind: str) -> dict[str, float]:
    a, b = original.astype(np.float64), decoded.astype(np.float64)
    peak = max(float(a.max() - a.min()), 1.0)
    mse = float(np.mean((a - b) ** 2))
    band_mse = np.mean((a - b) ** 2, axis=(0, 1))
    out = {"psnr": 10 * np.log10(peak**2 / max(mse, 1e-12)),
           "worst_band_psnr": 10 * np.log10(peak**2 / max(float(band_mse.max()), 1e-12))}
    if kind == "hyperspectral":
        dot = (a * b).sum(axis=2)
        norms = np.linalg.norm(a, axis=2) * np.linalg.norm(b, axis=2)
        angle = np.degrees(np.arccos(np.clip(dot / np.maximum(norms, 1e-12), -1, 1)))
        out["sam_deg"] = float(angle[norms > 0].mean())
    return out


def walloc_point(array: np.ndarray, kind: str, quality: int) -> dict[str, float]:
    t0 = time.perf_counter()
    wlc = raster_codec.encode(raster.Raster(array, "npy"), quality)
    t1 = time.perf_counter()
    decoded = api.decode_raster(wlc).array
    t2 = time.perf_counter()
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    return {"quality": quality, "bps": 8 * len(wlc) / array.size, "encode_s": t1 - t0, "decode_s": t2 - t1,
            **metrics(array, decoded, kind)}


def j2k_point(array: np.ndarray, kind: str, bps: float, work: Path) -> dict[str, float]:
    """One opj_compress / opj_decompress round trip at about ``bps`` bits per sample.

    Samples go in as 16-bit raw: opj_compress 2.5.0's raw reader refuses some depths (13)
    and sizes (95×95, Samson) with "invalid raw image parameters"; zero high bit-planes cost
    JPEG 2000 next to nothing, and a refused size is retried with one replicated extra row
    (its bits count against JPEG 2000: about 1 % more samples)."""
    h, w, b = array.shape
    signed = array.dtype.kind == "i"
    src, code, out = work / "in.rawl", work / "x.j2k", work / "out.rawl"
    dtype = "<i2" if signed else "<u2"
    ratio = 16 / bps
    levels = min(6, int(np.log2(min(h, w))))
    for extra in (0, 1):
        padded = np.concatenate([array, array[-1:]] * 1, axis=0) if extra else array
        np.ascontiguousarray(padded.transpose(2, 0, 1)).astype(dtype).tofile(src)
        fmt = f"{w},{h + extra},{b},16,{'s' if signed else 'u'}"
        done = subprocess.run(["opj_compress", "-i", str(src), "-o", str(code), "-F", fmt, "-r", f"{ratio:.4f}",
                               "-mct", "0", "-n", str(levels)], capture_output=True)
        if done.returncode == 0:
            break
    else:
        raise RuntimeError(f"opj_compress failed: {done.stdout.decode()[-300:]}")
    subprocess.run(["opj_decompress", "-i", str(code), "-o", str(out)], check=True, capture_output=True)
    decoded = np.fromfile(out, dtype).reshape(b, h + extra, w).transpose(1, 2, 0)[:h]
    return {"bps": 8 * code.stat().st_size / array.size, "r": ratio, **metrics(array, decoded, kind)}


def jxl_point(array: np.ndarray, distance: float, work: Path) -> dict[str, float]:
    src, code, out = work / "in.png", work / "x.jxl", work / "out.png"
    src.write_bytes(raster.write_raster(raster.Raster(array, "png")))
    subprocess.run(["cjxl", str(src), str(code), "-d", str(distance), "-e", "7"], check=True, capture_output=True)
    subprocess.run(["djxl", str(code), str(out), "--bits_per_sample=16"], check=True, capture_output=True)
    decoded = raster.read_raster(out.read_bytes()).array
    return {"bps": 8 * code.stat().st_size / array.size, "distance": distance, **metrics(array, decoded, "photo")}


def avif_point(array: np.ndarray, quantizer: int, work: Path, depth: int = 16) -> dict[str, float]:
    """One avifenc / avifdec round trip at one AV1 quantizer (0–63): a 16-bit photo goes in as a
    16-bit PNG, coded at 12 bits (-d 12) and decoded to 16 bits; a 10-bit frame goes in as its
    Y4M (4:4:4, whose depth avifenc keeps) and comes out as a Y4M of 10 bits."""
    suffix = ".y4m" if depth < 16 else ".png"
    src, code, out = work / f"in{suffix}", work / "x.avif", work / f"out{suffix}"
    image = raster.Raster(array, "y4m", "bhw", bit_depth=depth) if depth < 16 else raster.Raster(array, "png")
    src.write_bytes(raster.write_raster(image))
    subprocess.run(["avifenc", "-d", "12", "-y", "444", "-s", "6", "-j", "1", "--min", str(quantizer), "--max",
                    str(quantizer), str(src), str(code)], check=True, capture_output=True)
    subprocess.run(["avifdec", *(["-d", "16"] if depth == 16 else []), str(code), str(out)], check=True,
                   capture_output=True)
    decoded = raster.read_raster(out.read_bytes()).array
    return {"bps": 8 * code.stat().st_size / array.size, "quantizer": quantizer, **metrics(array, decoded, "photo")}


def _bd(test: list[dict], anchor: list[dict]) -> float | None:
    r = bd_rate([p["bps"] for p in anchor], [p["psnr"] for p in anchor], [p["bps"] for p in test],
                [p["psnr"] for p in test])
    return None if r.value is None else round(r.value, 1)


def strip_cost(name: str, kind: str, array: np.ndarray, qualities: list[int], rows: int) -> None:
    """BD-rate of the file coded in strips of about ``rows`` rows against the file coded whole
    (the rule of rasters above multiband.STRIP_SAMPLES samples, forced on a smaller one)."""
    whole = [walloc_point(array, kind, q) for q in qualities]
    rule = multiband.STRIP_SAMPLES, multiband.MIN_STRIP_ROWS
    multiband.STRIP_SAMPLES, multiband.MIN_STRIP_ROWS = rows * array.shape[1] * array.shape[2], 1
    try:
        cut = [walloc_point(array, kind, q) for q in qualities]
    finally:
        multiband.STRIP_SAMPLES, multiband.MIN_STRIP_ROWS = rule
    print(f"{name:38} strips of {rows} rows vs whole: BD-rate {_bd(cut, whole)} %; "
          + ", ".join(f"q {q}: {100 * (c['bps'] / w['bps'] - 1):+.2f} % bits, {c['psnr'] - w['psnr']:+.2f} dB"
                      for q, c, w in zip(qualities, cut, whole)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=None, help="comma-separated file names (see beyond_data.catalogue)")
    parser.add_argument("--qualities", default=",".join(map(str, QUALITIES)))
    parser.add_argument("--json", dest="json_path", default=None)
    parser.add_argument("--strip-rows", type=int, default=0,
                        help="instead: what coding in strips of this many rows costs against coding whole")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else None
    qualities = [int(q) for q in args.qualities.split(",")]
    if args.strip_rows:
        for name, kind, array in beyond_data.load_all(names):
            strip_cost(name, kind, array, qualities, args.strip_rows)
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, kind, array in beyond_data.load_all(names):
            ours = [walloc_point(array, kind, q) for q in qualities]
            theirs = [j2k_point(array, kind, bps, work) for bps in J2K_BPS]
            entry = {"kind": kind, "shape": list(array.shape), "dtype": array.dtype.name,
                     "split": "tune" if name in TUNE else "confirm", "walloc": ours, "j2k": theirs,
                     "bd_rate_vs_j2k": _bd(ours, theirs)}
            if kind == "frame10":
                entry["avif"] = [avif_point(array, q, work, 10) for q in AVIF_QUANTIZERS]
                entry["bd_rate_vs_avif"] = _bd(ours, entry["avif"])
            if kind == "photo16":
                entry["jxl"] = [jxl_point(array, d, work) for d in JXL_DISTANCES]
                entry["bd_rate_vs_jxl"] = _bd(ours, entry["jxl"])
                entry["avif12"] = [avif_point(array, q, work) for q in AVIF_QUANTIZERS]
                entry["bd_rate_vs_avif12"] = _bd(ours, entry["avif12"])
            results[name] = entry
            extra = f"  vs JPEG XL {entry['bd_rate_vs_jxl']} %  vs AVIF 12-bit {entry['bd_rate_vs_avif12']} %" \
                if "bd_rate_vs_jxl" in entry else f"  vs AVIF 10-bit {entry['bd_rate_vs_avif']} %" if "avif" in entry else ""
            print(f"{name:38} {kind:13} {entry['split']:7} {str(tuple(array.shape)):16} BD-rate vs JPEG 2000 "
                  f"{entry['bd_rate_vs_j2k']} %{extra}", flush=True)
    for split in ("tune", "confirm"):
        for kind in ("hyperspectral", "multispectral"):
            values = [e["bd_rate_vs_j2k"] for e in results.values()
                      if e["split"] == split and e["kind"] == kind and e["bd_rate_vs_j2k"] is not None]
            if values:
                print(f"{split:8} {kind:14} mean BD-rate vs JPEG 2000 {np.mean(values):6.1f} % over {len(values)} files")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    main()
