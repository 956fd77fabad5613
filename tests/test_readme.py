"""The README runs: its examples, pasted in order into an empty folder that holds the sample
files they name, all work (issue #12: "A README that runs").

Every fenced shell block (no language, or sh / bash / console) is split into commands, run
one by one with bash in document order, in one folder, with `walloc` being this checkout's.
Python blocks run in the same folder with this interpreter.  Only what needs something
outside the folder is skipped, by the rules in SKIP, and the test says how much it ran.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import soundfile
from PIL import Image

ROOT = Path(__file__).parent.parent
DATA = Path(__file__).parent / "data"

SHELL = {"", "sh", "bash", "shell", "console"}
# (pattern, why it cannot run in a scratch folder)
SKIP = [
    (re.compile(r"^make\b"), "acts on the checkout (installs, trains, benchmarks)"),
    (re.compile(r"\.\./shared/data|\bdata/audio\b"), "needs the project's data sets"),
    (re.compile(r"--dask\b|\bdask[- ](scheduler|worker)\b"), "needs a Dask cluster"),
    (re.compile(r"\bpip install\b"), "needs the network"),
]


def blocks(text: str) -> list[tuple[int, str, str]]:
    """(line number, language, code) of every fenced block."""
    found = []
    for match in re.finditer(r"^```([\w+-]*)[ \t]*\n(.*?)^```[ \t]*$", text, re.M | re.S):
        found.append((text.count("\n", 0, match.start()) + 2, match.group(1).lower(), match.group(2)))
    return found


def shell_commands(code: str, first_line: int) -> list[tuple[int, str]]:
    """Commands of a shell block: continuation lines joined, blank and comment lines left out."""
    commands, pending, start = [], "", first_line
    for offset, line in enumerate(code.splitlines()):
        if not pending:
            start = first_line + offset
        pending += line
        if line.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending.strip() and not pending.lstrip().startswith("#"):
            commands.append((start, pending.strip()))
        pending = ""
    return commands


def skip_reason(command: str) -> str | None:
    return next((why for pattern, why in SKIP if pattern.search(command)), None)


def sample_files(folder: Path) -> None:
    """The files the README's examples name, made from tests/data (small.png, music.flac)."""
    small = Image.open(DATA / "small.png").convert("RGB")
    small.save(folder / "photo.png")
    small.save(folder / "photo.jpg", quality=92)
    for name in ("shots/a.png", "shots/b.png", "album/cover.png"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / "photo.png", folder / name)
    for name in ("photos/cat/1.jpg", "photos/dog/2.jpg"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / "photo.jpg", folder / name)
    shutil.copy(DATA / "music.flac", folder / "song.flac")
    samples, rate = soundfile.read(DATA / "music.flac", frames=44100)
    soundfile.write(folder / "track.wav", samples, rate, subtype="PCM_16")
    shutil.copy(folder / "song.flac", folder / "album" / "track.flac")


def walloc_on_path(folder: Path) -> dict[str, str]:
    """An environment whose `walloc` (and `python`) are this checkout's, whatever is installed."""
    bin_dir = folder / ".bin"
    bin_dir.mkdir()
    shim = bin_dir / "walloc"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m walloc_cli "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    (bin_dir / "python").symlink_to(sys.executable)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    env.pop("WALLOC_WEIGHTS", None)
    return env


def test_readme_examples_run_in_order_in_an_empty_folder(tmp_path):
    folder = tmp_path / "here"
    folder.mkdir()
    sample_files(folder)
    env = walloc_on_path(tmp_path)
    ran, skipped, failures = 0, [], []
    for first_line, language, code in blocks((ROOT / "README.md").read_text()):
        if language in SHELL:
            steps = [(line, command, ["bash", "-c", "set -o pipefail\n" + command])
                     for line, command in shell_commands(code, first_line)]
        elif language == "python":
            steps = [(first_line, code.strip().splitlines()[0] + " …", [sys.executable, "-c", code])]
        else:
            continue
        for line, shown, argv in steps:
            why = skip_reason(shown if language in SHELL else code)
            if why:
                skipped.append(f"README.md:{line}: {shown}  ({why})")
                continue
            done = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=300,
                                  stdin=subprocess.DEVNULL)
            ran += 1
            if done.returncode != 0:
                failures.append(f"README.md:{line}: {shown}\n  exit {done.returncode}: {done.stderr.strip()[-600:]}")
    assert not failures, "\n".join(failures)
    assert ran >= 30, (ran, skipped)  # the examples really ran; not passed by skipping them
