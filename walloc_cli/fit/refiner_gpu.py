"""Train the quality ladder's refiner on a GPU: ``python -m walloc_cli.fit.refiner_gpu``.

The same network as :mod:`walloc_cli.fit.refiner` (conv 3×3 32 → 64 with a per-anchor hidden
bias, ReLU, 1×1 64 → 64, ReLU, conv 3×3 64 → 32; the numpy decoder runs it unchanged), trained
with far more data per step: the CPU fit sees 12,000 steps of 16 crops (17 minutes on two
cores); a GPU takes 128 crops a step at ~3 ms, so 45,000 steps (5.8 M crops) fit in 2.5
minutes.  Session 23 measured why that matters: the CPU network gained nothing from q 54 up
and was switched off there; this one gains 0.07 dB at q 54 and 0.03 dB at q 74 on held-out
training photos (weights/README.md has the figures).

Three differences from the CPU fit besides the scale, each a correction:
* the loss weighs each channel's error by its squared step (channels 0–7 have finer steps than
  the rest from q 34 up), so it minimises the pixels' squared error, not the steps';
* crops are taken from each grid padded with its zero border, and the hidden layers are zeroed
  outside the grid, exactly as the decoder pads (`postfilter.patches`), so the cells along a
  photo's edge are trained as they are decoded;
* the per-anchor output gains are fitted on held-out photos with the error weighted likewise.

Photos are coded exactly as ``walloc encode`` codes them, by CPU worker processes (16 cores: a
minute for 480 photos at 16 qualities); latent grids up to 64 × 64 cells (photos up to 512 px a
side) are kept, larger ones skipped.  Then ``install`` writes the arrays into a model
(a new weights hash).

    python -m walloc_cli.fit.refiner_gpu train --photos DIR --out refiners.npz   (on the GPU machine)
    python -m walloc_cli.fit.refiner_gpu install refiners.npz --weights weights/ --name rgb-1x
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

CANVAS = 68    # latent grid cells a side, with the 2-cell zero border (grids up to 64 × 64)
BORDER = 2     # the refiner's receptive radius: two 3×3 convolutions
CHANNELS = 32  # the refined channels (ladder.filter_channels)
HIDDEN = 64
CROP = 32

_started = time.time()
_model = None


def log(message: str) -> None:
    print(f"[{time.time() - _started:6.1f}s] {message}", flush=True)


def code_photo(path: str) -> list[tuple[np.ndarray, np.ndarray, float, np.ndarray]]:
    """Per anchor: (decoded first 32 channels in step units, what the linear filter leaves of
    their error, the other channels' squared error, each of the 32 channels' squared step
    relative to the anchor's) — float16 grids."""
    global _model
    from ..media import read_image
    from ..model import load_model
    from ..postfilter import correction
    from .ladder import coded_pair, quality_nearest, quality_steps

    if _model is None:  # first call in this worker: one BLAS thread, the workers fill the cores
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
        _model = load_model("rgb-1x")
    ladder = _model.ladder
    _, _, anchors = quality_steps()
    rgb = read_image(Path(path).read_bytes()).rgb
    out = []
    for a, anchor_step in enumerate(anchors):
        q = quality_nearest(anchor_step)
        decoded, true = coded_pair(_model, rgb, q)
        weight = (ladder.steps(q).astype(np.float64) / anchor_step) ** 2
        error = true - decoded
        target = error[:CHANNELS] - correction(decoded[:CHANNELS], ladder.filter[a])
        other = float(((error[CHANNELS:] ** 2).reshape(error.shape[0] - CHANNELS, -1).sum(1)
                       * weight[CHANNELS:]).sum())
        out.append((decoded[:CHANNELS].astype(np.float16), target.astype(np.float16), other,
                    weight[:CHANNELS].astype(np.float32)))
    return out


def code_all(photos: list[Path], workers: int) -> tuple[np.ndarray, ...]:
    """Every photo at the 16 anchors on a zero-bordered canvas: (decoded, target, (h, w), other,
    weight); photos whose grid exceeds the canvas are skipped."""
    from multiprocessing import get_context

    n = len(photos)
    decoded = np.zeros((n, 16, CHANNELS, CANVAS, CANVAS), np.float16)
    target = np.zeros_like(decoded)
    sizes = np.zeros((n, 2), np.int32)
    other = np.zeros((n, 16))
    weight = np.zeros((n, 16, CHANNELS), np.float32)
    inner = CANVAS - 2 * BORDER
    with get_context("fork").Pool(workers) as pool:
        for i, result in enumerate(pool.imap(code_photo, [str(p) for p in photos], chunksize=1)):
            h, w = result[0][0].shape[1:]
            if h > inner or w > inner:
                log(f"skipped {photos[i].name}: {h}×{w} cells")
                continue
            sizes[i] = h, w
            for a, (d, t, o, wt) in enumerate(result):
                decoded[i, a, :, BORDER:BORDER + h, BORDER:BORDER + w] = d
                target[i, a, :, BORDER:BORDER + h, BORDER:BORDER + w] = t
                other[i, a], weight[i, a] = o, wt
    keep = sizes[:, 0] > 0
    log(f"coded {n} photos at 16 qualities, kept {int(keep.sum())}")
    return decoded[keep], target[keep], sizes[keep], other[keep], weight[keep]


def make_net(device: str):
    """The refiner with :func:`walloc_cli.fit.refiner._net`'s parameter names, its hidden layers
    zeroed outside the latent grid (``valid``) as the numpy decoder pads them."""
    import torch

    from .refiner import _net

    net = _net(CHANNELS, HIDDEN).to(device)

    def forward(x, log_step, valid):
        hidden = torch.relu(torch.nn.functional.conv2d(x, net.a.weight, padding=1)
                            + net.hidden_bias(log_step)[:, :, None, None]) * valid
        return net.c(torch.relu(net.b(hidden)) * valid)

    return net, forward


def train(decoded, target, sizes, weight, log_steps, steps: int, batch: int, device: str, seed: int = 0):
    """Adam, one-cycle learning rate to 2·10⁻³; loss: step-weighted squared residual over the
    crop cells inside the grid that saw their whole neighbourhood (or the grid's true edge)."""
    import torch

    torch.manual_seed(seed)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed + 1)
    n = len(decoded) * 16
    d = torch.from_numpy(decoded.reshape(n, CHANNELS, CANVAS, CANVAS)).to(device)
    t = torch.from_numpy(target.reshape(n, CHANNELS, CANVAS, CANVAS)).to(device)
    hw = torch.from_numpy(np.repeat(sizes, 16, axis=0)).to(device)
    channel_weight = torch.from_numpy(weight.mean(0)).to(device)  # (anchor, channel)
    log_step = torch.tensor(log_steps, dtype=torch.float32, device=device)
    ar = torch.arange(CROP, device=device)
    net, forward = make_net(device)
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 2e-3, total_steps=steps)
    inner = torch.zeros(1, 1, CROP, CROP, device=device)
    inner[..., BORDER:-BORDER, BORDER:-BORDER] = 1
    tally = np.zeros(2)
    for step in range(steps):
        index = torch.randint(0, n, (batch,), device=device, generator=gen)
        h, w = hw[index, 0], hw[index, 1]
        i = (torch.rand(batch, device=device, generator=gen) * (h + 2 * BORDER - CROP + 1)).long()
        j = (torch.rand(batch, device=device, generator=gen) * (w + 2 * BORDER - CROP + 1)).long()
        rows, cols = (i[:, None] + ar)[:, :, None], (j[:, None] + ar)[:, None, :]
        x = d[index[:, None, None], :, rows, cols].permute(0, 3, 1, 2).float()
        y = t[index[:, None, None], :, rows, cols].permute(0, 3, 1, 2).float()
        valid = ((rows >= BORDER) & (rows < h[:, None, None] + BORDER)
                 & (cols >= BORDER) & (cols < w[:, None, None] + BORDER)).float()[:, None]
        # a crop side lying on the canvas's edge shows the grid's true edge: its cells count too
        edge = (((i == 0)[:, None, None] & (rows < BORDER)) | ((j == 0)[:, None, None] & (cols < BORDER))
                | ((i + CROP >= h + 2 * BORDER)[:, None, None] & (rows >= i[:, None, None] + CROP - BORDER))
                | ((j + CROP >= w + 2 * BORDER)[:, None, None] & (cols >= j[:, None, None] + CROP - BORDER)))
        mask = valid * torch.clamp(inner + edge.float()[:, None], max=1)
        anchor = index % 16
        cw = channel_weight[anchor][:, :, None, None]
        error = ((forward(x, log_step[anchor], valid) - y) ** 2 * cw * mask).sum()
        loss = error / (mask.sum() * CHANNELS)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0:
            tally += [error.item(), (y ** 2 * cw * mask).sum().item()]
        if (step + 1) % 5000 == 0:
            log(f"step {step + 1}/{steps}: error left {tally[0] / tally[1]:.4f} of the filter's")
            tally[:] = 0
    return net, forward


def held_out_gains(forward, decoded, target, sizes, other, weight, log_steps, device: str):
    """Per anchor, the output gain in [0, 1] minimising the held-out photos' weighted squared
    error (closed form) and the gain in dB over the linear filter alone, all channels' error."""
    import torch

    gains, extra = np.zeros(16), np.zeros(16)
    log_step = torch.tensor(log_steps, dtype=torch.float32, device=device)
    with torch.no_grad():
        for a in range(16):
            pairs, num, den, total = [], 0.0, 0.0, 0.0
            for p in range(len(decoded)):
                h, w = sizes[p]
                valid = torch.zeros(1, 1, CANVAS, CANVAS, device=device)
                valid[..., BORDER:BORDER + h, BORDER:BORDER + w] = 1
                x = torch.from_numpy(decoded[p, a][None].astype(np.float32)).to(device)
                out = (forward(x, log_step[a:a + 1], valid) * valid).double().cpu().numpy()[0]
                y = target[p, a].astype(np.float64)
                wt = weight[p, a].astype(np.float64)[:, None, None]
                num += float((out * y * wt).sum())
                den += float((out * out * wt).sum())
                total += float((y * y * wt).sum()) + other[p, a]
                pairs.append((out, y, wt))
            gains[a] = np.clip(num / max(den, 1e-12), 0.0, 1.0)
            left = sum(float(((y - gains[a] * out) ** 2 * wt).sum()) for out, y, wt in pairs) + other[:, a].sum()
            extra[a] = 10 * np.log10(total / left)
    return gains, extra


def main_train(args: argparse.Namespace) -> None:
    import torch

    from .ladder import quality_steps

    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    decoded, target, sizes, other, weight = code_all(photos, args.workers)
    held = len(decoded) - args.held
    _, _, anchors = quality_steps()
    log_steps = np.log(anchors).astype(np.float32)
    log(f"training on {held} photos, gains on {args.held}")
    net, forward = train(decoded[:held], target[:held], sizes[:held], weight[:held], log_steps,
                         args.steps, args.batch, args.device)
    gains, extra = held_out_gains(forward, decoded[held:], target[held:], sizes[held:], other[held:],
                                  weight[held:], log_steps, args.device)
    log("gain over the linear filter per anchor (dB): " + " ".join(f"{e:.3f}" for e in extra))
    state = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    np.savez(args.out, **state, gains=gains, gain_db=extra, log_steps=log_steps,
             photos=np.array([p.name for p in photos]), steps=args.steps, batch=args.batch,
             torch=np.array(torch.__version__))
    log(f"wrote {args.out}")


def install(arrays_path: Path, weights: Path, name: str, info: dict) -> Path:
    """Write a trained refiner (``train``'s ``.npz``) into the ladder model ``weights/<name>``:
    anchors gaining under :data:`walloc_cli.fit.refiner.MIN_GAIN_DB` keep the linear filter alone."""
    import torch

    from .ladder import rewrite_model
    from .refiner import MIN_GAIN_DB, _net, export

    with np.load(arrays_path, allow_pickle=False) as stored:
        z = {k: stored[k] for k in stored.files}
    net = _net(CHANNELS, HIDDEN)
    net.load_state_dict({k: torch.from_numpy(z[k]) for k in net.state_dict()})
    gains = np.where(z["gain_db"] < MIN_GAIN_DB, 0.0, z["gains"])
    arrays = {f"quality.{k}": v for k, v in export(net, z["log_steps"], gains).items()}
    return rewrite_model(weights, name, arrays, {"refiner": {
        **info, "hidden": HIDDEN, "steps": int(z["steps"]), "batch": f"{int(z['batch'])} crops of {CROP}×{CROP} latent cells",
        "gain_db_over_filter": [round(float(e), 4) for e in z["gain_db"]], "min_gain_db": MIN_GAIN_DB,
        "gains": [round(float(g), 3) for g in gains],
    }})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="code the photos and train (on a GPU machine)")
    t.add_argument("--photos", type=Path, required=True, help="training photos (the last --held fit the gains)")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--held", type=int, default=40)
    t.add_argument("--steps", type=int, default=45000)
    t.add_argument("--batch", type=int, default=128)
    t.add_argument("--device", default="cuda")
    t.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    i = sub.add_parser("install", help="write trained arrays into a model (a new weights hash)")
    i.add_argument("arrays", type=Path)
    i.add_argument("--weights", type=Path, default=Path("weights"))
    i.add_argument("--name", default="rgb-1x")
    i.add_argument("--info", default="{}", help="JSON object recorded in the model's info.refiner")
    args = parser.parse_args()
    if args.command == "train":
        main_train(args)
    else:
        import json

        print(install(args.arrays, args.weights, args.name, json.loads(args.info)))


if __name__ == "__main__":
    main()
