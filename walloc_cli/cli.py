"""``walloc`` command line: a thin click layer over :mod:`walloc_cli.api`.

Conventions (as cwebp / cjxl / ffmpeg users expect): messages on stderr, data
on stdout only when asked with ``-o -``; exit 0 when everything worked, 1 when
some file failed (the others are still processed), 2 for usage errors.
"""
from __future__ import annotations

import os

# One BLAS thread unless the user says otherwise, set before numpy loads: the encoder's
# matrix products are small (8×64 filter kernels, 192-wide projections), and OpenBLAS's
# spinning threads made encoding 5–15× *slower* whenever anything else used the cores
# (measured: 12-MP photo 55 s with 2 threads beside another job, 12 s with 1).  Batches get
# their parallelism from -j processes instead.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, Iterator  # noqa: E402

import click  # noqa: E402

from . import __version__, batch  # noqa: E402
from .errors import WallocError  # noqa: E402

EXIT_FAILED = 1


class Reporter:
    """Where human-readable output goes, honouring --quiet and -v."""

    def __init__(self, quiet: bool, verbose: int) -> None:
        self.quiet, self.verbose = quiet, verbose

    def error(self, source: str, message: str) -> None:
        click.echo(_one_line(f"walloc: error: {_display(source)}: {message}"), err=True)

    def note(self, source: str, message: str) -> None:
        if not self.quiet:
            click.echo(_one_line(f"walloc: {_display(source)}: {message}"), err=True)

    def detail(self, message: str) -> None:
        if self.verbose and not self.quiet:
            click.echo(_one_line(message), err=True)


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(32), 127]} | {10: "\\n", 13: "\\r", 9: "\\t"}


def _one_line(text: str) -> str:
    """A message stays one line whatever the file names hold (a newline is shown as \\n)."""
    return text.translate(_CONTROL)


def _display(source: str) -> str:
    return "<stdin>" if source == batch.STDIO else source


@dataclass(frozen=True)
class Outcome:
    """What happened to one job, reported by the parent process in input order."""

    source: str
    target: str
    error: str | None = None
    notes: tuple[str, ...] = ()
    summary: str = ""


def _encode_work(job: batch.Job, options: dict) -> tuple[batch.Payload, list[str], str, str]:
    from . import api, media

    quality, bpp, kbps, tune = (options.get(k) for k in ("quality", "bpp", "kbps", "tune"))
    if job.source != batch.STDIO and Path(job.source).suffix.lower() in media.AUDIO_SUFFIXES:
        # audio is read from its file window by window: an hour of WAV never sits in memory
        result = api.encode_audio(job.source, options["model"], quality, tune, kbps)
        result.notes.extend(api.ignored_options("audio", bpp, kbps, tune))
    else:
        result = api.encode_bytes(batch.read_input(job.source), job.source, options["model"], quality, bpp,
                                  options.get("effort", 1), kbps, tune)
    meta = api.info(result.data)
    rate = f"{meta['kbps']:.1f} kbps" if "kbps" in meta else f"{meta['bpp']:.3f} bpp"
    if "quality" in meta:
        rate += f", quality {meta['quality']}"
    return result.data, result.notes, f"{len(result.data)} bytes, {rate}", job.target


def _decode_work(job: batch.Job, options: dict) -> tuple[batch.Payload, list[str], str, str]:
    from . import api, container, media

    data = batch.read_input(job.source)
    forced = options["suffix"]
    modality = api.modality_of(data)
    default = ".png" if modality == "image" else ".wav"
    target = job.resolved(forced or default)
    suffix = forced or (Path(target).suffix if target != batch.STDIO else default) or default
    if job.suffix_from_content:  # the plan could not compare this name with the input: do it now
        if batch.same_file(job.source, target):
            raise WallocError(f"output {target} would overwrite the input")
        batch.check_target(target, options["force"])
    header = container.unpack(data).header
    if modality == "image":
        media.check_image_output(media.output_format(suffix), header.get("width"), header.get("height"))
        out = api.decode_to_bytes(data, suffix, options["max_pixels"])
        return out, [], f"{len(out)} bytes", target
    # refuse a bad extension, or a rate or channel count the format cannot store, before decoding
    media.check_audio_output(media.audio_output_format(suffix), header.get("sample_rate"), header.get("channels"))
    subtype = options["subtype"]
    return (lambda f: api.decode_audio_to(data, f, suffix, subtype)), [], "audio", target


def _latents_work(job: batch.Job, options: dict) -> tuple[batch.Payload, list[str], str, str]:
    from . import latents

    return latents.job_work(job, options)


WORK = {"encode": _encode_work, "decode": _decode_work, "latents": _latents_work}


def process(kind: str, job: batch.Job, options: dict, force: bool) -> Outcome:
    """Read, code and write one file; every expected failure becomes a one-line error."""
    try:
        if job.problem:
            raise WallocError(job.problem)
        if job.target != batch.STDIO and not job.suffix_from_content:
            batch.check_target(job.target, force)  # fail before the work
        out, notes, summary, target = WORK[kind](job, options)
        batch.write_atomic(target, out, force)
        return Outcome(job.source, target, None, tuple(notes), summary)
    except (WallocError, FileExistsError) as exc:
        message = str(exc)
    except FileNotFoundError:
        message = "no such file"
    except IsADirectoryError:
        message = "is a directory (use -r to process folders)"
    except PermissionError as exc:
        message = f"permission denied ({exc.filename})"
    except OSError as exc:
        message = exc.strerror or str(exc)
    return Outcome(job.source, job.target, message)


def _process_star(args: tuple) -> Outcome:
    return process(*args)


def _worker_init(threads: int, parent: int | None = None) -> None:
    # Parallel decoders must not each start one torch thread per core.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.setdefault("MKL_NUM_THREADS", str(threads))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if parent is not None:
        _die_with_parent(parent)


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to kill this worker when the walloc that started it dies, however it
    dies (SIGKILL included): orphaned workers kept decoding and writing, and never exited."""
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent still kills its workers when it can
        return
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: stop, remove what is half written, exit 128 + the signal number."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum: int, frame) -> None:
    raise Interrupted(signum)


def _stop_workers(pool) -> None:
    """Kill the pool's workers now (they may be in the middle of a long file) and reap them."""
    processes = list(getattr(pool, "_processes", {}).values())
    for proc in processes:
        if proc.is_alive():
            proc.kill()
    for proc in processes:
        proc.join()
    manager = getattr(pool, "_executor_manager_thread", None)
    if manager is not None:
        manager.join()  # it notices the dead workers and fails the remaining futures
    pool.shutdown(wait=False)


def _outcomes(kind: str, jobs: list[batch.Job], options: dict, force: bool, workers: int) -> Iterator[Outcome]:
    if options.get("dask"):  # --dask ADDRESS: the same per-file work, on a Dask cluster (cluster.py)
        from .cluster import outcomes

        yield from outcomes(kind, jobs, options, force, options["dask"])
        return
    tasks = [(kind, job, options, force) for job in jobs]
    uses_stdio = any(j.source == batch.STDIO or j.target == batch.STDIO for j in jobs)
    if workers <= 1 or len(jobs) <= 1 or uses_stdio:
        yield from map(_process_star, tasks)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // workers)
    # Fork starts a worker in milliseconds with everything already imported (spawn re-imports
    # numpy and walloc: ~0.3 s per worker), but forking a process that already runs torch's
    # thread pools can deadlock: fork only while torch is not loaded (encoding never loads it).
    fork_is_safe = "torch" not in sys.modules and "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if fork_is_safe else "spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init,
                               initargs=(threads, os.getpid()))
    # Results in input order; each worker holds one file at a time, so memory is bounded by -j.
    # (Not pool.map: on an exception it cancels the futures, and then killing the workers
    # makes the executor's own thread fail on them with a traceback.)
    futures = [pool.submit(_process_star, task) for task in tasks]
    try:
        for future in futures:
            yield future.result()
    except BaseException:  # Ctrl-C, SIGTERM, or the caller stopped early: workers stop too
        _stop_workers(pool)
        raise
    pool.shutdown(wait=True)


def _run(kind: str, jobs: list[batch.Job], options: dict, force: bool, workers: int, report: Reporter) -> int:
    """Process every job (in parallel with -j), continuing past failures; returns the exit code."""
    verb = {"encode": "encoded", "decode": "decoded", "latents": "latents of"}[kind]
    failed = done = 0
    show_bar = len(jobs) > 1 and sys.stderr.isatty() and not report.quiet and not report.verbose
    bar = click.progressbar(length=len(jobs), label=verb.capitalize(), file=sys.stderr) if show_bar else None
    try:
        previous = signal.signal(signal.SIGTERM, _on_signal)  # SIGTERM cleans up like Ctrl-C
    except ValueError:  # not the main thread (an embedding program): its own handlers stay
        previous = None
    try:
        for outcome in _outcomes(kind, jobs, options, force, workers):
            if outcome.error is None:
                for n in outcome.notes:
                    report.note(outcome.source, n)
                report.detail(f"{_display(outcome.source)} -> {_display(outcome.target)}: {outcome.summary}")
                done += 1
            else:
                report.error(outcome.source, outcome.error)
                failed += 1
            if bar is not None:
                bar.update(1)
    except KeyboardInterrupt as exc:
        # finished files are complete; the one being written must not survive as a temp file
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the sweep short
        batch.remove_partial_outputs(job.target for job in jobs)
        if bar is not None:
            bar.render_finish()
        signum = getattr(exc, "signum", signal.SIGINT)
        click.echo(f"walloc: interrupted ({signal.Signals(signum).name}); finished files are complete, "
                   f"nothing partial was left", err=True)
        sys.exit(128 + signum)  # 130 for Ctrl-C, 143 for SIGTERM, as shells report them
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if bar is not None:
        bar.render_finish()
    if len(jobs) > 1 and not report.quiet:
        tail = f", {failed} failed" if failed else ""
        click.echo(f"walloc: {verb} {done} of {len(jobs)} files{tail}", err=True)
    if not jobs and not report.quiet:
        click.echo("walloc: no input files found", err=True)
    return EXIT_FAILED if failed else 0


def _plan(inputs: tuple[str, ...], output: str | None, recursive: bool, suffix: str,
          accept: Callable[[Path], bool]) -> list[batch.Job]:
    try:
        return batch.plan(inputs, output, recursive, suffix, accept)
    except batch.PlanError as exc:
        raise click.UsageError(str(exc)) from None


def _check_stdout(jobs: list[batch.Job]) -> None:
    if any(j.target == batch.STDIO for j in jobs) and sys.stdout is None:
        raise click.UsageError("standard output is closed; use -o FILE")
    if any(j.target == batch.STDIO for j in jobs) and sys.stdout.isatty():
        raise click.UsageError("refusing to write binary data to a terminal; use -o FILE or redirect stdout")


def dask_client(address: str | None, jobs: list[batch.Job]):
    """The Dask client for --dask ADDRESS (None without it); a cluster that cannot be used is a usage error."""
    if address is None:
        return None
    from . import cluster

    try:
        cluster.check(jobs)
        return cluster.connect(address)
    except cluster.ClusterError as exc:
        raise click.UsageError(str(exc)) from None


dask_option = click.option(
    "--dask", "dask_address", default=None, metavar="ADDRESS",
    help="Run the files on a Dask cluster (tcp://HOST:8786; needs walloc[dask] and the same paths on every "
         "worker). Output is identical to a local run.")


common_options = [
    click.option("-o", "--output", type=str, default=None,
                 help="Output file, directory, or - for stdout. Default: next to each input."),
    click.option("-f", "--force", is_flag=True, help="Overwrite existing output files."),
    click.option("-r", "--recursive", is_flag=True, help="Descend into folders; the tree is mirrored under -o."),
    click.option("--quiet", is_flag=True, help="Print errors only."),
    click.option("-v", "--verbose", count=True, help="Print a line per file."),
    click.option("-j", "--jobs", "workers", type=click.IntRange(1, 256), default=1, show_default=True,
                 help="Files processed in parallel (processes). Output is identical to -j 1."),
]


def with_common_options(f):
    for option in reversed(common_options):
        f = option(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="walloc")
def main() -> None:
    """walloc: learned wavelet compression (WaLLoC) for images and audio."""


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@with_common_options
@click.option("-m", "--model", "model_name", default=None,
              help="Model name (see `walloc models`). Default: rgb-1x for images, stereo-1x for audio.")
@click.option("-q", "--quality", type=click.IntRange(1, 100), default=None,
              help="Quality 1–100, higher = larger and better. Images: default 75; on photos about "
                   "0.11 bpp at 25, 0.66 at 55, 1.7 at 75, 3.2 at 95. Audio: default 50; typical stereo "
                   "music about 12 kbps at 10, 24 at 30, 48 at 50, 96 at 70, 192 at 90.")
@click.option("--bpp", "target_bpp", type=click.FloatRange(0, min_open=True), default=None,
              help="Images, instead of -q: the highest quality whose file stays within this many bits per pixel.")
@click.option("--kbps", "target_kbps", type=click.FloatRange(0, min_open=True), default=None,
              help="Audio, instead of -q: the highest quality whose file stays within this many kbit/s.")
@click.option("--tune", type=click.Choice(["perceptual", "psnr"]), default=None,
              help="Audio: perceptual (default: masking-shaped steps, noise filling, energy-true bands) or "
                   "psnr (uniform steps, no noise: the MSE-optimal latents for PSNR tables and learning).")
@click.option("-e", "--effort", type=click.IntRange(1, 2), default=1, show_default=True,
              help="2: each latent channel searches neighbouring entropy tables (about 1 % smaller, "
                   "several times slower entropy coding).")
@dask_option
def encode(inputs: tuple[str, ...], output: str | None, force: bool, recursive: bool, quiet: bool,
           verbose: int, workers: int, model_name: str | None, quality: int | None,
           target_bpp: float | None, target_kbps: float | None, tune: str | None, effort: int,
           dask_address: str | None = None) -> None:
    """Compress images (PNG, JPEG, WebP, TIFF, ...) and audio (WAV, FLAC, OGG, ...) to .wlc files."""
    from . import media

    if quality is not None and (target_bpp is not None or target_kbps is not None):
        raise click.UsageError("give either --quality or a target (--bpp, --kbps), not both")
    accepted = media.IMAGE_SUFFIXES | media.AUDIO_SUFFIXES
    jobs = _plan(inputs, output, recursive, ".wlc", lambda p: p.suffix.lower() in accepted)
    _check_stdout(jobs)
    options = {"model": model_name, "quality": quality, "bpp": target_bpp, "kbps": target_kbps, "tune": tune,
               "effort": effort, "dask": dask_client(dask_address, jobs)}
    sys.exit(_run("encode", jobs, options, force, workers, Reporter(quiet, verbose)))


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@with_common_options
@click.option("--format", "fmt", default=None, metavar="EXT",
              help="Output format when -o does not name a file: png, jpg, webp, tiff, bmp for images; "
                   "wav, flac, ogg, aiff for audio. Default png / wav.")
@click.option("--pcm", type=click.Choice(["16", "24", "float"]), default="16", show_default=True,
              help="Sample format of decoded WAV/FLAC/AIFF audio.")
@click.option("--max-pixels", type=click.IntRange(1), default=None,
              help="Refuse images larger than this many pixels (default 2^28).")
def decode(inputs: tuple[str, ...], output: str | None, force: bool, recursive: bool, quiet: bool,
           verbose: int, workers: int, fmt: str | None, pcm: str, max_pixels: int | None) -> None:
    """Decompress .wlc files to images (PNG) or audio (WAV), or the format -o / --format names."""
    from . import api

    forced_suffix = "." + fmt.lower().lstrip(".") if fmt else None
    if forced_suffix and forced_suffix not in media_suffixes():
        raise click.UsageError(f"unknown output format {fmt!r}")
    jobs = _plan(inputs, output, recursive, forced_suffix, lambda p: p.suffix.lower() == ".wlc")
    _check_stdout(jobs)
    options = {"suffix": forced_suffix, "max_pixels": max_pixels or api.DEFAULT_MAX_PIXELS, "force": force,
               "subtype": {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}[pcm]}
    sys.exit(_run("decode", jobs, options, force, workers, Reporter(quiet, verbose)))


def media_suffixes() -> set[str]:
    from . import media

    return set(media.OUTPUT_FORMATS) | set(media.AUDIO_OUTPUT_FORMATS)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per file).")
def info(inputs: tuple[str, ...], as_json: bool) -> None:
    """Show what a .wlc file holds: model, size, mode, bytes, bpp, header fields."""
    from . import api

    failed = 0
    for source in inputs:
        try:
            meta = api.info(batch.read_input(source))
        except WallocError as exc:
            Reporter(False, 0).error(source, str(exc))
            failed += 1
            continue
        except OSError as exc:
            Reporter(False, 0).error(source, exc.strerror or str(exc))
            failed += 1
            continue
        if as_json:
            lines = [json.dumps({"file": source, **meta}, sort_keys=True)]
        else:
            lines = [_display(source)] + [f"  {key:15} {meta[key]}" for key in sorted(meta)]
        if not _print_lines(lines):
            sys.exit(EXIT_FAILED)
    sys.exit(EXIT_FAILED if failed else 0)


def _print_lines(lines: list[str]) -> bool:
    """Print to stdout; a closed or full stdout (``info > /dev/full``) is one error line."""
    try:
        if sys.stdout is None:
            raise OSError("standard output is closed")
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()
        return True
    except (OSError, ValueError) as exc:
        Reporter(False, 0).error("standard output", getattr(exc, "strerror", None) or str(exc))
        try:  # the unwritten rest must not fail again, with a traceback, when Python exits
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return False


@main.command()
def models() -> None:
    """List installed models."""
    from .model import ModelError, available_models, load_model

    for name in available_models():
        try:
            loaded = load_model(name)
            cfg = loaded.config
            kind = "quality 1-100" if loaded.has_quality else "one operating point"
            click.echo(f"{name:12} {cfg.modality:6} J={cfg.levels} latents={cfg.latent_channels:<4} "
                       f"{cfg.decoder_kind} decoder, {kind}, weights={cfg.short_hash}")
        except ModelError as exc:
            click.echo(f"{name:12} unusable: {exc}")


@main.command()
@click.argument("directory", metavar="DIR")
@click.option("--codecs", default="walloc,jpeg,webp,avif", show_default=True,
              help="Comma-separated codecs to sweep: walloc, jpeg, webp, avif.")
@click.option("--plot", "plot_path", default=None, metavar="FILE.png",
              help="Draw PSNR and MS-SSIM vs bpp curves (needs matplotlib: pip install 'walloc[bench]').")
@click.option("--json", "json_path", default=None, metavar="FILE",
              help="Write every per-image measurement, the summary and the BD-rates as JSON.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N images (sorted by name).")
def bench(directory: str, codecs: str, plot_path: str | None, json_path: str | None, limit: int | None) -> None:
    """Rate–distortion benchmark on a folder of images: bpp, PSNR, MS-SSIM, speed, BD-rate."""
    from . import benchmark

    report = Reporter(False, 0)
    try:
        names = benchmark.parse_codecs(codecs)
    except benchmark.BenchError as exc:
        raise click.BadParameter(str(exc), param_hint="--codecs") from None
    if plot_path:
        try:
            benchmark.check_plot_target(plot_path)  # before the long run, not after it
        except benchmark.BenchError as exc:
            report.error("--plot", str(exc))
            sys.exit(EXIT_FAILED)
    try:
        job = benchmark.plan(directory, names, limit)
    except benchmark.BenchError as exc:
        report.error(directory, str(exc))
        sys.exit(EXIT_FAILED)
    for note in job.notes:
        click.echo(f"walloc: {note}", err=True)
    warnings: list[str] = []
    with click.progressbar(length=job.steps, label=f"bench {len(job.images)} images", file=sys.stderr,
                           item_show_func=lambda item: item) as bar:
        result = benchmark.run(job, progress=lambda label: bar.update(1, label), warn=warnings.append)
    for message in warnings:
        click.echo(f"walloc: {message}", err=True)
    if not result.measurements:
        report.error(directory, "no image could be measured")
        sys.exit(EXIT_FAILED)
    click.echo(benchmark.format_table(result))
    if json_path:
        benchmark.write_json(result, json_path)
        click.echo(f"walloc: wrote {json_path}", err=True)
    if plot_path:
        benchmark.plot(result, plot_path)
        click.echo(f"walloc: wrote {plot_path}", err=True)
    sys.exit(EXIT_FAILED if result.skipped else 0)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
              add_help_option=False)
@click.pass_context
def train(ctx: click.Context) -> None:
    """Train a model (options: see `walloc train --help`)."""
    from .train import main as train_main

    train_main(list(ctx.args))


# -- walloc latents ------------------------------------------------------------------------------
@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", type=str, default=None,
              help="FILE.npy (one input), FILE.npz (any number), DIR/ (one .npy each) or - (stdout, one input). "
                   "Default: INPUT.npy next to one input, latents.npz for several.")
@click.option("-r", "--recursive", is_flag=True,
              help="Descend into folders: the tree (class folders too) is mirrored under -o DIR/, one .npy per file.")
@click.option("-j", "--jobs", "workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Files processed in parallel (processes), for .npy outputs. Output is identical to -j 1.")
@click.option("--dtype", type=click.Choice(["int8", "int16", "int32", "float32"]), default=None,
              help="Storage type (default int32; float32 with --float). int8 holds rgb-16x latents in a quarter "
                   "of the bytes; a file whose values do not fit is refused, never clipped.")
@click.option("--float", "as_float", is_flag=True,
              help="Write float32 dequantized latents (latents·step, the decoder's input), not int32.")
@click.option("-m", "--model", "model_name", default=None,
              help="Model for images and audio (default rgb-16x / stereo-ms); a .wlc file uses its own.")
@click.option("-q", "--quality", type=click.IntRange(1, 100), default=None,
              help="Image quality 1–100 for quality-ladder models (-m); as in `walloc encode`.")
@click.option("-n", "--skip-existing", is_flag=True,
              help="Skip inputs whose output exists (outputs are only ever written whole: this resumes a run).")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@dask_option
@click.option("--quiet", is_flag=True, help="Print errors only.")
@click.option("-v", "--verbose", count=True, help="Print a line per file (shape, dtype).")
def latents(inputs: tuple[str, ...], output: str | None, recursive: bool, workers: int, dtype: str | None,
            as_float: bool, model_name: str | None, quality: int | None, skip_existing: bool, force: bool,
            dask_address: str | None, quiet: bool, verbose: int) -> None:
    """Write the latents of images, audio or .wlc files as NumPy arrays (.npy / .npz).

    Images and audio go through the encoder; .wlc files are only entropy-decoded
    (no neural decoder, no torch). An image's latents cover it mirror-padded to a
    multiple of 8 pixels (bottom, right); a .npz also holds KEY.meta, a JSON string
    with the original size, padding, model and step.

    A labelled dataset: `walloc latents -r photos/ -o latents/ -j 2 --dtype int8`
    keeps the class folders (photos/cat/1.jpg -> latents/cat/1.npy).
    """
    from . import latents as product

    if as_float and dtype not in (None, "float32"):
        raise click.UsageError("--float writes float32; it cannot be combined with --dtype " + dtype)
    if skip_existing and force:
        raise click.UsageError("give either --skip-existing or --force, not both")
    report = Reporter(quiet, verbose)
    if recursive:
        if output is not None and (output == batch.STDIO or output.lower().endswith((".npy", ".npz"))):
            raise click.UsageError("-r writes one .npy per file: give -o DIR/")
        jobs = _plan(inputs, output, True, ".npy", product.accepts)
    else:
        try:
            plan = product.plan(inputs, output)
        except product.UsageProblem as exc:
            raise click.UsageError(str(exc)) from None
        if plan.archive is not None:
            if dask_address is not None:
                raise click.UsageError("--dask writes one .npy per input: give -o DIR/")
            if plan.archive == batch.STDIO and sys.stdout.isatty():
                raise click.UsageError("refusing to write binary data to a terminal; use -o FILE or redirect stdout")
            if skip_existing and os.path.lexists(plan.archive):
                report.note(plan.archive, "exists; skipped (--skip-existing)")
                sys.exit(0)
            failed = product.run_command(plan, as_float, model_name, quality, force, report, dtype)
            if len(inputs) > 1 and not quiet:
                tail = f", {failed} failed" if failed else ""
                click.echo(f"walloc: latents of {len(inputs) - failed} of {len(inputs)} files{tail}", err=True)
            sys.exit(EXIT_FAILED if failed else 0)
        jobs = [batch.Job(source, target) for source, target in zip(plan.inputs, plan.targets)]
    _check_stdout(jobs)
    if skip_existing:
        jobs, skipped = product.skip_existing(jobs)
        if skipped and not quiet:
            click.echo(f"walloc: skipped {skipped} files whose output exists", err=True)
    options = {"float": as_float, "model": model_name, "quality": quality, "dtype": dtype,
               "skip_existing": skip_existing, "dask": dask_client(dask_address, jobs)}
    sys.exit(_run("latents", jobs, options, force, workers, report))
