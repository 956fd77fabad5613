"""The walloc command as users run it: paths, folders, pipes, refusals, exit codes."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from walloc_cli import container
from walloc_cli.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def work(tmp_path: Path, small_path: Path) -> Path:
    shutil.copy(small_path, tmp_path / "a.png")
    return tmp_path


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".part")]


def test_encode_decode_next_to_input(work):
    original = (work / "a.png").read_bytes()
    r = run("encode", str(work / "a.png"))
    assert r.exit_code == 0, r.output
    assert (work / "a.wlc").exists()
    r = run("decode", str(work / "a.wlc"))  # beside the original: a name that is never the original's
    assert r.exit_code == 0, r.output
    assert Image.open(work / "a.decoded.png").size == Image.open(work / "a.png").size
    assert (work / "a.png").read_bytes() == original


def test_refuses_to_overwrite_without_force(work):
    assert run("encode", str(work / "a.png")).exit_code == 0
    before = (work / "a.wlc").read_bytes()
    (work / "a.wlc").write_bytes(b"precious")
    r = run("encode", str(work / "a.png"))
    assert r.exit_code == 1 and "exists" in r.stderr and "--force" in r.stderr
    assert (work / "a.wlc").read_bytes() == b"precious"
    assert run("encode", str(work / "a.png"), "--force").exit_code == 0
    assert (work / "a.wlc").read_bytes() == before


def test_explicit_output_and_format(work):
    assert run("encode", str(work / "a.png"), "-o", str(work / "x" / "y.wlc")).exit_code == 0
    assert run("decode", str(work / "x" / "y.wlc"), "-o", str(work / "y.jpg")).exit_code == 0
    assert Image.open(work / "y.jpg").format == "JPEG"
    assert run("decode", str(work / "x" / "y.wlc"), "-o", str(work / "z.webp"), "--format", "webp").exit_code == 0
    assert Image.open(work / "z.webp").format == "WEBP"


def test_output_equal_to_input_is_refused(work):
    (work / "a.wlc").write_bytes(b"x")
    r = run("decode", str(work / "a.wlc"), "-o", str(work / "a.wlc"))
    assert r.exit_code == 2 and "overwrite the input" in r.stderr


def test_many_files_into_a_folder_continue_past_a_bad_one(work):
    shutil.copy(work / "a.png", work / "b.png")
    (work / "bad.png").write_bytes(b"not really a png")
    out = work / "out"
    r = run("encode", str(work / "a.png"), str(work / "bad.png"), str(work / "b.png"), "-o", f"{out}/")
    assert r.exit_code == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.wlc", "b.wlc"]
    errors = [line for line in r.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "bad.png" in errors[0] and "not an image" in errors[0]
    assert "2 of 3" in r.stderr and "1 failed" in r.stderr
    assert not leftovers(work)


def test_recursive_mirrors_the_tree(work):
    tree = work / "shots"
    (tree / "day1").mkdir(parents=True)
    (tree / "day2" / "deep").mkdir(parents=True)
    shutil.copy(work / "a.png", tree / "day1" / "p.png")
    shutil.copy(work / "a.png", tree / "day2" / "deep" / "q.PNG")
    (tree / "notes.txt").write_text("not an image, ignored")
    r = run("encode", "-r", str(tree), "-o", str(work / "compressed"))
    assert r.exit_code == 0, r.output
    assert (work / "compressed" / "day1" / "p.wlc").exists()
    assert (work / "compressed" / "day2" / "deep" / "q.wlc").exists()
    r = run("decode", "-r", str(work / "compressed"), "-o", str(work / "back"))
    assert r.exit_code == 0, r.output
    assert (work / "back" / "day2" / "deep" / "q.png").exists()


def test_folder_without_recursive_is_an_error(work):
    r = run("encode", str(work))
    assert r.exit_code == 1 and "use -r" in r.stderr


def test_two_inputs_to_one_output_is_refused_before_any_work(work):
    (work / "d1").mkdir()
    (work / "d2").mkdir()
    shutil.copy(work / "a.png", work / "d1" / "x.png")
    shutil.copy(work / "a.png", work / "d2" / "x.png")
    r = run("encode", str(work / "d1" / "x.png"), str(work / "d2" / "x.png"), "-o", f"{work / 'out'}/")
    assert r.exit_code == 2 and "both be written" in r.stderr
    assert not (work / "out").exists()


def test_corrupted_wlc_is_one_clear_line_and_no_output(work):
    assert run("encode", str(work / "a.png"), "-o", str(work / "a.wlc")).exit_code == 0
    data = (work / "a.wlc").read_bytes()
    cases = {"trunc.wlc": data[: len(data) // 2], "flip.wlc": data[:40] + bytes([data[40] ^ 1]) + data[41:],
             "magic.wlc": b"RIFF" + data[4:], "empty.wlc": b""}
    for name, content in cases.items():
        (work / name).write_bytes(content)
        r = run("decode", str(work / name))
        assert r.exit_code == 1
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and name in lines[0] and "Traceback" not in r.output
        assert not (work / name).with_suffix(".png").exists()
    assert not leftovers(work)


def test_missing_file(work):
    r = run("decode", str(work / "nope.wlc"))
    assert r.exit_code == 1 and "no such file" in r.stderr


def test_usage_errors_exit_2(work):
    assert run("encode").exit_code == 2
    assert run("encode", str(work / "a.png"), "--bogus").exit_code == 2
    assert run("decode", str(work / "a.png"), "--format", "xyz").exit_code == 2


def test_info_text_and_json(work):
    run("encode", str(work / "a.png"))
    r = run("info", str(work / "a.wlc"))
    assert r.exit_code == 0 and "bpp" in r.output and "rgb-1x" in r.output and "quality" in r.output
    r = run("info", "--json", str(work / "a.wlc"))
    meta = json.loads(r.output)
    assert meta["width"] == 96 and meta["height"] == 64 and meta["format_version"] == container.VERSION
    (work / "junk.wlc").write_bytes(b"junk")
    r = run("info", str(work / "junk.wlc"))
    assert r.exit_code == 1 and "not a walloc file" in r.stderr


def test_quiet_and_verbose(work):
    r = run("encode", str(work / "a.png"), "-v")
    assert "bpp" in r.stderr
    (work / "b.png").write_bytes(b"bad")
    r = run("encode", str(work / "b.png"), "--quiet")
    assert r.exit_code == 1 and r.stderr.count("\n") == 1


def test_pipes_through_a_real_process(work):
    exe = [sys.executable, "-m", "walloc_cli"]
    png = (work / "a.png").read_bytes()
    enc = subprocess.run(exe + ["encode", "-", "-o", "-"], input=png, capture_output=True, check=True)
    assert enc.stdout[:4] == b"WLOC" and enc.stderr == b""
    dec = subprocess.run(exe + ["decode", "-", "-o", "-"], input=enc.stdout, capture_output=True, check=True)
    assert dec.stdout[:8] == b"\x89PNG\r\n\x1a\n"
    bad = subprocess.run(exe + ["decode", "-", "-o", "-"], input=b"garbage", capture_output=True)
    assert bad.returncode == 1 and bad.stdout == b"" and b"<stdin>" in bad.stderr
    assert b"Traceback" not in bad.stderr


@pytest.fixture
def song(tmp_path: Path) -> Path:
    import soundfile

    samples, rate = soundfile.read(Path(__file__).parent / "data" / "music.flac", frames=44100)
    path = tmp_path / "song.wav"
    soundfile.write(path, samples, rate, subtype="PCM_16")
    return path


def test_audio_encode_decode_by_content(song):
    import soundfile

    assert run("encode", str(song)).exit_code == 0
    wlc = song.with_suffix(".wlc")
    r = run("decode", str(wlc))
    assert r.exit_code == 0, r.output
    info = soundfile.info(song.with_name("song.decoded.wav"))
    assert info.frames == 44100 and info.channels == 2 and info.samplerate == 44100 and info.subtype == "PCM_16"
    assert run("decode", str(wlc), "-o", str(song.with_suffix(".flac"))).exit_code == 0
    assert soundfile.info(song.with_suffix(".flac")).format == "FLAC"
    r = run("info", str(wlc))
    assert "kbps" in r.output and "sample_rate" in r.output
    r = run("decode", str(wlc), "-o", str(song.with_suffix(".png")))
    assert r.exit_code == 1 and "cannot write audio" in r.stderr


def test_mixed_folder_of_images_and_audio(work, song):
    tree = work / "album"
    tree.mkdir()
    shutil.copy(work / "a.png", tree / "cover.png")
    shutil.copy(song, tree / "track.wav")
    assert run("encode", "-r", str(tree), "-o", str(work / "album-wlc")).exit_code == 0
    assert run("decode", "-r", str(work / "album-wlc"), "-o", str(work / "back")).exit_code == 0
    assert sorted(p.name for p in (work / "back").iterdir()) == ["cover.png", "track.wav"]


def test_bad_audio_is_one_line(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    r = run("encode", str(bad))
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1 and "bad.wav" in r.stderr
    assert not bad.with_suffix(".wlc").exists()
