"""File plumbing for the CLI: which output goes where, and writing it safely.

Kept apart from :mod:`walloc_cli.cli` so the rules (mirrored trees, collision
checks, never overwriting without ``--force``, temp-file-then-rename) are plain
functions that tests can call without a terminal.
"""
from __future__ import annotations

import io
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Union

STDIO = "-"


class PlanError(Exception):
    """The request as a whole cannot be carried out (nothing has been written)."""


@dataclass(frozen=True)
class Job:
    source: str       # a path, or "-" for stdin
    target: str       # a path, or "-" for stdout
    problem: str | None = None  # set when this one input cannot be processed at all
    suffix_from_content: bool = False  # target lacks its extension: the content decides (.png / .wav)

    def resolved(self, suffix: str) -> str:
        """The target path, with ``suffix`` appended when the content decides it."""
        return self.target + suffix if self.suffix_from_content else self.target


def _walk(root: Path, accept: Callable[[Path], bool]) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if accept(p):
                found.append(p)
    return found


def plan(inputs: Iterable[str], output: str | None, recursive: bool, new_suffix: str | None,
         accept: Callable[[Path], bool]) -> list[Job]:
    """Map inputs to outputs (``new_suffix=None``: the extension is chosen per file later).

    * no ``-o``: next to each input, suffix replaced (stdin goes to stdout);
    * ``-o -``: stdout, for exactly one input;
    * ``-o DIR`` (existing directory, trailing slash, several inputs, or ``-r``):
      each output inside DIR; with ``-r`` the tree under each input folder is mirrored;
    * ``-o FILE``: exactly one input.
    """
    inputs = list(inputs)
    expanded: list[tuple[str, Path | None]] = []  # (source, path relative to an input folder)
    jobs_with_problems: list[Job] = []
    for item in inputs:
        if item == STDIO:
            expanded.append((STDIO, None))
            continue
        p = Path(item)
        if p.is_dir():
            if not recursive:
                jobs_with_problems.append(Job(item, "", "is a directory (use -r to process folders)"))
                continue
            for f in _walk(p, accept):
                expanded.append((str(f), f.relative_to(p)))
        else:
            expanded.append((item, None))

    to_dir = output is not None and output != STDIO and (
        Path(output).is_dir() or output.endswith(os.sep) or len(inputs) > 1 or recursive
    )
    if output == STDIO and len(expanded) + len(jobs_with_problems) != 1:
        raise PlanError("-o - (stdout) takes exactly one input")
    if output is not None and not to_dir and output != STDIO and len(expanded) > 1:
        raise PlanError(f"{output}: several inputs need an output directory")

    jobs: list[Job] = list(jobs_with_problems)
    for source, relative in expanded:
        if output == STDIO or (output is None and source == STDIO):
            target = STDIO
        elif source == STDIO and to_dir:
            raise PlanError("stdin input needs -o FILE or -o -")
        elif to_dir:
            rel = relative if relative is not None else Path(Path(source).name)
            target = str(Path(output) / rel.with_suffix(new_suffix or ""))
        elif output is not None:
            jobs.append(Job(source, output))
            continue
        else:
            target = str(Path(source).with_suffix(new_suffix or ""))
        jobs.append(Job(source, target, suffix_from_content=new_suffix is None and target != STDIO))

    seen: dict[str, str] = {}
    for job in jobs:
        if job.problem or job.target == STDIO:
            continue
        key = os.path.realpath(job.target)  # without extension when content decides: still unique per stem
        if key in seen:
            raise PlanError(f"{seen[key]} and {job.source} would both be written to {job.target}")
        seen[key] = job.source
        if job.source != STDIO and os.path.realpath(job.source) == key:
            raise PlanError(f"{job.source}: output would overwrite the input")
    return jobs


def read_input(source: str) -> bytes:
    if source == STDIO:
        return sys.stdin.buffer.read()
    with open(source, "rb") as f:
        return f.read()


Payload = Union[bytes, Callable[[BinaryIO], None]]


def write_atomic(target: str, payload: Payload, force: bool) -> None:
    """Write bytes, or let a writer function fill the file, via a temporary file and a rename.

    An interrupted run leaves either the complete old state or the complete new
    file, never a partial one; an existing file is replaced only with ``force``.
    """
    if target == STDIO:
        if callable(payload):  # writers may seek (WAV headers): buffer for a pipe
            buf = io.BytesIO()
            payload(buf)
            payload = buf.getvalue()
        sys.stdout.buffer.write(payload)
        sys.stdout.buffer.flush()
        return
    path = Path(target)
    if path.exists() and not force:
        raise FileExistsError(f"{target} exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w+b") as f:
            if callable(payload):
                payload(f)
            else:
                f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644 & ~_umask())
        if not force and path.exists():  # appeared while we worked
            raise FileExistsError(f"{target} exists (use --force to overwrite)")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def remove_partial_outputs(targets: Iterable[str]) -> int:
    """Delete temporary files that :func:`write_atomic` left for ``targets``; returns how many.

    :func:`write_atomic` removes its own temporary file when interrupted, but a
    signal can land in the few bytecodes between creating the file and entering
    its ``try`` (or inside the cleanup itself), and a worker process killed by
    Ctrl-C may not clean up at all.  The CLI therefore sweeps once more after an
    interrupted batch, matching exactly the names ``mkstemp`` gives our temps.
    """
    removed = 0
    for target in targets:
        if target == STDIO or not target:
            continue
        path = Path(target)
        # ".NAME[.suffix].XXXXXXXX.part": the suffix is there when the content chose it
        pattern = re.compile(re.escape(f".{path.name}") + r"(\.[^./]+)?\.[a-z0-9_]{8}\.part")
        try:
            candidates = list(path.parent.iterdir())
        except OSError:
            continue
        for leftover in candidates:
            if pattern.fullmatch(leftover.name):
                try:
                    leftover.unlink()
                    removed += 1
                except OSError:
                    pass
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
