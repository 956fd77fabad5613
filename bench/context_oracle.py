"""Held-out conditional entropy of an image model's AC latents under several context layouts.

Why: a new context for the coder is a new coder version — a format change, refitted tables,
new golden files — so first measure what it could save.  The latents are those ``walloc
encode`` writes (RD rounding included); for each layout each AC latent's table index is
computed by :func:`walloc_cli.entropy.table_index`, histograms per (quality, channel, table)
are counted on half of the photos (even-numbered) and the other half's latents are priced
with them (add-½ prior over the symbols either half saw, plus an escape), then the halves
swap.  What the fitted tables of a real refit would cost, from a few photos instead of 300:
finer layouts are penalised here for their sparser counts more than a full fit would be.

    python bench/context_oracle.py ../shared/data/images/val --photos 24 --qualities 40,60,75,90

Prints each layout's bits against the first (the shipped model's own layout), per quality.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from walloc_cli import api, entropy  # noqa: E402
from walloc_cli.media import read_image  # noqa: E402
from walloc_cli.model import load_model  # noqa: E402

SYMBOLS = 401  # |values| beyond 200 share one symbol (an escape's cost is not the point here)
LAYOUTS = {  # name: (white squares' neighbour cuts, odd/odd squares' diagonal cuts)
    "v4 (white 1,2,4,8)": ((1, 2, 4, 8), ()),
    "v5, white 1,2,4,8": ((1, 2, 4, 8), (1, 2, 4, 8)),
    "v5, white 1,2,3,4,6,8,12": ((1, 2, 3, 4, 6, 8, 12), (1, 2, 4, 8)),
    "v5, both 1,2,3,4,6,8,12": ((1, 2, 3, 4, 6, 8, 12), (1, 2, 3, 4, 6, 8, 12)),
}


def layout_keys(latents: np.ndarray, bins: np.ndarray, bins_count: int, lifted: int, per_channel: int,
                quality_index: int, cuts: tuple[int, ...], diagonal: tuple[int, ...]) -> np.ndarray:
    """One key per AC latent: (quality, channel, table) context × symbol."""
    ac = latents[lifted:]
    which = entropy.table_index(bins, ac, bins_count, cuts, diagonal)
    channels = ac.shape[0]
    context = (quality_index * latents.shape[0] + lifted + np.arange(channels))[:, None, None] * per_channel + which
    return (context * SYMBOLS + np.clip(ac, -(SYMBOLS // 2), SYMBOLS // 2) + SYMBOLS // 2).reshape(-1)


def held_out_bits(fit: tuple[np.ndarray, np.ndarray], held: tuple[np.ndarray, np.ndarray],
                  contexts_per_quality: int) -> np.ndarray:
    """Bits per quality of the ``held`` (keys, counts) priced by histograms of ``fit``."""
    fit_keys, fit_counts = fit
    keys, counts = held
    alphabet = np.bincount(np.union1d(fit_keys, keys) // SYMBOLS) + 1  # + the escape
    totals = np.bincount(fit_keys // SYMBOLS, weights=fit_counts, minlength=alphabet.size)
    at = np.minimum(np.searchsorted(fit_keys, keys), max(fit_keys.size - 1, 0))
    seen = np.where(fit_keys[at] == keys, fit_counts[at], 0) if fit_keys.size else np.zeros(keys.size)
    context = keys // SYMBOLS
    bits = -counts * np.log2((seen + 0.5) / (totals[context] + 0.5 * alphabet[context]))
    return np.bincount(context // contexts_per_quality, weights=bits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--qualities", default="40,60,75,90")
    parser.add_argument("--model", default="rgb-1x")
    args = parser.parse_args()
    model = load_model(args.model)
    ladder = model.ladder
    qualities = [int(q) for q in args.qualities.split(",")]
    files = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[: args.photos]
    bins_count = ladder.thresholds.shape[2] + 1
    per_channel = max(entropy.tables_per_channel(bins_count, c, d) for c, d in LAYOUTS.values())
    keys: dict[str, list[list[np.ndarray]]] = {name: [[], []] for name in LAYOUTS}
    for k, path in enumerate(files):
        rgb = read_image(path.read_bytes()).rgb
        for qi, q in enumerate(qualities):
            latents, _ = api.image_to_latents(model, rgb, q)
            latents = latents.astype(np.int64)
            thresholds = ladder.thresholds[ladder.anchor[q]][ladder.lifted:]
            activity = entropy.activity_of_all(latents, ladder.depth)[ladder.lifted:]
            bins = entropy.context_bins_per_channel(activity.reshape(activity.shape[0], -1), thresholds)
            bins = bins.reshape(activity.shape)
            for name, (cuts, diagonal) in LAYOUTS.items():
                keys[name][k % 2].append(layout_keys(latents, bins, bins_count, ladder.lifted, per_channel, qi,
                                                           cuts, diagonal))
    contexts_per_quality = latents.shape[0] * per_channel
    totals = {}
    for name in LAYOUTS:
        halves = [np.unique(np.concatenate(h), return_counts=True) for h in keys[name]]
        bits = np.zeros(len(qualities))
        for fit, held in ((0, 1), (1, 0)):
            found = held_out_bits(halves[fit], halves[held], contexts_per_quality)
            bits[: found.size] += found
        totals[name] = bits
    first = totals[next(iter(LAYOUTS))]
    print(f"{len(files)} photos of {args.folder}, model {args.model} ({model.config.short_hash}): "
          "held-out AC bits against the first layout")
    for name, bits in totals.items():
        per_q = "  ".join(f"q{q} {100 * (b / f - 1):+.2f}%" for q, b, f in zip(qualities, bits, first))
        print(f"{name:28s} {per_q}  all {100 * (bits.sum() / first.sum() - 1):+.2f}%")


if __name__ == "__main__":
    main()
