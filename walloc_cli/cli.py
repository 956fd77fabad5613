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

from . import __version__, allocator, batch  # noqa: E402
from .errors import WallocError  # noqa: E402

EXIT_FAILED = 1


class Progress:
    """One status line on a terminal — ``walloc: encoding 12/24 files  shots/p12.png`` — that is
    cleared before any other message is printed and drawn again after it, so errors and notes
    never land in the middle of it."""

    CLEAR = "\r\x1b[K"

    def __init__(self, stream, total: int, verb: str) -> None:
        self.stream, self.total, self.verb = stream, total, verb
        self.done, self.current, self.drawn = 0, "", False

    def _width(self) -> int:
        import shutil

        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            columns = shutil.get_terminal_size().columns
        return max(20, columns or 80)  # a terminal that does not say its size: 80

    def draw(self) -> None:
        line = f"walloc: {self.verb} {self.done}/{self.total} files"
        if self.current:
            line += f"  {_one_line(self.current)}"
        width = self._width() - 1  # a full line would wrap, and \r then clears only its last row
        if len(line) > width:
            line = line[: width - 1] + "…"
        self.stream.write(self.CLEAR + line)
        self.stream.flush()
        self.drawn = True

    def update(self, done: int, current: str = "") -> None:
        self.done, self.current = done, current
        self.draw()

    def clear(self) -> None:
        if self.drawn:
            self.stream.write(self.CLEAR)
            self.stream.flush()
            self.drawn = False


class Reporter:
    """Where human-readable output goes, honouring --quiet and -v (and a progress line)."""

    def __init__(self, quiet: bool, verbose: int) -> None:
        self.quiet, self.verbose = quiet, verbose
        self.progress: Progress | None = None

    def _say(self, text: str) -> None:
        shown = self.progress is not None and self.progress.drawn
        if shown:
            self.progress.clear()
        click.echo(_one_line(text), err=True)
        if shown:
            self.progress.draw()

    def error(self, source: str, message: str) -> None:
        self._say(f"walloc: error: {_display(source)}: {message}")

    def note(self, source: str, message: str) -> None:
        if not self.quiet:
            self._say(f"walloc: {_display(source)}: {message}")

    def say(self, message: str) -> None:
        if not self.quiet:
            self._say(f"walloc: {message}")

    def detail(self, message: str) -> None:
        if self.verbose and not self.quiet:
            self._say(message)


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
    skipped: bool = False  # -n: the output existed


class _Skip(Exception):
    """-n: this job's output exists (found once the content chose the extension)."""


def _models(options: dict) -> dict:
    """``-m`` per modality ({"image": name, "audio": name}); tests and embedders may pass "model"."""
    return options.get("models") or {"image": options.get("model"), "audio": options.get("model")}


def _encode_work(job: batch.Job, options: dict) -> tuple[batch.Payload, list[str], str, str]:
    from . import api, media

    quality, bpp, kbps, tune = (options.get(k) for k in ("quality", "bpp", "kbps", "tune"))
    keep = not options.get("strip")
    models = _models(options)
    if job.source != batch.STDIO and Path(job.source).suffix.lower() in media.AUDIO_SUFFIXES:
        # audio is read from its file window by window: an hour of WAV never sits in memory
        result = api.encode_audio(job.source, models.get("audio"), quality, tune, kbps)
        if keep:
            result = api.EncodeResult(api.attach_tags(result.data, media.read_audio_tags(job.source)), result.notes)
        result.notes.extend(api.ignored_options("audio", bpp, kbps, tune))
    else:
        data = batch.read_input(job.source)
        model = models.get(api.input_modality(data, job.source))
        result = api.encode_bytes(data, job.source, model, quality, bpp, options.get("effort", 1), kbps, tune, keep,
                                  options.get("max_pixels"))
    meta = api.info(result.data)
    rate = (f"{meta['kbps']:.1f} kbps" if "kbps" in meta else f"{meta['bits_per_sample']:.3f} bits per sample"
            if "bits_per_sample" in meta else f"{meta['bpp']:.3f} bpp")
    if "quality" in meta:
        rate += f", quality {meta['quality']}"
    return result.data, result.notes, f"{len(result.data)} bytes, {rate}", job.target


def _decode_work(job: batch.Job, options: dict) -> tuple[batch.Payload, list[str], str, str]:
    from . import api, container, media, raster

    data = batch.read_input(job.source)
    forced = options["suffix"]
    modality = api.modality_of(data)
    header = container.unpack(data).header
    default = ".png" if modality == "image" else ".wav"
    if modality == "raster":  # N-band / high-depth: the container type it came in (raster.py)
        default = raster.DEFAULT_SUFFIX.get(header.get("container"), ".tif")
    target = job.resolved(forced or default)
    suffix = forced or (Path(target).suffix if target != batch.STDIO else default) or default
    if job.suffix_from_content:  # the plan could not compare this name with the input: do it now
        if batch.same_file(job.source, target):
            raise WallocError(f"output {target} would overwrite the input")
        if options.get("skip_existing") and os.path.lexists(target):
            raise _Skip(target)
        batch.check_target(target, options["force"])
    keep = not options.get("strip")
    if modality == "raster":
        out = api.decode_raster_file(data, suffix, options["max_pixels"])
        return out, [], f"{len(out)} bytes", target
    if modality == "image":
        media.check_image_output(media.output_format(suffix), header.get("width"), header.get("height"))
        out, notes = api.decode_image_file(data, suffix, options["max_pixels"],
                                           options.get("image_output", media.DEFAULT_OUTPUT), keep)
        return out, notes, f"{len(out)} bytes", target
    # refuse a bad extension, or a rate or channel count the format cannot store, before decoding
    fmt = media.audio_output_format(suffix)
    media.check_audio_output(fmt, header.get("sample_rate"), header.get("channels"))
    subtype = options.get("subtype") or "PCM_16"
    tags = api.file_tags(data) if keep else {}
    lost = media.tags_not_held(fmt, tags)
    notes = [f"{fmt} cannot hold the tags {', '.join(lost)}; not written"] if lost else []

    def write(f) -> None:
        with media.audio_output_tags(tags):
            api.decode_audio_to(data, f, suffix, subtype)

    return write, notes, "audio", target


def _latents_work(job: batch.Job, options: dict) -> tuple[batch.Payload, list[str], str, str]:
    from . import latents

    return latents.job_work(job, options)


WORK = {"encode": _encode_work, "decode": _decode_work, "latents": _latents_work}


def _times(job: batch.Job, options: dict) -> tuple[int, int] | None:
    """The input's access and modification times, for its output (as gzip does), unless --strip."""
    if not options.get("keep_mtime") or options.get("strip") or job.source == batch.STDIO:
        return None
    st = os.stat(job.source)
    return st.st_atime_ns, st.st_mtime_ns


def process(kind: str, job: batch.Job, options: dict, force: bool) -> Outcome:
    """Read, code and write one file; every expected failure becomes a one-line error."""
    try:
        if job.problem:
            raise WallocError(job.problem)
        if job.target != batch.STDIO and not job.suffix_from_content:
            if options.get("skip_existing") and os.path.lexists(job.target):
                return Outcome(job.source, job.target, skipped=True)
            batch.check_target(job.target, force)  # fail before the work
        times = _times(job, options)
        out, notes, summary, target = WORK[kind](job, options)
        if times is None:
            batch.write_atomic(target, out, force)
        else:
            batch.write_atomic(target, out, force, times=times)
        return Outcome(job.source, target, None, tuple(notes), summary)
    except _Skip as skip:
        return Outcome(job.source, str(skip), skipped=True)
    except BrokenPipeError:  # -o - into `head`: the reader has gone, as for any Unix filter
        raise
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
    if fork_is_safe:  # imported here once, so that every forked worker starts with numpy and walloc loaded
        from . import api  # noqa: F401
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
    running = {"encode": "encoding", "decode": "decoding", "latents": "latents of"}[kind]
    failed = done = skipped = 0
    if len(jobs) > 1 and options.get("progress", True) and not report.quiet and _is_terminal(sys.stderr):
        report.progress = Progress(sys.stderr, len(jobs), running)
        report.progress.update(0, _display(jobs[0].source))
    try:
        previous = signal.signal(signal.SIGTERM, _on_signal)  # SIGTERM cleans up like Ctrl-C
    except ValueError:  # not the main thread (an embedding program): its own handlers stay
        previous = None
    try:
        for i, outcome in enumerate(_outcomes(kind, jobs, options, force, workers)):
            if outcome.skipped:
                skipped += 1
                if len(jobs) == 1:
                    report.note(outcome.source, f"skipped: {_display(outcome.target)} exists (-n)")
                else:
                    report.detail(f"{_display(outcome.source)}: skipped, {_display(outcome.target)} exists")
            elif outcome.error is None:
                for n in outcome.notes:
                    report.note(outcome.source, n)
                report.detail(f"{_display(outcome.source)} -> {_display(outcome.target)}: {outcome.summary}")
                done += 1
            else:
                report.error(outcome.source, outcome.error)
                failed += 1
            if report.progress is not None:
                report.progress.update(i + 1, _display(jobs[i + 1].source) if i + 1 < len(jobs) else "")
    except KeyboardInterrupt as exc:
        # finished files are complete; the one being written must not survive as a temp file
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the sweep short
        batch.remove_partial_outputs(job.target for job in jobs)
        _end_progress(report)
        signum = getattr(exc, "signum", signal.SIGINT)
        click.echo(f"walloc: interrupted ({signal.Signals(signum).name}); finished files are complete, "
                   f"nothing partial was left", err=True)
        sys.exit(128 + signum)  # 130 for Ctrl-C, 143 for SIGTERM, as shells report them
    except BrokenPipeError:
        _end_progress(report)
        _broken_pipe()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    _end_progress(report)
    if len(jobs) > 1 and not report.quiet:
        tail = (f", {skipped} skipped (output exists)" if skipped else "") + (f", {failed} failed" if failed else "")
        click.echo(f"walloc: {verb} {done} of {len(jobs)} files{tail}", err=True)
    if not jobs and not report.quiet:
        click.echo("walloc: no input files found", err=True)
    return EXIT_FAILED if failed else 0


def _is_terminal(stream) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False


def _end_progress(report: Reporter) -> None:
    if report.progress is not None:
        report.progress.clear()
        report.progress = None


def _broken_pipe() -> None:
    """The reader of our stdout has gone (``walloc info *.wlc | head -2``): stop quietly with
    128 + SIGPIPE, as ``cat`` does, instead of an error line and a traceback at exit."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's final flush must not fail
    except (OSError, ValueError, AttributeError):
        pass
    sys.exit(128 + signal.SIGPIPE)


def _plan(inputs: tuple[str, ...], output: str | None, recursive: bool, suffix: str | None,
          accept: Callable[[Path], bool], infix: str = "", rejected: list[Path] | None = None) -> list[batch.Job]:
    try:
        return batch.plan(inputs, output, recursive, suffix, accept, infix, rejected)
    except batch.PlanError as exc:
        raise click.UsageError(str(exc)) from None


def _file_output(jobs: list[batch.Job], output: str | None) -> str | None:
    """The -o FILE every job writes to (one input, -o naming a file), or None."""
    if output is None or output == batch.STDIO:
        return None
    return output if any(j.target == output and not j.suffix_from_content for j in jobs) else None


def _check_force(force: bool, skip_existing: bool) -> None:
    if force and skip_existing:
        raise click.UsageError("give either --skip-existing or --force, not both")


def _workers(workers: int) -> int:
    """-j 0: one process per available core (as zstd -T0)."""
    if workers:
        return workers
    from .threads import available_cores

    return available_cores()


def _report_rejected(report: Reporter, rejected: list[Path], what: str) -> None:
    """Files under -r folders that are not walloc's: counted always, listed with -v."""
    if not rejected:
        return
    kinds = sorted({p.suffix.lower() or "(no extension)" for p in rejected})
    shown = ", ".join(kinds[:6]) + (", …" if len(kinds) > 6 else "")
    one = len(rejected) == 1
    report.say(f"skipped {len(rejected)} file{'' if one else 's'} in the folders that {'is' if one else 'are'} "
               f"not {what} ({shown}){'' if report.verbose else '; -v lists ' + ('it' if one else 'them')}")
    for p in rejected:
        report.detail(f"walloc: {p}: not {what}; skipped")


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
                 help="Output file, - for stdout, or a folder: an existing one or a name ending in / "
                      "(several inputs need one, as for cp). Default: next to each input."),
    click.option("-f", "--force", is_flag=True, help="Overwrite existing output files."),
    click.option("-n", "--skip-existing", is_flag=True,
                 help="Skip inputs whose output exists, exit 0 (outputs are only ever written whole: "
                      "this resumes an interrupted run)."),
    click.option("-r", "--recursive", is_flag=True, help="Descend into folders; the tree is mirrored under -o."),
    click.option("--quiet", is_flag=True, help="Print errors only."),
    click.option("-v", "--verbose", count=True, help="Print a line per file."),
    click.option("-j", "--jobs", "workers", type=click.IntRange(0, 256), default=1, show_default=True,
                 help="Files processed in parallel (processes); 0 = one per core. Output is identical to -j 1."),
    click.option("--no-progress", is_flag=True, help="No progress line (it is shown on a terminal for several files)."),
]


def with_common_options(f):
    for option in reversed(common_options):
        f = option(f)
    return f


class _Group(click.Group):
    """Lists commands with their whole first sentence (click cuts them at about 45 characters)."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="walloc")
def main() -> None:
    """walloc: learned wavelet compression (WaLLoC) for images and audio.

    Shell completion (bash): eval "$(_WALLOC_COMPLETE=bash_source walloc)"; zsh and fish: see the README.
    """
    allocator.keep_freed_memory()  # large arrays reused between files, not faulted in again


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@with_common_options
@click.option("-m", "--model", "model_names", multiple=True, metavar="NAME",
              help="Model (see `walloc models`) for the files of its kind; give one image and one audio "
                   "model for a mixed folder. Default: rgb-1x for images, stereo-1x for audio.")
@click.option("-q", "--quality", type=click.IntRange(1, 100), default=None,
              help="Quality 1–100, higher = larger and better. Images: default 75; on photos about "
                   "0.06 bpp at 25, 0.58 at 55, 1.6 at 75, 3.1 at 95. Audio: default 50; typical stereo "
                   "music about 12 kbps at 10, 24 at 30, 48 at 50, 96 at 70, 192 at 90.")
@click.option("--bpp", "target_bpp", type=click.FloatRange(0, min_open=True), default=None,
              help="Images, instead of -q: the highest quality whose file stays within this many bits per pixel.")
@click.option("--kbps", "target_kbps", type=click.FloatRange(0, min_open=True), default=None,
              help="Audio, instead of -q: the highest quality whose file stays within this many kbit/s.")
@click.option("--tune", type=click.Choice(["perceptual", "psnr"]), default=None,
              help="Audio: perceptual (default: masking-shaped steps, noise filling, energy-true bands) or "
                   "psnr (uniform steps, no noise: the MSE-optimal latents for PSNR tables and learning).")
@click.option("-e", "--effort", type=click.IntRange(1, 2), default=1, show_default=True,
              help="1: the first 32 latent channels take whichever neighbouring entropy tables code "
                   "them in the fewest bits; 2: every channel does (about 0.2-0.4 % smaller at q 50 and "
                   "up, a third more encoding work).")
@click.option("--strip", is_flag=True,
              help="Keep no metadata: no ICC profile, EXIF or XMP, no audio tags, and the .wlc gets the "
                   "current time instead of the input's modification time.")
@click.option("--max-pixels", type=click.IntRange(1), default=None,
              help="Refuse images with more pixels, and N-band rasters with more samples, than this "
                   "(default 2^28, what `walloc decode` accepts by default: decode such a file with the "
                   "same --max-pixels).")
@dask_option
def encode(inputs: tuple[str, ...], output: str | None, force: bool, skip_existing: bool, recursive: bool,
           quiet: bool, verbose: int, workers: int, no_progress: bool, model_names: tuple[str, ...],
           quality: int | None, target_bpp: float | None, target_kbps: float | None, tune: str | None, effort: int,
           strip: bool, max_pixels: int | None = None, dask_address: str | None = None) -> None:
    """Compress images (PNG, JPEG, WebP, TIFF, ...) and audio (WAV, FLAC, OGG, ...) to .wlc files.

    N-band and 9–16-bit images (.npy H×W×B arrays, multi-band TIFF, 16-bit PNG/PNM) are coded at
    their depth by nband-1x; for them --bpp counts bits per sample."""
    from . import media, raster

    if quality is not None and (target_bpp is not None or target_kbps is not None):
        raise click.UsageError("give either --quality or a target (--bpp, --kbps), not both")
    _check_force(force, skip_existing)
    models = _resolve_models(model_names)
    _check_model_options(models, quality, target_bpp, target_kbps, tune)
    accepted = media.IMAGE_SUFFIXES | media.AUDIO_SUFFIXES | raster.SUFFIXES
    rejected: list[Path] = []
    jobs = _plan(inputs, output, recursive, ".wlc", lambda p: p.suffix.lower() in accepted, rejected=rejected)
    named = _file_output(jobs, output)
    if named is not None and Path(named).suffix.lower() in accepted:
        raise click.UsageError(f"-o {named}: a .wlc file would get an image or audio name; "
                               f"name it {Path(named).with_suffix('.wlc').name}")
    _check_targets_apply(jobs, target_bpp, target_kbps, tune)
    _check_stdout(jobs)
    report = Reporter(quiet, verbose)
    _report_rejected(report, rejected, "an image or audio format walloc reads")
    options = {"models": models, "quality": quality, "bpp": target_bpp, "kbps": target_kbps, "tune": tune,
               "effort": effort, "strip": strip, "keep_mtime": True, "skip_existing": skip_existing,
               "progress": not no_progress, "dask": dask_client(dask_address, jobs),
               "max_pixels": max_pixels}
    sys.exit(_run("encode", jobs, options, force, _workers(workers), report))


def _resolve_models(names: tuple[str, ...]) -> dict[str, str]:
    """-m NAME (at most one per modality) -> {"image": name, "audio": name}; unknown is a usage error."""
    from .model import ModelError, available_models, load_model

    models: dict[str, str] = {}
    for name in names:
        if name not in available_models():
            known = ", ".join(sorted(available_models())) or "none installed"
            raise click.BadParameter(f"unknown model {name!r} (installed: {known})", param_hint="'-m'")
        try:
            modality = load_model(name).config.modality
        except ModelError as exc:
            raise click.UsageError(str(exc)) from None
        if modality in models and models[modality] != name:
            raise click.UsageError(f"-m {models[modality]} and -m {name} are both {modality} models; "
                                   f"give at most one image and one audio model")
        models[modality] = name
    return models


def _check_model_options(models: dict[str, str], quality: int | None, bpp: float | None, kbps: float | None,
                         tune: str | None) -> None:
    """An option that a chosen model cannot honour stops the run before any work."""
    from .model import load_model

    for modality, name in models.items():
        if load_model(name).has_quality:
            continue
        given = [flag for flag, value, applies in (("-q", quality, True), ("--bpp", bpp, modality == "image"),
                                                   ("--kbps", kbps, modality == "audio"),
                                                   ("--tune", tune, modality == "audio"))
                 if value is not None and applies]
        if given:
            ladder = "rgb-1x" if modality == "image" else "stereo-1x"
            raise click.UsageError(f"model {name} has a single operating point: {', '.join(given)} does not "
                                   f"apply (use {ladder} for a quality ladder)")


def _check_targets_apply(jobs: list[batch.Job], bpp: float | None, kbps: float | None, tune: str | None) -> None:
    """--bpp on nothing but audio, or --kbps / --tune on nothing but images, is a usage error
    (in a mixed batch each file takes the options of its kind, with a note for the others)."""
    from . import media

    names = [j.source for j in jobs if not j.problem]
    if not names or batch.STDIO in names:
        return
    audio = [Path(n).suffix.lower() in media.AUDIO_SUFFIXES for n in names]
    if bpp is not None and all(audio):
        raise click.UsageError("--bpp applies to images, and every input is audio (use --kbps)")
    if (kbps is not None or tune is not None) and not any(audio):
        raise click.UsageError(f"{'--kbps' if kbps is not None else '--tune'} applies to audio, "
                               f"and every input is an image (use --bpp or -q)")


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@with_common_options
@click.option("--format", "fmt", default=None, metavar="EXT",
              help="Output format: png, jpg, webp, tiff, bmp for images; wav, flac, ogg, aiff for audio. "
                   "Default: the extension of -o FILE, else png / wav. It must agree with that extension.")
@click.option("--pcm", type=click.Choice(["16", "24", "float"]), default=None,
              help="Sample format of decoded WAV/FLAC/AIFF audio. Default 16.")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=None,
              help="JPEG output quality 1–100. Default 95 with full-resolution colour (4:4:4); below 90 "
                   "colour is halved (4:2:0), as cjpeg does.")
@click.option("--webp-quality", type=click.IntRange(0, 100), default=None,
              help="Write lossy WebP at this quality 0–100 (method 4). Default: lossless WebP.")
@click.option("--webp-lossless", is_flag=True, help="Write lossless WebP (the default; for scripts that say so).")
@click.option("--max-pixels", type=click.IntRange(1), default=None,
              help="Refuse images larger than this many pixels (default 2^28).")
@click.option("--strip", is_flag=True,
              help="Write no metadata: no ICC profile, EXIF or XMP, no audio tags, and the output gets the "
                   "current time instead of the .wlc file's modification time.")
def decode(inputs: tuple[str, ...], output: str | None, force: bool, skip_existing: bool, recursive: bool,
           quiet: bool, verbose: int, workers: int, no_progress: bool, fmt: str | None, pcm: str | None,
           jpeg_quality: int | None, webp_quality: int | None, webp_lossless: bool, max_pixels: int | None,
           strip: bool) -> None:
    """Decompress .wlc files to images (PNG) or audio (WAV), or the format -o / --format names.

    Without -o, photo.wlc becomes photo.decoded.png (song.wlc: song.decoded.wav), a name
    that never is the original's: decoding next to the original cannot replace it.
    """
    from . import api, media

    forced_suffix = "." + fmt.lower().lstrip(".") if fmt else None
    if forced_suffix and forced_suffix not in media_suffixes():
        raise click.UsageError(f"unknown output format {fmt!r} (images: png, jpg, webp, tiff, bmp; "
                               f"audio: wav, flac, ogg, aiff)")
    _check_force(force, skip_existing)
    jobs = _plan(inputs, output, recursive, forced_suffix, lambda p: p.suffix.lower() == ".wlc",
                 infix=batch.DECODED_INFIX)
    named = _file_output(jobs, output)
    extension = Path(named).suffix.lower() if named else ""
    if extension and extension not in media_suffixes():
        raise click.UsageError(f"-o {named}: walloc does not write {extension} files (images: png, jpg, webp, "
                               f"tiff, bmp; audio: wav, flac, ogg, aiff)")
    if extension and forced_suffix and _format_name(extension) != _format_name(forced_suffix):
        raise click.UsageError(f"--format {fmt} and -o {named} disagree; give one of them")
    out_fmt = _format_name(forced_suffix or extension)  # None: png / wav, chosen by each file's content
    image_output = _image_output(out_fmt, jpeg_quality, webp_quality, webp_lossless)
    if pcm is not None:
        if out_fmt in set(media.OUTPUT_FORMATS.values()):
            raise click.UsageError(f"--pcm applies to audio; the output format is {out_fmt}")
        if out_fmt == "OGG":
            raise click.UsageError("--pcm does not apply to OGG/Vorbis (a lossy format without a sample format)")
        if out_fmt == "FLAC" and pcm == "float":
            raise click.UsageError("FLAC cannot store floating-point samples; use --pcm 16 or 24")
    _check_stdout(jobs)
    options = {"suffix": forced_suffix, "max_pixels": max_pixels or api.DEFAULT_MAX_PIXELS, "force": force,
               "subtype": {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}[pcm or "16"],
               "image_output": image_output, "strip": strip, "keep_mtime": True, "skip_existing": skip_existing,
               "progress": not no_progress}
    sys.exit(_run("decode", jobs, options, force, _workers(workers), Reporter(quiet, verbose)))


def _format_name(suffix: str | None) -> str | None:
    """"PNG", "JPEG", "WAV", ... for an output extension (".jpg" and ".jpeg" alike); None for none."""
    from . import media

    if not suffix:
        return None
    return (media.OUTPUT_FORMATS.get(suffix.lower()) or media.AUDIO_OUTPUT_FORMATS.get(suffix.lower())
            or ("NPY" if suffix.lower() == ".npy" else None) or ("PNM" if suffix.lower() in (".pgm", ".ppm", ".pnm") else None))


def _image_output(out_fmt: str | None, jpeg_quality: int | None, webp_quality: int | None, webp_lossless: bool):
    """The JPEG / WebP options, each refused (exit 2) unless the output is in its format."""
    from . import media

    for flag, given, fmt in (("--jpeg-quality", jpeg_quality is not None, "JPEG"),
                             ("--webp-quality", webp_quality is not None, "WEBP"),
                             ("--webp-lossless", webp_lossless, "WEBP")):
        if given and out_fmt != fmt:
            ext = "jpg" if fmt == "JPEG" else "webp"
            raise click.UsageError(f"{flag} applies to {fmt} output; name it with -o NAME.{ext} or --format {ext}")
    if webp_lossless and webp_quality is not None:
        raise click.UsageError("give either --webp-quality (lossy) or --webp-lossless, not both")
    return media.ImageOutput(jpeg_quality=95 if jpeg_quality is None else jpeg_quality, webp_quality=webp_quality)


def media_suffixes() -> set[str]:
    from . import media, raster

    return set(media.OUTPUT_FORMATS) | set(media.AUDIO_OUTPUT_FORMATS) | set(raster.OUTPUT_SUFFIXES)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per file, one per line).")
@click.option("-r", "--recursive", is_flag=True, help="Descend into folders (their .wlc files).")
def info(inputs: tuple[str, ...], as_json: bool, recursive: bool) -> None:
    """Show what a .wlc file holds: model, size, mode, bytes, bpp, metadata, header fields."""
    from . import api

    failed = 0
    for source, problem in _info_sources(inputs, recursive):
        try:
            if problem:
                raise WallocError(problem)
            meta = api.info(batch.read_input(source))
        except WallocError as exc:
            Reporter(False, 0).error(source, str(exc))
            failed += 1
            continue
        except IsADirectoryError:
            Reporter(False, 0).error(source, "is a directory (use -r to process folders)")
            failed += 1
            continue
        except OSError as exc:
            Reporter(False, 0).error(source, "no such file" if isinstance(exc, FileNotFoundError)
                                     else exc.strerror or str(exc))
            failed += 1
            continue
        if as_json:
            lines = [json.dumps({"file": _display(source), **meta}, sort_keys=True, ensure_ascii=False)]
        else:
            lines = [_one_line(_display(source))] + [f"  {key:15} {_one_line(_info_value(key, meta[key]))}"
                                                     for key in sorted(meta)]
        if not _print_lines(lines):
            sys.exit(EXIT_FAILED)
    sys.exit(EXIT_FAILED if failed else 0)


def _info_sources(inputs: tuple[str, ...], recursive: bool) -> Iterator[tuple[str, str | None]]:
    """Each file to show, with the reason it cannot be when that is known up front."""
    for item in inputs:
        if item != batch.STDIO and recursive and Path(item).is_dir():
            unreadable: list[OSError] = []
            for path in batch._walk(Path(item), lambda p: p.suffix.lower() == ".wlc", unreadable):
                yield str(path), None
            for exc in unreadable:
                yield str(exc.filename or item), f"folder cannot be read ({(exc.strerror or str(exc)).lower()})"
        else:
            yield item, None


def _info_value(key: str, value) -> str:
    """A header value as text: sections with their sizes, lists joined, tags as key=value."""
    if key == "sections" and isinstance(value, dict):
        return ", ".join(f"{name} {size:,} B" for name, size in value.items()) or "none"
    if key == "metadata" and isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_info_value("", v) for v in value)
    return str(value)


def _print_lines(lines: list[str]) -> bool:
    """Print to stdout; a closed or full stdout (``info > /dev/full``) is one error line, and a
    reader that has gone (``walloc info *.wlc | head -2``) ends walloc quietly, as it does ``cat``."""
    try:
        if sys.stdout is None:
            raise OSError("standard output is closed")
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()
        return True
    except BrokenPipeError:
        _broken_pipe()
    except (OSError, ValueError) as exc:
        Reporter(False, 0).error("standard output", getattr(exc, "strerror", None) or str(exc))
        try:  # the unwritten rest must not fail again, with a traceback, when Python exits
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
    return False


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per model, one per line).")
def models(as_json: bool) -> None:
    """List installed models."""
    from .model import DEFAULT_AUDIO_MODEL, DEFAULT_IMAGE_MODEL, ModelError, available_models, load_model

    lines = []
    for name in available_models():
        try:
            loaded = load_model(name)
        except ModelError as exc:
            lines.append(json.dumps({"name": name, "error": str(exc)}) if as_json
                         else f"{name:12} unusable: {exc}")
            continue
        cfg = loaded.config
        if as_json:
            lines.append(json.dumps({"name": name, "modality": cfg.modality, "levels": cfg.levels,
                                     "latent_channels": cfg.latent_channels, "decoder": cfg.decoder_kind,
                                     "quality": bool(loaded.has_quality), "weights": cfg.short_hash,
                                     "default": name in (DEFAULT_IMAGE_MODEL, DEFAULT_AUDIO_MODEL)},
                                    sort_keys=True))
        else:
            kind = "quality 1-100" if loaded.has_quality else "one operating point"
            lines.append(f"{name:12} {cfg.modality:6} J={cfg.levels} latents={cfg.latent_channels:<4} "
                         f"{cfg.decoder_kind} decoder, {kind}, weights={cfg.short_hash}")
    _print_lines(lines)


@main.command()
@click.argument("directory", metavar="DIR")
@click.option("--codecs", default="walloc,jpeg,webp,avif,jxl", show_default=True,
              help="Comma-separated codecs to sweep: walloc, jpeg, webp, avif, jxl (JPEG XL: cjxl / djxl on PATH).")
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
    from .fit.train import main as train_main

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
        if skipped and not jobs:
            sys.exit(0)
    options = {"float": as_float, "model": model_name, "quality": quality, "dtype": dtype,
               "skip_existing": skip_existing, "dask": dask_client(dask_address, jobs)}
    sys.exit(_run("latents", jobs, options, force, workers, report))
