"""Fit a quality-ladder image model: ``python -m walloc_cli.fit.ladder --data DIR --out weights/``.

The 16× model (``rgb-16x``) is a fixed bottleneck: 12 latents per 8×8 block cap
its quality near 28 dB however many bits it spends.  A codec that covers
0.1–2+ bpp needs every one of the 192 WPT channels available, and the bits
then depend on *how* they are quantized and modelled, not on a bottleneck:

* **Encoder** — the Karhunen–Loève transform (PCA) of the WPT coefficients of
  the training photos, 192 → 192, orthonormal.  Still a single 1×1 projection,
  so encoding stays linear and cheap; channels come out in order of
  decreasing variance, and at low qualities the later ones quantize to zero.
* **Quality** — q = 1…100 sets one quantization step, log-spaced, shared by all
  channels (for an orthonormal transform and MSE, equal steps are the optimum
  at high rate), times per-channel gains at each *anchor* step (:func:`quality_gains`:
  finer for the DC and the first luma AC channels, for MS-SSIM), then rounded by error +
  λ·bits in the encoder (:mod:`walloc_cli.rdoq`).
* **Entropy model** — per (anchor, channel, activity bin) integer tables, the
  activity being the 3×3 sum of |latents| in the previous channels
  (:mod:`walloc_cli.entropy`).  Fitted on the training photos' latents, first
  dead-zone rounded, then refitted on the encoder's own RD rounding (:func:`fit_rd`).
* **Decoder** — the transpose of the encoder (orthonormal), with values
  reconstructed at their bins' centroids rather than centres (fitted offsets):
  numpy only, no torch import, so decoding a photo takes well under 0.5 s.

Everything here is closed-form or histogram counting: a full fit takes minutes
on two CPU cores, and the same command reproduces the shipped weights.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import entropy, wavelets
from ..media import read_image
from ..model import dead_zone_round, save_model

LEVELS = 3
WAVELET = wavelets.DEFAULT_WAVELET
BLOCK = 2**LEVELS
CONTEXT_DEPTH = 8         # previous channels whose 3×3 activity selects the table
CONTEXT_BINS = 8          # tables per (anchor, channel)
NEIGHBOUR_CUTS = (1, 2, 3, 4, 6, 8, 12)  # checkerboard: white squares' 4-neighbour |latent| sum, 8 bins
DIAGONAL_CUTS = (1, 2, 4, 8)  # odd/odd squares' 4-diagonal |latent| sum, 5 bins (coder v5: entropy.phases)
# Why these: held-out conditional entropy of the AC latents of 24 validation photos at q 40–90
# (bench/context_oracle.py), against the version-4 context (white squares' cuts 1, 2, 4, 8 and no
# diagonal phase): the diagonal phase with those cuts −1.48 %; with the white cuts above −1.73 %;
# both with the finer cuts −1.78 % (24 more tables a channel for 0.05 %).
LIFTED = 3                # leading channels (the DC of each colour: lag-1 correlation 0.8–0.9) coded
                          # through the interpolation pyramid (coder v3/v4, fit_pyramid's tables) or,
                          # in files of coder v1/v2, after an integer Haar transform, one table per level
DEADZONE = 0.15           # rounding threshold 0.5 + DEADZONE (in steps) for leaving zero
# q = 1 … 100 maps log-linearly onto these steps (model units: pixels/255 − 0.5)
STEP_AT_Q1 = 3.0
STEP_AT_Q100 = 0.025
ANCHORS = 16              # table sets, log-spaced over the same range
# The DC channels' step relative to the others.  Equal steps are the MSE optimum for an
# orthonormal transform at high rate, but the DC is coded as residuals along its pyramid and
# rounded along it by error + λ·bits (rdoq.py), and its error is smooth over whole 8×8 blocks,
# which MS-SSIM's coarse scales punish.  Measured on 16 validation photos with the earlier
# weights, only the DC's steps changed (tables not refitted): gain 0.86 / 0.82 / 0.74 gave
# BD-rate −0.1 / 0.0 / +0.3 % (PSNR) and −1.4 / −1.6 / −1.7 % (MS-SSIM) at q 35–95.  Refitted
# with 0.82 (each set of weights with its hash in the header dictionary): on 24 validation
# photos −3.4 / −3.4 % (PSNR / MS-SSIM) at q 5–35 and −0.2 / −1.8 % at q 35–95; on 100
# Imagenette photos −1.7 / −1.9 % and −0.2 / −1.65 % (bench/compare_runs.py).
DC_GAIN = 0.82
# The first luma AC channels' step relative to the others, from the anchor at q 34 up.  They are
# the block's lowest-frequency luma patterns (packet bands 1, 2, 5, 10, 3: gradients and
# curvature across the 8×8 block), whose error MS-SSIM's coarse scales (which carry most of its
# weight) see and PSNR barely does.  Session 16, 24 validation photos, the gains changed in the
# shipped weights without refitting their tables (bench/compare_runs.py, PSNR / MS-SSIM BD-rate
# at q 35–100): channels 3–11 at 0.85 +0.36 / −2.58 %, at 0.8 +0.75 / −3.25 %; channels 3–7 at
# 0.8 +0.34 / −3.09 %; below q 34 every setting tried lost on both (channels 3–11 at 0.85 from
# q 1: +1.4 / +0.8 % at q 1–35), where the DC carries most of a file.  Shipped in session 17
# together with the RD refit (fit_rd), which takes back the PSNR it costs (weights/README.md).
LOW_AC_CHANNELS = (3, 8)
LOW_AC_GAIN = 0.8
LOW_AC_FIRST_ANCHOR = 5


def log(message: str) -> None:
    print(f"[ladder {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def photo_coefficients(path: Path) -> np.ndarray:
    """WPT coefficients (H', W', 192) of one photo, padded exactly as ``walloc encode`` pads."""
    rgb = read_image(path.read_bytes()).rgb
    h, w = rgb.shape[:2]
    padded = np.pad(rgb, ((0, (-h) % BLOCK), (0, (-w) % BLOCK), (0, 0)), mode="symmetric")
    x = padded.astype(np.float32) * np.float32(1 / 255.0) - np.float32(0.5)
    c = wavelets.wpt2d_positions(x, LEVELS, WAVELET)
    return c.reshape(c.shape[0], c.shape[1], -1)


def fit_pca(coefficients: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean (192,) and orthonormal basis (192, 192), columns by decreasing variance."""
    flat = np.concatenate([c.reshape(-1, c.shape[-1]) for c in coefficients]).astype(np.float64)
    mean = flat.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov((flat - mean).T))
    order = np.argsort(-values)
    vectors = vectors[:, order]
    vectors *= np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(vectors.shape[1])])  # deterministic signs
    return mean, vectors


def quality_steps() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(step per q (index 0 unused), anchor index per q, anchor steps)."""
    q = np.arange(101)
    t = np.clip((q - 1) / 99.0, 0.0, 1.0)
    steps = np.exp(np.log(STEP_AT_Q1) + t * (np.log(STEP_AT_Q100) - np.log(STEP_AT_Q1)))
    anchors = np.exp(np.linspace(np.log(STEP_AT_Q1), np.log(STEP_AT_Q100), ANCHORS))
    anchor_of_q = np.abs(np.log(steps)[:, None] - np.log(anchors)[None, :]).argmin(axis=1)
    return steps, anchor_of_q, anchors


def training_photos(data: Path, max_images: int, seed: int) -> list[Path]:
    """``max_images`` photos of ``data/train``, drawn without replacement by ``seed``, in file order."""
    files = sorted(p for p in (data / "train").iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    rng = np.random.default_rng(seed)
    return [files[i] for i in sorted(rng.choice(len(files), min(max_images, len(files)), replace=False))]


def quality_nearest(step: float) -> int:
    """The quality 1–100 whose step is nearest ``step`` (log scale): where an anchor is fitted."""
    steps, _, _ = quality_steps()
    return int(np.abs(np.log(steps[1:]) - np.log(step)).argmin()) + 1


def scaled_latents(model, rgb: np.ndarray, quality: int) -> np.ndarray:
    """The float latents of a photo in units of ``quality``'s steps, padded as ``walloc encode`` pads."""
    from .. import api

    h, w = rgb.shape[:2]
    pad = api.image_padding(h, w, BLOCK)
    return model.to_latents(api.image_reader(rgb, w + pad[1]), h + pad[0], 1 << 30, quality, scaled=True)


def fit_anchor(latents: list[np.ndarray], steps: np.ndarray) -> tuple[list, np.ndarray, np.ndarray]:
    """Tables, thresholds (L, bins−1) and reconstruction offsets (L,) for one anchor.

    ``latents`` are float latents (H', W', L) per image; ``steps`` the per-channel steps.
    They are dead-zone rounded (the first fit: the encoder's RD rounding needs tables to
    exist), then tabled by :func:`fit_anchor_tables`.
    """
    scaled = [z.transpose(2, 0, 1) / steps[:, None, None] for z in latents]
    return fit_anchor_tables([dead_zone_round(y, DEADZONE) for y in scaled], scaled)


def fit_anchor_tables(quantized: list[np.ndarray], scaled: list[np.ndarray], offset_floor: float = 0.0
                      ) -> tuple[list, np.ndarray, np.ndarray]:
    """Tables, thresholds (L, bins−1) and reconstruction offsets (L,) from int latents (L, H', W')
    per image and the scaled float latents they were rounded from.  An offset is the mean of
    |value| − |scaled| over the nonzero values, clipped to [``offset_floor``, 0.45] (negative:
    the values a bin holds lie above its integer on average, as after RD rounding).

    The first LIFTED channels are tabled per integer-Haar level instead of per activity bin,
    as coder versions 1 and 2 code them (version 3 codes them with :func:`fit_pyramid`'s
    tables; these rows stay, unused by its files, so the table layout is the same).
    """
    activities = [entropy.activity_of_all(q, CONTEXT_DEPTH).reshape(q.shape[0], -1) for q in quantized]
    activity = np.concatenate(activities, axis=1)                                  # (L, N)
    values = np.concatenate([q.reshape(q.shape[0], -1) for q in quantized], axis=1)
    scaled = np.concatenate([y.reshape(y.shape[0], -1) for y in scaled], axis=1)
    channels = values.shape[0]
    thresholds = np.zeros((channels, CONTEXT_BINS - 1), np.int64)
    for c in range(LIFTED, channels):
        # equal-population bins over the activity; ties (many zeros) collapse bins, which then stay empty
        cuts = np.quantile(activity[c], np.linspace(0, 1, CONTEXT_BINS + 1)[1:-1], method="higher").astype(np.int64)
        thresholds[c] = np.maximum.accumulate(np.maximum(cuts, 1))
    levels = CONTEXT_BINS - 1
    which, coded = [], []
    for q, a in zip(quantized, activities):
        bins = entropy.context_bins_per_channel(a, thresholds).reshape(q.shape)
        w = entropy.table_index(bins, q, CONTEXT_BINS, NEIGHBOUR_CUTS, DIAGONAL_CUTS).reshape(channels, -1)
        v = q.reshape(channels, -1).copy()
        w[:LIFTED] = entropy.lift_level_map(*q.shape[1:], levels).reshape(-1)
        for c in range(LIFTED):
            v[c] = entropy.lift_forward(q[c], levels).reshape(-1)
        which.append(w)
        coded.append(v)
    which, coded = np.concatenate(which, axis=1), np.concatenate(coded, axis=1)
    per_channel = entropy.tables_per_channel(CONTEXT_BINS, NEIGHBOUR_CUTS, DIAGONAL_CUTS)
    rows = []
    offsets = np.zeros(channels)
    for c in range(channels):
        order = np.argsort(which[c], kind="stable")
        groups = np.split(coded[c][order], np.cumsum(np.bincount(which[c], minlength=per_channel))[:-1])
        rows += [entropy.fit_row(g) for g in groups]
        nonzero = values[c] != 0
        if nonzero.any():  # centroid of |y| within its bin, measured from the bin's integer value
            offsets[c] = np.clip(np.mean(np.abs(values[c, nonzero]) - np.abs(scaled[c, nonzero])), offset_floor, 0.45)
    return rows, thresholds, offsets


def context_arrays(fit_one: Callable[[int], tuple[list, np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """The ``context.*`` tables and thresholds and the ``quality.offset`` array of a ladder model
    from ``fit_one(anchor)`` -> (table rows, thresholds, offsets) of each anchor in turn (what
    :func:`fit` and :func:`fit_rd` both build, from differently rounded latents)."""
    rows, thresholds, offsets = [], [], []
    for a in range(ANCHORS):
        anchor_rows, cuts, offs = fit_one(a)
        rows += anchor_rows
        thresholds.append(cuts)
        offsets.append(offs)
    tables = entropy.RaggedTables.from_rows(rows)
    tables.validate()
    return {"context.lo": tables.lo, "context.size": tables.size, "context.offset": tables.offset,
            "context.freqs": tables.freqs, "context.thresholds": np.stack(thresholds),
            "quality.offset": np.stack(offsets)}


def quality_gains(channels: int) -> np.ndarray:
    """Per-anchor, per-channel step factors (ANCHORS, channels): :data:`DC_GAIN` for the DC,
    :data:`LOW_AC_GAIN` for the first luma AC channels from :data:`LOW_AC_FIRST_ANCHOR` up, 1 elsewhere."""
    gains = np.ones((ANCHORS, channels))
    gains[:, :LIFTED] = DC_GAIN
    gains[LOW_AC_FIRST_ANCHOR:, LOW_AC_CHANNELS[0] : LOW_AC_CHANNELS[1]] = LOW_AC_GAIN
    return gains


def rewrite_model(weights: Path, name: str, arrays: dict[str, np.ndarray], info: dict,
                  drop: tuple[str, ...] = (), fields: dict | None = None) -> Path:
    """Write the model ``weights/<name>`` back with ``arrays`` added or replaced (``drop``
    removed), ``info`` merged into its config's ``info`` and ``fields`` set in the config — a new
    weights hash.  The last step of every fitting stage after :func:`fit` (gains, pyramid, RD
    refit, filter, refiner)."""
    config_path = weights / f"{name}.json"
    with np.load(weights / f"{name}.npz", allow_pickle=False) as stored:
        stored_arrays = {k: stored[k] for k in stored.files if k not in drop}
    stored_arrays.update(arrays)
    config = json.loads(config_path.read_text())
    config.pop("sha256", None)
    config.setdefault("info", {}).update(info)
    config.update(fields or {})
    return save_model(weights, config, stored_arrays)


def set_gains(weights: Path, name: str) -> Path:
    """Write :func:`quality_gains` into the ladder model ``weights/<name>`` (a new weights hash),
    leaving its tables as they are: :func:`fit_rd` then refits them to the new steps."""
    with np.load(weights / f"{name}.npz", allow_pickle=False) as stored:
        channels = stored["quality.gain"].shape[1]
    path = rewrite_model(weights, name, {"quality.gain": quality_gains(channels)}, {"dc_gain": DC_GAIN, "low_ac_gain": {
        "channels": list(LOW_AC_CHANNELS), "gain": LOW_AC_GAIN, "first_anchor": LOW_AC_FIRST_ANCHOR}})
    log(f"gains: wrote {path}")
    return path


def fit(data: Path, out: Path, name: str, max_images: int, seed: int) -> Path:
    started = time.time()
    chosen = training_photos(data, max_images, seed)
    log(f"{len(chosen)} training photos")
    coefficients = [photo_coefficients(path) for path in chosen]
    mean, basis = fit_pca(coefficients)
    weight = basis.T                        # latents = weight @ (coefficients − mean)
    bias = -weight @ mean
    latents = [c.astype(np.float64) @ weight.T + bias for c in coefficients]
    steps, anchor_of_q, anchors = quality_steps()
    gains = quality_gains(weight.shape[0])

    def fit_one(a: int) -> tuple[list, np.ndarray, np.ndarray]:
        fitted = fit_anchor(latents, anchors[a] * gains[a])
        log(f"anchor {a + 1}/{ANCHORS} (step {anchors[a]:.4f}) fitted")
        return fitted

    context = context_arrays(fit_one)
    order = wavelets.packet_order_2d(LEVELS)
    # encoder weight columns in the reference packet-channel order (see CodecModel)
    natural = (np.arange(3)[:, None] * order.size + order[None, :]).reshape(-1)
    weight_packet = weight[:, natural]
    arrays = {
        "encoder.weight": weight_packet.astype(np.float64),
        "encoder.bias": bias.astype(np.float64),
        "decoder.linear.weight": weight_packet.T.astype(np.float32)[:, :, None, None],
        "decoder.linear.bias": mean[natural].astype(np.float32),
        # the static tables are unused by ladder models but keep the file layout uniform
        "entropy.lo": np.zeros(weight.shape[0], np.int32),
        "entropy.size": np.ones(weight.shape[0], np.int32),
        "entropy.freqs": np.tile(np.array([[entropy.TOTAL // 2, entropy.TOTAL // 2]], np.int32), (weight.shape[0], 1)),
        **context,
        "quality.step": steps, "quality.anchor": anchor_of_q, "quality.gain": gains,
        "quality.deadzone": np.array(DEADZONE),
    }
    config = {
        "name": name, "modality": "image", "channels": 3, "levels": LEVELS, "wavelet": WAVELET,
        "latent_channels": int(weight.shape[0]), "decoder_width": 0, "decoder_blocks": 0,
        "table_sets": 1, "coding": "context", "decoder_kind": "linear",
        "context_depth": CONTEXT_DEPTH, "context_bins": CONTEXT_BINS, "lifted_channels": LIFTED,
        "neighbour_cuts": list(NEIGHBOUR_CUTS), "diagonal_cuts": list(DIAGONAL_CUTS),
        "info": {
            "fitted_on": f"{len(chosen)} photos of {data / 'train'} (seed {seed})",
            "dc_gain": DC_GAIN,
            "low_ac_gain": {"channels": list(LOW_AC_CHANNELS), "gain": LOW_AC_GAIN, "first_anchor": LOW_AC_FIRST_ANCHOR},
            "anchor_steps": [round(float(s), 5) for s in anchors],
            "fit_wall_minutes": round((time.time() - started) / 60, 1),
            "command": f"python -m walloc_cli.fit.ladder --data {data} --out {out} --name {name} --images {max_images}",
        },
    }
    path = save_model(out, config, arrays)
    log(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {(time.time() - started) / 60:.1f} min")
    return path


PYRAMID_IMAGES = 300      # training photos the DC pyramid's tables are counted over, per anchor
PYRAMID_BACKOFF = 400     # a (stage, spread) table seen fewer times borrows its stage's values


def fit_pyramid(weights: Path, name: str, data: Path, max_images: int = PYRAMID_IMAGES, seed: int = 2,
                pairs: bool = True, rd: bool = False) -> Path:
    """Add the DC channels' pyramid tables (``pyramid.*``, :mod:`walloc_cli.pyramid`; with
    ``pairs`` also split by the neighbour pairs' disagreement, context coder version 4, else
    version 3) to the ladder model ``weights/<name>``, and write it back (a new weights hash).

    For each anchor the photos' DC channels are rounded as the encoder rounds them, at
    the quality nearest the anchor's step, and each (channel, stage, spread[, pairs]) table
    is fitted on the residuals it would code; one that saw fewer than :data:`PYRAMID_BACKOFF`
    is pooled with its (stage, spread) siblings, and if still short with its whole stage.
    ``rd``: the DC is rounded as the encoder rounds it, along the pyramid by error + λ·bits
    with the model's current pyramid tables (:func:`walloc_cli.rdoq.rd_round_dc`), instead of
    by the dead-zone rule (the first fit, before any tables exist): the tables then count
    the residuals files really hold.
    About a minute on two cores; the ladder's other arrays are copied unchanged."""
    from .. import pyramid, rdoq
    from ..model import load_config

    started = time.time()
    config_path = weights / f"{name}.json"
    model = load_config(config_path, name)
    ladder = model.ladder
    if ladder is None or ladder.lifted == 0:
        raise SystemExit(f"{name} is not a quality-ladder model with DC channels")
    lifted = ladder.lifted
    dc = []  # float DC latents (lifted, H', W') per photo, in model units
    for path in training_photos(data, max_images, seed):
        scaled = scaled_latents(model, read_image(path.read_bytes()).rgb, 50)
        dc.append(scaled[:lifted] * ladder.steps(50)[:lifted, None, None])
    log(f"pyramid: {len(dc)} training photos (seed {seed})")
    _, _, anchors = quality_steps()
    per, per_stage = pyramid.tables_per_channel(pairs), pyramid.tables_per_stage(pairs)
    siblings = pyramid.PAIR_BINS if pairs else 1
    rows = []
    for a, anchor_step in enumerate(anchors):
        quality = quality_nearest(anchor_step)
        step = ladder.steps(quality)[:lifted, None, None]
        rounded = [rdoq.rd_round_dc(z / step, ladder, quality) if rd else ladder.round_scaled(z / step) for z in dc]
        for c in range(lifted):
            coded = [part for r in rounded for part in pyramid.analyse(r[c], pairs)]
            which = np.concatenate([w for w, _ in coded])
            residuals = np.concatenate([r for _, r in coded])
            order = np.argsort(which, kind="stable")
            groups = np.split(residuals[order], np.cumsum(np.bincount(which, minlength=per))[:-1])
            for t, values in enumerate(groups):
                if values.size < PYRAMID_BACKOFF and siblings > 1:
                    first = t - t % siblings
                    values = np.concatenate([values] + groups[first : first + siblings])
                if values.size < PYRAMID_BACKOFF:
                    stage = t // per_stage
                    values = np.concatenate([values] + groups[stage * per_stage : (stage + 1) * per_stage])
                rows.append(entropy.fit_row(values))
        log(f"pyramid: anchor {a + 1}/{len(anchors)} (q {quality}) fitted")
    tables = entropy.RaggedTables.from_rows(rows)
    tables.validate()
    arrays = {"pyramid.lo": tables.lo, "pyramid.size": tables.size, "pyramid.offset": tables.offset,
              "pyramid.freqs": tables.freqs}
    if pairs:
        arrays["pyramid.pairs"] = np.ones(1, np.int32)
    path = rewrite_model(weights, name, arrays, {"pyramid": {
        "fitted_on": f"{len(dc)} photos of {data / 'train'} (seed {seed})",
        "fit_wall_minutes": round((time.time() - started) / 60, 1),
        "rounding": "rd" if rd else "dead-zone",
        "command": f"python -m walloc_cli.fit.ladder --data {data} --out {weights} --name {name} "
                   + ("--rd-only (its second step)" if rd else "--pyramid-only"),
    }}, drop=() if pairs else ("pyramid.pairs",))
    log(f"pyramid: wrote {path} in {(time.time() - started) / 60:.1f} min")
    return path


OFFSET_FLOOR = -0.45  # the decoder reconstructs a value n ≠ 0 at |n| − offset, offset in (−0.5, 1)
RD_IMAGES = 300  # training photos the RD refit rounds (the ladder fit's own, seed 0)


def fit_rd(weights: Path, name: str, data: Path, max_images: int = RD_IMAGES, seed: int = 0) -> Path:
    """Refit the ladder's AC tables, context thresholds and reconstruction offsets on the latents
    the encoder really writes, then the DC pyramid's tables likewise (:func:`fit_pyramid` with
    ``rd``), and write the model back (a new weights hash).

    Why: :func:`fit` tables dead-zone-rounded latents, but the encoder rounds by error + λ·bits
    (:mod:`walloc_cli.rdoq`), which moves values toward zero where bits are dear: the files'
    statistics are not the tables', so every file paid for the mismatch, and each bin's
    reconstruction offset was measured on values the encoder does not produce.  One pass of
    this (RD rounding with the fitted tables, then counting again) is one step of the usual
    alternation between an entropy-constrained quantizer and its code.  The tables are laid out
    by this module's :data:`NEIGHBOUR_CUTS` and :data:`DIAGONAL_CUTS`, written into the config:
    so a model of an older layout is rounded with its own tables and comes back in this one."""
    from .. import rdoq
    from ..model import load_config

    started = time.time()
    config_path = weights / f"{name}.json"
    model = load_config(config_path, name)
    if model.ladder is None:
        raise SystemExit(f"{name} is not a quality-ladder model")
    ladder = model.ladder
    photos = training_photos(data, max_images, seed)
    base = 50  # the latents once, in model units; each anchor rescales them
    latents = [(scaled_latents(model, read_image(path.read_bytes()).rgb, base)
                * ladder.steps(base)[:, None, None]).astype(np.float32) for path in photos]
    log(f"rd refit: {len(latents)} training photos (seed {seed})")
    _, _, anchors = quality_steps()

    def fit_one(a: int) -> tuple[list, np.ndarray, np.ndarray]:
        quality = quality_nearest(anchors[a])
        step = ladder.steps(quality).astype(np.float32)[:, None, None]
        scaled = [z / step for z in latents]
        quantized = [rdoq.rd_round(y, ladder, quality) for y in scaled]
        anchor_rows, cuts, offs = fit_anchor_tables(quantized, scaled, OFFSET_FLOOR)
        offs[:LIFTED] = ladder.offset[a, :LIFTED]  # the DC is rounded by its own rule, whose error it prices at 0
        log(f"rd refit: anchor {a + 1}/{len(anchors)} (q {quality}) fitted")
        return anchor_rows, cuts, offs

    rewrite_model(weights, name, context_arrays(fit_one), {"rd_refit": {
        "fitted_on": f"{len(latents)} photos of {data / 'train'} (seed {seed})",
        "fit_wall_minutes": round((time.time() - started) / 60, 1),
        "command": f"python -m walloc_cli.fit.ladder --data {data} --out {weights} --name {name} --rd-only",
    }}, fields={"neighbour_cuts": list(NEIGHBOUR_CUTS), "diagonal_cuts": list(DIAGONAL_CUTS)})
    log(f"rd refit: tables written in {(time.time() - started) / 60:.1f} min")
    return fit_pyramid(weights, name, data, rd=True)


def coded_pair(model, rgb: np.ndarray, quality: int, channels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(decoded, true) float32 latents (channels, H', W') of a photo coded as ``walloc encode -q``
    codes it (RD rounding included), both in units of their steps: what a decoder-side filter
    learns to map from one to the other.  ``channels``: the first that many (default all)."""
    from .. import api

    ladder = model.ladder
    channels = ladder.steps(quality).size if channels is None else channels
    coded, _ = api.image_to_latents(model, rgb, quality)
    decoded = ladder.dequantize(coded[:channels], quality, np.arange(channels)) / ladder.steps(quality)[:channels, None, None]
    return decoded.astype(np.float32), scaled_latents(model, rgb, quality)[:channels]


FILTER_CHANNELS = 32  # K: the leading channels the decoder's 3×3 filter refines (postfilter.py)
FILTER_IMAGES = 150   # training photos its least squares are summed over, per anchor


def fit_filter(weights: Path, name: str, data: Path, max_images: int = FILTER_IMAGES, seed: int = 1,
               channels: int = FILTER_CHANNELS) -> Path:
    """Add the decoder's filter (``quality.filter``, :mod:`walloc_cli.postfilter`) to the fitted
    ladder model ``weights/<name>``, and write it back (a new weights hash).

    For each anchor, the photos are encoded exactly as ``walloc encode`` does at the
    quality nearest the anchor's step (RD rounding included), decoded to dequantized
    latents, and the least-squares estimate of the true latents' error from each decoded
    3×3 neighbourhood of the first ``channels`` channels is solved, in units of the step.
    Minutes on two cores; the ladder's other arrays are copied unchanged."""
    from .. import postfilter
    from ..model import load_config

    started = time.time()
    config_path = weights / f"{name}.json"
    model = load_config(config_path, name)
    ladder = model.ladder
    if ladder is None:
        raise SystemExit(f"{name} is not a quality-ladder model")
    photos = [read_image(path.read_bytes()).rgb for path in training_photos(data, max_images, seed)]
    log(f"filter: {len(photos)} training photos (seed {seed}), K = {channels}")
    _, _, anchors = quality_steps()
    kernels = []
    for a, anchor_step in enumerate(anchors):
        quality = quality_nearest(anchor_step)
        kernels.append(postfilter.fit_weight([coded_pair(model, rgb, quality, channels) for rgb in photos]))
        log(f"filter: anchor {a + 1}/{len(anchors)} (q {quality}) fitted")
    path = rewrite_model(weights, name, {"quality.filter": np.stack(kernels).astype(np.float32)}, {"filter": {
        "fitted_on": f"{len(photos)} photos of {data / 'train'} (seed {seed})", "channels": channels,
        "fit_wall_minutes": round((time.time() - started) / 60, 1),
        "command": f"python -m walloc_cli.fit.ladder --data {data} --out {weights} --name {name} --filter-only",
    }})
    log(f"filter: wrote {path} in {(time.time() - started) / 60:.1f} min")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m walloc_cli.fit.ladder", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with train/ (photos)")
    parser.add_argument("--out", type=Path, required=True, help="weights folder to write")
    parser.add_argument("--name", default="rgb-1x")
    parser.add_argument("--images", type=int, default=400, help="training photos to fit on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--filter-only", action="store_true",
                        help="only fit the decoder's filter, for the ladder model already in --out (written back "
                             "with a new weights hash); without it the ladder is fitted first, then its filter")
    parser.add_argument("--refiner-only", action="store_true",
                        help="only fit the decoder's nonlinear refiner (walloc_cli.refiner_fit), for the ladder model "
                             "already in --out with its filter (written back with a new weights hash)")
    parser.add_argument("--pyramid-only", action="store_true",
                        help="only fit the DC pyramid's tables (with pair contexts: context coder version 4), for the ladder model "
                             "already in --out (written back with a new weights hash)")
    parser.add_argument("--rd-only", action="store_true",
                        help="only refit the tables, thresholds, offsets and DC pyramid tables of the ladder model "
                             "already in --out on the latents its encoder writes (RD rounding), then its filter "
                             "(written back with a new weights hash)")
    parser.add_argument("--gains-only", action="store_true",
                        help="only write the step gains (DC_GAIN, LOW_AC_*) into the ladder model already in --out, "
                             "then refit it as --rd-only does")
    args = parser.parse_args(argv)
    if args.gains_only:
        set_gains(args.out, args.name)
        args.rd_only = True
    if args.rd_only:
        fit_rd(args.out, args.name, args.data)
        fit_filter(args.out, args.name, args.data)
        return
    if args.pyramid_only:
        fit_pyramid(args.out, args.name, args.data)
        return
    from .refiner import fit_refiner

    if not args.refiner_only:
        if not args.filter_only:
            fit(args.data, args.out, args.name, args.images, args.seed)
            fit_pyramid(args.out, args.name, args.data)  # the dead-zone fit: RD rounding needs tables to exist
            fit_rd(args.out, args.name, args.data)
        fit_filter(args.out, args.name, args.data)
    fit_refiner(args.out, args.name, args.data)


if __name__ == "__main__":
    main()
