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


def _run(jobs: list[batch.Job], work: Callable[[bytes, batch.Job], tuple[bytes, list[str], str]],
         force: bool, report: Reporter, verb: str) -> int:
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
                if job.target != batch.STDIO and Path(job.target).exists() and not force:
                    raise FileExistsError(f"{job.target} exists (use --force to overwrite)")
                data = batch.read_input(job.source)
                out, notes, summary = work(data, job)
                batch.write_atomic(job.target, out, force)
                for n in notes:
                    report.note(job.source, n)
                report.detail(f"{_display(job.source)} -> {_display(job.target)}: {summary}")
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
    """walloc: learned wavelet compression (WaLLoC) for images."""


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@with_common_options
@click.option("-m", "--model", "model_name", default=None, help="Model name (see `walloc models`).")
def encode(inputs: tuple[str, ...], output: str | None, force: bool, recursive: bool, quiet: bool,
           verbose: int, model_name: str | None) -> None:
    """Compress images (PNG, JPEG, WebP, TIFF, BMP, ...) to .wlc files."""
    from . import api, media

    jobs = _plan(inputs, output, recursive, ".wlc", lambda p: p.suffix.lower() in media.IMAGE_SUFFIXES)
    _check_stdout(jobs)
    name = model_name or api.DEFAULT_IMAGE_MODEL

    def work(data: bytes, job: batch.Job) -> tuple[bytes, list[str], str]:
        result = api.encode_image(data, name)
        meta = api.info(result.data)
        return result.data, result.notes, f"{len(result.data)} bytes, {meta['bpp']:.3f} bpp"

    sys.exit(_run(jobs, work, force, Reporter(quiet, verbose), "encoded"))


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@with_common_options
@click.option("--format", "fmt", default=None, metavar="EXT",
              help="Output format when it cannot be told from -o (png, jpg, webp, tiff, bmp). Default png.")
@click.option("--max-pixels", type=click.IntRange(1), default=None,
              help="Refuse images larger than this many pixels (default 2^28).")
def decode(inputs: tuple[str, ...], output: str | None, force: bool, recursive: bool, quiet: bool,
           verbose: int, fmt: str | None, max_pixels: int | None) -> None:
    """Decompress .wlc files to images (PNG unless -o/--format says otherwise)."""
    from . import api, media

    default_suffix = "." + (fmt or "png").lower().lstrip(".")
    try:
        media.output_format(default_suffix)
    except WallocError as exc:
        raise click.UsageError(str(exc)) from None
    jobs = _plan(inputs, output, recursive, default_suffix, lambda p: p.suffix.lower() == ".wlc")
    _check_stdout(jobs)
    limit = max_pixels or api.DEFAULT_MAX_PIXELS

    def work(data: bytes, job: batch.Job) -> tuple[bytes, list[str], str]:
        suffix = Path(job.target).suffix if job.target != batch.STDIO and not fmt else default_suffix
        out = api.decode_to_bytes(data, suffix or default_suffix, limit)
        return out, [], f"{len(out)} bytes"

    sys.exit(_run(jobs, work, force, Reporter(quiet, verbose), "decoded"))


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
