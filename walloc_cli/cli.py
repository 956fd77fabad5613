"""``walloc`` command line: a thin click layer over :mod:`walloc_cli.api`.

Conventions (as cwebp / cjxl / ffmpeg users expect): messages on stderr, data
on stdout only when asked with ``-o -``; exit 0 when everything worked, 1 when
some file failed (the others are still processed), 2 for usage errors.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

import click

from . import __version__, batch
from .errors import WallocError

EXIT_FAILED = 1


class Reporter:
    """Where human-readable output goes, honouring --quiet and -v."""

    def __init__(self, quiet: bool, verbose: int) -> None:
        self.quiet, self.verbose = quiet, verbose

    def error(self, source: str, message: str) -> None:
        click.echo(f"walloc: error: {_display(source)}: {message}", err=True)

    def note(self, source: str, message: str) -> None:
        if not self.quiet:
            click.echo(f"walloc: {_display(source)}: {message}", err=True)

    def detail(self, message: str) -> None:
        if self.verbose and not self.quiet:
            click.echo(message, err=True)


def _display(source: str) -> str:
    return "<stdin>" if source == batch.STDIO else source


Work = Callable[[bytes, batch.Job], tuple[batch.Payload, list[str], str, str]]


def _run(jobs: list[batch.Job], work: Work, force: bool, report: Reporter, verb: str) -> int:
    """Process every job, continuing past failures; returns the exit code."""
    failed = 0
    done = 0
    show_bar = len(jobs) > 1 and sys.stderr.isatty() and not report.quiet and not report.verbose
    bar = click.progressbar(length=len(jobs), label=verb.capitalize(), file=sys.stderr) if show_bar else None
    try:
        for job in jobs:
            try:
                if job.problem:
                    raise WallocError(job.problem)
                known_target = job.target != batch.STDIO and not job.suffix_from_content
                if known_target and Path(job.target).exists() and not force:  # fail before the work
                    raise FileExistsError(f"{job.target} exists (use --force to overwrite)")
                data = batch.read_input(job.source)
                out, notes, summary, target = work(data, job)
                batch.write_atomic(target, out, force)
                for n in notes:
                    report.note(job.source, n)
                report.detail(f"{_display(job.source)} -> {_display(target)}: {summary}")
                done += 1
            except (WallocError, FileExistsError) as exc:
                report.error(job.source, str(exc))
                failed += 1
            except FileNotFoundError:
                report.error(job.source, "no such file")
                failed += 1
            except IsADirectoryError:
                report.error(job.source, "is a directory (use -r to process folders)")
                failed += 1
            except PermissionError as exc:
                report.error(job.source, f"permission denied ({exc.filename})")
                failed += 1
            except OSError as exc:
                report.error(job.source, f"{exc.strerror or exc}")
                failed += 1
            if bar is not None:
                bar.update(1)
    finally:
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
    if any(j.target == batch.STDIO for j in jobs) and sys.stdout.isatty():
        raise click.UsageError("refusing to write binary data to a terminal; use -o FILE or redirect stdout")


common_options = [
    click.option("-o", "--output", type=str, default=None,
                 help="Output file, directory, or - for stdout. Default: next to each input."),
    click.option("-f", "--force", is_flag=True, help="Overwrite existing output files."),
    click.option("-r", "--recursive", is_flag=True, help="Descend into folders; the tree is mirrored under -o."),
    click.option("--quiet", is_flag=True, help="Print errors only."),
    click.option("-v", "--verbose", count=True, help="Print a line per file."),
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
              help="Model name (see `walloc models`). Default: rgb-16x for images, stereo-ms for audio.")
def encode(inputs: tuple[str, ...], output: str | None, force: bool, recursive: bool, quiet: bool,
           verbose: int, model_name: str | None) -> None:
    """Compress images (PNG, JPEG, WebP, TIFF, ...) and audio (WAV, FLAC, OGG, ...) to .wlc files."""
    from . import api, media

    accepted = media.IMAGE_SUFFIXES | media.AUDIO_SUFFIXES
    jobs = _plan(inputs, output, recursive, ".wlc", lambda p: p.suffix.lower() in accepted)
    _check_stdout(jobs)

    def work(data: bytes, job: batch.Job) -> tuple[batch.Payload, list[str], str, str]:
        result = api.encode_bytes(data, job.source, model_name)
        meta = api.info(result.data)
        rate = f"{meta['kbps']:.1f} kbps" if "kbps" in meta else f"{meta['bpp']:.3f} bpp"
        return result.data, result.notes, f"{len(result.data)} bytes, {rate}", job.target

    sys.exit(_run(jobs, work, force, Reporter(quiet, verbose), "encoded"))


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
           verbose: int, fmt: str | None, pcm: str, max_pixels: int | None) -> None:
    """Decompress .wlc files to images (PNG) or audio (WAV), or the format -o / --format names."""
    from . import api, media

    forced_suffix = "." + fmt.lower().lstrip(".") if fmt else None
    if forced_suffix and forced_suffix not in media_suffixes():
        raise click.UsageError(f"unknown output format {fmt!r}")
    jobs = _plan(inputs, output, recursive, forced_suffix, lambda p: p.suffix.lower() == ".wlc")
    _check_stdout(jobs)
    limit = max_pixels or api.DEFAULT_MAX_PIXELS
    subtype = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}[pcm]

    def work(data: bytes, job: batch.Job) -> tuple[batch.Payload, list[str], str, str]:
        modality = api.modality_of(data)
        default = ".png" if modality == "image" else ".wav"
        target = job.resolved(forced_suffix or default)
        suffix = forced_suffix or (Path(target).suffix if target != batch.STDIO else default) or default
        if modality == "image":
            out = api.decode_to_bytes(data, suffix, limit)
            return out, [], f"{len(out)} bytes", target
        media.audio_output_format(suffix)  # refuse a bad extension before decoding
        return (lambda f: api.decode_audio_to(data, f, suffix, subtype)), [], "audio", target

    sys.exit(_run(jobs, work, force, Reporter(quiet, verbose), "decoded"))


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
            click.echo(json.dumps({"file": source, **meta}, sort_keys=True))
            continue
        click.echo(_display(source))
        for key in sorted(meta):
            click.echo(f"  {key:15} {meta[key]}")
    sys.exit(EXIT_FAILED if failed else 0)


@main.command()
def models() -> None:
    """List installed models."""
    from .model import ModelError, available_models, load_model

    for name in available_models():
        try:
            cfg = load_model(name).config
            click.echo(f"{name:12} {cfg.modality:6} J={cfg.levels} latents={cfg.latent_channels} "
                       f"weights={cfg.short_hash}")
        except ModelError as exc:
            click.echo(f"{name:12} unusable: {exc}")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
              add_help_option=False)
@click.pass_context
def train(ctx: click.Context) -> None:
    """Train a model (options: see `walloc train --help`)."""
    from .train import main as train_main

    train_main(list(ctx.args))
