"""Compressed-domain learning on Imagenette: one classifier on latents, small pixels and full pixels.

    nice -n 19 .venv/bin/python bench/compressed_learning.py            # resumable; see --budget-min
    .venv/bin/python bench/compressed_learning.py --report              # the table from finished runs

The claim (WaLLoC paper, Jacobellis & Yadwadkar, DCC 2025): a network trained on the
codec's latents does clearly better than the same network on downsampled pixels of
the same size, and comes close to full-resolution pixels at a fraction of the compute.

Data: ``../shared/data/imagenette`` (10 classes, 224×224 JPEGs, 5,000 train / 2,500 val).
Three input forms of every photo, one classifier body:

(a) ``latents``: ``rgb-16x`` latents, 12×28×28, made once by
    ``walloc latents -r IMAGENETTE/ -o LATENTS/ -j 2 --dtype int8`` and read per item by
    :class:`walloc_cli.data.LatentFolder` through a ``DataLoader(num_workers=2)``;
(b) ``pixels56``: the photo resized to 56×56×3 (Pillow bicubic, antialiased), the same
    9,408 values, ``pixel_unshuffle(2)``-ed to 12×28×28 so that the body is identical;
(c) ``pixels224``: the full 224×224×3 photo through a 4×4 stride-4 "patchify" stem
    (3 -> width channels, BN, ReLU: 4× downsampling, what people do today), so the same
    body runs on a 56×56 grid: 4× its compute.

Body: conv3×3(in -> w), conv3×3 stride 2 (w -> 2w), conv3×3 (2w), conv3×3 stride 2 (2w -> 4w),
conv3×3 (4w), each with BN + ReLU, global average pool, linear -> 10.  AdamW, one-cycle
learning rate, cross-entropy, batch 128, per-channel standardisation with training
statistics.  Augmentation, the same meaning for every form: random shifts of up to 2
latent cells (16 of the 224 pixels; reflect padding, then a crop) and horizontal flips
(for latents a flip of the latent grid, which is not the codec's latents of the flipped
photo; see walloc_cli/data.py).  Ablations: ``-noflip`` (no flips, for latents and 56×56
pixels), ``-e20`` (20 epochs instead of 10) and ``-w48`` (a network twice as wide).

``-paug`` arms (``latents-paug``, ``pixels56-paug``, ``pixels224-paug``): augmentation as in
the paper, on the photo, before it becomes the input, so that the latents are always the
codec's latents of a real photo.  Each batch of cached 224×224 uint8 photos gets, in the
training process (:class:`PhotoBatches`), a random resized crop (area 35–100 %, aspect
3/4–4/3, back to 224×224, bilinear, rounded to uint8) and a horizontal flip, the
parameters a function of (seed, epoch, item) only, so every arm sees the same photos in
the same order; then (A) the ``rgb-16x`` encoder (walloc's numpy encoder: the integers
``walloc latents`` stores; seed 0 of ``latents-paug`` ran with the batched torch encoder,
which differs from it only at exact rounding ties, 2 values in a million), (B) an antialiased bicubic resize to 56×56 (rounded) and the same unshuffle + body as
(b), or (C) the 4× stem of (c).  Validation: the whole val photo, not augmented, through the
same path (the val latents are encoded on the fly too).  ``--paug-epochs`` (default 20)
epochs, since augmentation fights overfitting.  Ablation ``-paug-nocrop``: only shifts by
up to 16 whole pixels (mirrored border) and flips, still encoded after augmenting; and on
top of it ``-paug-nocrop-e30`` (30 epochs) and ``-paug-nocrop-w48`` (width 48), to see
whether more training or a wider network widens the latents' margin.  ``--cache DIR``
saves each epoch's made inputs so that those ablations reuse the same seed's encodings.

Reported per form: val top-1 (mean ± sd over seeds), training images/s (epoch wall time,
data loading included), forward MACs per image, bytes on disk per image, and, for data
loading, the time to get one item from its file: ``.wlc`` (entropy decoding), ``.npy``,
JPEG decoding (+ resize), JPEG -> latents (encoding on the fly).

Every run checkpoints each epoch to ``OUT/ckpt/ARM-seedS.pt`` and writes
``OUT/runs/ARM-seedS.json`` when done; a rerun skips finished runs and resumes
unfinished ones.  Runs start in ``--order`` while ``--budget-min`` of wall time is
left (a run that would overrun is not started).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from walloc_cli import api  # noqa: E402
from walloc_cli.data import LatentFolder, worker_init  # noqa: E402
from walloc_cli.model import CodecModel, load_model  # noqa: E402

ARMS = {
    "latents": "(a) rgb-16x latents 12×28×28",
    "latents-noflip": "(a') latents, no flip augmentation",
    "pixels56": "(b) pixels 56×56×3 (bicubic), unshuffled to 12×28×28",
    "pixels56-noflip": "(b') pixels 56×56×3, no flip augmentation",
    "pixels224": "(c) pixels 224×224×3, 4× patchify stem",
    "latents-e20": "(a'') latents, 20 epochs",
    "pixels56-e20": "(b'') pixels 56×56×3, 20 epochs",
    "latents-w48": "(a''') latents, network twice as wide (width 48)",
    "pixels56-w48": "(b''') pixels 56×56×3, width 48",
    "latents-paug": "(A) latents of pixel-augmented photos (resized crop + flip, encoded on the fly)",
    "pixels56-paug": "(B) pixels 56×56×3 of the same augmented photos",
    "pixels224-paug": "(C) pixels 224×224×3 of the same augmented photos, 4× stem",
    "latents-paug-nocrop": "(A') latents of pixel-shifted (≤ 16 px) + flipped photos, no resized crop",
    "pixels56-paug-nocrop": "(B') pixels 56×56×3 of the same shifted + flipped photos",
    "pixels224-paug-nocrop": "(C') pixels 224×224×3 of the same shifted + flipped photos, 4× stem",
    "latents-paug-nocrop-e30": "(A'-e30) latents as (A'), 30 epochs",
    "pixels56-paug-nocrop-e30": "(B'-e30) pixels 56×56×3 as (B'), 30 epochs",
    "latents-paug-nocrop-w48": "(A'-w48) latents as (A'), width 48",
    "pixels56-paug-nocrop-w48": "(B'-w48) pixels 56×56×3 as (B'), width 48",
    "latentsfine-paug-nocrop": "(A'-fine) as (A'), rgb-16x latents rounded at half its step (still int8)",
    "latentspca-paug-nocrop": "(A'-pca) as (A'), the 12 principal components of the same packet coefficients "
                              "instead of rgb-16x's projection (rounded at a step giving channel 0 the same spread)",
}


def base_arm(arm: str) -> str:
    """The input form of an arm: latents, pixels56 or pixels224 (ablations add -noflip, -e20, -paug)."""
    return arm.split("-")[0]


def pixel_augmented(arm: str) -> bool:
    """Arms whose augmentation is done on the 224×224 photo, before it becomes latents or pixels."""
    return "-paug" in arm


def kind_of(arm: str) -> str:
    """What sets an arm's time per epoch: its input form, where it is augmented and its width."""
    return base_arm(arm) + ("-paug" if pixel_augmented(arm) else "") + ("-w48" if arm.endswith("-w48") else "")


def width_of(arm: str, default: int) -> int:
    return 48 if arm.endswith("-w48") else default


def epochs_of(arm: str, args: argparse.Namespace) -> int:
    """An ``-eN`` suffix sets N epochs; else ``--paug-epochs`` for -paug arms, ``--epochs`` for the others."""
    suffix = arm.rsplit("-", 1)[-1]
    if suffix[:1] == "e" and suffix[1:].isdigit():
        return int(suffix[1:])
    return args.paug_epochs if pixel_augmented(arm) else args.epochs


SHIFT_CELLS = 2               # random shifts of up to 2 latent cells = 16 px of 224
CROP_SCALE = (0.35, 1.0)      # -paug: the area fraction of the photo a resized crop keeps
CROP_RATIO = (3 / 4, 4 / 3)   # -paug: its aspect ratio (width / height), log-uniform
SHIFT_PX = 16                 # -paug-nocrop: shifts of up to 16 px (any whole pixel, not whole cells)


FINE_STEP = 2                 # -fine arms: latents in units of half the model's step


def photo_window(rgb: np.ndarray) -> np.ndarray:
    """A uint8 photo whose sides are multiples of 8 as the encoder reads it: float32 (3, H, W)."""
    return api.image_reader(rgb, rgb.shape[1])(np.arange(rgb.shape[0]))


def fine_latents(codec: CodecModel, rgb: np.ndarray) -> np.ndarray:
    """rgb-16x latents of such a photo before rounding (float64)."""
    return codec.float_latents(photo_window(rgb))


_PCA: dict[str, np.ndarray] = {}


def fit_pca(codec: CodecModel, photos: np.ndarray, every: int = 10) -> None:
    """Fit the -pca arms' projection (once per process; :class:`Data` calls it on the training
    photos before any batch is made): the top 12 principal components of the rgb-16x packet
    coefficients of every ``every``-th photo, scaled so that the first component's spread
    matches rgb-16x's first latent (std 19.3)."""
    if _PCA:
        return
    coefficients = np.concatenate([codec.image_coefficients(photo_window(np.asarray(photos[i])))[0]
                                   for i in range(0, len(photos), every)]).astype(np.float64)
    mean = coefficients.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(coefficients - mean, rowvar=False))
    _PCA.update(mean=mean, weight=vectors[:, ::-1][:, :12] * (19.3 / np.sqrt(values[-1])))


def pca_latents(codec: CodecModel, rgb: np.ndarray) -> np.ndarray:
    """A uint8 photo's -pca latents (12, H/8, W/8), rounded: the projection :func:`fit_pca` fitted."""
    coefficients, hb, wb = codec.image_coefficients(photo_window(rgb))
    z = (coefficients - _PCA["mean"]) @ _PCA["weight"]
    return np.rint(z).reshape(hb, wb, -1).transpose(2, 0, 1)


PHOTO_ENCODERS: dict[str, Callable[[CodecModel, np.ndarray], np.ndarray]] = {
    "latents": lambda codec, rgb: api.image_to_latents(codec, rgb)[0],   # what `walloc latents` stores
    "latentsfine": lambda codec, rgb: np.rint(FINE_STEP * fine_latents(codec, rgb)),
    "latentspca": pca_latents,
}
"""The latent input forms: a uint8 photo (H, W, 3) -> its (12, H/8, W/8) integer-valued array."""


# -- the network ---------------------------------------------------------------------------------
def conv(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def body(cin: int, width: int, classes: int = 10) -> nn.Sequential:
    w = width
    return nn.Sequential(*conv(cin, w, 1), *conv(w, 2 * w, 2), *conv(2 * w, 2 * w, 1), *conv(2 * w, 4 * w, 2),
                         *conv(4 * w, 4 * w, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, classes))


class Unshuffle(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(x, 2)


def make_net(arm: str, width: int) -> nn.Module:
    if arm.startswith("latents"):
        return body(12, width)
    if arm.startswith("pixels56"):
        return nn.Sequential(Unshuffle(), body(12, width))
    if base_arm(arm) == "pixels224":
        stem = [nn.Conv2d(3, width, 4, 4, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        return nn.Sequential(*stem, body(width, width))
    raise ValueError(arm)


def input_shape(arm: str) -> tuple[int, int, int]:
    return {"pixels56": (3, 56, 56), "pixels224": (3, 224, 224)}.get(base_arm(arm), (12, 28, 28))


def forward_macs(net: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass of one image (convolutions and linear layers)."""
    total = 0

    def hook(module: nn.Module, inputs, output) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += output[0].numel() * k
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    net.eval()
    with torch.no_grad():
        net(torch.zeros(1, *shape))
    for h in handles:
        h.remove()
    return total


# -- pixel data ------------------------------------------------------------------------------------
def pixel_cache(files: list[str], side: int, path: Path) -> tuple[np.ndarray, float]:
    """uint8 (N, side, side, 3) of the photos (RGB, bicubic resize when side < 224), cached as .npy.

    Returns the array (memory-mapped) and the mean decode (+ resize) time per photo in ms
    (measured when the cache is built, else read back from its sidecar).
    """
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        return np.load(path, mmap_mode="r"), json.loads(meta.read_text())["ms_per_image"]
    out = np.lib.format.open_memmap(str(path) + ".part", mode="w+", dtype=np.uint8, shape=(len(files), side, side, 3))
    start = time.perf_counter()
    for i, f in enumerate(files):
        with Image.open(f) as im:
            im = im.convert("RGB")
            if im.size != (side, side):
                im = im.resize((side, side), Image.Resampling.BICUBIC)
            out[i] = np.asarray(im)
    ms = 1e3 * (time.perf_counter() - start) / len(files)
    out.flush()
    del out
    os.replace(str(path) + ".part", path)
    meta.write_text(json.dumps({"ms_per_image": ms, "files": len(files)}))
    return np.load(path, mmap_mode="r"), ms


class PixelArray(Dataset):
    """Items of a uint8 (N, S, S, 3) array as standardised float (3, S, S), with the latents'
    augmentation in pixels: shifts of up to SHIFT_CELLS cells (S/28 pixels each, reflect) and flips."""

    def __init__(self, array: np.ndarray, labels: list[int], mean: np.ndarray, std: np.ndarray, train: bool,
                 seed: int = 0, flip: bool = True) -> None:
        self.array, self.labels, self.train, self.seed, self.epoch = array, labels, train, seed, 0
        self.flip = flip
        self.mean = torch.as_tensor(mean, dtype=torch.float32).reshape(3, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).reshape(3, 1, 1)
        self.cell = array.shape[1] // 28

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(np.array(self.array[i])).permute(2, 0, 1).float()
        if self.train:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            pad = SHIFT_CELLS * self.cell
            side = x.shape[1]
            x = F.pad(x[None], (pad, pad, pad, pad), mode="reflect")[0]
            top, left = (int(rng.integers(0, 2 * SHIFT_CELLS + 1)) * self.cell for _ in range(2))
            x = x[:, top : top + side, left : left + side]
            if rng.random() < 0.5 and self.flip:
                x = torch.flip(x, dims=(2,))
        return ((x - self.mean) / self.std).contiguous(), self.labels[i]


def rgb_stats(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sample = np.asarray(array[:: max(1, len(array) // 1000)], dtype=np.float64)
    return sample.mean(axis=(0, 1, 2)), sample.std(axis=(0, 1, 2))


# -- -paug arms: augment the photo, then make the input form ------------------------------------------
def augment_grid(seed: int, epoch: int, indices: np.ndarray, crop: bool, side: int = 224) -> torch.Tensor:
    """Affine sampling matrices (B, 2, 3) for F.affine_grid: the same random photo transform for
    every arm, a function of (seed, epoch, item) only.

    ``crop``: a random resized crop (area fraction in CROP_SCALE, aspect ratio log-uniform in
    CROP_RATIO, a side that would leave the photo is clipped to it; torchvision retries
    instead) back to the full side; else a shift by a whole number of pixels up to SHIFT_PX
    (the border mirrored).  Both: a horizontal flip half of the time.
    """
    theta = torch.zeros(len(indices), 2, 3)
    for k, i in enumerate(indices):
        rng = np.random.default_rng((seed, epoch, int(i)))
        if crop:
            scale, ratio = rng.uniform(*CROP_SCALE), np.exp(rng.uniform(*np.log(CROP_RATIO)))
            w, h = min(1.0, np.sqrt(scale * ratio)), min(1.0, np.sqrt(scale / ratio))   # fractions of the side
            cx, cy = rng.uniform(-(1 - w), 1 - w), rng.uniform(-(1 - h), 1 - h)          # centre, in [-1, 1]
        else:
            w = h = 1.0
            cx, cy = (2 * int(rng.integers(-SHIFT_PX, SHIFT_PX + 1)) / side for _ in range(2))
        flip = -1.0 if rng.random() < 0.5 else 1.0
        theta[k] = torch.tensor([[w * flip, 0.0, cx], [0.0, h, cy]])
    return theta


def augment(photos: torch.Tensor, theta: torch.Tensor, crop: bool = True) -> torch.Tensor:
    """Float (B, 3, S, S) 0..255 photos resampled by ``theta`` (bilinear: a crop is never smaller
    than the output, so no antialiasing is needed), rounded to uint8 values like a saved photo.

    ``crop=False`` (``theta`` of ``augment_grid(..., crop=False)``: whole-pixel shifts and flips):
    the same pixels gathered by index (:func:`shift_flip`), several times faster on one thread."""
    if not crop:
        return shift_flip(photos, theta)
    grid = F.affine_grid(theta, list(photos.shape), align_corners=False)
    out = F.grid_sample(photos, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.round_().clamp_(0, 255)


def shift_flip(photos: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """What bilinear grid_sample (align_corners=False, reflection padding) makes of a whole-pixel
    shift + flip ``theta``, as an index gather: output column j reads input column j+s, or S-1-j+s
    when flipped (rows j+s); an index outside is mirrored about the border (-1 -> 0, S -> S-1)."""
    side = photos.shape[-1]
    assert photos.shape[-2] == side and not theta[:, 0, 1].any() and not theta[:, 1, 0].any()
    j = torch.arange(side)
    shift_x, shift_y = ((theta[:, i, 2] * side / 2).round().long()[:, None] for i in (0, 1))
    cols = torch.where(theta[:, 0, :1] < 0, side - 1 - j, j) + shift_x
    rows = j + shift_y
    cols, rows = (torch.where(i < 0, -1 - i, torch.where(i >= side, 2 * side - 1 - i, i)) for i in (cols, rows))
    return torch.stack([p.index_select(1, r).index_select(2, c) for p, r, c in zip(photos, rows, cols)])


TTA_VIEWS = tuple((flip, sx, sy) for flip in (False, True) for sx, sy in ((0, 0), (4, 0), (0, 4), (4, 4)))
"""The views of a val photo that ``--tta`` averages: with and without a flip, shifted by 0 or 4 px
each way (4 px: half the latents' 8-px block grid, the phase that changes the latents most).
View 0 is the photo itself."""


def view_theta(count: int, flip: bool, shift_x: int, shift_y: int, side: int = 224) -> torch.Tensor:
    """``augment_grid``'s matrices (crop=False form) for one fixed whole-pixel shift (+ flip) of ``count`` photos."""
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = (-1.0 if flip else 1.0), 1.0
    theta[:, 0, 2], theta[:, 1, 2] = 2 * shift_x / side, 2 * shift_y / side
    return theta


class PhotoBatches:
    """Batches of one input form made in this process from the cached 224×224 uint8 photos:
    (train) the pixel augmentation of :func:`augment_grid` (``crop=False``: shifts instead of
    the resized crop), then the form: ``latents`` (walloc's encoder: the integers
    ``walloc latents`` stores), ``pixels56`` (antialiased bicubic resize, rounded) or ``pixels224`` (the photo itself);
    then per-channel standardisation with training statistics.

    The augmentation is done on whole batches in this process (no per-item workers), so every
    arm sees exactly the same augmented photos.  The latents are made per photo by the codec's
    numpy encoder (:func:`walloc_cli.api.image_to_latents`, what ``walloc latents`` stores):
    on these two shared cores it took 5.5–6 ms a photo against 22 ms (1 thread) and 70 ms
    (2 threads) for the batched :class:`walloc_cli.torch_view.WallocEncoder`, measured
    interleaved on the same 128 photos while the benchmark ran (torch convolutions with one
    input channel and 64-tap kernels, and threads fighting for busy cores; the torch encoder
    is for GPUs).  The item order of an epoch is also a function of (seed, epoch) only, the
    same for every arm.

    ``cache``: a folder where each training epoch's inputs (before standardisation; integer
    latents as int8, pixels as uint8) are saved as ``FORM-CROP-seedS-epochE.npy`` when the epoch
    is done, and read back instead of made again.  They depend on (form, crop, seed, epoch)
    only, so an arm that changes only the network or the number of epochs (``-w48``, ``-e30``)
    reuses another's encodings of the same seed: the same values, without the encoder's time.
    """

    def __init__(self, photos: np.ndarray, labels: list[int], form: str, codec: CodecModel, *, batch: int,
                 train: bool = False, seed: int = 0, crop: bool = True,
                 stats: tuple[torch.Tensor, torch.Tensor] | None = None, cache: Path | None = None,
                 view: tuple[bool, int, int] | None = None) -> None:
        self.photos, self.labels, self.form, self.codec = photos, torch.as_tensor(labels), form, codec
        self.batch, self.train, self.seed, self.crop, self.epoch = batch, train, seed, crop, 0
        self.cache, self.view = cache, view   # view (not train): one fixed (flip, shift x, shift y) of every photo
        self.mean, self.std = stats if stats is not None else self.stats()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch)

    def form_of(self, photos: torch.Tensor) -> torch.Tensor:
        """Float (B, 3, 224, 224) 0..255 photos -> the arm's input, not standardised."""
        if self.form in PHOTO_ENCODERS:
            rgb = photos.permute(0, 2, 3, 1).to(torch.uint8).numpy()
            encode = PHOTO_ENCODERS[self.form]
            return torch.from_numpy(np.stack([encode(self.codec, im) for im in rgb]).astype(np.float32))
        if self.form == "pixels56":
            return F.interpolate(photos, size=(56, 56), mode="bicubic", antialias=True,
                                 align_corners=False).round_().clamp_(0, 255)
        return photos

    def _photos(self, indices: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.photos[indices])).permute(0, 3, 1, 2).float()

    def stats(self, every: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std of the form of every ``every``-th training photo, not augmented."""
        picks = np.arange(0, len(self.labels), every)
        chunks = [self.form_of(self._photos(picks[k : k + 250])) for k in range(0, len(picks), 250)]
        x = torch.cat(chunks).double()
        shape = (1, -1, 1, 1)
        return x.mean(dim=(0, 2, 3)).float().reshape(shape), x.std(dim=(0, 2, 3)).float().reshape(shape)

    def cache_path(self) -> Path | None:
        if self.cache is None or not self.train:
            return None
        return self.cache / f"{self.form}-{'crop' if self.crop else 'nocrop'}-seed{self.seed}-epoch{self.epoch}.npy"

    def __iter__(self):
        n = len(self.labels)
        order = np.random.default_rng((self.seed, self.epoch)).permutation(n) if self.train else np.arange(n)
        path = self.cache_path()
        saved = np.load(path) if path is not None and path.exists() else None
        made: np.ndarray | None = None
        keep = path is not None and saved is None
        for k in range(0, n, self.batch):
            indices = order[k : k + self.batch]
            if saved is not None:
                x = torch.from_numpy(saved[indices].astype(np.float32))
            else:
                x = self._photos(indices)
                if self.train:
                    x = augment(x, augment_grid(self.seed, self.epoch, indices, self.crop), self.crop)
                elif self.view is not None:
                    x = shift_flip(x, view_theta(len(indices), *self.view))
                x = self.form_of(x)
                if keep:
                    made = self._keep(made, x, indices, n)
                    keep = made is not None
            yield (x - self.mean) / self.std, self.labels[indices]
        if keep and made is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(str(path) + ".part.npy", made)
            os.replace(str(path) + ".part.npy", path)

    @staticmethod
    def _keep(made: np.ndarray | None, x: torch.Tensor, indices: np.ndarray, n: int) -> np.ndarray | None:
        """Put a batch of made inputs (whole numbers) at its items' rows of the epoch's array (created
        at the first batch: int8 if it has a negative value, else uint8); None (the epoch is not
        cached) when a value does not fit that type exactly."""
        values = x.numpy()
        dtype = made.dtype if made is not None else (np.int8 if values.min() < 0 else np.uint8)
        info = np.iinfo(dtype)
        if values.min() < info.min or values.max() > info.max or not np.array_equal(values, np.round(values)):
            return None
        if made is None:
            made = np.zeros((n, *values.shape[1:]), dtype)
        made[indices] = values
        return made


# -- data of each arm ----------------------------------------------------------------------------
class Data:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.jpeg = {s: LatentFolder(args.data / s, extensions=(".jpeg", ".jpg")) for s in ("train", "val")}
        self._cache: dict = {}

    def labels(self, split: str) -> list[int]:
        return [label for _, label in self.jpeg[split].samples]

    def batches(self, arm: str, seed: int) -> tuple[DataLoader | PhotoBatches, DataLoader | PhotoBatches]:
        """Training and validation batches of an arm (validation: not augmented, in file order)."""
        args = self.args
        if pixel_augmented(arm):
            photos = {s: self.pixels(s, 224)[0] for s in ("train", "val")}
            form = base_arm(arm)
            if form == "latentspca":
                fit_pca(self.codec(), photos["train"])
            train = PhotoBatches(photos["train"], self.labels("train"), form, self.codec(), batch=args.batch,
                                 train=True, seed=seed, crop="nocrop" not in arm, cache=args.cache)
            val = PhotoBatches(photos["val"], self.labels("val"), form, self.codec(), batch=250,
                               stats=(train.mean, train.std))
            return train, val
        train_ds, val_ds = self.sets(arm, seed)
        return loader(train_ds, args.batch, True, args.workers, seed), loader(val_ds, 250, False, args.workers, 0)

    def codec(self) -> CodecModel:
        """The rgb-16x model (loaded once)."""
        if "codec" not in self._cache:
            self._cache["codec"] = load_model("rgb-16x")
        return self._cache["codec"]

    def sets(self, arm: str, seed: int) -> tuple[Dataset, Dataset]:
        args = self.args
        if arm.startswith("latents"):
            root = args.latents
            stats = LatentFolder(root / "train").channel_stats(limit=None)
            train = LatentFolder(root / "train", size=28, train=True, padding=SHIFT_CELLS, flip="noflip" not in arm,
                                 mean=stats[0], std=stats[1], seed=seed)
            val = LatentFolder(root / "val", size=28, mean=stats[0], std=stats[1])
            assert train.classes == self.jpeg["train"].classes and val.targets == self.labels("val")
            return train, val
        side = 56 if arm.startswith("pixels56") else 224
        arrays = {s: self.pixels(s, side)[0] for s in ("train", "val")}
        mean, std = rgb_stats(arrays["train"])
        return (PixelArray(arrays["train"], self.labels("train"), mean, std, True, seed, flip="noflip" not in arm),
                PixelArray(arrays["val"], self.labels("val"), mean, std, False))

    def pixels(self, split: str, side: int) -> tuple[np.ndarray, float]:
        key = (split, side)
        if key not in self._cache:
            files = [p for p, _ in self.jpeg[split].samples]
            self.args.out.mkdir(parents=True, exist_ok=True)
            self._cache[key] = pixel_cache(files, side, self.args.out / f"pixels{side}-{split}.npy")
        return self._cache[key]


def ensure_inputs(args: argparse.Namespace) -> None:
    """The int8 latents and the rgb-16x .wlc files of the whole set, with the CLI (resumable: -n
    skips finished files, so a rerun costs a directory walk)."""
    walloc = str(ROOT / ".venv/bin/walloc") if (ROOT / ".venv/bin/walloc").exists() else "walloc"
    for cmd in ([walloc, "latents", "-r", f"{args.data}/", "-o", f"{args.latents}/", "-j", "2", "--dtype", "int8"],
                [walloc, "encode", "-r", f"{args.data}/", "-o", f"{args.wlc}/", "-m", "rgb-16x", "-j", "2"]):
        cmd += ["-n", "--quiet"]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)


# -- training ---------------------------------------------------------------------------------------
def loader(ds: Dataset, batch: int, shuffle: bool, workers: int, seed: int) -> DataLoader:
    return DataLoader(ds, batch_size=batch, shuffle=shuffle, num_workers=workers, worker_init_fn=worker_init,
                      persistent_workers=workers > 0, generator=torch.Generator().manual_seed(seed))


def evaluate(net: nn.Module, dl: DataLoader) -> tuple[float, float]:
    net.eval()
    correct = total = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for x, y in dl:
            correct += int((net(x).argmax(1) == y).sum())
            total += len(y)
    return correct / total, total / (time.perf_counter() - start)


def tta(data: Data, args: argparse.Namespace) -> dict:
    """Val top-1 of the final networks of finished ``--tta`` runs (-paug arms of latents or 56×56
    pixels) with their softmax outputs averaged over TTA_VIEWS, each view of the val photo made
    into the arm's input as in training; and of view 0 alone, which must equal the run's val_acc
    (a check that the checkpoint and the input path are the run's).  Kept in OUT/tta.json."""
    path = args.out / "tta.json"
    done = json.loads(path.read_text()) if path.exists() else {}
    runs = load_runs(args.out)
    todo = [(arm, r["seed"], r["val_acc"]) for arm in args.tta for r in sorted(runs.get(arm, []), key=lambda r: r["seed"])
            if f"{arm}-seed{r['seed']}" not in done]
    for arm in args.tta:
        if arm not in ARMS or not pixel_augmented(arm) or base_arm(arm) == "pixels224":
            raise SystemExit(f"--tta: {arm} is not a -paug arm of latents or pixels56")
    for form in sorted({base_arm(arm) for arm, _, _ in todo}):
        _, val = data.batches(f"{form}-paug-nocrop", 0)          # the form's standardisation (training photos)
        views = [list(PhotoBatches(val.photos, data.labels("val"), form, val.codec, batch=250,
                                   stats=(val.mean, val.std), view=v)) for v in TTA_VIEWS]
        for arm, seed, val_acc in ((a, s, v) for a, s, v in todo if base_arm(a) == form):
            net = make_net(arm, width_of(arm, args.width))
            net.load_state_dict(torch.load(args.out / "ckpt" / f"{arm}-seed{seed}.pt", weights_only=False)["net"])
            net.eval()
            with torch.inference_mode():
                probs = [torch.cat([net(x).softmax(1) for x, _ in batches]) for batches in views]
            labels = torch.cat([y for _, y in views[0]])
            single, averaged = ((p.argmax(1) == labels).float().mean().item() for p in (probs[0], sum(probs)))
            done[f"{arm}-seed{seed}"] = {"arm": arm, "seed": seed, "val_acc": val_acc, "val_acc_view0": single,
                                         "val_acc_tta": averaged, "views": [list(v) for v in TTA_VIEWS]}
            print(f"  {arm} seed {seed}: val top-1 {100 * single:.2f} % (run: {100 * val_acc:.2f}), "
                  f"{len(TTA_VIEWS)} views averaged {100 * averaged:.2f} %", flush=True)
            path.write_text(json.dumps(done, indent=1))
    return done


def train_run(arm: str, seed: int, data: Data, args: argparse.Namespace) -> dict:
    ckpt_path = args.out / "ckpt" / f"{arm}-seed{seed}.pt"
    ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net = make_net(arm, width_of(arm, args.width))
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    train_dl, val_dl = data.batches(arm, seed)
    epochs = epochs_of(arm, args)
    steps = epochs * len(train_dl)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=steps, pct_start=0.2)
    state = {"epoch": 0, "history": []}
    if ckpt_path.exists():
        saved = torch.load(ckpt_path, weights_only=False)
        net.load_state_dict(saved["net"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        state = saved["state"]
        print(f"  resumed {arm} seed {seed} after epoch {state['epoch']}", flush=True)
    for epoch in range(state["epoch"], epochs):
        if isinstance(train_dl, DataLoader):
            train_dl.dataset.set_epoch(epoch)
            train_dl.generator.manual_seed(seed * 1000 + epoch)
        else:
            train_dl.set_epoch(epoch)
        net.train()
        start = time.perf_counter()
        compute = 0.0
        seen = correct = 0
        loss_sum = 0.0
        for x, y in train_dl:
            t = time.perf_counter()
            out = net(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            compute += time.perf_counter() - t
            seen += len(y)
            correct += int((out.argmax(1) == y).sum())
            loss_sum += float(loss.detach()) * len(y)
        wall = time.perf_counter() - start
        state["epoch"] = epoch + 1
        state["history"].append({"epoch": epoch + 1, "wall_s": wall, "compute_s": compute, "images": seen,
                                 "train_loss": loss_sum / seen, "train_acc": correct / seen})
        torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "state": state},
                   str(ckpt_path) + ".part")
        os.replace(str(ckpt_path) + ".part", ckpt_path)
        print(f"  {arm} seed {seed} epoch {epoch + 1}/{epochs}: loss {loss_sum / seen:.3f} "
              f"train acc {100 * correct / seen:.1f} %  {seen / wall:.0f} img/s ({seen / compute:.0f} compute)",
              flush=True)
    val_acc, infer_ips = evaluate(net, val_dl)
    hist = state["history"]
    return {"arm": arm, "seed": seed, "val_acc": val_acc, "infer_images_per_s": infer_ips,
            "train_images_per_s": sum(h["images"] for h in hist) / sum(h["wall_s"] for h in hist),
            "train_compute_images_per_s": sum(h["images"] for h in hist) / sum(h["compute_s"] for h in hist),
            "final_train_acc": hist[-1]["train_acc"], "history": hist, "epochs": epochs,
            "width": width_of(arm, args.width), "params": sum(p.numel() for p in net.parameters()),
            "macs": forward_macs(net, input_shape(arm))}


def speed_test(args: argparse.Namespace, arms: tuple[str, ...] = ("latents", "pixels56", "pixels224"),
               rounds: int = 5, steps: int = 3) -> dict:
    """Training steps per second of each network on random batches, the arms interleaved round
    by round (the machine is shared: interleaving spreads the other jobs' load over all arms)."""
    torch.manual_seed(0)
    nets = {a: make_net(a, args.width) for a in arms}
    opts = {a: torch.optim.AdamW(n.parameters(), lr=1e-3) for a, n in nets.items()}
    batch = {a: (torch.randn(args.batch, *input_shape(a)), torch.randint(0, 10, (args.batch,))) for a in arms}
    times: dict[str, list[float]] = {a: [] for a in arms}
    for r in range(rounds + 1):
        for a in arms:
            net, opt, (x, y) = nets[a], opts[a], batch[a]
            net.train()
            start = time.perf_counter()
            for _ in range(steps):
                loss = F.cross_entropy(net(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if r:  # round 0 warms up
                times[a].append(steps * args.batch / (time.perf_counter() - start))
    return {a: float(np.median(v)) for a, v in times.items()}


# -- loading time and bytes -------------------------------------------------------------------------
def loading_times(data: Data, args: argparse.Namespace, count: int = 300) -> dict:
    """ms per item to get it from its file, in this process (one thread), on `count` val photos."""
    path = args.out / "loading.json"
    if path.exists():
        return json.loads(path.read_text())
    torch.set_num_threads(1)
    jpeg = data.jpeg["val"]
    step = max(1, len(jpeg) // count)
    picks = list(range(0, len(jpeg), step))[:count]
    forms = {
        ".npy int8 latents (np.load)": LatentFolder(args.latents / "val"),
        ".wlc rgb-16x -> latents (entropy decoding)": LatentFolder(args.wlc / "val"),
        "JPEG -> latents (decode + rgb-16x encoder)": jpeg,
    }
    out: dict[str, float] = {}
    for name, ds in forms.items():
        assert len(ds) == len(jpeg), name
        ds.load(picks[0])
        start = time.perf_counter()
        for i in picks:
            ds.load(i)
        out[name] = 1e3 * (time.perf_counter() - start) / len(picks)
    for side, name in ((224, "JPEG -> 224×224 pixels (decode)"), (56, "JPEG -> 56×56 pixels (decode + resize)")):
        start = time.perf_counter()
        for i in picks:
            with Image.open(jpeg.samples[i][0]) as im:
                im = im.convert("RGB")
                if side != 224:
                    im = im.resize((side, side), Image.Resampling.BICUBIC)
                np.asarray(im)
        out[name] = 1e3 * (time.perf_counter() - start) / len(picks)
    torch.set_num_threads(args.threads)
    path.write_text(json.dumps(out, indent=1))
    return out


def information(data: Data, args: argparse.Namespace, count: int = 100) -> dict:
    """How much of the photo each 9,408-value input keeps: mean PSNR of the 224×224 photo rebuilt
    from it (the latents by walloc's rgb-16x decoder, the thumbnail by bicubic upsampling)."""
    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))

    jpeg = data.jpeg["val"]
    picks = list(range(0, len(jpeg), max(1, len(jpeg) // count)))[:count]
    latents, thumbs = [], []
    for i in picks:
        path = Path(jpeg.samples[i][0])
        rgb = np.asarray(Image.open(path).convert("RGB"))
        wlc = (args.wlc / path.relative_to(args.data)).with_suffix(".wlc").read_bytes()
        latents.append(psnr(rgb, api.decode_image(wlc).rgb))
        small = Image.fromarray(rgb).resize((56, 56), Image.Resampling.BICUBIC)
        thumbs.append(psnr(rgb, np.asarray(small.resize(rgb.shape[1::-1], Image.Resampling.BICUBIC))))
    return {"rgb-16x latents -> walloc decoder, PSNR dB": float(np.mean(latents)),
            "56×56 bicubic -> bicubic upsampling, PSNR dB": float(np.mean(thumbs)), "photos": len(picks)}


def disk_bytes(args: argparse.Namespace) -> dict:
    def mean_size(root: Path, suffixes: tuple[str, ...]) -> tuple[float, int]:
        sizes = [p.stat().st_size for p in root.rglob("*") if p.suffix.lower() in suffixes]
        return (float(np.mean(sizes)) if sizes else float("nan")), len(sizes)

    jpeg, n_jpeg = mean_size(args.data, (".jpeg", ".jpg"))
    npy, n_npy = mean_size(args.latents, (".npy",))
    wlc, n_wlc = mean_size(args.wlc, (".wlc",))
    return {"JPEG 224×224 (the source files)": jpeg, "files_jpeg": n_jpeg,
            ".wlc rgb-16x": wlc, "files_wlc": n_wlc,
            ".npy int8 latents 12×28×28 (128-byte header)": npy, "files_npy": n_npy,
            ".npy int32 latents (walloc latents default)": 128 + 4 * 12 * 28 * 28,
            "raw uint8 56×56×3": 56 * 56 * 3, "raw uint8 224×224×3": 224 * 224 * 3}


# -- report -----------------------------------------------------------------------------------------
def load_runs(out: Path) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {}
    for p in sorted((out / "runs").glob("*.json")):
        r = json.loads(p.read_text())
        runs.setdefault(r["arm"], []).append(r)
    return runs


def report(args: argparse.Namespace) -> str:
    runs = load_runs(args.out)
    lines = ["| input | epochs | val top-1 (mean ± sd) | seeds: per seed | train acc, last epoch | train images/s in "
             "the run (busy machine) | forward MMACs/image | params |",
             "|---|---|---|---|---|---|---|---|"]
    for arm in ARMS:
        rs = sorted(runs.get(arm, []), key=lambda r: r["seed"])
        if not rs:
            continue
        acc = np.array([r["val_acc"] for r in rs]) * 100
        sd = f" ± {acc.std(ddof=1):.1f}" if len(acc) > 1 else ""
        ips = np.mean([r["train_images_per_s"] for r in rs])
        fit = 100 * np.mean([r["final_train_acc"] for r in rs])
        lines.append(f"| {ARMS[arm]} | {rs[0]['epochs']} | {acc.mean():.1f}{sd} % | {len(rs)}: {', '.join(f'{a:.1f}' for a in acc)} "
                     f"| {fit:.1f} % | {ips:.0f} | {rs[0]['macs'] / 1e6:.1f} | {rs[0]['params']:,} |")
    text = "\n".join(lines)
    tta_path = args.out / "tta.json"
    if tta_path.exists():
        by_arm: dict[str, list[dict]] = {}
        for r in json.loads(tta_path.read_text()).values():
            by_arm.setdefault(r["arm"], []).append(r)
        text += (f"\n\nval top-1 with test-time augmentation ({len(TTA_VIEWS)} views: flip x shifts of 0/4 px, softmax "
                 "averaged):\n| input | plain (mean) | TTA (mean ± sd) | seeds: per seed |\n|---|---|---|---|")
        for arm in (a for a in ARMS if a in by_arm):
            rs = sorted(by_arm[arm], key=lambda r: r["seed"])
            acc = np.array([r["val_acc_tta"] for r in rs]) * 100
            sd = f" ± {acc.std(ddof=1):.1f}" if len(acc) > 1 else ""
            text += (f"\n| {ARMS[arm]} | {100 * np.mean([r['val_acc'] for r in rs]):.1f} % | {acc.mean():.1f}{sd} % "
                     f"| {len(rs)}: {', '.join(f'{a:.1f}' for a in acc)} |")
    for name, file in (("loading, ms per item", "loading.json"), ("bytes per image", "bytes.json"),
                       ("what each 9,408-value input keeps of the 224×224 val photos", "information.json"),
                       ("training images/s, interleaved microbenchmark (batch, median of rounds)", "speed.json")):
        p = args.out / file
        if p.exists():
            text += f"\n\n{name}:\n" + "\n".join(f"  {k}: {v:.2f}" if isinstance(v, float) else f"  {k}: {v}"
                                                 for k, v in json.loads(p.read_text()).items())
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/imagenette")
    p.add_argument("--latents", type=Path, default=ROOT / "runs/imagenette/latents-int8")
    p.add_argument("--wlc", type=Path, default=ROOT / "runs/imagenette/wlc-16x",
                   help="rgb-16x .wlc files of the set (walloc encode -r DATA/ -o WLC/ -m rgb-16x): loading time")
    p.add_argument("--out", type=Path, default=ROOT / "runs/compressed_learning_imagenette")
    p.add_argument("--order", nargs="+",
                   default=["latents:0", "pixels56:0", "pixels224:0", "latents:1", "pixels56:1", "latents:2",
                            "pixels56:2", "pixels224:1", "pixels224:2", "latents-noflip:0", "pixels56-noflip:0",
                            "latents-e20:0", "pixels56-e20:0", "latents-w48:0", "pixels56-w48:0", "latents-w48:1",
                            "pixels56-w48:1", "latents-noflip:1", "pixels56-noflip:1",
                            "latents-paug:0", "pixels56-paug:0", "latents-paug:1", "pixels56-paug:1", "latents-paug:2",
                            "pixels56-paug:2", "pixels224-paug:0", "latents-paug-nocrop:0", "pixels56-paug-nocrop:0"],
                   help="ARM:SEED runs, started in this order")
    p.add_argument("--cache", type=Path, default=None,
                   help="-paug arms: save each epoch's made training inputs here and reuse them (47 MB an epoch)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--paug-epochs", type=int, default=20, help="epochs of the -paug arms (pixel augmentation)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--width", type=int, default=24)
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the training process")
    p.add_argument("--budget-min", type=float, default=None,
                   help="start no run that the time used so far says would end after this many minutes")
    p.add_argument("--report", action="store_true", help="print the table of finished runs and exit")
    p.add_argument("--tta", nargs="+", default=None, metavar="ARM",
                   help="evaluate the finished runs of these -paug arms with test-time augmentation, then exit")
    p.add_argument("--speed", action="store_true", help="also measure training images/s of each network, interleaved")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.report:
        print(report(args))
        return
    wall = time.perf_counter()
    torch.set_num_threads(args.threads)
    if args.tta:
        tta(Data(args), args)
        print(report(args))
        return
    ensure_inputs(args)
    data = Data(args)
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    (args.out / "bytes.json").write_text(json.dumps(disk_bytes(args), indent=1))
    if args.wlc.exists():
        loading_times(data, args)
        if not (args.out / "information.json").exists():
            (args.out / "information.json").write_text(json.dumps(information(data, args), indent=1))
    epoch_s: dict[str, float] = {}   # seconds per epoch of each kind of arm, with a margin
    for item in args.order:
        arm, seed = item.split(":")
        seed = int(seed)
        done = args.out / "runs" / f"{arm}-seed{seed}.json"
        if done.exists():
            r = json.loads(done.read_text())
            epoch_s.setdefault(kind_of(arm), sum(h["wall_s"] for h in r["history"]) * 1.1 / r["epochs"])
            continue
        used = (time.perf_counter() - wall) / 60
        guess = epoch_s.get(kind_of(arm), 0) / 60 * epochs_of(arm, args)
        if args.budget_min is not None and used + guess > args.budget_min:
            print(f"skipping {arm} seed {seed}: {used:.0f} min used, about {guess:.0f} more needed", flush=True)
            continue
        print(f"training {arm} seed {seed}", flush=True)
        start = time.perf_counter()
        r = train_run(arm, seed, data, args)
        r.update({"torch": torch.__version__, "python": platform.python_version(), "threads": args.threads,
                  "workers": args.workers, "lr": args.lr, "batch": args.batch, "weight_decay": args.weight_decay})
        done.write_text(json.dumps(r, indent=1))
        epoch_s[kind_of(arm)] = (time.perf_counter() - start) * 1.05 / epochs_of(arm, args)
        print(f"  {arm} seed {seed}: val top-1 {100 * r['val_acc']:.2f} %, {r['train_images_per_s']:.0f} train img/s",
              flush=True)
    if args.speed:
        (args.out / "speed.json").write_text(json.dumps(speed_test(args), indent=1))
    print()
    print(report(args))
    print(f"\nwall {time.perf_counter() - wall:.0f} s")


if __name__ == "__main__":
    main()
