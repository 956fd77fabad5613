"""Fit the perceptual audio ladder: ``python -m walloc_cli.fit.audio --data data/audio --out weights/``.

Nothing here is gradient training: the ladder's transform, masking model and
quantizer are fixed by :class:`~walloc_cli.audio_ladder.LadderParams`, so a
model is (1) integer entropy tables — histograms of the coded energies'
deltas and of the quantized coefficients per energy-to-step ratio, counted
on training music over the whole range of steps — and (2) the quality map:
for each tune, the step offset of each q = 1…100, chosen so that the mean
rate on the training excerpts follows ``TARGET_KBPS`` (48 kbps at q 50,
doubling every 20 steps of q) and strictly grows with q.  Two CPU cores
fit a model in a few minutes; the same command reproduces the shipped weights.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .. import api
from .. import audio_ladder as al
from .. import entropy
from ..entropy import RaggedTables
from ..model import save_model

# The shipped recipe (stereo-1x).  Band groups: single 86 Hz bands up to 700 Hz, then about
# a third of an octave each up to 4.8 kHz, then 8 bands (689 Hz) each; frames of 4 positions
# = 1,024 samples (23 ms at 44.1 kHz).  Why 689 Hz above 4.8 kHz, not a third of an octave:
# the decoder's post-filter brings each (frame, group) to its coded energy, and ViSQOL hears
# that envelope at this resolution — groups 1–4.4 kHz wide up there left walloc 0.05 behind
# Opus at 64 kbps; these 45 groups cost 3 kbps more of energies and gained 0.14–0.19 at every
# rate on both the validation and the confirmation tracks (weights/README.md).
PRESET = dict(
    levels=8, wavelet="bior4.4", frame=4, segment=4096,
    groups=[0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 19, 22, 26, 30, 35, 41, 48, *range(56, 257, 8)],
    alpha_num=7, alpha_den=10, spread_up=5, spread_down=10, decay=2, side_mask=4, side_offset=32,
    rho_min=-96, rho_tables=60, rho_skip=-96, deadzone=0.15, recon=0.1, noise_cap=0.15,
    post_tolerance=1.0, post_boost=2.0, post_free_rho=0, psnr_frames=8,
)
RATE = 44100
VALUE_LIMIT = 4096            # histogram range of quantized values; beyond it counts as escape


def target_kbps(quality: np.ndarray) -> np.ndarray:
    """The ladder's rate for a typical stereo track: 48 kbps at q 50, ×2 every 20 steps (q 1 ≈ 9, q 90 = 192)."""
    return 48.0 * np.exp2((np.asarray(quality, np.float64) - 50.0) / 20.0)


def _log(message: str) -> None:
    print(f"[audio-fit {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ath_floor(params: al.LadderParams, rate: int = RATE, full_scale_db: float = 120.0) -> np.ndarray:
    """Per group, the step index whose quantization noise sits at the absolute threshold of hearing.

    Terhardt's threshold in quiet, at the group's most sensitive frequency, with a
    full-scale sine played at ``full_scale_db`` dB SPL — deliberately loud: a floor set
    for 96 dB capped ViSQOL at 4.50 even at 300 kbps (4.70 without a floor), because
    quiet passages and high bands are often turned up; uniform
    quantization noise of step s adds s²/12 per coefficient, i.e. s²/(12·bands)
    of sample power in the band.
    """
    out = []
    for g in range(params.group_count):
        lo, hi = params.groups[g], params.groups[g + 1]
        f = np.maximum((np.arange(lo, hi) + 0.5) * rate / 2 / params.bands, 20.0) / 1000.0
        threshold = (3.64 * f**-0.8 - 6.5 * np.exp(-0.6 * (f - 3.3) ** 2) + 1e-3 * f**4).min()
        step_squared = 0.5 * 12 * params.bands * 10 ** ((threshold - full_scale_db) / 10)
        out.append(int(np.floor(al.STEP_UNITS / 2 * np.log2(step_squared))))
    return np.array(out, np.int64)


def training_clips(folder: Path, tracks: int, seconds: float, seed: int = 0) -> list[np.ndarray]:
    """Excerpts (frames, channels) from the middle of training tracks (where a song is at its
    typical level, not in an intro or fade) at their own level, clipped to ±1."""
    import soundfile

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".ogg", ".flac", ".wav"})
    rng = np.random.default_rng(seed)
    chosen = [files[i] for i in sorted(rng.choice(len(files), min(tracks, len(files)), replace=False))]
    clips = []
    for path in chosen:
        info = soundfile.info(path)
        n = min(info.frames, int(seconds * info.samplerate))
        start = max(0, info.frames // 2 - n // 2)
        x, _ = soundfile.read(path, start=start, frames=n, dtype="float64", always_2d=True)
        clips.append(np.clip(x, -1.0, 1.0))
    return clips


def mixed_signals(x: np.ndarray, unit: int) -> tuple[np.ndarray, list[int]]:
    """(frames, channels) -> the signals the codec would code, by the codec's own rule and mix
    (:func:`walloc_cli.api.channel_mixes`), padded like the codec pads, and their roles."""
    coding = None
    if x.shape[1] == 2:
        mid, side = (x[:, 0] + x[:, 1]) / 2, (x[:, 0] - x[:, 1]) / 2
        coding = al.stereo_coding(float((mid**2).sum()), float((side**2).sum()))
    _, mix, roles = api.channel_mixes(x.shape[1], coding)
    signals = mix @ x.T
    pad = (-signals.shape[1]) % unit
    return np.pad(signals, ((0, 0), (0, pad)), mode="symmetric"), roles


def _row_from_counts(counts: np.ndarray, escapes: float, coverage: float = 0.99999) -> tuple[int, np.ndarray]:
    """(lo, integer frequencies with escape) from a histogram over −VALUE_LIMIT … VALUE_LIMIT."""
    total = counts.sum() + escapes
    if total == 0:
        return 0, entropy.quantize_distribution(np.array([1.0, 1e-3]))
    cumulative = np.cumsum(counts) / total
    tail = (1.0 - coverage) / 2
    lo_index = int(np.searchsorted(cumulative, tail))
    hi_index = int(np.searchsorted(cumulative, 1.0 - tail - escapes / total))
    hi_index = max(lo_index, min(hi_index, counts.size - 1))
    inside = counts[lo_index : hi_index + 1] + 0.05  # unseen in-range values stay codable
    outside = counts.sum() - counts[lo_index : hi_index + 1].sum() + escapes + 0.05
    return lo_index - VALUE_LIMIT, entropy.quantize_distribution(np.append(inside, outside))


def _bits(counts: np.ndarray, escapes: float, row: tuple[int, np.ndarray]) -> float:
    """Ideal code length of a histogram under one table row (escapes at their approximate cost)."""
    lo, freqs = row
    p = freqs.astype(np.float64) / entropy.TOTAL
    values = np.arange(counts.size) - VALUE_LIMIT
    inside = (values >= lo) & (values < lo + freqs.size - 1)
    bits = float((counts[inside] * -np.log2(p[values[inside] - lo])).sum())
    outside = counts[~inside].sum() + escapes
    return bits + float(outside) * (-np.log2(p[-1]) + 20.0)


def fit(data: Path, tracks: int, seconds: float, params_dict: dict) -> tuple[al.LadderTables, dict]:
    params = al.LadderParams.from_config(params_dict)
    clips = training_clips(data / "train", tracks, seconds)
    duration = sum(len(c) for c in clips) / RATE
    _log(f"{len(clips)} excerpts, {duration / 60:.1f} min of training music")
    ath = ath_floor(params)
    tilt = np.zeros(params.group_count, np.int64)
    grid = np.arange(-640, 481, 32)           # base step offsets to measure (step units: ½ octave apart)
    width = 2 * VALUE_LIMIT + 1
    coef_counts = np.zeros((len(al.TUNES), grid.size, params.rho_tables, width))
    coef_escapes = np.zeros((len(al.TUNES), grid.size, params.rho_tables))
    energy_values: list[list[np.ndarray]] = [[] for _ in range(2 * al.ENERGY_CONTEXTS)]
    for n, x in enumerate(clips):
        signals, roles = mixed_signals(x, params.frame * params.block)
        coefficients = al.analyse(signals, params)
        energies = al.group_energies(signals, params)
        for i, role in enumerate(roles):
            sounding = energies[i][~al.silent_frames(energies[i])]
            residual = al.energy_residuals(sounding)
            for g in range(residual.shape[1]):
                context = al.energy_context(residual, g)
                for c in np.unique(context):
                    energy_values[role * al.ENERGY_CONTEXTS + c].append(residual[context == c, g])
        for t, tune in enumerate(al.TUNES):
            for j, base in enumerate(grid):
                offsets = np.full((len(al.TUNES), 101), base, np.int64)
                tables = al.LadderTables(offsets, tilt, ath, None, None)
                k = al.step_indices(energies, roles, params, tables, 50, tune)
                which = al.per_coefficient(al.table_of(energies, k, params), params)
                sent = which >= 0
                values = al.quantize(coefficients, al.per_coefficient(al.step_sizes(k), params), sent,
                                     params.deadzone)[sent].astype(np.int64)
                rows = which[sent]
                inside = np.abs(values) <= VALUE_LIMIT
                flat = rows[inside] * width + values[inside] + VALUE_LIMIT
                coef_counts[t, j] += np.bincount(flat, minlength=params.rho_tables * width).reshape(-1, width)
                coef_escapes[t, j] += np.bincount(rows[~inside], minlength=params.rho_tables)
        _log(f"excerpt {n + 1}/{len(clips)}")
    pooled = coef_counts.sum(axis=(0, 1))
    coef_rows = [_row_from_counts(pooled[r], coef_escapes[:, :, r].sum()) for r in range(params.rho_tables)]
    energy_rows = [entropy.fit_row(np.concatenate(v) if v else np.zeros(0, np.int64), coverage=0.99999,
                                   prior_count=0.05) for v in energy_values]
    energy_table = RaggedTables.from_rows(energy_rows)
    energy_bits = sum(_bits(*_hist(np.concatenate(v)), row) for v, row in zip(energy_values, energy_rows) if v)
    # rate of each grid point on the training excerpts, then the quality map
    offsets = np.zeros((len(al.TUNES), 101), np.int64)
    rates = {}
    for t, tune in enumerate(al.TUNES):
        kbps = np.array([(energy_bits + sum(_bits(coef_counts[t, j, r], coef_escapes[t, j, r], coef_rows[r])
                                            for r in range(params.rho_tables))) / duration / 1000
                         for j in range(grid.size)])
        rates[tune] = {int(b): round(float(r), 2) for b, r in zip(grid, kbps)}
        offsets[t] = quality_map(grid, kbps)
        _log(f"{tune}: grid rates {rates[tune]}")
    tables = al.LadderTables(offsets, tilt, ath, energy_table, RaggedTables.from_rows(coef_rows))
    return tables, {"training_minutes": round(duration / 60, 1), "excerpts": len(clips), "grid_kbps": rates}


def _hist(values: np.ndarray) -> tuple[np.ndarray, float]:
    inside = np.abs(values) <= VALUE_LIMIT
    return np.bincount(values[inside] + VALUE_LIMIT, minlength=2 * VALUE_LIMIT + 1).astype(np.float64), \
        float((~inside).sum())


def quality_map(grid: np.ndarray, kbps: np.ndarray) -> np.ndarray:
    """Step offset for q = 0…100 (0 unused) following :func:`target_kbps`, strictly decreasing in q.

    Rate falls as the offset grows; interpolate offset against log-rate, round, and
    push apart any qualities that land on the same offset (finer steps for higher q).
    """
    order = np.argsort(kbps)
    log_rate, offset = np.log(kbps[order]), grid[order].astype(np.float64)
    wanted = np.interp(np.log(target_kbps(np.arange(101))), log_rate, offset)
    out = np.round(wanted).astype(np.int64)
    for q in range(2, 101):
        out[q] = min(out[q], out[q - 1] - 1)
    out[0] = out[1]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m walloc_cli.fit.audio", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/audio"))
    parser.add_argument("--out", type=Path, default=Path("weights"))
    parser.add_argument("--name", default="stereo-1x")
    parser.add_argument("--tracks", type=int, default=48)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override a recipe parameter, e.g. --set levels=9 --set 'groups=[0, 2, …]'")
    args = parser.parse_args()
    preset = dict(PRESET)
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in preset:
            sys.exit(f"walloc_cli.fit.audio: unknown parameter {key!r}")
        preset[key] = json.loads(value)
    if not (args.data / "train").is_dir():
        sys.exit(f"walloc_cli.fit.audio: {args.data}/train: no such folder (fetch it: make fetch-audio)")
    started = time.time()
    tables, facts = fit(args.data, args.tracks, args.seconds, preset)
    config = {"name": args.name, "family": "audio-ladder", "modality": "audio", "channels": 1,
              "levels": preset["levels"], "wavelet": preset["wavelet"], "latent_channels": 2 ** preset["levels"],
              "decoder_width": 0, "decoder_blocks": 0, "decoder_kind": "linear", "coding": "audio-ladder",
              "table_sets": 1, **preset,
              "info": {**facts, "fit_wall_minutes": round((time.time() - started) / 60, 1),
                       "command": f"python -m walloc_cli.fit.audio --data {args.data} --out {args.out} "
                                  f"--tracks {args.tracks} --seconds {args.seconds}"
                                  + "".join(f" --set '{item}'" for item in args.set)}}
    save_model(args.out, config, tables.arrays())
    _log(f"wrote {args.out / (args.name + '.npz')} in {(time.time() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
