"""Training of the image model, resumable and seeded.

    python -m walloc_cli.train --data ../shared/data/images --run runs/rgb-16x --minutes 60
    python -m walloc_cli.train --run runs/rgb-16x --export weights/   # integer tables + weights

Why it is built this way (2 CPU cores, no GPU):

* Random crops are decoded, rescaled and augmented once and cached as uint8
  (``crops.npy``): JPEG decoding would otherwise dominate every step.
* The encoder starts as the PCA of the WPT coefficients with a uniform
  quantization step chosen for a target rate, and the decoder's linear path as
  its inverse, so step 0 already is the linear transform codec; the conv net
  only learns a residual.
* Batches and noise come from generators seeded by (seed, step), so a resumed
  run follows exactly the same path as an uninterrupted one.
* The crops' WPT coefficients are computed once and kept in memory, and the
  distortion is measured in the WPT domain with per-channel weights equal to
  the energy of each channel's synthesis basis function — the diagonal of
  SᵀS, which bior4.4 (nearly orthogonal) makes accurate to about 2 % of the
  pixel MSE.  Both WPT passes per step would otherwise take 60 % of the time.
* Loss = bits per pixel + λ·255²·MSE (rate–distortion).  Validation always
  measures real PSNR in pixel space on whole photos.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import wavelets
from .nets import WallocAutoencoder


@dataclass
class TrainConfig:
    name: str = "rgb-16x"
    levels: int = 3
    wavelet: str = wavelets.DEFAULT_WAVELET
    latent_channels: int = 12
    decoder_width: int = 64
    decoder_blocks: int = 4
    crop: int = 128
    crops_per_image: int = 16
    batch: int = 32
    lr: float = 4e-4
    lmbda: float = 0.015
    target_bpp: float = 0.55
    seed: int = 0
    val_images: int = 24
    val_every: int = 500
    ckpt_every: int = 250


def _log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, file=sys.stderr, flush=True)


def build_crop_cache(image_dir: Path, cfg: TrainConfig, out: Path) -> np.ndarray:
    """Random rescaled/flipped/rotated crops of every training photo, as uint8 NHWC."""
    if out.exists():
        return np.load(out, mmap_mode="r")
    files = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not files:
        raise SystemExit(f"{image_dir}: no training images found")
    rng = np.random.default_rng(cfg.seed)
    crops = np.empty((len(files) * cfg.crops_per_image, cfg.crop, cfg.crop, 3), np.uint8)
    k = 0
    for i, path in enumerate(files):
        with Image.open(path) as im:
            im = im.convert("RGB")
            for _ in range(cfg.crops_per_image):
                # Down-scaling hides the JPEG 8×8 blocking of the source photos and adds scale variety.
                s = rng.uniform(0.5, 1.0)
                w, h = im.size
                s = max(s, (cfg.crop + 1) / min(w, h))
                scaled = im.resize((max(cfg.crop, round(w * s)), max(cfg.crop, round(h * s))), Image.BICUBIC)
                x0 = rng.integers(0, scaled.width - cfg.crop + 1)
                y0 = rng.integers(0, scaled.height - cfg.crop + 1)
                a = np.asarray(scaled.crop((x0, y0, x0 + cfg.crop, y0 + cfg.crop)))
                if rng.random() < 0.5:
                    a = a[:, ::-1]
                a = np.rot90(a, rng.integers(0, 4))
                crops[k] = a
                k += 1
        if i % 100 == 0:
            _log(f"crop cache {i}/{len(files)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, crops)
    return crops


def to_unit(pixels_u8: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-0.5, 0.5], the codec's pixel scale."""
    return torch.from_numpy(np.array(pixels_u8)).permute(0, 3, 1, 2).float() / 255.0 - 0.5


def pca_init(model: WallocAutoencoder, crops: np.ndarray, cfg: TrainConfig) -> dict:
    """Set encoder = PCA/step, decoder linear path = inverse; step chosen for target_bpp."""
    rng = np.random.default_rng(cfg.seed + 1)
    idx = np.sort(rng.choice(len(crops), size=min(2048, len(crops)), replace=False))
    coeffs = wavelets.wpt2d(to_unit(crops[idx]).double(), cfg.levels, cfg.wavelet)
    n, c, h, w = coeffs.shape
    flat = coeffs.permute(0, 2, 3, 1).reshape(-1, c)
    mean = flat.mean(0)
    cov = torch.cov((flat - mean).T)
    evals, evecs = torch.linalg.eigh(cov)
    basis = evecs[:, torch.argsort(evals, descending=True)[: cfg.latent_channels]]  # (c, L)
    z = (flat - mean) @ basis
    dropped_energy = float(evals.sum() - evals[torch.argsort(evals, descending=True)[: cfg.latent_channels]].sum())
    pixels_per_latent_position = 4 ** cfg.levels
    best = None
    for step in np.geomspace(0.01, 1.0, 40):
        q = torch.round(z / step)
        bits = 0.0
        for j in range(q.shape[1]):
            _, counts = torch.unique(q[:, j], return_counts=True)
            p = counts.double() / counts.sum()
            bits += float(-(p * torch.log2(p)).sum())
        bpp = bits / pixels_per_latent_position
        # The basis is orthonormal: error = quantization error in the kept components
        # + energy of the dropped ones (≈ pixel MSE, the WPT being near-orthogonal).
        mse = float(((q * step - z).pow(2).sum(1).mean() + dropped_energy) / c)
        if best is None or abs(bpp - cfg.target_bpp) < abs(best[1] - cfg.target_bpp):
            best = (float(step), bpp, -10 * math.log10(mse))
    step, bpp, psnr = best
    with torch.no_grad():
        model.encoder.project.weight.copy_((basis.T / step).reshape(cfg.latent_channels, c, 1, 1).float())
        model.encoder.project.bias.copy_((-(mean @ basis) / step).float())
        model.decoder.linear.weight.copy_((basis * step).reshape(c, cfg.latent_channels, 1, 1).float())
        model.decoder.linear.bias.copy_(mean.float())
        model.prior.initialise_from((z / step)[:, :, None].float())
    info = {"pca_step": step, "pca_bpp_train_entropy": bpp, "pca_psnr_train": psnr}
    _log(f"PCA init: step {step:.4f} -> {bpp:.3f} bpp (empirical entropy), {psnr:.2f} dB on train crops")
    return info


def synthesis_energy(channels: int, levels: int, wavelet: str) -> torch.Tensor:
    """||S e_k||² for a unit impulse in each WPT channel k (shift-invariant per channel)."""
    impulses = torch.zeros(channels, channels, 4, 4, dtype=torch.float64)
    impulses[torch.arange(channels), torch.arange(channels), 1, 2] = 1.0
    return wavelets.iwpt2d(impulses, levels, wavelet).pow(2).sum((1, 2, 3)).float()


@torch.no_grad()
def coefficient_cache(crops: np.ndarray, cfg: TrainConfig) -> torch.Tensor:
    """WPT coefficients of every crop, float32 (N, C·4^J, crop/2^J, crop/2^J)."""
    side = cfg.crop // 2**cfg.levels
    out = torch.empty(len(crops), 3 * 4**cfg.levels, side, side)
    for start in range(0, len(crops), 256):
        out[start : start + 256] = wavelets.wpt2d(to_unit(crops[start : start + 256]), cfg.levels, cfg.wavelet)
    return out


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="reflect")
    return x


@torch.no_grad()
def validate(model: WallocAutoencoder, images: list[np.ndarray], cfg: TrainConfig) -> tuple[float, float]:
    """Mean (bpp from the prior, PSNR) over whole validation photos with real rounding."""
    model.eval()
    bpps, psnrs = [], []
    for a in images:
        x = to_unit(a[None])
        h, w = x.shape[-2:]
        xp = pad_to_multiple(x, 2 ** cfg.levels)
        y = torch.round(model.encoder(wavelets.wpt2d(xp, cfg.levels, cfg.wavelet)))
        bits = model.prior.bits(y).sum()
        xhat = wavelets.iwpt2d(model.decoder(y), cfg.levels, cfg.wavelet)[..., :h, :w]
        xhat = torch.round((xhat + 0.5).clamp(0, 1) * 255)
        mse = ((xhat - (x + 0.5) * 255) ** 2).mean()
        bpps.append(float(bits) / (h * w))
        psnrs.append(float(10 * torch.log10(255.0**2 / mse)))
    model.train()
    return float(np.mean(bpps)), float(np.mean(psnrs))


def load_val(val_dir: Path, count: int) -> list[np.ndarray]:
    files = sorted(val_dir.iterdir())[:count]
    out = []
    for p in files:
        with Image.open(p) as im:
            out.append(np.asarray(im.convert("RGB")))
    return out


def train(data: Path, run: Path, minutes: float, cfg: TrainConfig) -> None:
    torch.manual_seed(cfg.seed)
    run.mkdir(parents=True, exist_ok=True)
    if (run / "config.json").exists():  # a resumed run keeps the settings it started with
        saved = json.loads((run / "config.json").read_text())
        cfg = TrainConfig(**{**saved, "lr": cfg.lr})
        (run / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    ckpt_path = run / "checkpoint.pt"
    crops = build_crop_cache(data / "train", cfg, run / "crops.npy")
    val = load_val(data / "val", cfg.val_images)
    _log("computing WPT coefficients of the crops")
    coefficients = coefficient_cache(crops, cfg)
    weights = synthesis_energy(coefficients.shape[1], cfg.levels, cfg.wavelet)[None, :, None, None]
    model = WallocAutoencoder(3 * 4**cfg.levels, cfg.latent_channels, cfg.decoder_width, cfg.decoder_blocks)
    # The encoder moves slowly (it starts at PCA, already good); the prior adapts fast.
    groups = [(model.encoder, 0.25), (model.decoder, 1.0), (model.prior, 5.0)]
    opt = torch.optim.Adam([{"params": m.parameters(), "lr": cfg.lr * f} for m, f in groups])
    step = 0
    history: list[dict] = []
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        for group, (_, factor) in zip(opt.param_groups, groups):  # lr may have been changed since
            group["lr"] = cfg.lr * factor
        step = int(state["step"])
        history = json.loads((run / "history.json").read_text()) if (run / "history.json").exists() else []
        _log(f"resumed from step {step}")
    else:
        info = pca_init(model, crops, cfg)
        bpp, psnr = validate(model, val, cfg)
        _log(f"step 0 (linear PCA codec): val {bpp:.3f} bpp {psnr:.2f} dB")
        history.append({"step": 0, "val_bpp": bpp, "val_psnr": psnr, **info})
        (run / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    deadline = time.time() + minutes * 60
    started = time.time()
    wall_before = history[-1].get("wall_s", 0.0) if history else 0.0

    def save() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}, tmp)
        tmp.replace(ckpt_path)
        (run / "history.json").write_text(json.dumps(history, indent=1))

    pixels = cfg.batch * cfg.crop * cfg.crop
    running = []
    while time.time() < deadline:
        rng = np.random.default_rng((cfg.seed, step))
        idx = np.sort(rng.choice(len(crops), size=cfg.batch, replace=False))
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        coeffs = coefficients[torch.from_numpy(idx)]
        decoded, bits = model(coeffs, gen)
        mse = (weights * (decoded - coeffs).pow(2)).mean()
        bpp = bits / pixels
        loss = bpp + cfg.lmbda * 255.0**2 * mse
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        running.append((float(bpp.detach()), float(10 * torch.log10(1 / mse.detach()))))
        if step % 50 == 0:
            b, p = np.mean(running, axis=0)
            running.clear()
            left = max(0.0, deadline - time.time())
            done = 1 - left / (minutes * 60)
            bar = "#" * int(20 * done) + "." * (20 - int(20 * done))
            _log(f"[{bar}] step {step}: train {b:.3f} bpp {p:.2f} dB, {left / 60:.0f} min left")
        if step % cfg.val_every == 0:
            vb, vp = validate(model, val, cfg)
            history.append({"step": step, "val_bpp": vb, "val_psnr": vp,
                            "wall_s": wall_before + time.time() - started})
            _log(f"step {step}: val {vb:.3f} bpp {vp:.2f} dB")
        if step % cfg.ckpt_every == 0:
            if history:
                history[-1]["wall_s"] = wall_before + time.time() - started
            save()
    history.append({"step": step, "wall_s": wall_before + time.time() - started})
    save()
    _log(f"stopped at step {step}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="walloc train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/images"))
    parser.add_argument("--run", type=Path, default=Path("runs/rgb-16x"))
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--lmbda", type=float, default=TrainConfig.lmbda)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--export", type=Path, help="write weights for the run's checkpoint into this folder and exit")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.export:
        from .export import export_run

        export_run(args.run, args.export)
        return
    train(args.data, args.run, args.minutes, TrainConfig(lmbda=args.lmbda, seed=args.seed))


if __name__ == "__main__":
    main()
