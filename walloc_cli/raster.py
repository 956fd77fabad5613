"""N-band and high-bit-depth rasters in and out: multi-band TIFF, ``.npy``, 16-bit PNG, 16-bit PNM,
one-frame Y4M (4:4:4 or mono, 8–16 bits).

The 8-bit path (:mod:`walloc_cli.media`, Pillow) sees RGB photos.  Everything else a
scientific or remote-sensing user stores — a 13-band Sentinel-2 tile, a 200-band
hyperspectral cube, a 16-bit photo — comes here as a :class:`Raster`: an integer array
(H, W, B) plus what is needed to give back *the same file type*: the container, the
band layout (interleaved, planar, pages), the dtype with its byte order and the bit depth
(a PNM ``maxval``).  Samples are coded lossily; these properties are restored exactly.

Why other readers than Pillow: Pillow reads a 16-bit RGB PNG as 8 bits and writes at most
4 bands.  ``tifffile`` reads and writes any band count and dtype; ``pypng`` (pure Python)
reads and writes 16-bit PNG; NetPBM, Y4M and ``.npy`` are parsed here (a few lines each).
A Y4M still (a video frame, e.g. 10-bit 4:4:4) is three planes of one size: a raster of three
bands at its depth.  Subsampled chroma (4:2:0, 4:2:2) has planes of different sizes, which an
H×W×B raster cannot hold, and a video of several frames is not a still: both are refused.

Routing (:func:`is_raster`): ``.npy`` and Y4M always; PNG and PNM when deeper than 8 bits; TIFF
when it is not an 8-bit image of 1, 3 or 4 interleaved samples.  8-bit images keep the
8-bit path, so their behaviour and files are unchanged.
"""
from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import WallocError

SUFFIXES = {".npy", ".y4m"}  # read only here; PNG, TIFF and PNM are shared with the 8-bit path
OUTPUT_SUFFIXES = {".npy": "npy", ".tif": "tiff", ".tiff": "tiff", ".png": "png",
                   ".pgm": "pnm", ".ppm": "pnm", ".pnm": "pnm", ".y4m": "y4m"}
DEFAULT_SUFFIX = {"npy": ".npy", "tiff": ".tif", "png": ".png", "pnm": ".pnm", "y4m": ".y4m"}
Y4M_MAGIC = b"YUV4MPEG2 "
Y4M_TAGS = re.compile(r"[!-~]+( [!-~]+)*")  # printable tokens, one space apart: what a header may carry
DTYPES = ("uint8", "int8", "uint16", "int16")
MAX_BANDS = 4096


class RasterError(WallocError):
    """The input is not a raster walloc can code, or cannot be written as asked."""


@dataclass
class Raster:
    """An integer image of any band count and what its file type needs to come back exactly."""

    array: np.ndarray                # (H, W, B) in its own dtype (native byte order)
    container: str                   # "npy", "tiff", "png" or "pnm": the type it came in
    layout: str = "hwb"              # "hw" (2-D), "hwb" (interleaved), "bhw" (planar), "pages" (TIFF pages),
                                     # "rgb" (TIFF, interleaved RGB/RGBA photometric)
    byteorder: str = "<"             # npy: "<" or ">" (">" also for PNM, "<" for TIFF/PNG writes)
    bit_depth: int = 0               # significant bits (PNM maxval's bit length, PNG/TIFF bits); 0: the dtype's
    maxval: int = 0                  # PNM only: the maxval to write back
    wavelengths: list[float] | None = None  # nm, one per band, when the caller knows them
    y4m_tags: str = ""               # Y4M: the stream header's tags but W and H (frame rate, interlacing,
                                     # aspect, colour, X… extensions), written back as they came
    notes: list[str] = field(default_factory=list)

    @property
    def height(self) -> int:
        return int(self.array.shape[0])

    @property
    def width(self) -> int:
        return int(self.array.shape[1])

    @property
    def bands(self) -> int:
        return int(self.array.shape[2])

    @property
    def dtype(self) -> str:
        return self.array.dtype.name

    def depth(self) -> int:
        return self.bit_depth or 8 * self.array.dtype.itemsize

    def describe(self) -> dict[str, Any]:
        """The header fields that give back this file type (docs/FORMAT.md, modality ``raster``)."""
        out: dict[str, Any] = {"bands": self.bands, "dtype": self.dtype, "bit_depth": self.depth(),
                               "container": self.container, "layout": self.layout, "byteorder": self.byteorder}
        if self.maxval:
            out["maxval"] = self.maxval
        if self.wavelengths is not None:
            out["wavelengths"] = [float(w) for w in self.wavelengths]
        if self.y4m_tags:
            out["y4m_tags"] = self.y4m_tags
        return out


def _check_array(a: np.ndarray, what: str) -> np.ndarray:
    """The dtype and shape rules every reader shares; returns (H, W, B) in native byte order."""
    if a.dtype.kind == "f":
        raise RasterError(f"{what}: floating-point samples ({a.dtype.name}) are not supported; "
                          f"scale them to integers (uint8, uint16 or int16) first")
    name = a.dtype.newbyteorder("=").name if a.dtype.byteorder not in "=|" else a.dtype.name
    if name not in DTYPES:
        raise RasterError(f"{what}: samples of type {a.dtype.name} are not supported (uint8, int8, uint16, int16)")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or 0 in a.shape:
        raise RasterError(f"{what}: expected a 2-D image or an H×W×B array, got shape {tuple(a.shape)}")
    if a.shape[2] > MAX_BANDS:
        raise RasterError(f"{what}: {a.shape[2]} bands, more than the {MAX_BANDS} walloc codes")
    return np.ascontiguousarray(a.astype(a.dtype.newbyteorder("="), copy=False))


# -- detection ----------------------------------------------------------------------------
def _png_depth(data: bytes) -> int | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 26 and data[12:16] == b"IHDR":
        return data[24]
    return None


_PNM = re.compile(rb"\A(P[56])(?:\s+|#[^\n]*\n)+(\d+)(?:\s+|#[^\n]*\n)+(\d+)(?:\s+|#[^\n]*\n)+(\d+)\s")


def is_raster(data: bytes, suffix: str = "") -> bool:
    """Whether these bytes belong on the N-band / high-bit-depth path (see the module doc)."""
    if suffix.lower() in SUFFIXES or data[:6] == b"\x93NUMPY" or data[:10] == Y4M_MAGIC:
        return True
    depth = _png_depth(data)
    if depth is not None:
        return depth > 8
    m = _PNM.match(data[:512])
    if m:
        return int(m.group(4)) > 255
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return not _plain_8bit_tiff(data)
    return False


def _plain_8bit_tiff(data: bytes) -> bool:
    """An 8-bit TIFF of 1, 3 or 4 interleaved samples: the 8-bit path's (Pillow's) business."""
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            series = tif.series[0]
            return (series.dtype == np.uint8 and len(tif.pages) == 1
                    and (series.axes == "YX" or (series.axes == "YXS" and series.shape[-1] in (3, 4))))
    except Exception:  # unreadable here: let Pillow say what is wrong with it
        return True


# -- reading -------------------------------------------------------------------------------
def read_raster(data: bytes, suffix: str = "") -> Raster:
    """Bytes of a ``.npy``, TIFF, 16-bit PNG or 16-bit PNM -> :class:`Raster`."""
    if suffix.lower() == ".npy" or data[:6] == b"\x93NUMPY":
        return _read_npy(data)
    if suffix.lower() == ".y4m" or data[:10] == Y4M_MAGIC:
        return _read_y4m(data)
    if _png_depth(data) is not None:
        return _read_png(data)
    if _PNM.match(data[:512]):
        return _read_pnm(data)
    return _read_tiff(data)


def _npy_view(data: bytes) -> np.ndarray:
    """The array of a version 1 or 2 ``.npy`` as a read-only view of ``data`` (no copy: a tall tile
    is held once, as the file's bytes); other versions through ``np.load``."""
    f = io.BytesIO(data)
    version = np.lib.format.read_magic(f)
    if version not in ((1, 0), (2, 0)):
        return np.load(io.BytesIO(data), allow_pickle=False)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(f)
    if dtype.hasobject:
        raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
    count = math.prod(shape)
    if len(data) - f.tell() < count * dtype.itemsize:
        raise EOFError("truncated")
    return np.frombuffer(data, dtype, count, f.tell()).reshape(shape, order="F" if fortran else "C")


def _read_npy(data: bytes) -> Raster:
    try:
        a = _npy_view(data)
    except (ValueError, OSError, EOFError) as exc:
        raise RasterError(f"not a readable .npy array ({str(exc).splitlines()[0] if str(exc) else 'truncated'})") \
            from None
    if not isinstance(a, np.ndarray):
        raise RasterError("not a single .npy array")
    if a.dtype.fields is not None:
        raise RasterError("structured .npy arrays are not supported")
    layout = "hw" if a.ndim == 2 else "hwb"
    order = ">" if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and np.little_endian is False) else "<"
    fortran = bool(a.flags.f_contiguous and not a.flags.c_contiguous)
    out = Raster(_check_array(a, ".npy"), "npy", layout + ("-f" if fortran else ""), order)
    return out


def _read_tiff(data: bytes) -> Raster:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            series = tif.series[0]
            axes = series.axes
            pages = len(tif.pages)
            if axes == "YX" and pages > 1 and len(tif.series) == pages:  # one band per page, each its own series
                a = np.stack([s.asarray() for s in tif.series])
                axes = "IYX"
            else:
                a = series.asarray()
            bits = int(tif.pages[0].bitspersample)
            rgb = int(tif.pages[0].photometric) == 2  # PHOTOMETRIC.RGB: viewers show it as colour
    except Exception as exc:  # tifffile raises many kinds for damaged files
        raise RasterError(f"not a readable TIFF ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") \
            from None
    if axes == "YX":
        layout = "hw"
    elif axes.endswith("YXS") and a.ndim == 3:
        layout = "rgb" if rgb and a.shape[2] in (3, 4) else "hwb"
    elif a.ndim == 3 and axes.endswith("YX"):
        layout = "pages" if pages > 1 else "bhw"
        a = np.moveaxis(a, 0, 2)
    else:
        raise RasterError(f"TIFF with axes {axes!r} (shape {tuple(a.shape)}) is not an image of bands")
    raster = Raster(_check_array(a, "TIFF"), "tiff", layout, "<")
    if bits < 8 * raster.array.dtype.itemsize:
        raster.bit_depth = bits
    return raster


def _read_png(data: bytes) -> Raster:
    import png

    try:
        width, height, rows, info = png.Reader(bytes=data).asDirect()
        planes = int(info["planes"])
        a = np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(height, width, planes)
    except Exception as exc:  # pypng raises its own FormatError and others
        raise RasterError(f"not a readable PNG ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") \
            from None
    notes = ["the alpha plane is coded lossily like the other bands"] if info.get("alpha") else []
    return Raster(_check_array(a, "PNG"), "png", "hw" if planes == 1 else "hwb", ">", int(info["bitdepth"]),
                  notes=notes)


def _read_pnm(data: bytes) -> Raster:
    m = _PNM.match(data[:512])
    kind, width, height, maxval = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
    planes = 1 if kind == b"P5" else 3
    if not 0 < maxval < 65536 or width < 1 or height < 1:
        raise RasterError(f"PNM header out of range (maxval {maxval}, {width}×{height})")
    dtype = ">u2" if maxval > 255 else "u1"
    start = m.end()
    need = width * height * planes * np.dtype(dtype).itemsize
    if len(data) - start < need:
        raise RasterError(f"truncated PNM ({len(data) - start} bytes of samples, {need} expected)")
    a = np.frombuffer(data, dtype, width * height * planes, start).reshape(height, width, planes)
    if a.max(initial=0) > maxval:
        raise RasterError(f"PNM sample above its maxval {maxval}")
    return Raster(_check_array(a, "PNM"), "pnm", "hw" if planes == 1 else "hwb", ">", maxval.bit_length(),
                  maxval)


def _read_y4m(data: bytes) -> Raster:
    """A one-frame YUV4MPEG2 stream of 4:4:4 (3 planes), 4:4:4 with alpha (4) or mono (1) samples."""
    end = data.find(b"\n", 0, 4096)
    if not data.startswith(Y4M_MAGIC) or end < 0:
        raise RasterError("not a readable Y4M stream (no YUV4MPEG2 header line)")
    tokens = data[len(Y4M_MAGIC):end].decode("ascii", "replace").split()
    fields = {t[0]: t[1:] for t in tokens if t}
    try:
        width, height = int(fields["W"]), int(fields["H"])
    except (KeyError, ValueError):
        raise RasterError("Y4M header without a valid width (W) and height (H)") from None
    colour = fields.get("C", "420jpeg")
    m = re.fullmatch(r"(444alpha|444|mono)(?:p?(\d+))?", colour)
    if m is None:
        raise RasterError(f"Y4M with chroma {colour}: subsampled planes are not one raster; walloc codes 4:4:4 "
                          f"or mono frames (convert with ffmpeg -pix_fmt yuv444p10le)")
    planes = {"444": 3, "444alpha": 4, "mono": 1}[m.group(1)]
    depth = int(m.group(2) or 8)
    if not 8 <= depth <= 16 or width < 1 or height < 1:
        raise RasterError(f"Y4M header out of range ({width}×{height}, {depth} bits)")
    frame = data.find(b"\n", end + 1, end + 4096)
    if not data.startswith(b"FRAME", end + 1) or frame < 0:
        raise RasterError("Y4M stream without a frame")
    dtype = "<u2" if depth > 8 else "u1"
    need = width * height * planes * np.dtype(dtype).itemsize
    if len(data) - frame - 1 < need:
        raise RasterError(f"truncated Y4M frame ({len(data) - frame - 1} bytes of samples, {need} expected)")
    if len(data) - frame - 1 > need:
        raise RasterError("Y4M stream of several frames: walloc codes still images (extract one frame, e.g. "
                          "ffmpeg -frames:v 1)")
    a = np.frombuffer(data, dtype, width * height * planes, frame + 1).reshape(planes, height, width)
    if a.max(initial=0) >> depth:
        raise RasterError(f"Y4M sample above its {depth}-bit range")
    tags = " ".join(t for t in tokens if t[0] not in "WH")
    itembits = 8 * np.dtype(dtype).itemsize
    return Raster(_check_array(np.moveaxis(a, 0, 2), "Y4M"), "y4m", "bhw", "<", depth if depth < itembits else 0,
                  y4m_tags=tags)


# -- writing -------------------------------------------------------------------------------
def write_raster(raster: Raster, suffix: str | None = None) -> bytes:
    """:class:`Raster` -> file bytes, in its own container unless ``suffix`` names another."""
    container = raster.container if not suffix else OUTPUT_SUFFIXES.get(suffix.lower())
    if container is None:
        known = ", ".join(sorted(OUTPUT_SUFFIXES))
        raise RasterError(f"cannot write an N-band or high-bit-depth image as {suffix} (use one of {known})")
    a = raster.array
    same = container == raster.container
    layout = raster.layout if same else ("hw" if raster.bands == 1 else "hwb")
    if container == "npy":
        return _write_npy(a, layout, raster.byteorder if same else "<")
    if container == "tiff":
        return _write_tiff(a, layout)
    if container == "png":
        return _write_png(a, raster.bit_depth if same else 0)
    if container == "y4m":
        return _write_y4m(a, raster.bit_depth if same else 0, raster.y4m_tags if same else "")
    return _write_pnm(a, raster.maxval if same else 0)


def _write_npy(a: np.ndarray, layout: str, byteorder: str) -> bytes:
    out = a[:, :, 0] if layout.startswith("hw") and not layout.startswith("hwb") else a
    out = out.astype(out.dtype.newbyteorder(byteorder)) if out.dtype.itemsize > 1 else out
    if layout.endswith("-f"):
        out = np.asfortranarray(out)
    buf = io.BytesIO()
    np.save(buf, out, allow_pickle=False)
    return buf.getvalue()


def _write_tiff(a: np.ndarray, layout: str) -> bytes:
    import tifffile

    buf = io.BytesIO()
    if layout == "hw" or a.shape[2] == 1 and layout not in ("bhw", "pages"):
        tifffile.imwrite(buf, a[:, :, 0], photometric="minisblack")
    elif layout == "hwb":
        tifffile.imwrite(buf, a, photometric="minisblack", planarconfig="contig")
    elif layout == "rgb":  # 3 or 4 interleaved samples shown as colour (a 4th is unassociated alpha)
        tifffile.imwrite(buf, a, photometric="rgb", planarconfig="contig",
                         extrasamples=["unassalpha"] if a.shape[2] == 4 else None)
    elif layout == "bhw":
        tifffile.imwrite(buf, np.moveaxis(a, 2, 0), photometric="minisblack", planarconfig="separate")
    else:  # one page per band
        with tifffile.TiffWriter(buf) as tif:
            for b in range(a.shape[2]):
                tif.write(np.ascontiguousarray(a[:, :, b]), photometric="minisblack")
    return buf.getvalue()


def _write_png(a: np.ndarray, depth: int) -> bytes:
    import png

    if a.dtype.kind != "u" or a.shape[2] > 4:
        raise RasterError(f"PNG holds 1–4 unsigned bands; this image has {a.shape[2]} of {a.dtype.name} "
                          f"(write .tif or .npy instead)")
    bands = a.shape[2]
    bitdepth = 16 if a.dtype.itemsize == 2 else 8
    writer = png.Writer(a.shape[1], a.shape[0], greyscale=bands <= 2, alpha=bands in (2, 4), bitdepth=bitdepth)
    buf = io.BytesIO()
    writer.write_array(buf, a.reshape(-1).astype(np.uint16 if bitdepth == 16 else np.uint8))
    return buf.getvalue()


def _write_pnm(a: np.ndarray, maxval: int) -> bytes:
    if a.dtype.kind != "u" or a.shape[2] not in (1, 3):
        raise RasterError(f"PNM holds 1 or 3 unsigned bands; this image has {a.shape[2]} of {a.dtype.name} "
                          f"(write .tif or .npy instead)")
    maxval = maxval or (65535 if a.dtype.itemsize == 2 else 255)
    kind = b"P5" if a.shape[2] == 1 else b"P6"
    head = kind + b"\n%d %d\n%d\n" % (a.shape[1], a.shape[0], maxval)
    samples = np.minimum(a, maxval).astype(">u2" if maxval > 255 else "u1")
    return head + samples.tobytes()


def _write_y4m(a: np.ndarray, depth: int, tags: str) -> bytes:
    if a.dtype.kind != "u" or a.shape[2] not in (1, 3, 4):
        raise RasterError(f"Y4M holds 1, 3 or 4 unsigned planes; this image has {a.shape[2]} of {a.dtype.name} "
                          f"(write .tif or .npy instead)")
    depth = depth or 8 * a.dtype.itemsize
    colour = {1: "mono", 3: "444", 4: "444alpha"}[a.shape[2]]
    if depth > 8:
        colour += str(depth) if colour == "mono" else f"p{depth}"
    # the tags in their order, the colour token (C) recomputed from the planes and depth written
    tokens = [f"C{colour}" if t.startswith("C") else t for t in tags.split()]
    tokens = tokens if any(t.startswith("C") for t in tokens) else [f"C{colour}", *tokens]
    head = " ".join(["YUV4MPEG2", f"W{a.shape[1]}", f"H{a.shape[0]}", *tokens]) + "\nFRAME\n"
    planes = np.moveaxis(a, 2, 0).astype("<u2" if a.dtype.itemsize == 2 else "u1")
    return head.encode("ascii") + planes.tobytes()
