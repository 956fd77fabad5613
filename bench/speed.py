"""Speed: walloc against cwebp / dwebp (and Pillow) on the same photos, same run.

    python bench/speed.py --data ../shared/data/images/val [--batch 24] [--repeat 3] [--json out.json]

What issue #14 measures, as a user meets it:

* **a batch**: ``--batch`` photos resized to 768×512 (PNG), encoded as one folder —
  ``walloc encode -r DIR`` in one command (``-j 1`` and ``-j 2``) against a shell loop of
  ``cwebp`` (a process per file, one at a time) and two such loops side by side; then decoded
  back to PNG — ``walloc decode -r`` of walloc's files against a ``dwebp`` loop of cwebp's.
  Each figure is the best of ``--repeat`` rounds, the rounds interleaving the contenders so
  that a load change hits all of them; the ratio columns divide the cwebp/dwebp loop's wall
  time by walloc's (≥ 1: walloc is at least as fast).  CPU time (user + system of every
  process of a run) is printed too: other jobs on the cores inflate it less than wall time;
* **one photo**: wall time of one whole ``walloc encode`` / ``walloc decode`` command for
  one 768×512 photo, interpreter start and imports included (median of 5), next to
  ``cwebp`` / ``dwebp`` on the same file;
* Pillow's WebP and JPEG encoders over the batch in one Python process (the libraries
  without process start-up).

Inputs are PNG (lossless), so every encoder starts from the same pixels and pays for
decoding its input; every decoder writes PNG.  walloc's modules are byte-compiled first,
as an installed package is (this machine sets PYTHONDONTWRITEBYTECODE, which would
otherwise make every walloc command compile its sources).  The machine's load average is
printed before and after: other jobs on the cores slow whichever command they overlap.
"""
from __future__ import annotations

import argparse
import compileall
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from PIL import Image

WALLOC = [sys.executable, "-m", "walloc_cli"]
PACKAGE = Path(__file__).resolve().parents[1] / "walloc_cli"
SIZE = (768, 512)


def _prepare(data: Path, count: int, work: Path) -> tuple[list[Path], float]:
    """PNG copies of the first ``count`` photos resized to 768×512; total megapixels."""
    folder = work / "photos"
    folder.mkdir()
    files = sorted(p for p in data.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})[:count]
    if not files:
        raise SystemExit(f"no photos in {data}")
    paths = []
    for f in files:
        out = folder / (f.stem + ".png")
        Image.open(f).convert("RGB").resize(SIZE, Image.LANCZOS).save(out, compress_level=1)
        paths.append(out)
    return paths, len(paths) * SIZE[0] * SIZE[1] / 1e6


def _quiet(command: list[str]) -> None:
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _median_wall(command: list[str], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        _quiet(command)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _loop(tool: list[str], pairs: list[tuple[Path, Path]], parallel: int) -> Callable[[], None]:
    """A shell loop's work: one process per file, ``parallel`` loops side by side."""
    def run() -> None:
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(lambda p: _quiet([*tool, str(p[0]), "-o", str(p[1])]), pairs))
    return run


def _cpu() -> float:
    """CPU seconds (user + system) of this process and its finished children so far."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _best_of(contenders: dict[str, Callable[[], None]], repeat: int) -> dict[str, tuple[float, float]]:
    """Best (wall, CPU) seconds of each contender over ``repeat`` interleaved rounds.  CPU time
    (all processes of a run together) is what a busy machine inflates least: on idle cores a
    run of two processes takes about half its CPU time as wall time."""
    best = {name: (float("inf"), float("inf")) for name in contenders}
    for _ in range(repeat):
        for name, run in contenders.items():
            start, cpu = time.perf_counter(), _cpu()
            run()
            wall, cpu = time.perf_counter() - start, _cpu() - cpu
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return best


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/images/val"))
    parser.add_argument("--batch", type=int, default=24, help="photos in the batch (resized to 768×512)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds; the best of each is kept")
    parser.add_argument("--quality", type=int, default=75, help="walloc -q, cwebp -q, Pillow quality")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    cwebp, dwebp = shutil.which("cwebp"), shutil.which("dwebp")
    if not (cwebp and dwebp):
        raise SystemExit("cwebp and dwebp are needed (Debian package webp)")
    compileall.compile_dir(PACKAGE, quiet=1)
    q = str(args.quality)
    results: dict[str, float | str] = {"load_average_before": _load()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths, megapixels = _prepare(args.data, args.batch, work)
        folder, wlc, webp, decoded = work / "photos", work / "wlc", work / "webp", work / "decoded"
        webp.mkdir()

        def walloc(kind: str, source: Path, target: Path, *options: str) -> Callable[[], None]:
            def run() -> None:
                shutil.rmtree(target, ignore_errors=True)
                _quiet(WALLOC + [kind, "-r", str(source), "-o", f"{target}/", "--quiet", *options])
            return run

        encoders = {
            "walloc_j1": walloc("encode", folder, wlc, "-q", q, "-j", "1"),
            "walloc_j2": walloc("encode", folder, wlc, "-q", q, "-j", "2"),
            "walloc_16x_j1": walloc("encode", folder, work / "wlc16", "-m", "rgb-16x", "-j", "1"),
            "walloc_16x_j2": walloc("encode", folder, work / "wlc16", "-m", "rgb-16x", "-j", "2"),
            "cwebp_loop": _loop([cwebp, "-quiet", "-q", q], [(p, webp / (p.stem + ".webp")) for p in paths], 1),
            "cwebp_2loops": _loop([cwebp, "-quiet", "-q", q], [(p, webp / (p.stem + ".webp")) for p in paths], 2),
        }
        for name, (wall, cpu) in _best_of(encoders, args.repeat).items():
            results[f"batch_encode_{name}_s"], results[f"batch_encode_{name}_cpu_s"] = wall, cpu
        webps = sorted(webp.glob("*.webp"))
        decoders = {
            "walloc_j1": walloc("decode", wlc, decoded, "-j", "1"),
            "walloc_j2": walloc("decode", wlc, decoded, "-j", "2"),
            "dwebp_loop": _loop([dwebp, "-quiet"], [(p, p.with_suffix(".png")) for p in webps], 1),
            "dwebp_2loops": _loop([dwebp, "-quiet"], [(p, p.with_suffix(".png")) for p in webps], 2),
        }
        for name, (wall, cpu) in _best_of(decoders, args.repeat).items():
            results[f"batch_decode_{name}_s"], results[f"batch_decode_{name}_cpu_s"] = wall, cpu

        def pillow(fmt: str) -> Callable[[], None]:
            def run() -> None:
                for p in paths:
                    im = Image.open(p)
                    im.load()
                    im.save(io.BytesIO(), fmt, quality=args.quality)
            return run

        for name, (wall, cpu) in _best_of({"webp": pillow("WEBP"), "jpeg": pillow("JPEG")}, args.repeat).items():
            results[f"batch_pillow_{name}_s"] = wall

        one = paths[0]
        results["single_walloc_encode_s"] = _median_wall(WALLOC + ["encode", str(one), "-o", str(work / "one.wlc"),
                                                                    "-f", "-q", q, "--quiet"])
        results["single_walloc_16x_encode_s"] = _median_wall(WALLOC + ["encode", str(one), "-o", str(work / "16.wlc"),
                                                                        "-f", "-m", "rgb-16x", "--quiet"])
        results["single_cwebp_s"] = _median_wall([cwebp, "-quiet", "-q", q, str(one), "-o", str(work / "one.webp")])
        results["single_walloc_decode_s"] = _median_wall(WALLOC + ["decode", str(work / "one.wlc"), "-o",
                                                                    str(work / "one.png"), "-f", "--quiet"])
        results["single_dwebp_s"] = _median_wall([dwebp, "-quiet", str(work / "one.webp"), "-o", str(work / "w.png")])
        results["photos"] = f"{len(paths)} PNGs of 768x512 ({megapixels:.2f} MP) from {args.data}"
    results["load_average_after"] = _load()
    width = max(len(k) for k in results)
    for k, v in results.items():
        print(f"{k:{width}}  {v:.3f}" if isinstance(v, float) else f"{k:{width}}  {v}")
    r = results
    for what, rival in (("encode", "cwebp"), ("decode", "dwebp")):
        models = ("", "_16x") if what == "encode" else ("",)
        for model in models:
            label = "rgb-16x" if model else "rgb-1x"
            print(f"{label} batch {what}: {rival} loop / walloc -j 1 = "
                  f"{r[f'batch_{what}_{rival}_loop_s'] / r[f'batch_{what}_walloc{model}_j1_s']:.2f}x; "
                  f"{rival} loop / walloc -j 2 = {r[f'batch_{what}_{rival}_loop_s'] / r[f'batch_{what}_walloc{model}_j2_s']:.2f}x; "
                  f"two {rival} loops / walloc -j 2 = "
                  f"{r[f'batch_{what}_{rival}_2loops_s'] / r[f'batch_{what}_walloc{model}_j2_s']:.2f}x; "
                  f"CPU time, {rival} loop / walloc -j 1 = "
                  f"{r[f'batch_{what}_{rival}_loop_cpu_s'] / r[f'batch_{what}_walloc{model}_j1_cpu_s']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
