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


# -- 4. -o onto a device, FIFO or symbolic link ------------------------------------------------
@pytest.fixture
def image_wlc(tmp_path, small_path) -> Path:
    wlc = tmp_path / "x.wlc"
    wlc.write_bytes(api.encode_image(small_path.read_bytes()).data)
    return wlc


def test_force_onto_a_character_device_writes_into_it_and_keeps_the_node(image_wlc, tmp_path):
    """`-o /dev/null --force` as root replaced /dev/null with a regular file.  Tested on a
    private node with /dev/null's device numbers, so a regression cannot break the machine."""
    import stat

    node = tmp_path / "null.png"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError):
        pytest.skip("creating a device node needs CAP_MKNOD")
    before = os.stat(node)
    r = run("decode", str(image_wlc), "-o", str(node))
    assert r.exit_code == 1 and "--force" in one_error_line(r, "x.wlc")
    r = run("decode", str(image_wlc), "-o", str(node), "--force")
    assert r.exit_code == 0, r.output
    after = os.lstat(node)
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null.png", "x.wlc"]


def test_force_onto_a_fifo_writes_into_it(image_wlc, tmp_path):
    import stat

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    r = run("decode", str(image_wlc), "-o", str(fifo))
    assert r.exit_code == 1 and "exists" in one_error_line(r, "x.wlc")
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader is there, so opening to write does not block
    try:
        r = run("decode", str(image_wlc), "-o", str(fifo), "--force")
        assert r.exit_code == 0, r.output
        received = os.read(reader, 1 << 20)
    finally:
        os.close(reader)
    assert received[:8] == b"\x89PNG\r\n\x1a\n"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.png", "x.wlc"]


def test_symbolic_links_are_written_through_and_kept(image_wlc, tmp_path):
    real = tmp_path / "real.png"
    real.write_bytes(b"old")
    link = tmp_path / "link.png"
    link.symlink_to(real)
    r = run("decode", str(image_wlc), "-o", str(link))
    assert r.exit_code == 1 and real.read_bytes() == b"old"
    assert run("decode", str(image_wlc), "-o", str(link), "--force").exit_code == 0
    assert link.is_symlink() and real.read_bytes()[:4] == b"\x89PNG"


def test_dangling_symbolic_link_needs_force(image_wlc, tmp_path):
    link = tmp_path / "dangling.png"
    link.symlink_to(tmp_path / "nowhere.png")
    r = run("decode", str(image_wlc), "-o", str(link))
    assert r.exit_code == 1 and "dangling" in one_error_line(r, "x.wlc")
    assert link.is_symlink() and not (tmp_path / "nowhere.png").exists()  # before: the link was replaced
    assert run("decode", str(image_wlc), "-o", str(link), "--force").exit_code == 0
    assert link.is_symlink() and (tmp_path / "nowhere.png").read_bytes()[:4] == b"\x89PNG"


# -- 5. A .wlc whose name has another extension ------------------------------------------------
def test_decoding_a_wlc_named_like_its_output_never_overwrites_it(tmp_path, small_path, audio_wlc):
    disguised = tmp_path / "photo.png"
    disguised.write_bytes(api.encode_image(small_path.read_bytes()).data)
    song = tmp_path / "m.wav"
    song.write_bytes(audio_wlc)
    for path in (disguised, song):
        before = path.read_bytes()
        r = run("decode", str(path), "-o", f"{tmp_path}/", "--force")  # into its own folder: its own name
        assert r.exit_code == 1 and "overwrite the input" in one_error_line(r, path.name)
        assert path.read_bytes() == before
        assert run("decode", str(path)).exit_code == 0  # by default NAME.decoded.EXT, beside it
        assert path.read_bytes() == before and path.with_name(path.stem + ".decoded" + path.suffix).exists()
    hard = tmp_path / "hard.wlc"
    os.link(disguised, hard)  # the same file under another name
    r = run("decode", str(hard), "-o", str(disguised), "--force")
    assert r.exit_code == 2 and "overwrite the input" in r.stderr


# -- 6. Two walloc processes writing the same name ---------------------------------------------
def test_a_file_published_by_another_process_meanwhile_is_never_replaced(tmp_path, monkeypatch):
    """The other writer publishes between our last check and our rename: we must lose, cleanly."""
    target = tmp_path / "x.wlc"
    real_link, real_replace = os.link, os.replace

    def other_process_wins(real):
        def call(src, dst, *args, **kwargs):
            if Path(dst) == target and not target.exists():
                target.write_bytes(b"theirs")
            return real(src, dst, *args, **kwargs)
        return call

    monkeypatch.setattr(os, "link", other_process_wins(real_link))
    monkeypatch.setattr(os, "replace", other_process_wins(real_replace))
    with pytest.raises(FileExistsError):
        batch.write_atomic(str(target), b"ours", force=False)
    assert target.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.wlc"]


def test_publishing_without_hard_links_still_never_replaces(tmp_path, monkeypatch):
    target = tmp_path / "x.wlc"

    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    batch.write_atomic(str(target), b"first", force=False)
    assert target.read_bytes() == b"first"
    target.unlink()
    target.write_bytes(b"theirs")  # appeared after our check
    with pytest.raises(FileExistsError):
        batch._publish(*_temporary(tmp_path, b"ours"), str(target), False)
    assert target.read_bytes() == b"theirs"


def _temporary(folder: Path, data: bytes) -> tuple[str, Path]:
    tmp = folder / ".x.wlc.abcdefgh.walloc.part"
    tmp.write_bytes(data)
    return str(tmp), folder / "x.wlc"


# -- 13. Smaller: messages that name the right thing -------------------------------------------
def test_permission_error_names_the_target_not_the_temporary(tmp_path, monkeypatch, image_wlc):
    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".y.png.abcdefgh.walloc.part"))

    monkeypatch.setattr(batch.tempfile, "mkstemp", refused)
    r = run("decode", str(image_wlc), "-o", str(tmp_path / "y.png"))
    line = one_error_line(r, "x.wlc")
    assert r.exit_code == 1 and f"permission denied ({tmp_path / 'y.png'})" in line and ".part" not in line


def test_output_folder_that_is_a_file_is_named(tmp_path, image_wlc):
    (tmp_path / "afile").write_text("x")
    r = run("decode", str(image_wlc), "-o", str(tmp_path / "afile" / "x.png"))
    line = one_error_line(r, "x.wlc")
    assert r.exit_code == 1 and "afile is a file, not a folder" in line and "Errno" not in line


# -- 7. Signals: SIGTERM like Ctrl-C, workers die with their parent, stale temporaries swept -----
# The script runs `walloc encode -j 2` over a folder; the worker handling the third file
# records its pid, sends the chosen signal to the walloc process, and then waits forever:
# only the fix (the parent killing its workers, or the kernel's parent-death signal) ends it.
SIGNAL_SCRIPT = r"""
import os, signal, sys
from walloc_cli import cli

real = cli.process
def process(kind, job, options, force):
    if job.source.endswith("img2.png"):
        with open(sys.argv[1], "w") as f:
            f.write(str(os.getpid()))
        os.kill(os.getppid(), int(sys.argv[2]))
        while True:
            signal.pause()
    return real(kind, job, options, force)
cli.process = process
cli.main(["encode", "-r", sys.argv[3], "-o", sys.argv[4], "-j", "2"])
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] in ("Z", "X")  # a zombie has stopped running
    except FileNotFoundError:
        return True


def _signal_run(tmp_path: Path, folder: Path, signum: int):
    pid_file = tmp_path / "worker.pid"
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", SIGNAL_SCRIPT, str(pid_file), str(signum), str(folder), str(out)],
                          capture_output=True, timeout=120)
    return proc, int(pid_file.read_text()), out


@pytest.fixture
def six_images(tmp_path, small_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(6):
        (folder / f"img{i}.png").write_bytes(small_path.read_bytes())
    return folder


def test_sigterm_under_jobs_stops_the_workers_and_cleans_up(tmp_path, six_images):
    import signal

    proc, worker, out = _signal_run(tmp_path, six_images, signal.SIGTERM)
    try:
        assert proc.returncode == 143, proc.stderr.decode()
        assert b"interrupted" in proc.stderr and b"Traceback" not in proc.stderr
        assert _gone(worker)  # reaped by walloc before it exited
        for f in out.iterdir() if out.exists() else []:
            assert f.suffix == ".wlc", f.name  # no temporary file
            api.decode_image(f.read_bytes())  # and every file present is complete
    finally:
        if not _gone(worker):
            os.kill(worker, signal.SIGKILL)


def test_sigkill_of_the_parent_takes_its_workers_with_it(tmp_path, six_images):
    import signal
    import time

    proc, worker, _ = _signal_run(tmp_path, six_images, signal.SIGKILL)
    try:
        assert proc.returncode == -signal.SIGKILL
        deadline = time.monotonic() + 30  # the kernel delivers the parent-death signal at once
        while not _gone(worker) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _gone(worker)
    finally:
        if not _gone(worker):
            os.kill(worker, signal.SIGKILL)


def test_stale_temporaries_are_swept_by_the_next_run_but_live_ones_are_not(tmp_path, small_path):
    import fcntl

    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".old.wlc.k3j4h5g6.walloc.part"  # left by a walloc that was killed
    stale.write_bytes(b"x" * 1000)
    live = out / ".busy.wlc.a1b2c3d4.walloc.part"  # another walloc is writing it right now
    live.write_bytes(b"y")
    unrelated = out / ".notes.abcdefgh.part"  # not ours
    unrelated.write_bytes(b"z")
    holder = os.open(live, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    batch._swept.clear()
    try:
        r = run("encode", str(small_path), "-o", str(out / "new.wlc"))
        assert r.exit_code == 0, r.output
    finally:
        os.close(holder)
    assert sorted(p.name for p in out.iterdir()) == sorted([live.name, unrelated.name, "new.wlc"])


def test_ctrl_c_exits_130_not_1(tmp_path, six_images, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "process", interrupted)
    r = CliRunner().invoke(main, ["encode", "-r", str(six_images), "-o", str(tmp_path / "out")])
    assert r.exit_code == 130 and "interrupted" in r.stderr


# -- 8. Unreadable subfolders under -r ---------------------------------------------------------
def test_unreadable_subfolder_is_a_failure_not_a_silent_skip(tmp_path, small_path, monkeypatch):
    tree = tmp_path / "tree"
    (tree / "ok").mkdir(parents=True)
    (tree / "locked").mkdir()
    (tree / "ok" / "a.png").write_bytes(small_path.read_bytes())
    (tree / "locked" / "b.png").write_bytes(small_path.read_bytes())
    real_scandir = os.scandir

    def scandir(path="."):  # as chmod 000 would do, also when the tests run as root
        if Path(path).name == "locked":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    r = run("encode", "-r", str(tree), "-o", str(tmp_path / "out"))
    assert r.exit_code == 1
    line = one_error_line(r, "locked")
    assert "cannot be read" in line and "permission denied" in line
    assert (tmp_path / "out" / "ok" / "a.wlc").exists()
    assert "1 failed" in r.stderr


# -- 9. One line instead of a traceback --------------------------------------------------------
def resealed_raw(header_bytes: bytes, payload: bytes = b"") -> bytes:
    body = struct.pack("<4sBI", container.MAGIC, 2, len(header_bytes)) + header_bytes
    body += struct.pack("<Q", len(payload)) + payload
    return body + struct.pack("<I", zlib.crc32(body))


def test_deeply_nested_json_header_is_a_format_error(tmp_path):
    deep = b'{"sections":[],"x":' + b"[" * 20000 + b"]" * 20000 + b"}"
    with pytest.raises(container.FormatError, match="nested deeper than 32"):
        container.unpack(resealed_raw(deep))
    shallow = b'{"sections":[],"x":' + b"[" * 30 + b"]" * 30 + b',"s":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}'
    assert container.unpack(resealed_raw(shallow)).header["s"].startswith("[[[")  # brackets in strings do not count
    (tmp_path / "deep.wlc").write_bytes(resealed_raw(deep))
    for command in ("info", "decode"):
        r = run(command, str(tmp_path / "deep.wlc"))
        assert r.exit_code == 1 and "nested" in one_error_line(r, "deep.wlc")


@pytest.mark.parametrize("changes", [{"sample_rate": 10**400}, {"frames": 10**400},
                                     {"sample_rate": 10**300, "frames": 1}])
def test_info_with_huge_audio_fields_prints_what_it_can(audio_wlc, tmp_path, changes):
    (tmp_path / "x.wlc").write_bytes(reseal_header(audio_wlc, **changes))
    r = run("info", "--json", str(tmp_path / "x.wlc"))
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["file_bytes"] > 0


@pytest.mark.parametrize("suffix,changes,message", [
    (".wav", {"sample_rate": 1 << 31}, "2,147,483,647 Hz"),      # OverflowError in soundfile before
    (".flac", {"sample_rate": 700_000}, "655,350 Hz"),            # libsndfile's "Error opening <_io...>"
])
def test_audio_header_fields_the_output_cannot_store(audio_wlc, tmp_path, suffix, changes, message):
    (tmp_path / "x.wlc").write_bytes(reseal_header(audio_wlc, **changes))
    r = run("decode", str(tmp_path / "x.wlc"), "-o", str(tmp_path / f"y{suffix}"))
    assert r.exit_code == 1 and message in one_error_line(r, "x.wlc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.wlc"]


def test_flac_with_more_than_eight_channels(tmp_path):
    (tmp_path / "x.wlc").write_bytes(api.encode_audio(wav_bytes(44100, channels=9, frames=300)).data)
    r = run("decode", str(tmp_path / "x.wlc"), "-o", str(tmp_path / "y.flac"))
    assert r.exit_code == 1 and "at most 8 channels" in one_error_line(r, "x.wlc")


@pytest.mark.parametrize("suffix,width,message", [(".webp", 16384, "16383"), (".jpg", 65501, "65500")])
def test_images_wider_than_the_output_format_allows(tmp_path, suffix, width, message):
    from PIL import Image

    from .conftest import png_bytes

    wide = Image.fromarray(np.full((1, width, 3), 90, np.uint8))
    (tmp_path / "x.wlc").write_bytes(api.encode_image(png_bytes(wide), "rgb-16x").data)
    r = run("decode", str(tmp_path / "x.wlc"), "-o", str(tmp_path / f"y{suffix}"))
    assert r.exit_code == 1 and message in one_error_line(r, "x.wlc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.wlc"]


def test_closed_stdin_and_stdout_are_one_line(tmp_path, small_path, image_wlc):
    enc = subprocess.run(WALLOC + ["encode", "-", "-o", str(tmp_path / "y.wlc")], stdin=subprocess.DEVNULL,
                         capture_output=True, preexec_fn=lambda: os.close(0))
    assert enc.returncode == 1 and b"standard input is closed" in enc.stderr and b"Traceback" not in enc.stderr
    for args in (["decode", str(image_wlc), "-o", "-"], ["info", str(image_wlc)]):
        done = subprocess.run(WALLOC + args, stderr=subprocess.PIPE, preexec_fn=lambda: os.close(1))
        assert done.returncode in (1, 2) and b"standard output is closed" in done.stderr, done
        assert b"Traceback" not in done.stderr


def test_info_into_a_full_disk_is_one_line(image_wlc):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with open("/dev/full", "wb") as full:
        done = subprocess.run(WALLOC + ["info", str(image_wlc)], stdout=full, stderr=subprocess.PIPE)
    assert done.returncode == 1 and b"No space left on device" in done.stderr
    assert b"Traceback" not in done.stderr and b"Exception ignored" not in done.stderr


# -- 10. The pixel limit counts the padded grid ------------------------------------------------
def test_pixel_limit_counts_the_padded_grid(small_path):
    box = container.unpack(api.encode_image(small_path.read_bytes(), "rgb-16x").data)
    thin = {**box.header, "width": 1, "height": 1000, "pad": [0, 7], "latent_shape": [12, 125, 1]}
    data = container.pack(thin, box.sections)
    with pytest.raises(WallocError, match="1×1000 pixels is coded on a 8×1000 grid"):
        api.decode_image(data, max_pixels=4000)  # 1000 pixels, but 8000 allocated
    tall = {**box.header, "width": 1, "height": (1 << 28) - 1, "pad": [1, 7], "latent_shape": [12, 1 << 25, 1]}
    with pytest.raises(WallocError, match="above the limit of 268435456 pixels"):
        api.decode_image(container.pack(tall, box.sections))  # the 24 GiB request


def test_encoder_refuses_what_a_decoder_would_refuse(monkeypatch):
    from PIL import Image

    from .conftest import png_bytes

    monkeypatch.setattr(api, "DEFAULT_MAX_PIXELS", 4000)
    with pytest.raises(WallocError, match="8×1000 grid"):
        api.encode_image(png_bytes(Image.new("RGB", (1, 1000))))


# -- 13. Smaller: one line whatever the name, truncated WAV/AIFF --------------------------------
def test_a_newline_in_a_file_name_keeps_the_error_on_one_line(tmp_path):
    bad = tmp_path / "two\nlines.png"
    bad.write_bytes(b"not an image")
    r = run("encode", str(bad))
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "two\\nlines.png" in lines[0], r.stderr


@pytest.mark.parametrize("fmt", ["WAV", "AIFF"])
def test_truncated_wav_and_aiff_are_refused_like_truncated_flac(tmp_path, fmt):
    buf = io.BytesIO()
    soundfile.write(buf, np.random.default_rng(3).uniform(-0.3, 0.3, (5000, 2)), 44100, subtype="PCM_16", format=fmt)
    whole = buf.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(whole[:-3000])  # a download that stopped early
    r = run("encode", str(path))
    assert r.exit_code == 1 and f"truncated {fmt} file" in one_error_line(r, path.name)
    assert not path.with_suffix(".wlc").exists()
    with pytest.raises(media.MediaError, match="truncated"):
        api.encode_audio(whole[:-3000])
    api.encode_audio(whole)  # the complete file is fine


def test_streamed_wav_with_unknown_length_is_still_read():
    data = bytearray(wav_bytes(44100, frames=800))
    at = data.index(b"data")
    data[at + 4 : at + 8] = b"\xff\xff\xff\xff"  # as written to a pipe by streaming tools
    api.encode_audio(bytes(data))


# -- 12. Decoded pixels do not depend on the caller's BLAS threads -----------------------------
@pytest.mark.parametrize("model_name", ["rgb-1x", "rgb-16x"])
def test_numeric_kernels_run_on_one_blas_thread_whatever_the_caller_set(small_path, monkeypatch, model_name):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from walloc_cli import model as model_module

    seen = []
    real_to, real_from = model_module.CodecModel.to_latents, model_module.CodecModel.from_latents

    def blas_threads():
        return {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}

    def to_latents(self, *args, **kwargs):
        seen.append(blas_threads())
        return real_to(self, *args, **kwargs)

    def from_latents(self, *args, **kwargs):
        seen.append(blas_threads())
        yield from real_from(self, *args, **kwargs)

    monkeypatch.setattr(model_module.CodecModel, "to_latents", to_latents)
    monkeypatch.setattr(model_module.CodecModel, "from_latents", from_latents)
    with threadpoolctl.threadpool_limits(limits=4, user_api="blas"):  # an API user's default
        data = api.encode_image(small_path.read_bytes(), model_name).data
        api.decode_image(data)
        assert blas_threads() == {4}  # the caller's setting is restored
    assert seen and all(s == {1} for s in seen), seen
