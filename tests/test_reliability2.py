"""Regression tests for issue #11 (reliability round 2), one section per item.

Every failure here is injected at a chosen moment (a file object that fills up after
N bytes, a hook that runs between two system calls, a signal sent by the code under
test itself), so nothing depends on timing.
"""
from __future__ import annotations

import errno
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from walloc_cli import api, batch, cli, container, media
from walloc_cli.cli import main
from walloc_cli.errors import WallocError

DATA = Path(__file__).parent / "data"
WALLOC = [sys.executable, "-m", "walloc_cli"]


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def one_error_line(result, name: str) -> str:
    """The run failed with exactly one ``walloc: error: NAME: ...`` line and no traceback."""
    text = result.stderr if hasattr(result, "exit_code") else result.stderr.decode()
    lines = [line for line in text.splitlines() if line.strip()]
    assert "Traceback" not in text, text
    errors = [line for line in lines if line.startswith("walloc: error:")]
    assert len(errors) == 1 and name in errors[0], text
    return errors[0]


def wav_bytes(rate: int, channels: int = 2, frames: int = 600, subtype: str = "PCM_16") -> bytes:
    rng = np.random.default_rng(rate + channels)
    buf = io.BytesIO()
    soundfile.write(buf, rng.uniform(-0.3, 0.3, (frames, channels)), rate, subtype=subtype, format="WAV")
    return buf.getvalue()


def reseal_header(data: bytes, **changes) -> bytes:
    """The same file with header fields changed and a valid CRC (the parser goes deeper)."""
    box = container.unpack(data)
    header = {**box.header, **changes}
    return container.pack(header, box.sections)


@pytest.fixture(scope="module")
def audio_wlc() -> bytes:
    return api.encode_audio(wav_bytes(44100)).data


# -- 1. OGG above 200 kHz: libvorbis crashed the process ----------------------------------------
def test_ogg_above_192khz_is_refused_before_libvorbis_runs(tmp_path):
    wlc = tmp_path / "x.wlc"
    wlc.write_bytes(api.encode_audio(wav_bytes(384_000)).data)
    # a real process: if the check regressed, the crash must not take pytest with it
    done = subprocess.run(WALLOC + ["decode", str(wlc), "-o", str(tmp_path / "x.ogg")], capture_output=True)
    assert done.returncode == 1, done
    line = one_error_line(done, "x.wlc")
    assert "192,000 Hz" in line and "384,000" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.wlc"]  # no output, no .part
    with pytest.raises(media.MediaError, match="192,000"):
        api.decode_audio(wlc.read_bytes(), ".ogg")  # the library refuses too, not only the CLI


def test_every_output_format_states_its_limits():
    for fmt, rate, channels, limit in [("OGG", 192_001, 1, "192,000 Hz"), ("FLAC", 655_351, 1, "655,350 Hz"),
                                       ("FLAC", 44100, 9, "8 channels"), ("WAV", 1 << 31, 1, "2,147,483,647 Hz"),
                                       ("AIFF", 1 << 30, 1, "1,073,741,823 Hz")]:
        with pytest.raises(media.MediaError, match=limit):
            media.AudioSink(io.BytesIO(), fmt, rate, channels)
    media.AudioSink(io.BytesIO(), "OGG", 192_000, 2).close()  # the limits themselves work
    media.AudioSink(io.BytesIO(), "FLAC", 655_350, 8).close()
