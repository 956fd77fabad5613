"""Image and audio input and output: everything Pillow- and soundfile-specific lives here.

The codec itself sees one thing: an 8-bit RGB array.  This module turns the
images people actually have into that array plus what must survive the round
trip beside it — the original mode (grayscale stays grayscale), an alpha plane
(kept losslessly) and an ICC profile (kept verbatim) — and back.

Mode policy (also in the README):

* RGB, L: coded as they are (L is coded as gray RGB and returned as L).
* RGBA, LA, PA, P with transparency: colour coded lossily, alpha losslessly.
* P, 1: expanded to RGB / L.  CMYK, YCbCr, LAB, HSV: converted to RGB
  (CMYK through its ICC profile when it has one; the result is sRGB).
* 16-bit (I;16*, I): reduced to 8 bits (round(v / 257)); walloc codes 8-bit
  samples.  A note says so.  32-bit float images (F) are refused.
* EXIF orientation is applied before coding, so the decoded image is upright.

Metadata (kept unless the caller strips it): the ICC profile, the EXIF block (its
orientation tag removed, since the pixels are upright) and the XMP packet are carried
through the ``.wlc`` file and written into every output format that can hold them.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import io
import json
import os
import struct
import warnings
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import png
from .errors import WallocError

OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP",
                  ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".ppm", ".pgm", ".pnm"}


class MediaError(WallocError):
    """The input is not an image walloc can read, or the output cannot be written as asked."""


@dataclass
class ImageData:
    """What the codec needs from an image, and what the decoder gives back."""

    rgb: np.ndarray                  # (H, W, 3) uint8
    mode: str                        # "RGB", "L", "RGBA" or "LA": the mode to give back
    alpha: np.ndarray | None = None  # (H, W) uint8 when mode has alpha
    icc: bytes | None = None
    notes: list[str] = field(default_factory=list)  # conversions the user should know about
    exif: bytes | None = None        # "Exif\0\0" + a TIFF-structured EXIF block, orientation removed
    xmp: bytes | None = None         # the XMP packet (UTF-8 XML), as found in the file

    def without_metadata(self) -> "ImageData":
        """The same pixels with no ICC profile, EXIF or XMP (``--strip``)."""
        return ImageData(self.rgb, self.mode, self.alpha, None, self.notes)

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def _open(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Pillow warns from 89 MP and refuses from 179 MP; the refusal stays, the warning
            # (a Python warning on stderr, not one of our messages) does not.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            im.load()
    except Image.DecompressionBombError as exc:
        raise MediaError(f"image too large ({exc})") from None
    except UnidentifiedImageError:
        raise MediaError("not an image walloc can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaError(f"unreadable image ({exc})") from None
    return im


def read_image(data: bytes) -> ImageData:
    """Decode image bytes (any Pillow format) into :class:`ImageData`."""
    im = _open(data)
    notes: list[str] = []
    if getattr(im, "n_frames", 1) > 1:
        notes.append(f"only the first of {im.n_frames} frames is coded")
    try:
        ImageOps.exif_transpose(im, in_place=True)  # in place: no second copy of a huge image
    except Exception:  # a broken EXIF block must not make the image unreadable
        notes.append("EXIF orientation could not be read and was ignored")
    icc = im.info.get("icc_profile") or None
    exif, xmp = _exif_of(im, notes), _xmp_of(im)
    mode = original_mode = im.mode
    if mode == "F":
        raise MediaError("32-bit floating-point images are not supported; convert to 8 or 16 bits")
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        wide = np.asarray(im, dtype=np.float64)
        gray = np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)
        notes.append("16-bit samples were reduced to 8 bits (walloc codes 8-bit images)")
        im, mode = Image.fromarray(gray, "L"), "L"
    if mode == "P":
        mode = "RGBA" if "transparency" in im.info else "RGB"
        im = im.convert(mode)
    elif mode == "PA":
        im, mode = im.convert("RGBA"), "RGBA"
    elif mode == "1":
        im, mode = im.convert("L"), "L"
    elif mode == "CMYK":
        im, icc = _cmyk_to_srgb(im, icc), None
        mode = "RGB"
        notes.append("CMYK was converted to sRGB")
    elif mode not in ("RGB", "RGBA", "L", "LA"):
        try:
            im, mode = im.convert("RGB"), "RGB"
        except (ValueError, OSError):
            raise MediaError(f"unsupported image mode {original_mode}") from None
        notes.append(f"mode {original_mode} was converted to RGB")
    alpha = np.asarray(im.getchannel("A")) if mode in ("RGBA", "LA") else None
    if mode in ("L", "LA"):
        gray = np.asarray(im.getchannel("L"))
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
    else:
        rgb = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    im.close()  # the pixels now live in numpy; free Pillow's copy before coding starts
    if alpha is not None and alpha.min() == 255:
        notes.append("alpha channel is fully opaque; it is kept anyway")
    return ImageData(np.ascontiguousarray(rgb), mode, alpha, icc, notes, exif, xmp)


EXIF_PREFIX = b"Exif\x00\x00"
ORIENTATION = 0x0112
# TIFF files keep their EXIF facts among the image's own tags (sizes, strips, compression):
# only these describe the picture rather than the file's layout, so only these are carried.
_TIFF_DESCRIPTIVE_TAGS = (0x010E, 0x010F, 0x0110, 0x0131, 0x0132, 0x013B, 0x8298)  # description, make,
# model, software, date/time, artist, copyright
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825


def _exif_of(im: Image.Image, notes: list[str]) -> bytes | None:
    """The image's EXIF block as ``Exif\\0\\0`` + TIFF structure, orientation removed (the
    pixels are already upright), or None.  A block that cannot be parsed is dropped with a note."""
    try:
        if im.format == "TIFF":
            return _tiff_exif(im)
        raw = im.info.get("exif")
        if not raw:
            return None
        raw = bytes(raw) if bytes(raw).startswith(EXIF_PREFIX) else EXIF_PREFIX + bytes(raw)  # WebP has no prefix
        exif = Image.Exif()
        exif.load(raw)
        if ORIENTATION in exif:
            del exif[ORIENTATION]
            raw = exif.tobytes()
        return raw
    except Exception:  # noqa: BLE001 - a broken block must not make the image unreadable
        notes.append("the EXIF block could not be read and was not kept")
        return None


def _tiff_exif(im: Image.Image) -> bytes | None:
    source = im.getexif()
    exif = Image.Exif()
    for tag in _TIFF_DESCRIPTIVE_TAGS:
        if tag in source:
            exif[tag] = source[tag]
    for ifd in (_EXIF_IFD, _GPS_IFD):
        values = source.get_ifd(ifd)
        if values:
            exif.get_ifd(ifd).update(values)
    if not len(exif) and not any(exif.get_ifd(i) for i in (_EXIF_IFD, _GPS_IFD)):
        return None
    return exif.tobytes()


def _xmp_of(im: Image.Image) -> bytes | None:
    xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if not xmp:
        return None
    return xmp.encode("utf-8") if isinstance(xmp, str) else bytes(xmp)


def _cmyk_to_srgb(im: Image.Image, icc: bytes | None) -> Image.Image:
    if icc:
        try:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception:
            pass  # a broken profile: fall back to Pillow's naive conversion
    return im.convert("RGB")


def to_pillow(image: ImageData) -> Image.Image:
    """Assemble the output image in the recorded mode."""
    if image.mode in ("L", "LA"):
        base = Image.fromarray(np.ascontiguousarray(image.rgb[:, :, 0]), "L")
    else:  # frombuffer shares the array's memory: no second copy of a huge image
        rgb = np.ascontiguousarray(image.rgb)
        base = Image.frombuffer("RGB", (image.width, image.height), rgb, "raw", "RGB", 0, 1)
    if image.alpha is not None:
        base.putalpha(Image.fromarray(image.alpha, "L"))
    return base


def _format_for(suffix: str, formats: dict[str, str], kind: str) -> str:
    fmt = formats.get(suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(formats))
        raise MediaError(f"cannot write {kind} as {suffix or 'a file without extension'} (use one of {known})")
    return fmt


def output_format(suffix: str) -> str:
    """Pillow format name for an image file extension."""
    return _format_for(suffix, OUTPUT_FORMATS, "images")


# Largest side each output format can store (libjpeg's JPEG_MAX_DIMENSION, libwebp's
# WEBP_MAX_DIMENSION); PNG, TIFF and BMP store 31-bit sides, beyond any decodable image.
IMAGE_MAX_SIDE = {"JPEG": 65500, "WEBP": 16383}


def check_image_output(fmt: str, width: Any, height: Any) -> None:
    """Refuse, before any decoding or writing, a size the output format cannot store
    (sizes that are not integers are the header check's business)."""
    side = IMAGE_MAX_SIDE.get(fmt)
    sizes = [v for v in (width, height) if isinstance(v, int)]
    if side is not None and any(v > side for v in sizes):
        raise MediaError(f"{fmt} stores at most {side} pixels per side; this image is {width}×{height} "
                         f"(write .png or .tiff instead)")


@dataclass(frozen=True)
class ImageOutput:
    """How a decoded image is written (``walloc decode``'s output options).

    Defaults keep every decoded pixel: JPEG at quality 95 with full-resolution colour
    (4:4:4), WebP lossless.  ``jpeg_quality`` below 90 also halves the colour resolution
    (4:2:0, as cjpeg does); ``webp_quality`` writes lossy WebP.  PNG is written with zlib's
    fastest level: on decoded 768×512 photos Pillow's default (6) took 125 ms a photo, more
    than decoding the .wlc, for files only 4.5 % smaller than level 1's (27 ms).
    """

    jpeg_quality: int = 95
    webp_quality: int | None = None  # None: lossless
    png_level: int = 1

    def options(self, fmt: str) -> dict:
        if fmt == "PNG":
            return {"compress_level": self.png_level}
        if fmt == "JPEG":
            return {"quality": self.jpeg_quality, "subsampling": 0 if self.jpeg_quality >= 90 else 2}
        if fmt == "WEBP":
            if self.webp_quality is None:
                return {"lossless": True}
            return {"quality": self.webp_quality, "method": 4}
        return {}


DEFAULT_OUTPUT = ImageOutput()
# Metadata each output format holds (through Pillow): BMP holds none.
METADATA_HELD = {fmt: ("ICC profile", "EXIF", "XMP") for fmt in ("PNG", "JPEG", "WEBP", "TIFF")}


def _metadata_options(image: ImageData, fmt: str) -> tuple[dict, list[str]]:
    """Pillow save options that carry the image's metadata, and a note on what the format cannot hold."""
    present = {"ICC profile": image.icc, "EXIF": image.exif, "XMP": image.xmp}
    held = METADATA_HELD.get(fmt, ())
    lost = [name for name, value in present.items() if value and name not in held]
    options: dict = {}
    if image.icc and "ICC profile" in held:
        options["icc_profile"] = image.icc
    if fmt == "TIFF" and (image.exif or image.xmp):
        # TIFF keeps EXIF facts and the XMP packet (tag 700) among its own tags: one set for Pillow
        tags = Image.Exif()
        if image.exif:
            tags.load(image.exif)
        if image.xmp:
            tags[700] = image.xmp
        options["exif"] = tags
        return options, _lost_note(fmt, lost)
    if image.exif and "EXIF" in held:
        options["exif"] = image.exif
    if image.xmp and "XMP" in held:
        if fmt == "PNG":
            from PIL import PngImagePlugin

            info = PngImagePlugin.PngInfo()
            info.add_itxt("XML:com.adobe.xmp", image.xmp.decode("utf-8", "replace"))
            options["pnginfo"] = info
        else:
            options["xmp"] = image.xmp
    return options, _lost_note(fmt, lost)


def _lost_note(fmt: str, lost: list[str]) -> list[str]:
    if not lost:
        return []
    names = lost[0] if len(lost) == 1 else ", ".join(lost[:-1]) + " and " + lost[-1]
    return [f"{fmt} cannot hold the {names}; not written"]


def write_image(image: ImageData, fmt: str = "PNG", output: ImageOutput = DEFAULT_OUTPUT) -> bytes:
    """Encode to bytes; lossless formats keep everything, JPEG refuses alpha.

    The ICC profile, EXIF and XMP are written where the format holds them; what could not
    be written is added to ``image.notes``.
    """
    check_image_output(fmt, image.width, image.height)
    if fmt == "JPEG" and image.alpha is not None:
        raise MediaError("JPEG cannot store the alpha channel; write .png or .webp instead")
    options = output.options(fmt)
    if fmt == "PNG":
        encode = functools.partial(_png, image)
    else:
        im = to_pillow(image)
        if fmt == "BMP" and image.alpha is not None and image.mode == "LA":
            im = im.convert("RGBA")
        encode = functools.partial(_save, im, fmt)
    try:
        metadata, notes = _metadata_options(image, fmt)
        data = encode({**options, **metadata})
        image.notes.extend(notes)
        return data
    except Exception:  # noqa: BLE001 - a block the format or Pillow refuses (JPEG holds 64 KB of EXIF at most)
        if not (image.exif or image.xmp):
            raise
    metadata, notes = _metadata_options(ImageData(image.rgb, image.mode, image.alpha, image.icc), fmt)
    data = encode({**options, **metadata})  # the pixels still count
    image.notes.extend(notes + [f"the EXIF/XMP could not be written to {fmt}; the image was written without them"])
    return data


def _png(image: ImageData, options: dict) -> bytes:
    """``image`` as PNG: the pixels deflated by :mod:`walloc_cli.png`, every other chunk (the
    metadata in ``options``) from Pillow's PNG of a 1×1 image of the same mode."""
    grey = image.mode in ("L", "LA")
    mode = ("L" if grey else "RGB") + ("A" if image.alpha is not None else "")
    planes = [image.rgb[:, :, :1] if grey else image.rgb]
    if image.alpha is not None:
        planes.append(image.alpha[:, :, None])
    template = _save(Image.new(mode, (1, 1)), "PNG", {**options, "compress_level": 0})
    return png.assemble(template, planes, options.get("compress_level", 6))


def _save(im: Image.Image, fmt: str, options: dict) -> bytes:
    buf = io.BytesIO()
    try:
        im.save(buf, format=fmt, **options)
    except (OSError, ValueError, TypeError, struct.error) as exc:  # the encoder library's refusal, as one line
        raise MediaError(f"cannot write {fmt} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    return buf.getvalue()


# -- audio --------------------------------------------------------------------------------------
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".aifc", ".mp3", ".w64", ".caf"}
AUDIO_OUTPUT_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".aiff": "AIFF", ".aif": "AIFF"}


def looks_like_audio(data: bytes) -> bool:
    """Sniff the container magic (for stdin, where there is no file name)."""
    head = bytes(data[:12])
    return (
        (head[:4] in (b"RIFF", b"RF64") and head[8:12] in (b"WAVE",))
        or head[:4] in (b"fLaC", b"OggS", b"FORM", b"caff")
        or head[:3] == b"ID3"
        or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)  # MPEG audio frame sync
    )


@dataclass
class AudioSource:
    """An audio file opened for windowed reading, so long files never sit in memory whole."""

    handle: Any            # soundfile.SoundFile
    rate: int
    channels: int
    frames: int
    subtype: str

    def read(self, start: int, count: int) -> np.ndarray:
        """Frames [start, start+count) as float64 (count, channels), checked to be finite."""
        try:
            self.handle.seek(start)
            block = self.handle.read(count, dtype="float64", always_2d=True)
        except Exception as exc:  # libsndfile reports truncated or corrupt frames as plain errors
            raise MediaError(f"audio unreadable at frame {start} ({exc})") from None
        if len(block) != count:
            raise MediaError(f"audio ended early at frame {start + len(block)} of {self.frames}")
        if not np.isfinite(block).all():
            raise MediaError("audio contains NaN or infinite samples")
        return block


def _truncation(head: bytes, size: int) -> str | None:
    """Why a WAV or AIFF file is shorter than its own header says, or None.

    libsndfile quietly shortens a WAV/AIFF whose sample chunk runs past the end of the
    file (it "adjusts" the length), so a cut-off download would be coded as if it were
    complete; FLAC and OGG already fail.  ``head`` is the start of the file, ``size`` its
    length.  Lengths of 0 and 0xFFFFFFFF (written by streaming tools) mean "unknown".
    """
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        kind, order, want, pos = "WAV", "<", b"data", 12
    elif head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        kind, order, want, pos = "AIFF", ">", b"SSND", 12
    else:
        return None
    while pos + 8 <= len(head):
        chunk = head[pos : pos + 4]
        (length,) = struct.unpack(order + "I", head[pos + 4 : pos + 8])
        if chunk == want:
            if length in (0, 0xFFFFFFFF):
                return None
            present = size - (pos + 8)
            if present < length:
                return f"truncated {kind} file (its sample data announces {length} bytes, {max(present, 0)} are present)"
            return None
        pos += 8 + length + (length & 1)  # chunks are padded to even lengths
    return None


def open_audio(data: bytes | str | os.PathLike) -> AudioSource:
    """Open audio bytes or a path (WAV, FLAC, OGG/Vorbis, AIFF, MP3, ... via libsndfile)."""
    import soundfile

    try:
        if isinstance(data, (bytes, bytearray)):
            problem = _truncation(bytes(data[:1 << 16]), len(data))
        else:
            with open(data, "rb") as f:
                problem = _truncation(f.read(1 << 16), os.fstat(f.fileno()).st_size)
    except OSError:
        problem = None  # unreadable: soundfile below says so in its own words
    if problem:
        raise MediaError(problem)
    try:
        handle = soundfile.SoundFile(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        raise MediaError(f"not audio walloc can read ({str(exc).splitlines()[0]})") from None
    frames = handle.frames
    if frames <= 0:
        raise MediaError("audio has no frames")
    if not handle.seekable():
        raise MediaError("audio stream is not seekable")
    return AudioSource(handle, int(handle.samplerate), int(handle.channels), int(frames), str(handle.subtype))


# -- audio tags (title, artist, ...: libsndfile's string metadata) ------------------------------
# libsndfile's names, read from and written to WAV (INFO chunk), FLAC and OGG (Vorbis
# comments) and AIFF; the .wlc file keeps them in a "tags" section (docs/FORMAT.md).
AUDIO_TAGS = ("title", "artist", "album", "date", "tracknumber", "genre", "comment", "copyright", "license",
              "software")
# What each output format can hold (measured with libsndfile 1.2: WAV drops "license", AIFF
# keeps only these five).
AUDIO_TAGS_HELD = {"WAV": set(AUDIO_TAGS) - {"license"}, "FLAC": set(AUDIO_TAGS), "OGG": set(AUDIO_TAGS),
                   "AIFF": {"title", "artist", "comment", "copyright", "software"}}
MAX_TAG_BYTES = 1 << 16  # per value: a tag is a line of text, not a payload


def clean_tags(tags: Any) -> dict[str, str]:
    """Only the known keys with string values without NUL (libsndfile would cut them there)."""
    if not isinstance(tags, dict):
        return {}
    return {k: v for k, v in sorted(tags.items())
            if k in AUDIO_TAGS and isinstance(v, str) and v and "\x00" not in v and len(v.encode()) <= MAX_TAG_BYTES}


def read_audio_tags(data: bytes | str | os.PathLike) -> dict[str, str]:
    """The string metadata of an audio file (bytes or a path); {} when there is none or it cannot be read."""
    import soundfile

    try:
        with soundfile.SoundFile(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data) as f:
            return clean_tags(f.copy_metadata())
    except Exception:  # noqa: BLE001 - unreadable audio is the encoder's business, with its own message
        return {}


def tags_section(tags: dict[str, str]) -> bytes:
    """The ``tags`` section: a UTF-8 JSON object, keys sorted (docs/FORMAT.md)."""
    return json.dumps(clean_tags(tags), sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def parse_tags_section(section: bytes) -> dict[str, str]:
    """Tags from a ``tags`` section; unknown keys and non-string values are left out."""
    try:
        return clean_tags(json.loads(section.decode("utf-8")))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return {}


_OUTPUT_TAGS: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("walloc_output_tags", default={})


@contextlib.contextmanager
def audio_output_tags(tags: dict[str, str]) -> Iterator[None]:
    """Audio sinks opened inside this block write ``tags`` into their file (those the format holds)."""
    token = _OUTPUT_TAGS.set(clean_tags(tags))
    try:
        yield
    finally:
        _OUTPUT_TAGS.reset(token)


def tags_not_held(fmt: str, tags: dict[str, str]) -> list[str]:
    """The tags an audio output format cannot hold."""
    return sorted(k for k in clean_tags(tags) if k not in AUDIO_TAGS_HELD.get(fmt, set()))


def audio_output_format(suffix: str) -> str:
    """libsndfile format name for an audio file extension."""
    return _format_for(suffix, AUDIO_OUTPUT_FORMATS, "audio")


# What each output format can store: (lowest rate, highest rate, most channels).  Checked
# before libsndfile is asked, because it does not always refuse: libvorbis crashes the
# process above 200 kHz (192 kHz is the highest rate it is known to encode), AIFF stores
# rates of 2^30 Hz and above wrongly, and rates beyond a C int overflow soundfile.
AUDIO_OUTPUT_LIMITS = {"WAV": (1, (1 << 31) - 1, 1024), "AIFF": (1, (1 << 30) - 1, 1024),
                       "FLAC": (1, 655_350, 8), "OGG": (1, 192_000, 255)}


def check_audio_output(fmt: str, rate: Any, channels: Any) -> None:
    """Refuse, before anything is decoded or written, audio the output format cannot store."""
    low, high, most = AUDIO_OUTPUT_LIMITS[fmt]
    better = "write .wav instead" if fmt != "WAV" else "no audio format walloc writes can store it"
    if isinstance(rate, int) and not low <= rate <= high:
        raise MediaError(f"{fmt} stores sample rates from {low} to {high:,} Hz; this audio has {rate:,} Hz ({better})")
    if isinstance(channels, int) and channels > most:
        raise MediaError(f"{fmt} stores at most {most} channels; this audio has {channels} ({better})")


class _GuardedFile:
    """The output file as libsndfile sees it (through soundfile's virtual I/O callbacks).

    An exception inside those callbacks is printed by cffi as a traceback and then
    ignored: libsndfile carries on, so a full disk gave an ``AssertionError`` (WAV, AIFF,
    OGG) or, for FLAC, a truncated file and exit status 0.  Here the first error is kept,
    the callback reports failure quietly, and :meth:`check` raises the error afterwards.
    """

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.error = f, None

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def _guard(self, call, failed):
        if self.error is not None:
            return failed
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - kept and re-raised by check()
            self.error = exc if isinstance(exc, OSError) else MediaError(f"audio output failed ({exc})")
            return failed

    def write(self, data: bytes) -> int:
        written = self._guard(lambda: self.f.write(data), 0)
        return len(data) if written is None else written

    def read(self, count: int) -> bytes:
        return self._guard(lambda: self.f.read(count), b"")

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._guard(lambda: self.f.seek(offset, whence), -1)

    def tell(self) -> int:
        return self._guard(self.f.tell, -1)


class AudioSink:
    """Writes decoded audio window by window into a binary file object.

    Every failure is an exception (``OSError`` from the file, :class:`MediaError`
    otherwise), and :meth:`close` reads the finished file back — its length and its last
    frames — so that a file that would not play is never reported as written.
    """

    def __init__(self, fileobj: BinaryIO, fmt: str, rate: int, channels: int, subtype: str = "PCM_16") -> None:
        import soundfile

        if fmt == "OGG":
            subtype = "VORBIS"
        elif fmt == "FLAC" and subtype == "FLOAT":
            raise MediaError("FLAC cannot store floating-point samples; use --pcm 16 or 24")
        check_audio_output(fmt, rate, channels)
        self.fileobj, self.file = fileobj, _GuardedFile(fileobj)
        self.fmt, self.rate, self.channels, self.frames = fmt, rate, channels, 0
        try:
            self.handle = soundfile.SoundFile(self.file, "w", samplerate=rate, channels=channels,
                                              subtype=subtype, format=fmt)
        except Exception as exc:  # noqa: BLE001 - libsndfile's refusal, as one line
            self.file.check()
            raise MediaError(f"cannot write {fmt} audio ({_first_line(exc)})") from None
        self.file.check()
        for key, value in _OUTPUT_TAGS.get().items():  # strings go in before the first frame
            if key in AUDIO_TAGS_HELD.get(fmt, ()):
                try:
                    setattr(self.handle, key, value)
                except Exception:  # noqa: BLE001 - a tag libsndfile refuses is not worth the audio
                    pass
        self.file.check()

    def write(self, frames: np.ndarray) -> None:
        try:
            self.handle.write(np.clip(frames, -1.0, 1.0))
        except Exception as exc:  # noqa: BLE001 - soundfile asserts that every frame was written
            self.file.check()
            raise MediaError(f"cannot write {self.fmt} audio ({_first_line(exc)})") from None
        self.file.check()
        self.frames += len(frames)

    def close(self) -> None:
        if self.handle.closed:
            return
        try:
            self.handle.close()
        except Exception as exc:  # noqa: BLE001
            self.file.check()
            raise MediaError(f"cannot write {self.fmt} audio ({_first_line(exc)})") from None
        self.file.check()
        self._verify()

    def _verify(self) -> None:
        """Read the file back: the frame count, and the last frames decode."""
        import soundfile

        f = self.fileobj
        try:
            if not self.frames or not (f.seekable() and f.readable()):  # an empty FLAC never reads back
                return
        except (AttributeError, ValueError, OSError):
            return
        end = f.tell()
        try:
            f.seek(0)
            with soundfile.SoundFile(f) as back:
                ok = back.frames == self.frames and back.channels == self.channels and back.samplerate == self.rate
                if ok and self.frames:
                    back.seek(max(0, self.frames - 4096))
                    ok = len(back.read(4096, dtype="float32")) == min(4096, self.frames)
        except Exception as exc:  # noqa: BLE001
            raise MediaError(f"the written {self.fmt} file does not read back ({_first_line(exc)})") from None
        finally:
            f.seek(end)
        if not ok:
            raise MediaError(f"the written {self.fmt} file does not read back ({self.frames} frames were written)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
