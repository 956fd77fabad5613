"""Compressed-domain learning: do WaLLoC latents beat pixels of equal dimensionality?

    .venv/bin/python bench/rotation_learning.py            # full run: ~4–5 min on 2 idle cores
    .venv/bin/python bench/rotation_learning.py --quick    # smoke test, < 1 min

The claim (WaLLoC paper, Jacobellis & Yadwadkar, DCC 2025): a network trained on
the codec's latents does clearly better than the same network trained on
downsampled pixels holding the same number of values.  Here is a small,
self-contained check of it.

Task — rotation prediction (self-supervised, labels for free).  Each random
256×256 crop of a photo is rotated by k·90°, k ∈ {0, 1, 2, 3} (``np.rot90`` on
the *pixels*), and a small CNN predicts k.  Both inputs are built from the
rotated crop:

(a) latents: the ``rgb-16x`` model's integer latents of the rotated crop,
    12 × 32 × 32 (a 3-level wavelet packet transform, 192 channels at 1/8
    resolution, a linear 1×1 projection to 12 channels, rounding);
(b) pixels:  the rotated crop resized to 64 × 64 × 3 with Pillow (bicubic by
    default, antialiased when downscaling), scaled to [-1, 1] and then
    ``pixel_unshuffle(2)``-ed to 12 × 32 × 32.

Why equal dimensionality: both inputs hold exactly 12·32·32 = 64·64·3 = 12,288
numbers on the same 32 × 32 grid (16× fewer than the 256×256×3 crop), so the
two networks are *identical* — same layers, parameter count, FLOPs, optimiser,
epochs, batch size, augmentation and seeds — and the only difference is which
12,288 numbers describe the crop: a learned linear transform code, or a
resampled thumbnail.  A gap in accuracy then measures how much task-relevant
information, in a learnable form, each representation keeps at this budget;
it cannot come from a bigger input or a bigger network.

Both inputs are standardised per channel with training-set statistics; the
only augmentation is a random translation by up to ±2 cells of the 32 × 32
grid (one cell = 8×8 crop pixels for both inputs, zero fill).  Training photos
and validation photos are disjoint; validation photos are only evaluated.

Latents come straight from the codec, :func:`walloc_cli.api.image_to_latents`,
one rotated crop at a time (the numpy encoder, ~5–20 ms per crop here).

Prepared arrays are cached in ``runs/rotation_learning/`` (npz, keyed by the
data settings), so a re-run trains straight away.  Results go to
``runs/rotation_learning/results.json`` and a markdown table is printed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from walloc_cli import api  # noqa: E402
from walloc_cli.model import CodecModel, load_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CROP = 256
PIXELS = 64          # 64 × 64 × 3 = 12 × 32 × 32
ROTATIONS = 4
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "box": Image.Resampling.BOX}
REPRESENTATIONS = ("latents", "pixels")


# -- data -------------------------------------------------------------------------------
@dataclass(frozen=True)
class PrepConfig:
    """Everything the prepared arrays depend on (the cache key)."""

    train_dir: str
    val_dir: str
    train_crops: int
    val_crops: int
    max_train_images: int | None
    max_val_images: int | None
    resample: str
    data_seed: int
    model: str
    weights: str

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def list_images(folder: Path, limit: int | None) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"no images in {folder}")
    return files[:limit] if limit else files


def random_crops(files: list[Path], per_image: int, rng: np.random.Generator) -> np.ndarray:
    """``per_image`` random CROP×CROP crops of each photo (photos smaller than a crop are skipped)."""
    crops = []
    for path in files:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        h, w = rgb.shape[:2]
        if h < CROP or w < CROP:
            continue
        for _ in range(per_image):
            top, left = int(rng.integers(0, h - CROP + 1)), int(rng.integers(0, w - CROP + 1))
            crops.append(rgb[top : top + CROP, left : left + CROP])
    return np.stack(crops)


def prepare_split(crops: np.ndarray, model: CodecModel, resample: str,
                  progress: str = "") -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """All 4 rotations of every crop -> latents (N·4, 12, 32, 32), pixels (N·4, 64, 64, 3), labels.

    Rows are crop-major, rotation-minor: row 4·i + k is crop i rotated by k·90°.
    Returns the arrays and the mean encode / resize time per rotated crop.
    """
    n = len(crops) * ROTATIONS
    side = CROP // model.config.block
    latents = np.empty((n, model.config.latent_channels, side, side), np.int16)
    pixels = np.empty((n, PIXELS, PIXELS, 3), np.uint8)
    labels = np.tile(np.arange(ROTATIONS, dtype=np.int8), len(crops))
    encode_s = resize_s = 0.0
    for i, crop in enumerate(crops):
        for k in range(ROTATIONS):
            rotated = np.ascontiguousarray(np.rot90(crop, k))
            t = time.perf_counter()
            z, pad = api.image_to_latents(model, rotated)
            encode_s += time.perf_counter() - t
            if pad != (0, 0) or np.abs(z).max() > np.iinfo(np.int16).max:
                raise ValueError(f"unexpected latents (pad {pad}, max |z| {np.abs(z).max()})")
            latents[ROTATIONS * i + k] = z
            t = time.perf_counter()
            pixels[ROTATIONS * i + k] = np.asarray(
                Image.fromarray(rotated).resize((PIXELS, PIXELS), RESAMPLE[resample]))
            resize_s += time.perf_counter() - t
        if progress and (i + 1) % 500 == 0:
            print(f"  {progress}: {i + 1}/{len(crops)} crops", flush=True)
    return ({"latents": latents, "pixels": pixels, "labels": labels},
            {"encode_s": encode_s, "resize_s": resize_s})


def load_or_prepare(cfg: PrepConfig, out: Path, model: CodecModel) -> tuple[dict[str, np.ndarray], dict]:
    """Prepared arrays of both splits from the npz cache, or built (and cached) from the photos."""
    cache = out / f"data-{cfg.key()}.npz"
    meta_path = cache.with_suffix(".json")
    if cache.exists() and meta_path.exists():
        print(f"using cached arrays {cache}")
        with np.load(cache, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}, json.loads(meta_path.read_text())
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.data_seed)
    train_files = list_images(Path(cfg.train_dir), cfg.max_train_images)
    val_files = list_images(Path(cfg.val_dir), cfg.max_val_images)
    train_crops = random_crops(train_files, cfg.train_crops, rng)
    val_crops = random_crops(val_files, cfg.val_crops, rng)
    load_s = time.perf_counter() - t0
    arrays: dict[str, np.ndarray] = {}
    encode_s = resize_s = 0.0
    for split, crops in (("train", train_crops), ("val", val_crops)):
        print(f"preparing {split}: {len(crops)} crops × {ROTATIONS} rotations", flush=True)
        data, times = prepare_split(crops, model, cfg.resample, progress=split)
        arrays.update({f"{split}_{k}": v for k, v in data.items()})
        encode_s, resize_s = encode_s + times["encode_s"], resize_s + times["resize_s"]
    total = len(arrays["train_labels"]) + len(arrays["val_labels"])
    meta = {
        "prep_config": asdict(cfg),
        "train_photos": len(train_files), "val_photos": len(val_files),
        "train_samples": int(len(arrays["train_labels"])), "val_samples": int(len(arrays["val_labels"])),
        "encode_ms_per_crop": 1e3 * encode_s / total,
        "resize_ms_per_crop": 1e3 * resize_s / total,
        "photo_load_and_crop_s": load_s,
        "prep_wall_s": time.perf_counter() - t0,
    }
    out.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **arrays)
    meta_path.write_text(json.dumps(meta, indent=1))
    return arrays, meta


def as_input(arrays: dict[str, np.ndarray], split: str, representation: str) -> torch.Tensor:
    """(N, 12, 32, 32) float32 network input, before standardisation."""
    if representation == "latents":
        return torch.from_numpy(arrays[f"{split}_latents"].astype(np.float32))
    pixels = torch.from_numpy(arrays[f"{split}_pixels"]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return F.pixel_unshuffle(pixels, 2)  # (N, 3, 64, 64) -> (N, 12, 32, 32)


def standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Per-channel standardisation with the training set's mean and std."""
    mean = train.mean(dim=(0, 2, 3), keepdim=True)
    std = train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return [(t - mean) / std for t in (train, *others)]


# -- the network ------------------------------------------------------------------------
def make_net(width: int = 32, in_channels: int = 12, classes: int = ROTATIONS) -> nn.Sequential:
    """Small CNN on 12 × 32 × 32: three 3×3 conv/BN/ReLU (strides 2, 2, 1), global average pool, linear."""

    def conv(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(*conv(in_channels, width, 2), *conv(width, 2 * width, 2), *conv(2 * width, 2 * width, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, classes))


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch: int
    lr: float
    weight_decay: float
    width: int
    shift: int


def random_shift(x: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each sample by up to ±``shift`` grid cells (8 source pixels each, for both inputs), zero fill.

    Zero is the training mean after standardisation.  The same augmentation means
    the same thing for both representations: one cell of the 32 × 32 grid is one
    latent position, or one 2×2 block of the 64×64 image, i.e. 8×8 crop pixels.
    """
    if shift <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift))
    dy, dx = torch.randint(0, 2 * shift + 1, (2, n), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    return padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    """Top-1 accuracy in eval mode (BatchNorm running statistics), no augmentation."""
    net.eval()
    with torch.inference_mode():
        correct = sum(int((net(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum()) for i in range(0, len(x), batch))
    return correct / len(x)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def train_one(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
              cfg: TrainConfig, seed: int) -> dict[str, float]:
    """Train the CNN from scratch with ``seed`` (init and batch order); return accuracies and timings."""
    torch.manual_seed(seed)
    net = make_net(cfg.width)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = -(-len(x_train) // cfg.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                   pct_start=0.2)
    order = torch.Generator().manual_seed(seed)
    epoch_s = []
    for _ in range(cfg.epochs):
        net.train()
        start = time.perf_counter()
        perm = torch.randperm(len(x_train), generator=order)
        for i in range(0, len(x_train), cfg.batch):
            idx = perm[i : i + cfg.batch]
            loss = F.cross_entropy(net(random_shift(x_train[idx], cfg.shift, order)), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
        epoch_s.append(time.perf_counter() - start)
    subset = torch.randperm(len(x_train), generator=order)[: min(len(x_val), len(x_train))]
    val_acc = accuracy(net, x_val, y_val)  # also the warm-up for the timed pass
    infer_s = timed(lambda: accuracy(net, x_val, y_val))
    return {
        "val_acc": val_acc,
        "train_acc": accuracy(net, x_train[subset], y_train[subset]),
        "train_s_per_epoch": float(np.mean(epoch_s)),
        "infer_ms_per_1000": 1e3 * infer_s / len(x_val) * 1000,
    }


# -- report -----------------------------------------------------------------------------
def summarise(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """Per representation: val accuracy mean, sd (over seeds) and per seed; mean timings."""
    out = {}
    for rep, rs in runs.items():
        acc = np.array([r["val_acc"] for r in rs])
        out[rep] = {
            "val_acc_mean": float(acc.mean()), "val_acc_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
            "val_acc_per_seed": acc.tolist(),
            "train_acc_mean": float(np.mean([r["train_acc"] for r in rs])),
            "train_s_per_epoch": float(np.mean([r["train_s_per_epoch"] for r in rs])),
            "infer_ms_per_1000": float(np.median([r["infer_ms_per_1000"] for r in rs])),
        }
    return out


def table(summary: dict[str, dict[str, Any]], meta: dict[str, Any], params: int, resample: str) -> str:
    """The markdown results table."""
    prep = {"latents": f"{meta['encode_ms_per_crop']:.2f} (api.image_to_latents)",
            "pixels": f"{meta['resize_ms_per_crop']:.2f} (Pillow {resample})"}
    names = {"latents": "(a) WaLLoC rgb-16x latents 12×32×32", "pixels": f"(b) pixels 64×64×3 ({resample}), unshuffled"}
    lines = ["| input | val acc (mean ± sd) | per seed | train acc | train s/epoch | infer ms/1000 crops "
             "| prep ms/crop | params |",
             "|---|---|---|---|---|---|---|---|"]
    for rep in REPRESENTATIONS:
        s = summary[rep]
        seeds = ", ".join(f"{100 * a:.1f}" for a in s["val_acc_per_seed"])
        lines.append(f"| {names[rep]} | {100 * s['val_acc_mean']:.2f} ± {100 * s['val_acc_std']:.2f} % | {seeds} "
                     f"| {100 * s['train_acc_mean']:.1f} % | {s['train_s_per_epoch']:.1f} "
                     f"| {s['infer_ms_per_1000']:.0f} | {prep[rep]} | {params:,} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--train-dir", type=Path, default=ROOT.parent / "shared/data/images/train")
    p.add_argument("--val-dir", type=Path, default=ROOT.parent / "shared/data/images/val")
    p.add_argument("--crops-per-image", type=int, default=2, help="random 256×256 crops per training photo")
    p.add_argument("--val-crops-per-image", type=int, default=8, help="random 256×256 crops per validation photo")
    p.add_argument("--max-train-images", type=int, default=None)
    p.add_argument("--max-val-images", type=int, default=None)
    p.add_argument("--resample", choices=sorted(RESAMPLE), default="bicubic", help="Pillow filter for 256 -> 64")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--shift", type=int, default=2, help="random translation (grid cells) in training; 0: none")
    p.add_argument("--width", type=int, default=32, help="channels of the first conv (then 2×)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (init and batch order)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the crop positions")
    p.add_argument("--model", default="rgb-16x")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "runs/rotation_learning")
    p.add_argument("--quick", action="store_true", help="smoke test: 40 + 10 photos, 1 epoch, 1 seed")
    args = p.parse_args(argv)
    if args.quick:
        args.max_train_images = args.max_train_images or 40
        args.max_val_images = args.max_val_images or 10
        args.epochs, args.seeds = 1, args.seeds[:1]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    wall = time.perf_counter()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    if model.config.latent_channels * (CROP // model.config.block) ** 2 != PIXELS * PIXELS * 3:
        raise SystemExit(f"model {args.model} does not give 12 × 32 × 32 latents for a 256×256 crop")
    prep_cfg = PrepConfig(str(args.train_dir.resolve()), str(args.val_dir.resolve()), args.crops_per_image,
                          args.val_crops_per_image, args.max_train_images, args.max_val_images, args.resample,
                          args.data_seed, args.model, model.config.short_hash)
    arrays, meta = load_or_prepare(prep_cfg, args.out, model)
    print(f"train {meta['train_samples']} samples from {meta['train_photos']} photos, "
          f"val {meta['val_samples']} from {meta['val_photos']} photos")

    train_cfg = TrainConfig(args.epochs, args.batch, args.lr, args.weight_decay, args.width, args.shift)
    y_train = torch.from_numpy(arrays["train_labels"].astype(np.int64))
    y_val = torch.from_numpy(arrays["val_labels"].astype(np.int64))
    runs: dict[str, list[dict[str, float]]] = {}
    for rep in REPRESENTATIONS:
        x_train, x_val = standardise(as_input(arrays, "train", rep), as_input(arrays, "val", rep))
        for seed in args.seeds:
            r = train_one(x_train, y_train, x_val, y_val, train_cfg, seed)
            runs.setdefault(rep, []).append({"seed": seed, **r})
            print(f"  {rep:8s} seed {seed}: val {100 * r['val_acc']:.2f} %  train {100 * r['train_acc']:.2f} %  "
                  f"{r['train_s_per_epoch']:.1f} s/epoch", flush=True)
        del x_train, x_val

    params = sum(p.numel() for p in make_net(args.width).parameters())
    summary = summarise(runs)
    md = table(summary, meta, params, args.resample)
    gap = summary["latents"]["val_acc_mean"] - summary["pixels"]["val_acc_mean"]
    wall_s = time.perf_counter() - wall
    print()
    print(md)
    print(f"\nlatents − pixels: {100 * gap:+.2f} points of val accuracy (chance 25 %), "
          f"{len(args.seeds)} seed(s), {args.epochs} epochs; wall {wall_s:.0f} s")
    results = {
        "task": "rotation prediction (4 classes) on random 256×256 crops",
        "summary": summary, "runs": runs, "latents_minus_pixels": gap,
        "params": params, "net": str(make_net(args.width)),
        "train_config": asdict(train_cfg), "seeds": args.seeds, "prep": meta,
        "threads": args.threads, "torch": torch.__version__, "python": platform.python_version(),
        "wall_s": wall_s, "table": md,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = "results-quick.json" if args.quick else "results.json"
    (args.out / name).write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
