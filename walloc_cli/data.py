"""Datasets of latents for PyTorch: class folders in, ``(latents, class index)`` out.

    from torch.utils.data import DataLoader
    from walloc_cli.data import LatentFolder, worker_init

    train = LatentFolder("latents/train", size=28, train=True)      # .npy from `walloc latents -r`
    val = LatentFolder("latents/val", size=28, mean=train.mean, std=train.std)
    loader = DataLoader(train, batch_size=128, shuffle=True, num_workers=2, worker_init_fn=worker_init)
    for z, label in loader:      # z: float32 (128, 12, 28, 28), label: int64 (128,)
        ...

:class:`LatentFolder` is torchvision's ``ImageFolder`` for latents: ``root/<class>/…/file``,
classes sorted by name, and each file may be

* a ``.npy`` array written by ``walloc latents`` (any dtype; int8 is the compact one),
* a ``.wlc`` file (entropy decoding only: no neural decoder, no torch work), or
* an image (PNG, JPEG, …), encoded on the fly with ``rgb-16x`` (or ``model=``).

Items are float32 tensors ``(C, H', W')`` in latent units (a ``.wlc`` of a quality-ladder
model gives its dequantized latents, the decoder's input; a ``.npy`` is taken as stored).

What is exact at block granularity (``rgb-16x``: one latent cell = 8×8 pixels).  The
encoder is a periodized wavelet packet transform over the whole (mirror-padded)
image followed by a 1×1 projection, so:

* **translation** of the image by whole cells, circularly, is exactly the same
  translation of the latents;
* **a crop** of the latents at cell ``(i, j)`` equals the latents of the pixel crop
  ``[8i:…, 8j:…]`` except near the crop's edges, where the transform sees the rest of
  the image instead of the crop's own wrap-around: measured on Imagenette val, the
  cells 3 or more from the edge are identical (100 %), the outermost ring matches in
  3 %, the second in 44 %, the third in 86 % of cells.  A random crop of latents is
  therefore the crop of a slightly larger image, which is what random-crop
  augmentation wants anyway;
* **a horizontal flip is not exact**: the latents of the mirrored image are not the
  mirrored latents (the learned projection mixes bands that mirroring changes): only
  53 % of the values agree, correlation 0.83–0.89 (no 12×12 channel map does much
  better: 0.91).  ``flip=True`` still helps as an
  augmentation (it is a plausible, slightly different latent image), but it is not the
  codec's latents of a flipped photo; encode flipped pixels when that matters;
* **resizing** latents (``resize=True``) is an approximation of the latents of a
  resized image (interpolating 12 transform channels), useful to batch photos of
  different shapes, never exact.

Threads: each DataLoader worker should run one torch and one BLAS thread (N workers ×
all cores each would oversubscribe the machine): pass ``worker_init_fn=worker_init``
(torch already limits its own threads in workers; this also limits BLAS, which the
numpy encoder would otherwise spread over every core).

GPU: with images on disk and a GPU, load pixels instead (``pixels=True`` gives uint8
``(3, H, W)`` tensors, mirror-padded to multiples of 8 like the codec pads them, with
the same crops at 8-pixel granularity) and encode batches on the device with
:class:`walloc_cli.torch_view.WallocEncoder` (``input_range="uint8", quantize="round"``):
the latents equal the numpy encoder's, up to exact rounding ties.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from . import latents as product
from . import media
from .errors import WallocError

NPY = ".npy"
WLC = ".wlc"
EXTENSIONS = frozenset({NPY, WLC} | media.IMAGE_SUFFIXES)
Size = int | tuple[int, int] | None


def worker_init(worker_id: int = 0) -> None:
    """``DataLoader(worker_init_fn=worker_init)``: one torch thread and one BLAS thread per worker."""
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
    except ImportError:
        pass


def _pair(size: Size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


def find_classes(root: Path) -> tuple[list[str], dict[str, int]]:
    """Class names (the sub-folders of ``root``, sorted) and their indices, as ImageFolder does."""
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise WallocError(f"{root}: no class folders (expected ROOT/<class>/<files>)")
    return classes, {c: i for i, c in enumerate(classes)}


def pad_collate(batch: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Collate latents of different sizes: zero-pad each to the batch's largest (bottom, right).

    Returns ``(x (N, C, Hmax, Wmax), labels (N,), sizes (N, 2))``; ``sizes`` holds each
    item's own ``(H', W')`` so a model can mask or crop the padding.  (With ``size=``
    every item has one size and the default collate works.)
    """
    tensors = [item[0] for item in batch]
    heights = [t.shape[-2] for t in tensors]
    widths = [t.shape[-1] for t in tensors]
    out = tensors[0].new_zeros((len(tensors), tensors[0].shape[0], max(heights), max(widths)))
    for i, t in enumerate(tensors):
        out[i, :, : t.shape[-2], : t.shape[-1]] = t
    labels = torch.as_tensor([int(item[1]) for item in batch], dtype=torch.long)
    return out, labels, torch.as_tensor(list(zip(heights, widths)), dtype=torch.long)


class LatentFolder(Dataset):
    """Class folders of ``.npy`` latents, ``.wlc`` files or images -> ``(float32 (C, H', W'), class index)``.

    Parameters
    ----------
    root: ``root/<class>/…`` (files found recursively in each class folder, sorted).
    size: ``None`` (each item as it is; batch with :func:`pad_collate`), an int or
        ``(h, w)`` in latent cells: a centre crop (``train=True``: a random crop) to that
        size, zero-padded (``padding_mode``) first where an item is smaller; with
        ``resize=True`` bilinear resizing instead (approximate, see the module notes).
    train: random crops (anywhere the item allows, plus ``padding`` cells on each side)
        and, with ``flip``, random horizontal flips.
    padding: cells added on every side before a training crop (like torchvision's
        ``RandomCrop(padding=)``): random shifts of up to ``padding`` cells.
    padding_mode: ``"reflect"`` (default), ``"replicate"`` or ``"constant"`` (zeros).
    flip: random horizontal flips in training (not exact, see the module notes).
    mean, std: per-channel standardisation (sequences of C numbers), applied last;
        :meth:`channel_stats` computes them from a dataset.
    model: model for images (default rgb-16x) and, when given, the model every
        ``.wlc`` must have been written with.
    pixels: return the padded uint8 pixels ``(3, 8H', 8W')`` of images instead of
        latents, cropped and flipped the same way, for encoding batches on a GPU.
    seed: base of the per-item random generator (a function of seed, epoch and index,
        so augmentation is reproducible whatever the number of workers); call
        :meth:`set_epoch` each epoch for new crops.
    """

    def __init__(self, root: str | os.PathLike, *, size: Size = None, train: bool = False, padding: int = 0,
                 padding_mode: str = "reflect", flip: bool | None = None, resize: bool = False,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 model: str | None = None, pixels: bool = False, extensions: Sequence[str] | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 target_transform: Callable[[int], object] | None = None, seed: int = 0) -> None:
        self.root = Path(root)
        if padding_mode not in ("reflect", "replicate", "constant"):
            raise ValueError(f"padding_mode must be reflect, replicate or constant, not {padding_mode!r}")
        self.size, self.train, self.padding, self.padding_mode = _pair(size), train, int(padding), padding_mode
        self.flip = train if flip is None else flip
        self.resize, self.model, self.pixels = resize, model, pixels
        self.transform, self.target_transform, self.seed, self.epoch = transform, target_transform, seed, 0
        self.extensions = frozenset(e.lower() for e in (extensions or EXTENSIONS))
        self.mean = None if mean is None else torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
        self.std = None if std is None else torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
        self.classes, self.class_to_idx = find_classes(self.root)
        self.samples: list[tuple[str, int]] = []
        for name in self.classes:
            found = sorted(str(p) for p in (self.root / name).rglob("*")
                           if p.suffix.lower() in self.extensions and p.is_file())
            if not found:
                raise WallocError(f"{self.root / name}: no files with extensions {sorted(self.extensions)}")
            self.samples.extend((path, self.class_to_idx[name]) for path in found)
        self.targets = [label for _, label in self.samples]
        if pixels and any(Path(p).suffix.lower() in (NPY, WLC) for p, _ in self.samples):
            raise WallocError("pixels=True needs images, not .npy or .wlc files")

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """New random crops and flips for each epoch (workers see it on the next iteration)."""
        self.epoch = int(epoch)

    # -- reading ------------------------------------------------------------------------
    def load(self, index: int) -> np.ndarray:
        """The item's latents (or padded pixels, ``(3, H, W)`` uint8) as stored, before any crop.

        A file walloc cannot read raises :class:`walloc_cli.errors.WallocError` naming it."""
        path, _ = self.samples[index]
        try:
            return self._read(path)
        except WallocError as exc:
            raise WallocError(f"{path}: {exc}") from None

    def _read(self, path: str) -> np.ndarray:
        suffix = Path(path).suffix.lower()
        if suffix == NPY:
            return np.load(path, allow_pickle=False)
        if suffix == WLC:
            with open(path, "rb") as f:
                found = product.wlc_latents(f.read(), self.model)
            return found.values if found.steps is None and found.quality is None else found.as_float()
        with open(path, "rb") as f:
            image = media.read_image(f.read())
        if self.pixels:
            block = 8
            rgb = image.rgb
            pad = ((0, (-rgb.shape[0]) % block), (0, (-rgb.shape[1]) % block), (0, 0))
            return np.ascontiguousarray(np.pad(rgb, pad, mode="symmetric").transpose(2, 0, 1))
        return product.image_latents(image, self.model).values

    # -- geometry -------------------------------------------------------------------------
    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.epoch, index))

    def _place(self, x: torch.Tensor, cell: int, rng: np.random.Generator | None) -> torch.Tensor:
        """Crop / pad / resize ``x`` (C, H, W) to ``self.size`` cells (``cell`` samples per cell)."""
        if self.size is None and not (self.train and self.padding):
            return x
        target = self.size or (x.shape[1] // cell, x.shape[2] // cell)
        th, tw = target[0] * cell, target[1] * cell
        if self.resize and (x.shape[1], x.shape[2]) != (th, tw):
            dtype = x.dtype
            x = F.interpolate(x[None].float(), size=(th, tw), mode="bilinear", align_corners=False)[0]
            if dtype == torch.uint8:
                x = x.round().clamp(0, 255).to(dtype)
        pad = self.padding * cell if self.train else 0
        pad_h, pad_w = max(0, th - x.shape[1]), max(0, tw - x.shape[2])
        if pad or pad_h or pad_w:
            # centred, in whole cells, plus the training shift margin on every side
            top, left = pad + (pad_h // cell) // 2 * cell, pad + (pad_w // cell) // 2 * cell
            bottom, right = pad + pad_h - (pad_h // cell) // 2 * cell, pad + pad_w - (pad_w // cell) // 2 * cell
            x = _pad(x, (left, right, top, bottom), self.padding_mode)
        free_h, free_w = (x.shape[1] - th) // cell, (x.shape[2] - tw) // cell
        if self.train and rng is not None:
            i, j = int(rng.integers(0, free_h + 1)), int(rng.integers(0, free_w + 1))
        else:
            i, j = free_h // 2, free_w // 2
        return x[:, i * cell : i * cell + th, j * cell : j * cell + tw]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, object]:
        array = self.load(index)
        _, label = self.samples[index]
        rng = self._rng(index) if self.train else None
        if self.pixels:
            x = torch.from_numpy(array)
            cell = 8
        else:
            x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
            cell = 1
        x = self._place(x, cell, rng)
        if self.flip and self.train and rng is not None and rng.random() < 0.5:
            x = torch.flip(x, dims=(2,))
        if not self.pixels:
            if self.mean is not None:
                x = x - self.mean
            if self.std is not None:
                x = x / self.std
        x = x.contiguous()
        if self.transform is not None:
            x = self.transform(x)
        return x, (label if self.target_transform is None else self.target_transform(label))

    # -- statistics -----------------------------------------------------------------------
    def channel_stats(self, limit: int | None = 2000) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the stored latents (the first ``limit`` items of an even
        spread over the dataset; None: all), for ``mean=`` / ``std=``."""
        step = max(1, len(self) // limit) if limit else 1
        total = total_sq = None
        count = 0
        for i in range(0, len(self), step):
            z = np.asarray(self.load(i), dtype=np.float64)
            z = z.reshape(z.shape[0], -1)
            total = z.sum(1) if total is None else total + z.sum(1)
            total_sq = (z**2).sum(1) if total_sq is None else total_sq + (z**2).sum(1)
            count += z.shape[1]
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
        return mean.tolist(), std.tolist()


def _pad(x: torch.Tensor, pads: tuple[int, int, int, int], mode: str) -> torch.Tensor:
    """F.pad on (C, H, W) of any dtype; reflect needs the pad smaller than the side, so it repeats."""
    if mode == "constant":
        return F.pad(x, pads)
    dtype = x.dtype
    y = x[None].float()
    left, right, top, bottom = pads
    while left or right or top or bottom:  # reflect at most side−1 at a time
        h, w = y.shape[-2:]
        step = (min(left, w - 1), min(right, w - 1), min(top, h - 1), min(bottom, h - 1)) if mode == "reflect" \
            else (left, right, top, bottom)
        if not any(step):  # a side of 1: reflect cannot grow it
            step, mode = (left, right, top, bottom), "replicate"
        y = F.pad(y, step, mode=mode)
        left, right, top, bottom = (a - b for a, b in zip((left, right, top, bottom), step))
    return y[0].to(dtype)
