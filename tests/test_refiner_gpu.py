"""The GPU training path of the decoder's refiner (walloc_cli/fit/refiner_gpu.py), run on the CPU:
what it trains is what the numpy decoder computes, edges included, and installing its arrays
keeps the linear filter alone where the refiner gained too little."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from walloc_cli import postfilter
from walloc_cli.model import load_config

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


def _random_state(seed: int = 7):
    import torch

    from walloc_cli.fit import refiner_gpu

    torch.manual_seed(seed)
    net, forward = refiner_gpu.make_net("cpu")
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.05 * torch.randn_like(p))
    return net, forward


def test_the_training_forward_on_a_bordered_canvas_is_the_decoders_refiner():
    """A grid placed on the zero-bordered canvas with its hidden layers masked to the grid gives,
    on the grid, exactly the numpy decoder's result (which zero-pads the grid at both layers):
    the cells along a photo's edge are trained as they are decoded."""
    import torch

    from walloc_cli.fit import refiner as refiner_fit
    from walloc_cli.fit import refiner_gpu

    net, forward = _random_state()
    channels, border = refiner_gpu.CHANNELS, refiner_gpu.BORDER
    height, width = 9, 13
    z = np.random.default_rng(8).normal(size=(channels, height, width)).astype(np.float32)
    canvas = np.zeros((1, channels, height + 2 * border + 3, width + 2 * border + 5), np.float32)
    canvas[0, :, border:border + height, border:border + width] = z
    valid = torch.zeros(1, 1, *canvas.shape[2:])
    valid[..., border:border + height, border:border + width] = 1
    log_steps = np.log(np.array([1.5, 0.2], np.float32))
    with torch.no_grad():
        trained = forward(torch.from_numpy(canvas), torch.tensor(log_steps[1:]), valid)[0].numpy()
    linear = np.zeros((2, channels, 9 * channels), np.float32)
    refiner = postfilter.Refiner.from_arrays(refiner_fit.export(net, log_steps, np.ones(2)), linear)
    decoded = postfilter.refine(z, refiner, 1)
    np.testing.assert_allclose(decoded, trained[:, border:border + height, border:border + width], rtol=1e-4, atol=1e-5)
    assert np.abs(decoded).max() > 1e-3  # the comparison saw a live network


def test_install_writes_the_refiner_and_switches_off_anchors_that_gain_too_little(tmp_path):
    from walloc_cli.fit import refiner as refiner_fit
    from walloc_cli.fit import refiner_gpu

    for suffix in (".json", ".npz"):
        shutil.copy(WEIGHTS / f"rgb-1x{suffix}", tmp_path / f"rgb-1x{suffix}")
    net, _ = _random_state(9)
    gain_db = np.array([0.2, 0.05, 0.009, 0.0] * 4)
    gains = np.linspace(1.0, 0.5, 16)
    log_steps = np.log(np.geomspace(3.0, 0.025, 16)).astype(np.float32)
    arrays = tmp_path / "refiner.npz"
    np.savez(arrays, **{k: v.detach().numpy() for k, v in net.state_dict().items()}, gains=gains, gain_db=gain_db,
             log_steps=log_steps, steps=10, batch=4)
    refiner_gpu.install(arrays, tmp_path, "rgb-1x", {"note": "test"})
    config = json.loads((tmp_path / "rgb-1x.json").read_text())
    assert config["info"]["refiner"]["note"] == "test" and config["info"]["refiner"]["steps"] == 10
    ladder = load_config(tmp_path / "rgb-1x.json", "rgb-1x").ladder
    np.testing.assert_array_equal(ladder.refiner.active, gain_db >= refiner_fit.MIN_GAIN_DB)
    kept = np.where(gain_db >= refiner_fit.MIN_GAIN_DB, gains, 0.0)
    expected = refiner_fit.export(net, log_steps, kept)
    np.testing.assert_allclose(ladder.refiner.c, expected["refine.c"], rtol=1e-6)
    np.testing.assert_allclose(ladder.refiner.b, expected["refine.b"], rtol=1e-6)
