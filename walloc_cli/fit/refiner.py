"""Fit the quality ladder's nonlinear refiner (:func:`walloc_cli.postfilter.refine`) on training photos.

Why a learned, nonlinear stage on top of the least-squares 3×3 filter: the error a rounded
latent carries depends on its neighbourhood in ways no linear map can express — in a smooth
area a value rounded to ±1 was most likely small (its bin's centroid should move towards
zero), beside an edge it was not.  A two-layer convolution over the first K latent channels
learns those rules from (decoded, true) latent pairs.  One network serves every quality: its
input is in units of the quality's step (quantization noise looks alike at every step), and
the step's logarithm enters as a bias of the hidden layer; a per-anchor output gain, fitted
in closed form afterwards, scales it down where it helps less.

Measured while developing it (300 training photos, 24 validation photos, one network per
quality, error over all 192 channels): at q 8 the linear filter gains 0.16 dB and the
refiner on top 0.41 dB in all; at q 21, 0.12 and 0.30 dB; at q 47, 0.05 and 0.05 dB.

Torch is imported here only: the decoder runs the fitted arrays in numpy.
"""
from __future__ import annotations

import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from .ladder import log, coded_pair, rewrite_model, quality_nearest, quality_steps, training_photos
from ..media import read_image
from ..model import load_config
from ..postfilter import TAPS, correction

HIDDEN = 64        # the refiner's hidden channels
CROP = 32          # latent cells per side of a training crop
BATCH = 16
STEPS = 12000
PHOTOS = 160       # training photos, each coded at every anchor's quality
GAIN_PHOTOS = 40   # photos the per-anchor gains are fitted on
# An anchor whose refiner gains less than this over the linear filter alone (all channels'
# error, on the gain photos) keeps the linear filter alone: from q 54 up it gained under
# 0.01 dB (0.004 dB at q 74) for about 6 ms of a 768×512 photo's decode (the filter: 1.3 ms).
MIN_GAIN_DB = 0.01

_worker_model = None


def _pairs_of_photo(job: tuple[str, str, str, list[int], int]) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(decoded, residual, other) of one photo at each quality: float16 latents of the first
    K channels; the residual is what the linear filter leaves of their error (the refiner's
    target); ``other`` the squared error of the remaining channels, which no filter touches
    (what a gain in dB is measured against)."""
    global _worker_model
    config_path, name, photo, qualities, channels = job
    if _worker_model is None:
        _worker_model = load_config(Path(config_path), name)
    ladder = _worker_model.ladder
    rgb = read_image(Path(photo).read_bytes()).rgb
    out = []
    for q in qualities:
        decoded, true = coded_pair(_worker_model, rgb, q)
        other = float(((true[channels:] - decoded[channels:]) ** 2).sum())
        decoded, true = decoded[:channels], true[:channels]
        linear = ladder.filter[ladder.anchor[q]] if ladder.filter is not None else None
        residual = true - decoded - (correction(decoded, linear) if linear is not None else 0)
        out.append((decoded.astype(np.float16), residual.astype(np.float16), other))
    return out


def collect(config_path: Path, name: str, photos: list[Path], qualities: list[int], channels: int,
            processes: int = 2) -> list[list[tuple[np.ndarray, np.ndarray, float]]]:
    """Per photo, per quality: :func:`_pairs_of_photo`'s triples, computed in ``processes`` workers."""
    jobs = [(str(config_path), name, str(p), qualities, channels) for p in photos]
    with get_context("spawn").Pool(processes) as pool:
        return pool.map(_pairs_of_photo, jobs, chunksize=2)


def _net(channels: int, hidden: int):
    import torch
    from torch import nn

    class Refiner(nn.Module):
        """conv3×3 (K -> H) + quality bias, ReLU, conv1×1 (H -> H), ReLU, conv3×3 (H -> K):
        zero padding at every layer, as the numpy decoder pads at the latent grid's edges."""

        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(channels, hidden, TAPS, padding=TAPS // 2)
            self.quality = nn.Parameter(torch.zeros(2, hidden))  # hidden bias per log-step and its square
            self.b = nn.Conv2d(hidden, hidden, 1)
            self.c = nn.Conv2d(hidden, channels, TAPS, padding=TAPS // 2)
            nn.init.zeros_(self.c.weight)
            nn.init.zeros_(self.c.bias)

        def hidden_bias(self, log_step):
            return self.a.bias + log_step[:, None] * self.quality[0] + log_step[:, None] ** 2 * self.quality[1]

        def forward(self, x, log_step):
            h = torch.relu(nn.functional.conv2d(x, self.a.weight, padding=TAPS // 2)
                           + self.hidden_bias(log_step)[:, :, None, None])
            return self.c(torch.relu(self.b(h)))

    return Refiner()


def train(pairs: list[list[tuple[np.ndarray, np.ndarray, float]]], log_steps: np.ndarray, hidden: int = HIDDEN,
          steps: int = STEPS, seed: int = 0, threads: int = 2):
    """The refiner trained on random crops of every (photo, quality) pair, loss = mean squared
    residual in step units over each crop's cells that saw their true neighbourhood (crop
    edges that are not the grid's edges are left out of the loss)."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    channels = pairs[0][0][0].shape[0]
    net = _net(channels, hidden)
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 2e-3, total_steps=steps)
    margin = TAPS // 2 * 2  # the refiner's receptive radius
    started = time.time()
    for step in range(steps):
        xs, ys, masks, ls = [], [], [], []
        for _ in range(BATCH):
            p, q = rng.integers(len(pairs)), rng.integers(len(log_steps))
            decoded, residual, _ = pairs[p][q]
            height, width = decoded.shape[1:]
            ch, cw = min(CROP, height), min(CROP, width)
            i, j = rng.integers(height - ch + 1), rng.integers(width - cw + 1)
            x = np.zeros((channels, CROP, CROP), np.float32)
            y = np.zeros_like(x)
            mask = np.zeros((CROP, CROP), np.float32)
            x[:, :ch, :cw] = decoded[:, i:i + ch, j:j + cw]
            y[:, :ch, :cw] = residual[:, i:i + ch, j:j + cw]
            top = 0 if i == 0 else margin
            left = 0 if j == 0 else margin
            bottom = ch if i + ch == height else ch - margin
            right = cw if j + cw == width else cw - margin
            mask[top:bottom, left:right] = 1
            xs.append(x), ys.append(y), masks.append(mask), ls.append(log_steps[q])
        x, y = torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))
        mask = torch.from_numpy(np.stack(masks))[:, None]
        out = net(x, torch.tensor(ls, dtype=torch.float32))
        loss = (((out - y) ** 2) * mask).sum() / (mask.sum() * channels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % 1000 == 0:
            log(f"refiner: step {step + 1}/{steps}, loss {loss.item():.4f} ({time.time() - started:.0f} s)")
    return net


def export(net, log_steps: np.ndarray, gains: np.ndarray) -> dict[str, np.ndarray]:
    """The numpy decoder's arrays (:func:`walloc_cli.postfilter.refine`), per anchor where the
    quality enters (hidden bias) and where its gain scales the output."""
    import torch

    with torch.no_grad():
        a = net.a.weight.numpy()  # (H, K, 3, 3) -> (H, 9·K): rows as postfilter.patches orders them
        c = net.c.weight.numpy()
        bias = net.hidden_bias(torch.tensor(log_steps, dtype=torch.float32)).numpy()
        return {
            "refine.a": a.transpose(0, 2, 3, 1).reshape(a.shape[0], -1).astype(np.float32),
            "refine.a_bias": bias.astype(np.float32),
            "refine.b": net.b.weight.numpy()[:, :, 0, 0].astype(np.float32),
            "refine.b_bias": net.b.bias.numpy().astype(np.float32),
            "refine.c": (gains[:, None, None] * c.transpose(0, 2, 3, 1).reshape(c.shape[0], -1)[None]).astype(np.float32),
            "refine.c_bias": (gains[:, None] * net.c.bias.numpy()[None]).astype(np.float32),
        }


def fit_refiner(weights: Path, name: str, data: Path, photos: int = PHOTOS, seed: int = 2,
                hidden: int = HIDDEN, steps: int = STEPS) -> Path:
    """Add the refiner to the ladder model ``weights/<name>`` (which has its linear filter)
    and write it back (a new weights hash); the other arrays are copied unchanged."""
    from ..postfilter import Refiner, refine

    started = time.time()
    config_path = weights / f"{name}.json"
    model = load_config(config_path, name)
    ladder = model.ladder
    if ladder is None or ladder.filter is None:
        raise SystemExit(f"{name} is not a quality-ladder model with a linear filter")
    channels = ladder.filter_channels
    _, _, anchors = quality_steps()
    qualities = [quality_nearest(s) for s in anchors]
    log_steps = np.log(anchors).astype(np.float32)
    files = training_photos(data, photos + GAIN_PHOTOS, seed)
    pairs = collect(config_path, name, files[:photos], qualities, channels)
    log(f"refiner: {len(pairs)} photos × {len(qualities)} qualities coded ({(time.time() - started) / 60:.1f} min)")
    net = train(pairs, log_steps, hidden, steps, seed)
    del pairs
    held = collect(config_path, name, files[photos:], qualities, channels)
    ungained = Refiner.from_arrays(export(net, log_steps, np.ones(len(anchors))), ladder.filter)
    gains, extra = np.zeros(len(anchors)), np.zeros(len(anchors))
    for a in range(len(anchors)):
        numerator = denominator = residual_sse = other = 0.0
        outs = []
        for photo in held:
            decoded, residual = (v.astype(np.float32) for v in photo[a][:2])
            out = refine(decoded, ungained, a) - correction(decoded, ladder.filter[a])
            outs.append((out, residual))
            numerator += float((out * residual).sum())
            denominator += float((out * out).sum())
            residual_sse += float((residual * residual).sum())
            other += photo[a][2]
        gains[a] = np.clip(numerator / max(denominator, 1e-12), 0.0, 1.0)
        refined_sse = sum(float(((r - gains[a] * o) ** 2).sum()) for o, r in outs)
        extra[a] = 10 * np.log10((other + residual_sse) / (other + refined_sse))
        if extra[a] < MIN_GAIN_DB:  # not worth its decoding time: the linear filter alone
            gains[a] = 0.0
    log("refiner: gain over the linear filter per anchor (dB) " + " ".join(f"{e:.3f}" for e in extra))
    log("refiner: gains per anchor " + " ".join(f"{g:.2f}" for g in gains))
    arrays = {f"quality.{k}": v for k, v in export(net, log_steps, gains).items()}
    path = rewrite_model(weights, name, arrays, {"refiner": {
        "fitted_on": f"{photos} photos of {data / 'train'} at {len(qualities)} qualities, gains on {GAIN_PHOTOS} "
                     f"more (seed {seed})",
        "hidden": hidden, "steps": steps, "batch": f"{BATCH} crops of {CROP}×{CROP} latent cells",
        "gain_db_over_filter": [round(float(e), 4) for e in extra], "min_gain_db": MIN_GAIN_DB,
        "fit_wall_minutes": round((time.time() - started) / 60, 1),
        "command": f"python -m walloc_cli.fit.ladder --data {data} --out {weights} --name {name} --refiner-only",
    }})
    log(f"refiner: wrote {path} in {(time.time() - started) / 60:.1f} min")
    return path
