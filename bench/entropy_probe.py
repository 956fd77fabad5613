"""How much would richer contexts in rgb-1x's entropy coder save?  A cross-validated probe.

    python bench/entropy_probe.py [--train 60] [--val 24] [--qualities 5 25 45 75]

Issue #14 asks for "a stronger entropy model".  Before building a coder version (new context
rules in the encoder, the decoder and the RD rounding, refitted tables, a container version for
the new weights' hash), this probe estimates what a few candidate contexts could save.  It
codes photos exactly as ``walloc encode -q Q`` does (the same integer latents), and for each
context rule fits one histogram per context on training photos, then measures the ideal code
length of the first validation photos under those histograms (add-constant smoothing towards
the pooled histogram; values beyond ±SPAN cost a 20-bit escape).  Fitting and measuring on
different photos matters: measured on the photos they were fitted on, extra contexts always
"gain" (a gradient context below looked 3–5 % better in-sample and is 0 ± 1 % across sets).

The rules compared:

* **DC pyramid** (the 3 DC channels, :mod:`walloc_cli.pyramid`): the shipped mean-of-four
  prediction with (stage, spread) tables; an edge-directed prediction (the mean of the
  neighbour pair that agrees better); the spread context refined by the two pairs'
  disagreement |d1 − d2| (3 bins); that plus the first DC channel's residual at the same place.
* **AC channels**: contexts built the way the shipped coder builds them (activity = 3×3 sum of
  |latents| over the previous ``context_depth`` channels, binned; the "white" squares of the
  checkerboard add their four coded neighbours), with this probe's own fixed bins — against a
  4-phase order (even-even quarter first, then the odd-odd quarter knowing its four diagonal
  neighbours, then the rest knowing four direct ones), that plus the previous channel's
  |value| at the same place, and that with finer activity bins.

Measured in session 15 (60 training photos, every 15th; the first 24 validation photos), bytes
a photo for the part in question and the change against the shipped rule:

| rule | q 5 | q 25 | q 45 | q 75 |
|---|---|---|---|---|
| DC: shipped (mean of four, spread) | 366 B | 911 B | 1714 B | – |
| DC: edge-directed prediction | | +1.9 % (in-sample) | +2.0 % (in-sample) | – |
| DC: spread + pair disagreement (3 bins) | −1.2 % | −0.5 % | +0.4 % | – |
| DC: that + first DC channel's residual | +1.9 % | +1.7 % | +1.9 % | – |
| AC: 2-phase checkerboard (as shipped) | – | 598 B | 4739 B | 27376 B |
| AC: 4-phase | – | −1.5 % | −1.0 % | −0.75 % |
| AC: 4-phase + previous channel at the same place | – | | −0.25 % | −0.6 % |
| AC: 4-phase, finer activity bins | – | | −0.7 % | −0.7 % |

So the table-based coder is within about 1 % of what these richer contexts give on held-out
photos; the remaining gap to AVIF (+10 % BD-rate) is not in the context rules.  A parametric
model (scales predicted from continuous features, shared across channels) would overfit less
than more table cells, and was not probed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from walloc_cli import api, pyramid  # noqa: E402
from walloc_cli.model import load_model  # noqa: E402

SPAN = 200                      # values beyond ±SPAN are escapes (20 bits)
ACTIVITY_CUTS = np.array([1, 2, 3, 5, 8, 12, 18, 27, 40, 60, 90])
FINE_ACTIVITY_CUTS = np.array([1, 2, 3, 4, 6, 8, 10, 13, 17, 22, 28, 36, 46, 60, 80, 105, 140])
NEIGHBOUR_CUTS = np.array([1, 2, 3, 5, 8])
DIRECT = ((-1, 0), (1, 0), (0, -1), (0, 1))
DIAGONAL = ((-1, -1), (1, 1), (-1, 1), (1, -1))

Records = dict[str, tuple[list[np.ndarray], list[np.ndarray]]]


def _box3(a: np.ndarray) -> np.ndarray:
    p = np.pad(a, ((0, 0), (1, 1), (1, 1)))
    rows = p[:, :-2] + p[:, 1:-1] + p[:, 2:]
    return rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]


def _neighbour_sum(a: np.ndarray, offsets: tuple[tuple[int, int], ...]) -> np.ndarray:
    p = np.pad(a, ((0, 0), (1, 1), (1, 1)))
    height, width = a.shape[1:]
    return sum(p[:, 1 + di : 1 + di + height, 1 + dj : 1 + dj + width] for di, dj in offsets)


def _add(records: Records, name: str, keys: np.ndarray, values: np.ndarray) -> None:
    records.setdefault(name, ([], []))
    records[name][0].append(np.asarray(keys, np.int64).reshape(-1))
    records[name][1].append(np.asarray(values, np.int64).reshape(-1))


def dc_records(dc: np.ndarray, records: Records) -> None:
    """The DC channels (3, H, W): (context, residual) under each DC rule."""
    height, width = dc.shape[1:]
    first_residual: dict[int, np.ndarray] = {}
    for c in range(dc.shape[0]):
        known = dc[c].reshape(-1)
        for step, (positions, neighbours, stage) in enumerate(pyramid.plan(height, width)):
            if neighbours is None:
                continue
            v = known[neighbours]
            value = known[positions]
            mean4 = (v.sum(0) + 2) >> 2
            spread = np.searchsorted(pyramid.SPREAD_CUTS, v.max(0) - v.min(0), side="right")
            d1, d2 = np.abs(v[0] - v[1]), np.abs(v[2] - v[3])
            edge = np.where(d1 < d2, (v[0] + v[1] + 1) >> 1, np.where(d2 < d1, (v[2] + v[3] + 1) >> 1, mean4))
            residual = value - mean4
            if c == 0:
                first_residual[step] = np.minimum(np.abs(residual), 1)
            across = first_residual[step] if c > 0 else np.zeros_like(residual)
            base = (c * 20 + stage) * pyramid.SPREAD_BINS + spread
            disagreement = np.searchsorted(np.array([1, 3]), np.abs(d1 - d2), side="right")
            _add(records, "DC: shipped (mean of four, spread)", base, residual)
            _add(records, "DC: edge-directed prediction", base, value - edge)
            _add(records, "DC: spread + pair disagreement", base * 3 + disagreement, residual)
            _add(records, "DC: that + first DC channel's residual", (base * 3 + disagreement) * 2 + across, residual)


def ac_records(z: np.ndarray, depth: int, lifted: int, records: Records) -> None:
    """The AC channels of latents (L, H, W): (context, value) under each AC rule."""
    a = np.abs(z)
    channels, height, width = z.shape
    running = np.cumsum(a, axis=0)
    previous = np.zeros_like(a)
    for c in range(1, channels):
        lo = max(0, c - depth)
        previous[c] = running[c - 1] - (running[lo - 1] if lo > 0 else 0)
    activity = _box3(previous)
    direct = np.searchsorted(NEIGHBOUR_CUTS, _neighbour_sum(a, DIRECT), side="right")
    diagonal = np.searchsorted(NEIGHBOUR_CUTS, _neighbour_sum(a, DIAGONAL), side="right")
    i, j = np.indices((height, width))
    white = ((i + j) % 2 == 1)[None]
    odd_odd = ((i % 2 == 1) & (j % 2 == 1))[None]
    even_even = ((i % 2 == 0) & (j % 2 == 0))[None]
    channel = np.arange(channels)[:, None, None]

    def four_phase(base: np.ndarray) -> np.ndarray:
        return np.where(even_even, base * 16, np.where(odd_odd, base * 16 + 1 + diagonal, base * 16 + 8 + direct))

    base = channel * (ACTIVITY_CUTS.size + 1) + np.searchsorted(ACTIVITY_CUTS, activity, side="right")
    fine = channel * (FINE_ACTIVITY_CUTS.size + 1) + np.searchsorted(FINE_ACTIVITY_CUTS, activity, side="right")
    same = np.zeros_like(a)
    same[1:] = np.minimum(a[:-1], 2)
    rules = {"AC: 2-phase checkerboard (as shipped)": np.where(white, base * 16 + 1 + direct, base * 16),
             "AC: 4-phase": four_phase(base),
             "AC: 4-phase + previous channel at the same place": four_phase(base) * 3 + same,
             "AC: 4-phase, finer activity bins": four_phase(fine)}
    for name, keys in rules.items():
        _add(records, name, keys[lifted:], z[lifted:])


def collect(model, photos: list[Path], quality: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    records: Records = {}
    ladder = model.ladder
    for photo in photos:
        rgb = np.asarray(Image.open(photo).convert("RGB"))
        latents, _ = api.image_to_latents(model, rgb, quality)
        z = np.asarray(latents, np.int64)
        dc_records(z[: ladder.lifted], records)
        ac_records(z, ladder.depth, ladder.lifted, records)
    return {name: (np.concatenate(k), np.concatenate(v)) for name, (k, v) in records.items()}


def held_out_bits(fitted: tuple[np.ndarray, np.ndarray], measured: tuple[np.ndarray, np.ndarray],
                  smoothing: float = 1.0) -> float:
    """Bits of ``measured`` (contexts, values) under per-context histograms of ``fitted``,
    smoothed towards the pooled histogram (``smoothing`` pseudo-counts)."""
    fit_keys, fit_values = fitted
    keys, values = measured
    contexts = np.unique(np.concatenate([fit_keys, keys]))
    counts = np.zeros((contexts.size, 2 * SPAN + 1))
    inside = np.abs(fit_values) <= SPAN
    np.add.at(counts, (np.searchsorted(contexts, fit_keys[inside]), fit_values[inside] + SPAN), 1)
    pooled = counts.sum(axis=0) + 1
    p = counts + smoothing * pooled[None] / pooled.sum() + 1e-3
    p /= p.sum(axis=1, keepdims=True)
    ok = np.abs(values) <= SPAN
    return float(-np.log2(p[np.searchsorted(contexts, keys[ok]), values[ok] + SPAN]).sum() + 20 * (~ok).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "images")
    parser.add_argument("--train", type=int, default=60, help="training photos (spread evenly over the training set)")
    parser.add_argument("--val", type=int, default=24, help="the first N validation photos")
    parser.add_argument("--qualities", type=int, nargs="+", default=[5, 25, 45, 75])
    args = parser.parse_args()
    model = load_model("rgb-1x")
    every = max(1, len(list((args.data / "train").iterdir())) // args.train)
    train = sorted((args.data / "train").iterdir())[::every][: args.train]
    val = sorted((args.data / "val").iterdir())[: args.val]
    for quality in args.qualities:
        fitted, measured = collect(model, train, quality), collect(model, val, quality)
        reference: dict[str, float] = {}
        for name in fitted:
            bits = held_out_bits(fitted[name], measured[name])
            part = name.split(":")[0]
            reference.setdefault(part, bits)
            print(f"q {quality:2d}  {name:52s} {bits / 8 / len(val):9.1f} B/photo  "
                  f"{100 * (bits / reference[part] - 1):+6.2f} %", flush=True)


if __name__ == "__main__":
    main()
