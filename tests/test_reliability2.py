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


# -- 2. Decompression bomb in the default model (rgb-1x) -----------------------------------------
def test_tiny_rgb1x_file_announcing_a_huge_image_is_refused_at_once(small_path):
    box = container.unpack(api.encode_image(small_path.read_bytes(), quality=1).data)
    header = {**box.header, "width": 16384, "height": 16384, "pad": [0, 0], "latent_shape": [192, 2048, 2048]}
    bomb = container.pack(header, box.sections)
    assert len(bomb) < 400
    with pytest.raises(WallocError, match="payload too short"):
        api.decode_image(bomb)  # before: 4 minutes and 4.5 GB
    with pytest.raises(WallocError, match="payload too short"):
        api.file_latents(bomb)


def test_the_payload_bound_never_refuses_a_real_file():
    """The bound is a true minimum: the flattest image at the lowest quality still decodes."""
    from .conftest import png_bytes
    from PIL import Image

    flat = Image.fromarray(np.full((256, 384, 3), 128, np.uint8))
    for quality in (1, 100):
        data = api.encode_image(png_bytes(flat), quality=quality).data
        assert api.decode_image(data).rgb.shape == (256, 384, 3)


# -- 3. Disk full while writing audio ----------------------------------------------------------
class FillsUp:
    """A file whose disk is full after ``room`` bytes (everything else is the real file)."""

    def __init__(self, f, room: int) -> None:
        self._f, self._room = f, room

    def write(self, data) -> int:
        if self._f.tell() + len(data) > self._room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG", "AIFF"])
def test_disk_full_inside_the_audio_writer_is_an_oserror(fmt, capfd):
    samples = np.random.default_rng(1).uniform(-0.5, 0.5, (30000, 2))
    whole = io.BytesIO()
    sink = media.AudioSink(whole, fmt, 44100, 2)
    sink.write(samples)
    sink.close()
    size = len(whole.getvalue())
    for room in (0, 40, size // 3, size - 8):  # in the header, in the samples, at the very end
        with pytest.raises(OSError) as caught:
            sink = media.AudioSink(FillsUp(io.BytesIO(), room), fmt, 44100, 2)
            try:
                sink.write(samples[:10000])
                sink.write(samples[10000:])
            finally:
                sink.close()
        assert caught.value.errno == errno.ENOSPC, (fmt, room)
    assert "Traceback" not in capfd.readouterr().err  # cffi printed callback tracebacks before


@pytest.mark.parametrize("suffix", [".flac", ".wav"])
def test_disk_full_while_decoding_audio_fails_and_leaves_nothing(tmp_path, monkeypatch, audio_wlc, suffix):
    (tmp_path / "x.wlc").write_bytes(audio_wlc)
    real_fdopen = os.fdopen
    monkeypatch.setattr(batch.os, "fdopen", lambda fd, mode="r": FillsUp(real_fdopen(fd, mode), 1000))
    r = run("decode", str(tmp_path / "x.wlc"), "-o", str(tmp_path / f"x{suffix}"))
    assert r.exit_code == 1
    assert "No space left on device" in one_error_line(r, "x.wlc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.wlc"]


def test_written_audio_is_read_back_before_it_counts():
    class Forgetful(io.BytesIO):  # a file system that drops bytes and says it wrote them all
        def write(self, data):
            super().write(data[: len(data) // 2] if self.tell() > 2000 else data)
            return len(data)

    sink = media.AudioSink(Forgetful(), "FLAC", 44100, 2)
    sink.write(np.random.default_rng(2).uniform(-0.5, 0.5, (20000, 2)))
    with pytest.raises(WallocError, match="does not read back"):
        sink.close()
