"""Image benchmark: speed, rate and quality of walloc on a folder of photos.

    python bench/bench_images.py --data ../shared/data/images/val [--train ../shared/data/images/train]

Prints encode / decode throughput (MP/s, in process, model already loaded),
mean bpp (real file sizes, headers included) and mean PSNR (RGB, 8-bit), and,
when --train is given, the purely linear PCA codec at the same rate for
comparison: encoder = PCA of the WPT coefficients of the training photos,
uniform step, per-channel integer tables fitted on the training photos, the
same range coder — the baseline that the trained model must beat.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from walloc_cli import api, entropy, wavelets  # noqa: E402
from walloc_cli.model import DEFAULT_LATENT_MODEL, load_model  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def list_images(folder: Path, limit: int | None) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    return files[:limit] if limit else files


def bench_model(files: list[Path], model_name: str) -> dict:
    load_model(model_name).decoder()  # warm: loading and torch import are not per-image costs
    rows = []
    enc_t = dec_t = 0.0
    pixels = 0
    for path in files:
        data = path.read_bytes()
        original = np.asarray(Image.open(path).convert("RGB"))
        t0 = time.perf_counter()
        wlc = api.encode_image(data, model_name).data
        t1 = time.perf_counter()
        decoded = api.decode_image(wlc)
        t2 = time.perf_counter()
        enc_t += t1 - t0
        dec_t += t2 - t1
        h, w = original.shape[:2]
        pixels += h * w
        rows.append({"file": path.name, "bpp": 8 * len(wlc) / (h * w), "psnr": psnr(original, decoded.rgb)})
    return {
        "model": model_name,
        "images": len(rows),
        "bpp": float(np.mean([r["bpp"] for r in rows])),
        "psnr": float(np.mean([r["psnr"] for r in rows])),
        "encode_mp_s": pixels / enc_t / 1e6,
        "decode_mp_s": pixels / dec_t / 1e6,
        "per_image": rows,
    }


def _padded_signal(rgb: np.ndarray, block: int) -> np.ndarray:
    """(3, H', W') in [-0.5, 0.5], mirror-padded to multiples of block, as walloc pads."""
    h, w = rgb.shape[:2]
    padded = np.pad(rgb, ((0, (-h) % block), (0, (-w) % block), (0, 0)), mode="symmetric")
    return padded.transpose(2, 0, 1).astype(np.float64) / 255.0 - 0.5


def linear_codec_curve(train_files: list[Path], val_files: list[Path], levels: int, latents: int,
                       steps: list[float]) -> list[dict]:
    """The linear PCA transform codec, really entropy-coded, at several step sizes."""
    block = 2**levels
    rng = np.random.default_rng(0)
    sample = [train_files[i] for i in sorted(rng.choice(len(train_files), min(300, len(train_files)), replace=False))]
    train_coeffs = []
    for p in sample:
        rgb = np.asarray(Image.open(p).convert("RGB"))
        c = wavelets.wpt2d(_padded_signal(rgb, block), levels)
        train_coeffs.append(c.reshape(c.shape[0], -1).T)
    flat = np.concatenate(train_coeffs)
    mean = flat.mean(0)
    evals, evecs = np.linalg.eigh(np.cov((flat - mean).T))
    basis = evecs[:, np.argsort(evals)[::-1][:latents]]  # (K, L)
    train_z = (flat - mean) @ basis
    val = [np.asarray(Image.open(p).convert("RGB")) for p in val_files]
    curve = []
    for step in steps:
        tables = entropy.fit_tables(np.rint(train_z / step).astype(np.int32))
        bpps, psnrs = [], []
        for rgb in val:
            h, w = rgb.shape[:2]
            coeffs = wavelets.wpt2d(_padded_signal(rgb, block), levels)
            k, hh, ww = coeffs.shape
            z = np.rint(((coeffs.reshape(k, -1).T - mean) @ basis) / step).astype(np.int32)
            nbytes = len(entropy.encode(z.T.reshape(latents, hh, ww), tables))
            rec = ((z * step) @ basis.T + mean).T.reshape(k, hh, ww)
            out = wavelets.iwpt2d(rec, levels)[:, :h, :w]
            out = np.clip(np.rint((out + 0.5) * 255), 0, 255).transpose(1, 2, 0)
            bpps.append(8 * nbytes / (h * w))
            psnrs.append(psnr(rgb, out))
        curve.append({"step": step, "bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs))})
    return curve


def psnr_at(curve: list[dict], bpp: float) -> float | None:
    pts = sorted(curve, key=lambda r: r["bpp"])
    xs, ys = [r["bpp"] for r in pts], [r["psnr"] for r in pts]
    if not xs[0] <= bpp <= xs[-1]:
        return None
    return float(np.interp(bpp, xs, ys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/images/val"))
    parser.add_argument("--train", type=Path, default=None, help="training photos, for the linear PCA baseline")
    parser.add_argument("--model", default=DEFAULT_LATENT_MODEL)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"bench: {args.data}: no such folder (the validation photos live in ../shared/data/images/val)")
    files = list_images(args.data, args.limit)
    result = bench_model(files, args.model)
    print(f"{args.model}: {result['images']} images from {args.data}")
    print(f"  mean bpp  {result['bpp']:.4f}   (file bytes, header included)")
    print(f"  mean PSNR {result['psnr']:.2f} dB (RGB, 8-bit)")
    print(f"  encode    {result['encode_mp_s']:.2f} MP/s   decode {result['decode_mp_s']:.2f} MP/s (in process)")
    if args.train:
        cfg = load_model(args.model).config
        steps = [float(s) for s in np.geomspace(0.08, 0.6, 9)]
        curve = linear_codec_curve(list_images(args.train, None), files, cfg.levels, cfg.latent_channels, steps)
        result["linear_pca_curve"] = curve
        at = psnr_at(curve, result["bpp"])
        result["linear_pca_psnr_at_same_bpp"] = at
        print("  linear PCA codec (same J, same latents, real range coding):")
        for row in curve:
            print(f"    step {row['step']:.3f}: {row['bpp']:.4f} bpp  {row['psnr']:.2f} dB")
        if at is not None:
            print(f"  at {result['bpp']:.4f} bpp: linear {at:.2f} dB vs {args.model} {result['psnr']:.2f} dB "
                  f"({result['psnr'] - at:+.2f} dB)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
