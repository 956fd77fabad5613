"""The standing fuzz harness for walloc's decoders (issue #11): ``make fuzz``.

    python bench/fuzz.py [--cases 100000] [--workers 2] [--timeout 10] [--rss-mb 2048] [--out DIR]
    python bench/fuzz.py --replay FILE...
    python bench/fuzz.py --only 4592 7066   # regenerate and rerun cases by index, in this process

Every case is one mutated ``.wlc`` file fed to every decode entry point: ``api.info``,
``api.file_latents`` and a full decode to one of the output formats (images: PNG, JPEG,
WebP, TIFF, BMP in turn; audio: WAV, FLAC, OGG, AIFF; N-band rasters: their own type).
A case ends ``ok`` (decoded) or in ``WallocError`` (the one-line refusal walloc promises);
anything else is a finding: another exception type, a hang (over ``--timeout`` seconds),
a crash (the worker process died, e.g. a segfault) or a worker whose resident memory
passed ``--rss-mb``.  Findings are written to ``--out`` so ``--replay`` can rerun them.

Seeds: small files of every model and modality written fresh (rgb-1x whole and cut in
strips, with alpha; rgb-16x; stereo-1x stereo and mono; stereo-ms; nband-1x whole and in strips) plus the
golden files of every format version in tests/data/golden.  Mutators know the format:
files are rebuilt in their own format version's layout (versions 3 and 4: the header
deflated against that version's dictionary) and the CRC is repaired so cases get past the checksum, header fields are set to extremes,
JSON is nested deeply or grown huge, size fields are changed consistently (a bigger
image with matching padding and latent shape), sections are dropped, duplicated,
swapped, truncated or renamed, strip layouts are bent, files are truncated and bits
flipped.  Case ``i`` is generated from ``(--seed, i)`` alone: any run is reproducible.

Cases run in worker processes (``fork``), each case under a wall-clock limit and the
workers under a resident-memory cap (the parent polls ``/proc``); a killed worker is
replaced.  The summary prints counts per outcome and the peak worker RSS.
"""
from __future__ import annotations

import argparse
import copy
import io
import json
import multiprocessing
import os
import struct
import sys
import time
import traceback
import zlib
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from walloc_cli import api, container, multiband, strips  # noqa: E402
from walloc_cli.errors import WallocError  # noqa: E402

IMAGE_SUFFIXES = (".png", ".jpg", ".webp", ".tiff", ".bmp")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff")
MAX_PIXELS = 1 << 24   # decoders' limits in the cases: real checks, smaller than the defaults so
MAX_FRAMES = 1 << 22   # a consistent header cannot make one case decode for minutes legitimately
GOLDEN = ROOT / "tests" / "data" / "golden"


# -- seeds -----------------------------------------------------------------------------------
def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _wav(samples: np.ndarray, rate: int = 44100) -> bytes:
    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, samples, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def make_seeds() -> list[tuple[str, bytes]]:
    """Small valid files of every model and modality, and every golden file (deterministic)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:40, 0:56]
    rgb = np.clip(np.stack([120 + 60 * np.sin(x / 5), 100 + 50 * np.cos(y / 4), 90 + 40 * np.sin((x + y) / 7)], -1)
                  + rng.normal(0, 8, (40, 56, 3)), 0, 255).astype(np.uint8)
    rgba = np.concatenate([rgb, (x * 4 % 256).astype(np.uint8)[..., None]], axis=2)
    t = np.arange(6000) / 44100
    music = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 660 * t)], 1)
    music += rng.normal(0, 0.01, music.shape)
    seeds = [
        ("rgb-1x", api.encode_image(_png(rgb), "rgb-1x", 60).data),
        ("rgb-1x-rgba", api.encode_image(_png(rgba), "rgb-1x", 30).data),
        ("rgb-16x", api.encode_image(_png(rgb), "rgb-16x").data),
        ("stereo-1x", api.encode_audio(_wav(music), "stereo-1x").data),
        ("stereo-1x-mono", api.encode_audio(_wav(music[:, 0]), "stereo-1x").data),
        ("stereo-ms", api.encode_audio(_wav(music), "stereo-ms").data),
    ]
    rule = strips.STRIP_POSITIONS, strips.MIN_STRIP_ROWS
    strips.STRIP_POSITIONS, strips.MIN_STRIP_ROWS = 8, 2   # 40 rows of pixels: three strips of 2 latent rows
    try:
        seeds.append(("rgb-1x-strips", api.encode_image(_png(rgb), "rgb-1x", 50).data))
    finally:
        strips.STRIP_POSITIONS, strips.MIN_STRIP_ROWS = rule
    try:  # N-band rasters (nband-1x), where this walloc has them
        buf = io.BytesIO()
        np.save(buf, rng.integers(0, 4000, (5, 24, 16)).astype(np.uint16))
        seeds.append(("nband-1x", api.encode_raster(buf.getvalue(), "cube.npy").data))
        rule = multiband.STRIP_SAMPLES, multiband.MIN_STRIP_ROWS
        multiband.STRIP_SAMPLES, multiband.MIN_STRIP_ROWS = 2 * 24 * 16, 2   # 5 rows: strips of 2, 2, 1
        try:
            seeds.append(("nband-1x-strips", api.encode_raster(buf.getvalue(), "cube.npy").data))
        finally:
            multiband.STRIP_SAMPLES, multiband.MIN_STRIP_ROWS = rule
    except (AttributeError, WallocError):
        pass
    seeds += [(f"golden/{p.stem}", p.read_bytes()) for p in sorted(GOLDEN.glob("*.wlc"))]
    return seeds


# -- structure-aware mutators -------------------------------------------------------------------
@dataclass
class Parsed:
    """A seed taken apart: what the mutators change before :func:`build` puts it back."""

    version: int
    header: Any                 # usually a dict; mutators may make it anything JSON
    sections: list[list[Any]]   # [name, bytes]; the listing is rebuilt from it unless `listing` is set
    listing: Any = None         # an explicit "sections" value (section games)
    payload: bytes | None = None  # explicit payload bytes (instead of the sections')
    raw: dict[str, str] | None = None  # placeholder string -> JSON text put there verbatim (deep nesting)


def parse(data: bytes) -> Parsed:
    box = container.unpack(data)
    return Parsed(box.version, dict(box.header), [[k, v] for k, v in box.sections.items()])


def build(p: Parsed, crc: bool = True) -> bytes:
    """Bytes of ``p`` with consistent lengths and (unless ``crc`` is False) a valid CRC-32."""
    header = p.header
    if isinstance(header, dict):
        header = {**header, "sections": p.listing if p.listing is not None else [[n, len(b)] for n, b in p.sections]}
    text = json.dumps(header, separators=(",", ":"), allow_nan=True)
    for placeholder, raw in (p.raw or {}).items():   # nesting deeper than json.dumps can recurse
        text = text.replace(json.dumps(placeholder), raw)
    head = text.encode()
    payload = p.payload if p.payload is not None else b"".join(b for _, b in p.sections)
    version = p.version & 0xFF
    if version in (3, 4):  # the layouts of format versions 3 and 4 (deflated header, modality byte)
        dictionary = container.HEADER_DICTIONARY if version == 3 else container.HEADER_DICTIONARY_V4
        packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, dictionary)
        head = packer.compress(head) + packer.flush()
        code = container.modality_code(p.header.get("modality") if isinstance(p.header, dict) else None)
        if version == 3:
            body = struct.pack("<4sBcI", container.MAGIC, 3, code, len(head)) + head + struct.pack("<Q", len(payload))
        else:  # a header deflating beyond 65535 bytes cannot be written: its length wraps (refused)
            body = struct.pack("<4sBcH", container.MAGIC, 4, code, len(head) & 0xFFFF) + head
        body += payload
    else:
        body = struct.pack("<4sBI", container.MAGIC, version, len(head)) + head
        body += struct.pack("<Q", len(payload)) + payload
    checksum = zlib.crc32(body) if crc else zlib.crc32(body) ^ 1
    return body + struct.pack("<I", checksum)


EXTREMES: list[Any] = [0, 1, -1, 2, 7, 8, 9, 255, 256, 65535, 65536, 2**31 - 1, 2**31, -2**31, 2**32, 2**53,
                       2**63, -2**63, 2**64, 10**30, -10**30, 0.5, -0.0, 1e308, float("inf"), float("nan"),
                       "", "x", "RGB", "image", "audio", "raster", None, True, False, [], {}, [0], [0, 0],
                       [0, 0, 0], [2**40, 2**40, 2**40], [-1, -1], {"a": 1}]


def _value(rng: np.random.Generator) -> Any:
    """A fresh copy of one of the EXTREMES: mutators change headers in place, and a shared list
    or dict would carry one case's changes into later cases (a case would then depend on the
    cases run before it, not on its index alone) and could end up containing itself."""
    return copy.deepcopy(EXTREMES[int(rng.integers(len(EXTREMES)))])


def _keys(p: Parsed) -> list[str]:
    return sorted(p.header) if isinstance(p.header, dict) else []


def m_header_field(p: Parsed, rng: np.random.Generator, seeds: list[Parsed]) -> None:
    """One to three header fields (existing or new) set to an extreme value."""
    keys = _keys(p) + ["strip_rows", "lead", "grey", "extra", "sections"]
    for _ in range(int(rng.integers(1, 4))):
        key = keys[int(rng.integers(len(keys)))]
        if key == "sections":
            p.listing = _value(rng)
        else:
            p.header[key] = _value(rng)


def m_nudge_int(p: Parsed, rng: np.random.Generator, seeds: list[Parsed]) -> None:
    """An integer header field (or list element) moved by a little: off-by-one and friends."""
    spots = [(k, None) for k in _keys(p) if isinstance(p.header[k], int) and not isinstance(p.header[k], bool)]
    spots += [(k, i) for k in _keys(p) if isinstance(p.header[k], list)
              for i, v in enumerate(p.header[k]) if isinstance(v, int) and not isinstance(v, bool)]
    if not spots:
        return
    key, index = spots[int(rng.integers(len(spots)))]
    delta = int(rng.choice([-8, -2, -1, 1, 2, 8, 1000]))
    if index is None:
        p.header[key] += delta
    else:
        p.header[key][index] += delta


def m_nested_json(p: Parsed, rng: np.random.Generator, seeds: list[Parsed]) -> None:
    """Deeply nested arrays/objects, huge strings or long lists in the header, or a header that is
    not an object at all."""
    kind = int(rng.integers(5))
    depth = int(rng.choice([2, 31, 32, 33, 100, 5000, 30000]))
    if kind in (0, 1):
        opening, closing = ("[", "]") if kind == 0 else ('{"k":', "}")
        p.raw = {**(p.raw or {}), "@deep@": opening * depth + "0" + closing * depth}
        p.header[str(rng.choice(_keys(p) + ["deep"]))] = "@deep@"
    elif kind == 2:
        p.header[str(rng.choice(_keys(p) + ["big"]))] = "é" * int(rng.choice([1000, 20000, 32000]))
    elif kind == 3:
        p.header[str(rng.choice(_keys(p) + ["big"]))] = list(range(int(rng.choice([100, 5000, 12000]))))
    else:
        p.header = [_value(rng), p.header] if rng.integers(2) else _value(rng)


def m_scale_sizes(p: Parsed, rng: np.random.Generator, seeds: list[Parsed]) -> None:
    """Size fields changed *consistently*: a bigger (or smaller) image with matching padding and
    latent shape, longer audio with a matching latent shape — only the payload is too small."""
    h = p.header
    factor = float(rng.choice([0.25, 0.5, 2, 3, 16, 256, 4096]))
    if h.get("modality") == "image" and all(isinstance(h.get(k), int) for k in ("width", "height")):
        block = 8
        width = max(1, int(h["width"] * (factor if rng.integers(2) else 1)))
        height = max(1, int(h["height"] * factor))
        h["width"], h["height"] = width, height
        h["pad"] = [(-height) % block, (-width) % block]
        shape = h.get("latent_shape")
        if isinstance(shape, list) and shape:
            h["latent_shape"] = [shape[0], (height + h["pad"][0]) // block, (width + h["pad"][1]) // block]
    elif isinstance(h.get("frames"), int) and isinstance(h.get("latent_shape"), list) and h["latent_shape"]:
        shape = h["latent_shape"]
        h["frames"] = max(1, int(h["frames"] * factor))
        if isinstance(shape[-1], int):
            shape[-1] = max(1, int(shape[-1] * factor))
    else:
        m_header_field(p, rng, seeds)


def m_sections(p: Parsed, rng: np.random.Generator, seeds: list[Parsed]) -> None:
    """Section games: drop, duplicate, swap contents, reorder, rename, empty, truncate, grow, or a
    listing that does not match the payload."""
    s = p.sections
    if not s:
        return
    i = int(rng.integers(len(s)))
    game = int(rng.integers(9))
    if game == 0:
        del s[i]
    elif game == 1:
        s.append([s[i][0], s[i][1]])
    elif game == 2 and len(s) > 1:
        j = int(rng.integers(len(s)))
        s[i][1], s[j][1] = s[j][1], s[i][1]
    elif game == 3:
        rng.shuffle(s)
    elif game == 4:
        s[i][0] = str(rng.choice(["latents", "strips", "index", "alpha", "icc", "exif", "xmp", "tags", "x", ""]))
    elif game == 5:
        s[i][1] = b""
    elif game == 6:
        s[i][1] = s[i][1][: int(rng.integers(len(s[i][1]) + 1))]
    elif game == 7:
        s[i][1] = s[i][1] + bytes(rng.integers(0, 256, int(rng.choice([1, 3, 4, 64, 4096])), dtype=np.uint8))
    else:
        p.listing = [[n, len(b) + int(rng.choice([-1, 1, 2**31, 2**63]))] for n, b in s]


def m_payload_bits(p: Parsed, rng: np.random.Generator, seeds: list[Parsed]) -> None:
    """Bit flips or random bytes inside one section (lengths and CRC kept valid)."""
    if not p.sections:
        return
    i = int(rng.integers(len(p.sections)))
    data = bytearray(p.sections[i][1])
    if not data:
        return
    if rng.integers(4) == 0:
        a = int(rng.integers(len(data)))
        b = min(len(data), a + int(rng.integers(1, 64)))
        data[a:b] = bytes(rng.integers(0, 256, b - a, dtype=np.uint8))
    else:
        for _ in range(int(rng.integers(1, 9))):
            k = int(rng.integers(8 * len(data)))
            data[k // 8] ^= 1 << (k % 8)
    p.sections[i][1] = bytes(data)


def m_strip_layout(p: Parsed, rng: np.random.Generator, seeds: list[Parsed]) -> None:
    """Strip games: strip_rows changed, the index bent, or strips given to a file without them."""
    h = p.header
    names = [n for n, _ in p.sections]
    if "strips" in names and rng.integers(2):
        i = names.index("strips")
        raw = p.sections[i][1][: len(p.sections[i][1]) // 4 * 4]   # an earlier mutation may have cut it
        sizes = np.frombuffer(raw, "<u4").astype(np.int64)
        if sizes.size:
            k = int(rng.integers(sizes.size))
            sizes[k] = int(rng.choice([0, 1, 4, sizes[k] + 4, 2**32 - 1]))
            if rng.integers(2) and sizes.size > 1:  # keep the sum: move bytes between strips
                sizes[(k + 1) % sizes.size] -= sizes[k] - np.frombuffer(raw, "<u4")[k]
        p.sections[i][1] = np.clip(sizes, 0, 2**32 - 1).astype("<u4").tobytes()
    else:
        h["strip_rows"] = int(rng.choice([1, 2, 3, 4, 8, 16, 2**20, 2**62]))
        if "strips" not in names and rng.integers(2):
            p.sections.append(["strips", struct.pack("<I", sum(len(b) for n, b in p.sections if n == "latents"))])


def m_version(p: Parsed, rng: np.random.Generator, seeds: list[Parsed]) -> None:
    p.version = int(rng.choice([0, 1, 2, 3, 4, 5, 255]))


def m_splice(p: Parsed, rng: np.random.Generator, seeds: list[Parsed]) -> None:
    """This seed's header with another seed's sections (or the reverse)."""
    other = seeds[int(rng.integers(len(seeds)))]
    if rng.integers(2):
        p.sections = [[n, b] for n, b in other.sections]
    else:
        p.header = dict(other.header)


MUTATORS: list[tuple[str, Callable[[Parsed, np.random.Generator, list[Parsed]], None]]] = [
    ("header-field", m_header_field), ("nudge-int", m_nudge_int), ("nested-json", m_nested_json),
    ("scale-sizes", m_scale_sizes), ("sections", m_sections), ("payload-bits", m_payload_bits),
    ("strip-layout", m_strip_layout), ("version", m_version), ("splice", m_splice),
]


def make_case(index: int, seeds: list[tuple[str, bytes]], parsed: list[Parsed], base: int = 0
              ) -> tuple[str, bytes]:
    """Case ``index``: (description, bytes), from ``(base, index)`` alone."""
    rng = np.random.default_rng([base, index])
    k = int(rng.integers(len(seeds)))
    name, data = seeds[k]
    kind = int(rng.integers(20))
    if kind == 0:   # raw truncation, no repair
        cut = int(rng.integers(len(data)))
        return f"{name} truncated at {cut}", data[:cut]
    if kind == 1:   # raw bit flips, CRC not repaired (mostly checksum errors)
        b = bytearray(data)
        for _ in range(int(rng.integers(1, 5))):
            i = int(rng.integers(8 * len(b)))
            b[i // 8] ^= 1 << (i % 8)
        return f"{name} raw flips", bytes(b)
    if kind == 3 and data[5:6] == container.COMPACT_IMAGE_CODE:  # format 11's binary header, CRC repaired
        (length,) = struct.unpack_from("<H", data, 6)
        body = bytearray(data[:-4])
        for _ in range(int(rng.integers(1, 4))):
            body[8 + int(rng.integers(max(length, 1)))] = int(rng.integers(256))
        return f"{name} compact header bytes", bytes(body) + struct.pack("<I", zlib.crc32(body))
    p = parse(data)
    p = Parsed(p.version, json.loads(json.dumps(p.header)), [[n, b] for n, b in p.sections])
    steps = []
    for _ in range(int(rng.choice([1, 1, 1, 2, 3]))):
        label, mutate = MUTATORS[int(rng.integers(len(MUTATORS)))]
        if not isinstance(p.header, dict) and label not in ("sections", "payload-bits", "version"):
            continue
        mutate(p, rng, parsed)
        steps.append(label)
    out = build(p)
    if kind == 2:   # consistent file, then truncated with the CRC repaired over what is left
        cut = int(rng.integers(9, max(10, len(out) - 4)))
        body = out[:cut]
        out = body + struct.pack("<I", zlib.crc32(body))
        steps.append(f"cut {cut}")
    return f"{name} {'+'.join(steps) or 'unchanged'}", out


# -- running one case ---------------------------------------------------------------------------
def run_case(data: bytes, index: int) -> tuple[str, str]:
    """Every decode entry point on ``data``: ("ok" | "WallocError" | "exception", detail).

    "ok" when every entry point decoded or refused with WallocError and at least one decoded;
    "WallocError" when all refused; "exception" (with the traceback's last lines) otherwise."""
    decoded = refused = 0
    claimed = None
    try:
        claimed = json.loads(data[9 : 9 + struct.unpack_from("<I", data, 5)[0]]).get("modality")
    except Exception:  # whatever the header is: the entry points below are what is being tested
        pass
    entries: list[tuple[str, Callable[[], Any]]] = [
        ("info", lambda: api.info(data)),
        ("file_latents", lambda: api.file_latents(data, MAX_PIXELS, MAX_FRAMES)),
    ]
    if claimed == "audio":
        suffix = AUDIO_SUFFIXES[index % len(AUDIO_SUFFIXES)]
        entries.append((f"decode_audio {suffix}", lambda: api.decode_audio(data, suffix, max_frames=MAX_FRAMES)))
    elif claimed == "raster" and hasattr(api, "decode_raster_file"):
        entries.append(("decode_raster_file", lambda: api.decode_raster_file(data, None, MAX_PIXELS)))
    else:
        suffix = IMAGE_SUFFIXES[index % len(IMAGE_SUFFIXES)]
        entries.append((f"decode_image_file {suffix}", lambda: api.decode_image_file(data, suffix, MAX_PIXELS)))
    for name, call in entries:
        try:
            call()
            decoded += 1
        except WallocError:
            refused += 1
        except BaseException as exc:  # noqa: BLE001 - the harness reports whatever escapes
            if isinstance(exc, KeyboardInterrupt):
                raise
            lines = traceback.format_exc().strip().splitlines()
            return "exception", f"{name}: {type(exc).__name__}: {exc}"[:300] + " | " + " / ".join(lines[-5:-1])[:600]
    return ("ok" if decoded else "WallocError"), ""


def _status_kb(pid: int | str, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _worker(conn) -> None:
    while True:
        job = conn.recv()
        if job is None:
            return
        index, data = job
        outcome, detail = run_case(data, index)
        conn.send((index, outcome, detail, _status_kb("self", "VmHWM")))


@dataclass
class Slot:
    process: multiprocessing.Process
    conn: Any
    job: tuple[int, str, bytes] | None = None
    started: float = 0.0


def run(cases: int, workers: int, timeout: float, rss_mb: int, out: Path | None, base: int,
        report: Callable[[str], None] = print) -> Counter:
    seeds = make_seeds()
    parsed = [parse(d) for _, d in seeds]
    report(f"{len(seeds)} seeds: {', '.join(n for n, _ in seeds)}")
    ctx = multiprocessing.get_context("fork")
    counts: Counter = Counter()
    peak_kb = 0
    findings: list[str] = []

    def start() -> Slot:
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_worker, args=(child,), daemon=True)
        process.start()
        child.close()
        return Slot(process, parent)

    def finding(kind: str, job: tuple[int, str, bytes], detail: str) -> None:
        counts[kind] += 1
        index, description, data = job
        findings.append(f"{kind} case {index} ({description}): {detail}")
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{kind}-{index}.wlc").write_bytes(data)
        report(f"  {kind}: case {index} ({description}): {detail}"[:400])

    slots = [start() for _ in range(workers)]
    next_case, done, reported, began = 0, 0, 0, time.time()
    while done < cases:
        for i, slot in enumerate(slots):
            if slot.job is None and next_case < cases:
                description, data = make_case(next_case, seeds, parsed, base)
                slot.job, slot.started = (next_case, description, data), time.time()
                slot.conn.send((next_case, data))
                next_case += 1
        ready = wait([s.conn for s in slots if s.job is not None], timeout=0.2)
        for i, slot in enumerate(slots):
            if slot.job is None:
                continue
            replace = False
            if slot.conn in ready:
                try:
                    index, outcome, detail, hwm = slot.conn.recv()
                except (EOFError, OSError):
                    slot.process.join(1)
                    finding("crash", slot.job, f"worker died (exit {slot.process.exitcode})")
                    replace = True
                else:
                    peak_kb = max(peak_kb, hwm)
                    if outcome == "exception":
                        finding("exception", slot.job, detail)
                    else:
                        counts[outcome] += 1
                    slot.job = None
                    done += 1
                    continue
            elif time.time() - slot.started > timeout:
                finding("hang", slot.job, f"over {timeout:g} s")
                replace = True
            else:
                rss = _status_kb(slot.process.pid, "VmRSS")
                peak_kb = max(peak_kb, rss)
                if rss > rss_mb * 1024:
                    finding("rss-cap", slot.job, f"worker at {rss // 1024} MB")
                    replace = True
            if replace:
                slot.process.kill()
                slot.process.join()
                slots[i] = start()
                done += 1
        if done >= reported + 5000:
            reported = done - done % 5000
            report(f"{done} cases, {int(time.time() - began)} s: " + summary(counts, done, peak_kb // 1024))
    for slot in slots:
        try:
            slot.conn.send(None)
        except OSError:
            pass
        slot.process.join(5)
        if slot.process.is_alive():
            slot.process.kill()
    counts["peak_worker_rss_mb"] = peak_kb // 1024
    counts["seconds"] = int(time.time() - began)
    return counts


def summary(counts: Counter, cases: int, peak_mb: int | None = None) -> str:
    keys = ("ok", "WallocError", "exception", "hang", "crash", "rss-cap")
    parts = [f"{k} {counts.get(k, 0)}" for k in keys]
    peak = counts.get("peak_worker_rss_mb", 0) if peak_mb is None else peak_mb
    return f"{cases} cases: " + ", ".join(parts) + f"; peak worker RSS {peak} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per case before it counts as a hang")
    parser.add_argument("--rss-mb", type=int, default=2048, help="resident memory cap per worker")
    parser.add_argument("--seed", type=int, default=0, help="base of every case's random generator")
    parser.add_argument("--out", type=Path, default=ROOT / "cache" / "fuzz", help="where findings are written")
    parser.add_argument("--replay", type=Path, nargs="*", help="rerun saved cases in this process")
    parser.add_argument("--only", type=int, nargs="*", help="regenerate these case indices and run them here")
    args = parser.parse_args(argv)
    if args.only:
        seeds = make_seeds()
        parsed = [parse(d) for _, d in seeds]
        for index in args.only:
            description, data = make_case(index, seeds, parsed, args.seed)
            print(index, description, *run_case(data, index))
        return 0
    if args.replay:
        for path in args.replay:
            print(path, *run_case(path.read_bytes(), 0))
        return 0
    counts = run(args.cases, args.workers, args.timeout, args.rss_mb, args.out, args.seed)
    print(summary(counts, args.cases) + f"; {counts['seconds']} s", flush=True)
    bad = sum(counts.get(k, 0) for k in ("exception", "hang", "crash", "rss-cap"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
