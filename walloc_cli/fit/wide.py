"""Fit the ladder's wide filter (:class:`walloc_cli.postfilter.WideFilter`):
``python -m walloc_cli.fit.wide --data ../shared/data/images --weights weights/ --name rgb-1x``.

The decoder's 3×3 filter and refiner correct the first K = 32 channels; this fits a second,
low-rank 3×3 filter that corrects channels K … K1 − 1 (K1 = 96) from the decoded channels
0 … K1 − 1, one per anchor, in closed form:

1. each training photo is encoded as ``walloc encode`` encodes it at the quality nearest each
   anchor's step (RD rounding included) and decoded to dequantized latents
   (:func:`walloc_cli.fit.ladder.coded_pair`), in units of each channel's step;
2. the normal equations of the least-squares estimate of channels K … K1 − 1's error from each
   position's decoded 3×3 neighbourhood over channels 0 … K1 − 1 are summed (two worker
   processes, half of the photos each; (9·K1)² float64 numbers per anchor);
3. the solution A (ridge 10⁻³ of the mean diagonal, as :func:`walloc_cli.postfilter.fit_weight`)
   is cut to rank r where it matters: the error it leaves, weighted by each output channel's
   squared step (the pixels' squared error), grows least when ``Lᵀ A W`` (L the Cholesky factor
   of the normal matrix, W the steps) is replaced by its best rank-r approximation (SVD), so
   ``in = (L⁻ᵀ U_r S_r)ᵀ`` and ``out = (V_rᵀ W⁻¹)ᵀ``.

Measured while developing it (150 photos, BD-rate over q 35–100 against the decoder without it,
24 validation / 24 Imagenette photos): full rank −0.43 / −0.55 %, rank 32 −0.37 / −0.50 %, rank
16 −0.25 / −0.38 %; decoding a 768×512 photo costs 13 ms more at full rank, 3 ms at rank 32.
A few minutes on two cores; the ladder's other arrays are copied unchanged (a new weights hash).
"""
from __future__ import annotations

import argparse
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

FIRST = 32     # K: the wide filter corrects channels FIRST … CHANNELS − 1 (the first filter's K)
CHANNELS = 96  # K1: the decoded channels it reads
RANK = 32
PHOTOS = 150   # training photos (seed 1: those of the first filter's fit)
RIDGE = 1e-3


def _normal_equations(job: tuple[str, str, list[str], int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(gram (anchors, 9·K1, 9·K1), cross (anchors, 9·K1, K1 − K)) summed over ``photos``."""
    from ..media import read_image
    from ..model import load_config
    from ..postfilter import patches
    from .ladder import coded_pair, quality_nearest, quality_steps

    config_path, name, photos, first, channels = job
    model = load_config(Path(config_path), name)
    qualities = [quality_nearest(step) for step in quality_steps()[2]]
    size = 9 * channels
    gram = np.zeros((len(qualities), size, size))
    cross = np.zeros((len(qualities), size, channels - first))
    for photo in photos:
        rgb = read_image(Path(photo).read_bytes()).rgb
        for a, quality in enumerate(qualities):
            decoded, true = coded_pair(model, rgb, quality, channels)
            x = patches(decoded.astype(np.float64))
            gram[a] += x @ x.T
            cross[a] += x @ (true[first:] - decoded[first:]).reshape(channels - first, -1).T.astype(np.float64)
    return gram, cross


def low_rank(gram: np.ndarray, cross: np.ndarray, weights: np.ndarray, rank: int,
             ridge: float = RIDGE) -> tuple[np.ndarray, np.ndarray]:
    """(in (rank, 9·K1), out (K1 − K, rank)): the rank-``rank`` filter whose error, each output
    channel weighted by ``weights`` (its step), is least — the best a factored filter can do on
    these normal equations (module docstring, step 3)."""
    gram = gram + ridge * np.trace(gram) / gram.shape[0] * np.eye(gram.shape[0])
    solution = np.linalg.solve(gram, cross)                     # (9·K1, K1 − K)
    factor = np.linalg.cholesky(gram)
    u, s, vt = np.linalg.svd(factor.T @ solution * weights[None, :], full_matrices=False)
    into = np.linalg.solve(factor.T, u[:, :rank] * s[:rank]).T  # (rank, 9·K1)
    out = (vt[:rank] / weights[None, :]).T                      # (K1 − K, rank)
    return into, out


def fit_wide(weights: Path, name: str, data: Path, photos: int = PHOTOS, seed: int = 1, rank: int = RANK,
             channels: int = CHANNELS, processes: int = 2) -> Path:
    """Add ``quality.wide.in`` / ``quality.wide.out`` to the ladder model ``weights/<name>``."""
    from ..model import load_config
    from .ladder import log, quality_nearest, quality_steps, rewrite_model, training_photos

    started = time.time()
    config_path = weights / f"{name}.json"
    ladder = load_config(config_path, name).ladder
    if ladder is None or ladder.filter is None:
        raise SystemExit(f"{name} is not a quality-ladder model with a filter")
    first = ladder.filter_channels
    paths = [str(p) for p in training_photos(data, photos, seed)]
    log(f"wide filter: {len(paths)} training photos (seed {seed}), channels {first}-{channels - 1} "
        f"from 0-{channels - 1}, rank {rank}")
    jobs = [(str(config_path), name, paths[i::processes], first, channels) for i in range(processes)]
    with get_context("spawn").Pool(processes) as pool:
        sums = pool.map(_normal_equations, jobs)
    gram, cross = sum(g for g, _ in sums), sum(c for _, c in sums)
    qualities = [quality_nearest(step) for step in quality_steps()[2]]
    factors = [low_rank(gram[a], cross[a], ladder.steps(q)[first:channels].astype(np.float64), rank)
               for a, q in enumerate(qualities)]
    arrays = {"quality.wide.in": np.stack([f[0] for f in factors]).astype(np.float32),
              "quality.wide.out": np.stack([f[1] for f in factors]).astype(np.float32)}
    path = rewrite_model(weights, name, arrays, {"wide_filter": {
        "fitted_on": f"{len(paths)} photos of {data / 'train'} (seed {seed})",
        "channels": [first, channels], "rank": rank,
        "fit_wall_minutes": round((time.time() - started) / 60, 1),
        "command": f"python -m walloc_cli.fit.wide --data {data} --weights {weights} --name {name}",
    }})
    log(f"wide filter: wrote {path} in {(time.time() - started) / 60:.1f} min")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m walloc_cli.fit.wide", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with train/ (photos)")
    parser.add_argument("--weights", type=Path, default=Path("weights"), help="weights folder (written back)")
    parser.add_argument("--name", default="rgb-1x")
    parser.add_argument("--photos", type=int, default=PHOTOS)
    parser.add_argument("--rank", type=int, default=RANK)
    args = parser.parse_args(argv)
    fit_wide(args.weights, args.name, args.data, args.photos, rank=args.rank)


if __name__ == "__main__":
    main()
