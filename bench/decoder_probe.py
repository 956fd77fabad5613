"""How much would a nonlinear decoder on the latent grid gain over rgb-1x's linear 3×3 filter?

    python bench/decoder_probe.py --quality 15 --minutes 12 [--width 64] [--threads 2]

Issue #14 asks for "the asymmetric decoder WaLLoC is named for": a small nonlinear network
after the linear inverse, trained to undo quantization.  Before building one into the codec
(weights per quality, a numpy forward pass, decode-speed budget), this probe measures what it
could give: it encodes training photos exactly as ``walloc encode -q Q`` does, and trains a
3-layer CNN (3×3 convolutions, ReLU) on the first K = 32 latent channels — the same input as
the shipped filter (:mod:`walloc_cli.postfilter`) — to predict the quantization error, in units
of the step.  It reports, on the first 24 validation photos, the gain in mean squared error
over all 192 channels (the transform is orthonormal: latent-domain error is pixel-domain
error) of the shipped linear filter, refitted here on the same photos, and of the CNN.

Measured in session 11 (CPU, 300 training photos; linear filter / CNN):

| quality | width | training | linear | CNN | CNN multiply-adds per latent position |
|---|---|---|---|---|---|
| 15 | 64 | 12 min, 2 threads, 37.8 k steps | +0.131 dB | +0.322 dB | 74 k (filter: 9.2 k) |
| 15 | 24 | 10 min, 1 thread, 40.8 k steps | +0.131 dB | +0.313 dB | 19 k |
| 35 | 64 | 10 min, 1 thread, 18.6 k steps | +0.079 dB | +0.079 dB | 74 k |

So at low rates a narrow network more than doubles the filter's gain for twice its work; at
q 35 this one (shorter training) only matched it.  Not shipped yet: it needs a network per
quality anchor (or one conditioned on the step), a numpy forward pass, and room in the
decode-speed target (≥ 1× a dwebp loop, met by 8 %).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from walloc_cli import postfilter  # noqa: E402
from walloc_cli.fit.ladder import FILTER_CHANNELS, coded_pair, training_photos  # noqa: E402
from walloc_cli.media import read_image  # noqa: E402
from walloc_cli.model import load_model  # noqa: E402

K = FILTER_CHANNELS
PATCH = 24  # latent positions per side of a training crop


def coded_pairs(model, paths: list[Path], quality: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(decoded, true, step) per photo: all latents (192, H, W) in units of their steps, as coded."""
    step = model.ladder.steps(quality).reshape(-1, 1, 1).astype(np.float32)
    return [(*coded_pair(model, read_image(path.read_bytes()).rgb, quality), step) for path in paths]


class ErrorNet(torch.nn.Module):
    """Three 3×3 convolutions on the first K channels; the last starts at zero (no correction)."""

    def __init__(self, channels: int = K, width: int = 64) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Conv2d(channels, width, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(width, channels, 3, padding=1))
        torch.nn.init.zeros_(self.layers[-1].weight)
        torch.nn.init.zeros_(self.layers[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def gain_db(pairs, correct) -> float:
    """dB by which ``correct`` (decoded K channels -> their estimated error) lowers the MSE of all channels."""
    before = after = rest = 0.0
    for decoded, true, step in pairs:
        error, weight = true[:K] - decoded[:K], step[:K] ** 2
        before += float((error ** 2 * weight).sum())
        after += float(((error - correct(decoded[:K])) ** 2 * weight).sum())
        rest += float(((true[K:] - decoded[K:]) ** 2 * step[K:] ** 2).sum())
    return 10 * np.log10((before + rest) / (after + rest))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/images")
    p.add_argument("--quality", type=int, default=15)
    p.add_argument("--minutes", type=float, default=12.0, help="training time of the CNN")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--photos", type=int, default=300, help="training photos")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = load_model("rgb-1x")
    train = coded_pairs(model, training_photos(args.data, args.photos, 1), args.quality)
    val = coded_pairs(model, sorted((args.data / "val").iterdir())[:24], args.quality)
    linear = postfilter.fit_weight([(d[:K], t[:K]) for d, t, _ in train[:150]])  # as ladder.fit_filter fits it

    net = ErrorNet(width=args.width)
    optimiser = torch.optim.Adam(net.parameters(), 1e-3)
    weight = torch.from_numpy(train[0][2][:K]).reshape(1, K, 1, 1) ** 2
    weight = weight / weight.mean()                     # the loss in pixel-domain units
    rng = np.random.default_rng(0)
    start, steps = time.time(), 0
    while time.time() - start < 60 * args.minutes:
        inputs, targets = [], []
        for _ in range(16):
            decoded, true, _ = train[rng.integers(len(train))]
            i, j = (int(rng.integers(0, n - PATCH)) for n in decoded.shape[1:])
            window = (slice(0, K), slice(i, i + PATCH), slice(j, j + PATCH))
            inputs.append(decoded[window])
            targets.append(true[window] - decoded[window])
        x, y = torch.from_numpy(np.stack(inputs)), torch.from_numpy(np.stack(targets))
        loss = (((net(x) - y) ** 2) * weight).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        steps += 1
    with torch.no_grad():
        cnn = gain_db(val, lambda d: net(torch.from_numpy(d)[None])[0].numpy())
    print(f"q {args.quality}: linear 3×3 filter {gain_db(val, lambda d: postfilter.correction(d, linear)):+.3f} dB, "
          f"CNN (3 convolutions, width {args.width}, {steps} steps, {args.minutes:g} min) {cnn:+.3f} dB")


if __name__ == "__main__":
    main()
