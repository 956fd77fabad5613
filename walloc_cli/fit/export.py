"""Turn a training run into shippable weights: fp16 decoder, float32 encoder, integer tables.

The entropy tables are fitted here, on latents of the training crops computed
exactly as ``walloc encode`` computes them (numpy, float64 projection), so the
histograms describe what the coder will actually see.  Audio models get two
table sets — mid (also used for mono) and side — because side signals are
much quieter and would waste bits on the mid histograms.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .. import entropy, wavelets
from ..model import save_model


def _latents_for_tables(weight: np.ndarray, bias: np.ndarray, crops: np.ndarray, cfg: dict,
                        index: np.ndarray) -> np.ndarray:
    """Integer latents (N·positions, L) of the chosen crops, numpy float64 as at encode time."""
    out = []
    for start in range(0, len(index), 256):
        batch = np.asarray(crops[index[start : start + 256]])
        if cfg["modality"] == "image":
            x = batch.transpose(0, 3, 1, 2).astype(np.float64) / 255.0 - 0.5
            coeffs = wavelets.wpt2d(x, cfg["levels"], cfg["wavelet"])
        else:
            coeffs = wavelets.wpt1d(batch.astype(np.float64), cfg["levels"], cfg["wavelet"])
        flat = np.moveaxis(coeffs, 1, 0).reshape(coeffs.shape[1], -1)
        z = np.rint(weight.astype(np.float64) @ flat + bias.astype(np.float64)[:, None])
        out.append(z.T.astype(np.int32))
    return np.concatenate(out)


def _track_latents(weight: np.ndarray, bias: np.ndarray, cfg: dict, tracks: Path) -> list[np.ndarray]:
    """Integer latents (N, L) of mid and side signals of up to 60 training tracks (middle 30 s)."""
    import soundfile

    from .train import normalise_track

    block = 2 ** cfg["levels"]
    files = sorted(p for p in tracks.rglob("*") if p.suffix.lower() in {".ogg", ".flac", ".wav"})
    rng = np.random.default_rng(cfg["seed"] + 3)
    roles: list[list[np.ndarray]] = [[], []]
    for path in [files[i] for i in sorted(rng.choice(len(files), min(60, len(files)), replace=False))]:
        info = soundfile.info(path)
        n = min(info.frames, 30 * info.samplerate)
        n -= n % block
        x, _ = soundfile.read(path, start=max(0, info.frames // 2 - n // 2), frames=n, dtype="float64", always_2d=True)
        for role, signal in enumerate(normalise_track(x)):
            c = wavelets.wpt1d(signal[None].astype(np.float32), cfg["levels"], cfg["wavelet"])
            z = np.rint(weight.astype(np.float64) @ c.astype(np.float64) + bias.astype(np.float64)[:, None])
            roles[min(role, 1)].append(z.T.astype(np.int32))
    return [np.concatenate(r) for r in roles]


def export_run(run: Path, out_dir: Path, table_crops: int = 6000, tracks: Path | None = None) -> Path:
    from dataclasses import asdict, fields

    from .train import TrainConfig

    saved = json.loads((run / "config.json").read_text())
    known = {f.name for f in fields(TrainConfig)}
    cfg = asdict(TrainConfig(**{k: v for k, v in saved.items() if k in known}))  # older runs lack newer keys
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    model_state = state["model"]
    history = json.loads((run / "history.json").read_text()) if (run / "history.json").exists() else []
    crops = np.load(run / "crops.npy", mmap_mode="r")
    roles = np.load(run / "roles.npy") if (run / "roles.npy").exists() else np.zeros(len(crops), np.int8)
    latent_channels = cfg["latent_channels"]
    weight = model_state["encoder.project.weight"].reshape(latent_channels, -1).numpy().astype(np.float32)
    bias = model_state["encoder.project.bias"].numpy().astype(np.float32)
    started = time.time()
    if cfg["modality"] == "audio" and tracks is not None:
        # Whole training tracks at their normalised level (no random gain): the augmented
        # crops spread the histograms wider than real music at that level (≈4 % rate).
        latent_sets = _track_latents(weight, bias, cfg, tracks)
    else:
        rng = np.random.default_rng(cfg["seed"] + 2)
        latent_sets = []
        for role in range(int(roles.max()) + 1):
            candidates = np.flatnonzero(roles == role)
            index = np.sort(rng.choice(candidates, size=min(table_crops, len(candidates)), replace=False))
            latent_sets.append(_latents_for_tables(weight, bias, crops, cfg, index))
    per_set = [entropy.fit_tables(z) for z in latent_sets]
    escapes = [float(((z < t.lo) | (z >= t.lo + t.size)).mean()) for z, t in zip(latent_sets, per_set)]
    table_sets = len(per_set)
    tables = entropy.EntropyTables.stack(per_set)
    arrays = {
        "encoder.weight": weight,
        "encoder.bias": bias,
        "entropy.lo": tables.lo,
        "entropy.size": tables.size,
        "entropy.freqs": tables.freqs,
    }
    for key, value in model_state.items():
        if key.startswith("decoder."):
            arrays[key] = value.numpy().astype(np.float16)
    wall = max((h.get("wall_s", 0.0) for h in history), default=0.0)
    config = {
        "name": cfg["name"],
        "modality": cfg["modality"],
        "channels": cfg["channels"],
        "levels": cfg["levels"],
        "wavelet": cfg["wavelet"],
        "latent_channels": latent_channels,
        "decoder_width": cfg["decoder_width"],
        "decoder_blocks": cfg["decoder_blocks"],
        "table_sets": table_sets,
        "info": {
            "training_steps": int(state["step"]),
            "training_wall_minutes": round(wall / 60, 1),
            "training_config": cfg,
            "table_data": str(tracks) if tracks is not None and cfg["modality"] == "audio"
            else f"{int(min(table_crops, len(crops)))} training crops per table set",
            "escape_share": escapes,
        },
    }
    path = save_model(out_dir, config, arrays)
    print(f"exported {path} ({path.stat().st_size} bytes) in {time.time() - started:.0f}s; "
          f"escape share {escapes}", file=sys.stderr)
    return path
