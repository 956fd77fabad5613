"""Shared fixtures.  Test images live in tests/data (see tests/data/README.md)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from PIL import Image

DATA = Path(__file__).parent / "data"

# Property and fuzz tests draw the same examples on every run and machine: a CI run
# must not fail (or pass) by the luck of the draw, and no example database is kept.
settings.register_profile("walloc", derandomize=True, database=None)
settings.load_profile("walloc")


@pytest.fixture(scope="session")
def photo_path() -> Path:
    return DATA / "photo.jpg"


@pytest.fixture(scope="session")
def small_path() -> Path:
    return DATA / "small.png"


@pytest.fixture(scope="session")
def small_rgb(small_path: Path) -> np.ndarray:
    return np.asarray(Image.open(small_path).convert("RGB"))


def png_bytes(im: Image.Image, **options) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **options)
    return buf.getvalue()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
