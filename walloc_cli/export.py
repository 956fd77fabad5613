"""Turn a training run into shippable weights: fp16 decoder, float32 encoder, integer tables.

The entropy tables are fitted here, on latents of the training crops computed
exactly as ``walloc encode`` computes them (numpy, float64 projection), so the
histograms describe what the coder will actually see.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import entropy, wavelets
from .model import save_model


def _latents_for_tables(weight: np.ndarray, bias: np.ndarray, crops: np.ndarray, levels: int,
                        wavelet: str, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 2)
    idx = np.sort(rng.choice(len(crops), size=min(count, len(crops)), replace=False))
    out = []
    for start in range(0, len(idx), 256):
        x = np.asarray(crops[idx[start : start + 256]]).transpose(0, 3, 1, 2).astype(np.float64) / 255.0 - 0.5
        coeffs = wavelets.wpt2d(x, levels, wavelet)  # (n, K, h, w)
        flat = coeffs.transpose(1, 0, 2, 3).reshape(coeffs.shape[1], -1)
        z = np.rint(weight.astype(np.float64) @ flat + bias.astype(np.float64)[:, None])
        out.append(z.T.astype(np.int32))
    return np.concatenate(out)


def export_run(run: Path, out_dir: Path, table_crops: int = 6000) -> Path:
    cfg = json.loads((run / "config.json").read_text())
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    model_state = state["model"]
    history = json.loads((run / "history.json").read_text()) if (run / "history.json").exists() else []
    crops = np.load(run / "crops.npy", mmap_mode="r")
    latent_channels = cfg["latent_channels"]
    weight = model_state["encoder.project.weight"].reshape(latent_channels, -1).numpy().astype(np.float32)
    bias = model_state["encoder.project.bias"].numpy().astype(np.float32)
    started = time.time()
    latents = _latents_for_tables(weight, bias, crops, cfg["levels"], cfg["wavelet"], table_crops, cfg["seed"])
    tables = entropy.fit_tables(latents)
    arrays = {
        "encoder.weight": weight,
        "encoder.bias": bias,
        "entropy.lo": tables.lo,
        "entropy.size": tables.size,
        "entropy.freqs": tables.freqs,
    }
    for key, value in model_state.items():
        if key.startswith("decoder."):
            arrays[f"decoder.{key[len('decoder.'):]}"] = value.numpy().astype(np.float16)
    wall = max((h.get("wall_s", 0.0) for h in history), default=0.0)
    config = {
        "name": cfg["name"],
        "modality": "image",
        "channels": 3,
        "levels": cfg["levels"],
        "wavelet": cfg["wavelet"],
        "latent_channels": latent_channels,
        "decoder_width": cfg["decoder_width"],
        "decoder_blocks": cfg["decoder_blocks"],
        "info": {
            "training_steps": int(state["step"]),
            "training_wall_minutes": round(wall / 60, 1),
            "training_config": cfg,
            "table_latents": int(latents.shape[0]),
            "data": "1,134 photos of ../shared/data/images/train (BSDS500 train+test, ImageNet sample)",
        },
    }
    path = save_model(out_dir, config, arrays)
    print(f"exported {path} ({path.stat().st_size} bytes) in {time.time() - started:.0f}s; "
          f"escape share {np.mean([(latents[:, c] < tables.lo[c]).mean() + (latents[:, c] >= tables.lo[c] + tables.size[c]).mean() for c in range(latent_channels)]):.2e}",
          file=sys.stderr)
    return path
