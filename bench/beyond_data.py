"""Loaders for ../shared/data/beyond-rgb (see its README): every cube and tile as (H, W, B) integers.

Each loader follows the README's recipe exactly (reshape orders, the exact integer scalings
of Samson and Sentinel-2); nothing is resampled: BigEarthNet bands are stacked per
resolution (10 m, 20 m, 60 m), Landsat-8 stacks the 30 m bands B1–B7, B9–B11.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "beyond-rgb"


def _mat(path: Path) -> dict:
    import scipy.io

    return scipy.io.loadmat(str(path))


def jasper() -> np.ndarray:
    y = _mat(ROOT / "jasper_ridge" / "jasperRidge2_R198.mat")["Y"]
    return y.reshape(198, 100, 100, order="F").transpose(1, 2, 0).astype(np.uint16)


def samson() -> np.ndarray:
    v = _mat(ROOT / "samson" / "samson_1.mat")["V"]
    return np.rint(v * 1402).astype(np.uint16).reshape(156, 95, 95, order="F").transpose(1, 2, 0)


def sandiego() -> np.ndarray:
    return _mat(ROOT / "sandiego_plane" / "sandiego_plane.mat")["data"].astype(np.uint16)


def hydice() -> np.ndarray:
    return _mat(ROOT / "hydice_urban" / "HYDICE_data.mat")["data"].astype(np.uint16)


def abu_urban2() -> np.ndarray:
    return _mat(ROOT / "abu_urban2_texas" / "abu-urban-2.mat")["data"].astype(np.int16)


def santabarbara() -> np.ndarray:
    return _mat(ROOT / "aviris_santabarbara" / "a_hsi_img_for_VI_demo.mat")["hsi_img"].astype(np.int16)


def santabarbara_wavelengths() -> list[float]:
    return [float(w) for w in _mat(ROOT / "aviris_santabarbara" / "a_hsi_img_for_VI_demo.mat")["wavelengths"].ravel()]


def landsat8() -> np.ndarray:
    import tifffile

    folder = ROOT / "landsat8_LC80200392015216"
    bands = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10", "B11"]
    return np.stack([tifffile.imread(folder / f"l8_{b}.tif") for b in bands], axis=2).astype(np.uint16)


def sentinel2(scene: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        a = np.load(ROOT / "sentinel2_eolearn" / "REFERENCE_SCENES.npy")
        return np.rint(a[scene] * 10000).astype(np.uint16)
    return load


BIGEARTHNET_RES = {"10m": ["B02", "B03", "B04", "B08"], "20m": ["B05", "B06", "B07", "B8A", "B11", "B12"],
                   "60m": ["B01", "B09"]}


def bigearthnet(patch: str, resolution: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import tifffile

        folder = ROOT / "bigearthnet_s2" / "BigEarthNet-S2-Example" / patch
        return np.stack([tifffile.imread(folder / f"{patch}_{b}.tif") for b in BIGEARTHNET_RES[resolution]],
                        axis=2).astype(np.uint16)
    return load


def photo16() -> np.ndarray:
    import png

    w, h, rows, info = png.Reader(filename=str(ROOT / "photo16_weld" / "weld_16bit.png")).asDirect()
    return np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(h, w, info["planes"])


def frame10() -> np.ndarray:
    """The Cosmos Laundromat still: one Y4M frame, 4:4:4, 10 bits (read by walloc's own Y4M reader)."""
    from walloc_cli import raster

    return raster.read_raster((ROOT / "video10_cosmos" / "cosmos1650_yuv444_10bpc_p3pq.y4m").read_bytes()).array


def bigearthnet_patches() -> list[str]:
    folder = ROOT / "bigearthnet_s2" / "BigEarthNet-S2-Example"
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def catalogue() -> dict[str, tuple[str, Callable[[], np.ndarray]]]:
    """name -> (kind, loader); kind is "hyperspectral", "multispectral", "photo16" or "frame10"."""
    out: dict[str, tuple[str, Callable[[], np.ndarray]]] = {
        "jasper": ("hyperspectral", jasper), "samson": ("hyperspectral", samson),
        "sandiego": ("hyperspectral", sandiego), "hydice": ("hyperspectral", hydice),
        "abu-urban2": ("hyperspectral", abu_urban2), "santabarbara": ("hyperspectral", santabarbara),
        "landsat8": ("multispectral", landsat8),
    }
    for i in range(5):
        out[f"sentinel2-{i}"] = ("multispectral", sentinel2(i))
    for patch in bigearthnet_patches():
        for res in BIGEARTHNET_RES:
            out[f"ben-{patch.split('_', 2)[-1]}-{res}"] = ("multispectral", bigearthnet(patch, res))
    out["weld16"] = ("photo16", photo16)
    out["cosmos10"] = ("frame10", frame10)
    return out


def load_all(names: list[str] | None = None) -> Iterator[tuple[str, str, np.ndarray]]:
    for name, (kind, loader) in catalogue().items():
        if names is None or name in names:
            yield name, kind, loader()
