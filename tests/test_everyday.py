"""Issue #12, everyday use without surprises: one section per numbered item of the issue.

Commands run as a user types them (click's CliRunner, or a real process where a terminal,
a pipe or the exit status of the process itself matters); nothing depends on timing.
"""
from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner
from PIL import Image

from walloc_cli import api, cli, container
from walloc_cli.cli import main

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
WALLOC = [sys.executable, "-m", "walloc_cli"]


def run(*args: str, cwd: Path | None = None):
    if cwd is None:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)
    finally:
        os.chdir(old)


def errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith(("walloc: error:", "Error:"))]


@pytest.fixture
def here(tmp_path: Path) -> Path:
    """A folder with photo.png and song.wav (a quarter second of music), as a user has them."""
    shutil.copy(DATA / "small.png", tmp_path / "photo.png")
    samples, rate = soundfile.read(DATA / "music.flac", frames=11025)
    soundfile.write(tmp_path / "song.wav", samples, rate, subtype="PCM_16")
    return tmp_path


# -- 1. Decoding next to the original never replaces it ----------------------------------------
def test_decoding_beside_the_original_writes_a_name_of_its_own(here):
    original = (here / "photo.png").read_bytes()
    assert run("encode", "photo.png", cwd=here).exit_code == 0
    r = run("decode", "photo.wlc", cwd=here)
    assert r.exit_code == 0, r.output
    assert Image.open(here / "photo.decoded.png").size == (96, 64)
    again = run("decode", "photo.wlc", cwd=here)  # a walloc output: --force is the right advice
    assert again.exit_code == 1 and "photo.decoded.png exists (use --force" in errors(again)[0]
    assert (here / "photo.png").read_bytes() == original

    assert run("encode", "song.wav", cwd=here).exit_code == 0
    assert run("decode", "song.wlc", cwd=here).exit_code == 0
    assert soundfile.info(here / "song.decoded.wav").frames == 11025


def test_an_existing_file_that_may_be_an_original_is_never_offered_to_force(here):
    original = (here / "photo.png").read_bytes()
    run("encode", "photo.png", cwd=here)
    r = run("decode", "photo.wlc", "-o", "photo.png", cwd=here)
    assert r.exit_code == 1
    line = errors(r)[0]
    assert "may be an original" in line and "--force" not in line
    assert (here / "photo.png").read_bytes() == original


# -- 4. -n / --skip-existing resumes an interrupted batch --------------------------------------
def test_skip_existing_resumes_an_interrupted_batch(here, monkeypatch):
    shots = here / "shots"
    shots.mkdir()
    for i in range(4):
        shutil.copy(here / "photo.png", shots / f"p{i}.png")
    real, calls = cli.process, []

    def interrupted_at_the_third(kind, job, options, force):
        calls.append(job.source)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C while the third file is coded
        return real(kind, job, options, force)

    monkeypatch.setattr(cli, "process", interrupted_at_the_third)
    r = run("encode", "-r", "shots", "-o", "out/", cwd=here)
    assert r.exit_code == 130
    assert sorted(p.name for p in (here / "out").iterdir()) == ["p0.wlc", "p1.wlc"]
    monkeypatch.setattr(cli, "process", real)

    r = run("encode", "-r", "shots", "-o", "out/", "-n", cwd=here)
    assert r.exit_code == 0, r.output
    assert "encoded 2 of 4 files, 2 skipped (output exists)" in r.stderr and not errors(r)
    assert sorted(p.name for p in (here / "out").iterdir()) == [f"p{i}.wlc" for i in range(4)]


def test_skip_existing_when_the_content_chooses_the_extension(here):
    run("encode", "photo.png", "song.wav", "-o", f"{here}/", cwd=here)
    assert run("decode", "photo.wlc", "song.wlc", cwd=here).exit_code == 0
    r = run("decode", "photo.wlc", "song.wlc", "-n", "-v", cwd=here)
    assert r.exit_code == 0 and "decoded 0 of 2 files, 2 skipped" in r.stderr
    assert "photo.decoded.png exists" in r.stderr and "song.decoded.wav exists" in r.stderr
    r = run("decode", "photo.wlc", "-n", cwd=here)
    assert r.exit_code == 0 and "skipped: photo.decoded.png exists" in r.stderr


def test_skip_existing_and_force_together_is_a_usage_error(here):
    assert run("encode", "photo.png", "-n", "-f", cwd=here).exit_code == 2


# -- 5. Metadata: EXIF, XMP, ICC, audio tags, modification time --------------------------------
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:creator="Ann"/></rdf:RDF></x:xmpmeta>')


def camera_jpeg(path: Path) -> bytes:
    """A camera-like JPEG, held sideways (orientation 6), with EXIF, GPS, XMP and an ICC profile."""
    from PIL import ImageCms

    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "Canon", "EOS R5", 6
    exif.get_ifd(0x8769)[0x9003] = "2024:05:01 10:00:00"
    exif.get_ifd(0x8825)[1] = "N"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    pixels = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, exif=exif, xmp=XMP, icc_profile=icc, quality=95)
    return icc


def test_camera_metadata_is_kept_in_every_format_that_holds_it(tmp_path):
    icc = camera_jpeg(tmp_path / "cam.jpg")
    assert run("encode", str(tmp_path / "cam.jpg")).exit_code == 0
    meta = json.loads(run("info", "--json", str(tmp_path / "cam.wlc")).stdout)
    assert meta["metadata"] == ["ICC profile", "EXIF", "XMP"] and meta["width"] == 48  # upright
    for ext in ("jpg", "png", "webp", "tiff"):
        out = tmp_path / f"back.{ext}"
        r = run("decode", str(tmp_path / "cam.wlc"), "-o", str(out))
        assert r.exit_code == 0 and not r.stderr, r.output
        im = Image.open(out)
        exif = im.getexif()
        assert im.size == (48, 64) and 0x0112 not in exif, ext  # upright pixels, no orientation to apply again
        assert exif[0x010F] == "Canon" and exif.get_ifd(0x8769)[0x9003] == "2024:05:01 10:00:00", ext
        assert exif.get_ifd(0x8825)[1] == "N", ext
        assert im.info["icc_profile"] == icc, ext
        assert XMP in (im.info.get("xmp") or b""), ext
    r = run("decode", str(tmp_path / "cam.wlc"), "-o", str(tmp_path / "back.bmp"))
    assert r.exit_code == 0 and "BMP cannot hold the ICC profile, EXIF and XMP" in r.stderr


def test_strip_keeps_no_metadata(tmp_path):
    camera_jpeg(tmp_path / "cam.jpg")
    assert run("encode", str(tmp_path / "cam.jpg"), "--strip").exit_code == 0
    assert json.loads(run("info", "--json", str(tmp_path / "cam.wlc")).stdout)["metadata"] == []
    assert run("encode", str(tmp_path / "cam.jpg"), "-o", str(tmp_path / "kept.wlc")).exit_code == 0
    assert run("decode", str(tmp_path / "kept.wlc"), "-o", str(tmp_path / "bare.png"), "--strip").exit_code == 0
    bare = Image.open(tmp_path / "bare.png")
    assert not bare.getexif() and "icc_profile" not in bare.info and "xmp" not in bare.info


def test_exif_of_a_tiff_keeps_its_descriptive_tags_only(tmp_path):
    exif = Image.Exif()
    exif[0x010F], exif[0x0132] = "Nikon", "2023:01:02 03:04:05"
    exif.get_ifd(0x8769)[0x829A] = (1, 250)  # exposure time
    Image.new("RGB", (16, 16), (9, 99, 199)).save(tmp_path / "scan.tif", exif=exif.tobytes())
    image = api.decode_image(api.encode_image((tmp_path / "scan.tif").read_bytes()).data)
    kept = Image.Exif()
    kept.load(image.exif)
    assert kept[0x010F] == "Nikon" and kept[0x0132] == "2023:01:02 03:04:05"
    assert 0x829A in kept.get_ifd(0x8769)
    assert 0x0111 not in kept and 0x0100 not in kept  # strip offsets and sizes describe the TIFF, not the photo


def test_modification_time_follows_the_input_as_gzip_does(here):
    old = 1_000_000_000  # 2001-09-09
    os.utime(here / "photo.png", (old, old))
    assert run("encode", "photo.png", cwd=here).exit_code == 0
    assert os.stat(here / "photo.wlc").st_mtime == old
    assert run("decode", "photo.wlc", cwd=here).exit_code == 0
    assert os.stat(here / "photo.decoded.png").st_mtime == old
    assert run("decode", "photo.wlc", "-o", "fresh.png", "--strip", cwd=here).exit_code == 0
    assert os.stat(here / "fresh.png").st_mtime > old


def test_audio_tags_are_kept(tmp_path):
    samples, rate = soundfile.read(DATA / "music.flac", frames=8000)
    with soundfile.SoundFile(tmp_path / "tagged.flac", "w", rate, 2, format="FLAC") as f:
        f.title, f.artist, f.license = "Sång", "Ann", "CC-BY"
        f.write(samples)
    assert run("encode", str(tmp_path / "tagged.flac")).exit_code == 0
    meta = json.loads(run("info", "--json", str(tmp_path / "tagged.wlc")).stdout)
    assert meta["tags"] == {"artist": "Ann", "license": "CC-BY", "title": "Sång"} and meta["metadata"] == ["tags"]
    assert "tags            artist=Ann, license=CC-BY, title=Sång" in run("info", str(tmp_path / "tagged.wlc")).stdout
    assert run("decode", str(tmp_path / "tagged.wlc"), "-o", str(tmp_path / "back.flac")).exit_code == 0
    assert soundfile.SoundFile(tmp_path / "back.flac").copy_metadata() == {"title": "Sång", "artist": "Ann",
                                                                            "license": "CC-BY"}
    r = run("decode", str(tmp_path / "tagged.wlc"), "-o", str(tmp_path / "back.wav"))
    assert r.exit_code == 0 and "WAV cannot hold the tags license" in r.stderr
    assert soundfile.SoundFile(tmp_path / "back.wav").copy_metadata() == {"title": "Sång", "artist": "Ann"}
    assert run("decode", str(tmp_path / "tagged.wlc"), "-o", str(tmp_path / "bare.flac"), "--strip").exit_code == 0
    assert soundfile.SoundFile(tmp_path / "bare.flac").copy_metadata() == {}


def test_a_file_without_metadata_has_no_metadata_sections(here):
    run("encode", "photo.png", "song.wav", "-o", f"{here}/", cwd=here)
    for name in ("photo.wlc", "song.wlc"):
        meta = json.loads(run("info", "--json", str(here / name)).stdout)
        assert meta["metadata"] == [] and set(meta["sections"]) <= {"latents", "index", "strips"}


# -- 6. -o with several inputs means a folder only when it is one, as cp and mv ----------------
def test_several_inputs_need_an_existing_folder_or_a_trailing_slash(here):
    run("encode", "photo.png", cwd=here)
    shutil.copy(here / "photo.wlc", here / "other.wlc")
    r = run("decode", "photo.wlc", "other.wlc", "-o", "out.avif", cwd=here)
    assert r.exit_code == 2 and "out.avif is not an existing folder" in r.stderr
    (here / "afile").write_text("x")
    r = run("decode", "photo.wlc", "other.wlc", "-o", "afile", cwd=here)
    assert r.exit_code == 2 and "afile is not a folder" in r.stderr and "Errno" not in r.stderr
    assert sorted(p.name for p in here.iterdir()) == ["afile", "other.wlc", "photo.png", "photo.wlc", "song.wav"]
    assert run("decode", "photo.wlc", "other.wlc", "-o", "new/", cwd=here).exit_code == 0
    assert sorted(p.name for p in (here / "new").iterdir()) == ["other.png", "photo.png"]


def test_one_folder_with_r_makes_the_output_folder_as_cp_r(here):
    (here / "shots").mkdir()
    shutil.copy(here / "photo.png", here / "shots" / "a.png")
    assert run("encode", "-r", "shots", "-o", "compressed", cwd=here).exit_code == 0
    assert (here / "compressed" / "a.wlc").exists()


# -- 7. Option errors are usage errors, found before any work ----------------------------------
def test_unknown_model_is_one_usage_error_not_one_per_file(here):
    for i in range(3):
        shutil.copy(here / "photo.png", here / f"p{i}.png")
    r = run("encode", "p0.png", "p1.png", "p2.png", "-m", "nope", "-o", "out/", cwd=here)
    assert r.exit_code == 2 and len(errors(r)) == 1 and "unknown model 'nope'" in r.stderr
    assert not (here / "out").exists()


@pytest.mark.parametrize("args,message", [
    (["-m", "rgb-16x", "-q", "50"], "single operating point: -q"),
    (["-m", "rgb-16x", "--bpp", "0.5"], "single operating point: --bpp"),
    (["-m", "rgb-16x", "-m", "rgb-1x"], "both image models"),
    (["--kbps", "64"], "--kbps applies to audio, and every input is an image"),
])
def test_options_a_model_or_the_inputs_cannot_honour(here, args, message):
    r = run("encode", "photo.png", *args, cwd=here)
    assert r.exit_code == 2 and message in r.stderr
    assert not (here / "photo.wlc").exists()


def test_bpp_on_audio_only_is_a_usage_error(here):
    r = run("encode", "song.wav", "--bpp", "1", cwd=here)
    assert r.exit_code == 2 and "--bpp applies to images" in r.stderr


def test_a_model_applies_to_the_files_of_its_kind(here):
    r = run("encode", "photo.png", "song.wav", "-m", "rgb-16x", "-o", "out/", cwd=here)
    assert r.exit_code == 0, r.output
    assert api.info((here / "out" / "photo.wlc").read_bytes())["model"] == "rgb-16x"
    assert api.info((here / "out" / "song.wlc").read_bytes())["model"] == "stereo-1x"


@pytest.mark.parametrize("args,message", [
    (["-o", "x.avif"], "does not write .avif"),
    (["--format", "webp", "-o", "z.png"], "disagree"),
    (["--jpeg-quality", "80"], "--jpeg-quality applies to JPEG"),
    (["-o", "x.png", "--webp-quality", "80"], "--webp-quality applies to WEBP"),
    (["-o", "x.webp", "--webp-quality", "80", "--webp-lossless"], "not both"),
    (["-o", "x.flac", "--pcm", "float"], "FLAC cannot store floating-point"),
    (["-o", "x.ogg", "--pcm", "24"], "--pcm does not apply to OGG"),
    (["--format", "png", "--pcm", "24"], "--pcm applies to audio"),
])
def test_decode_output_options_are_checked_before_work(here, args, message):
    run("encode", "photo.png", cwd=here)
    before = sorted(p.name for p in here.iterdir())
    r = run("decode", "photo.wlc", *args, cwd=here)
    assert r.exit_code == 2 and message in r.stderr, r.stderr
    assert sorted(p.name for p in here.iterdir()) == before


# -- 8. Progress on a terminal: counts files, clears its line before errors --------------------
def on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run walloc with stderr on a pseudo-terminal, as in an interactive shell; all it wrote."""
    try:
        master, slave = pty.openpty()
    except OSError:
        pytest.skip("no pseudo-terminals here")
    proc = subprocess.Popen(WALLOC + args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # EIO: the process has exited and closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=120)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode()


def test_progress_counts_files_and_never_collides_with_errors(here):
    for name in ("a", "b", "d"):
        shutil.copy(here / "photo.png", here / f"{name}.png")
    (here / "c.png").write_bytes(b"not an image")
    code, text = on_a_terminal(["encode", "a.png", "b.png", "c.png", "d.png", "-o", "out/"], here)
    assert code == 1
    assert "walloc: encoding 0/4 files  a.png" in text and "walloc: encoding 3/4 files  d.png" in text
    for line in text.replace("\r\n", "\n").split("\n"):
        if "walloc: error:" in line or "walloc: encoded" in line:
            after_clear = line.split("\x1b[K")[-1]  # what the terminal shows on that line
            assert after_clear.startswith(("walloc: error:", "walloc: encoded")), repr(line)
    assert text.rstrip().endswith("walloc: encoded 3 of 4 files, 1 failed")
    code, text = on_a_terminal(["encode", "a.png", "b.png", "-o", "out2/", "--no-progress"], here)
    assert code == 0 and "\x1b[K" not in text and "encoding" not in text


# -- 9. Extension and --format agree; encode never writes a .wlc under an image name -----------
def test_encode_refuses_an_image_or_audio_name_for_its_output(here):
    r = run("encode", "photo.png", "-o", "x.png", cwd=here)
    assert r.exit_code == 2 and "name it x.wlc" in r.stderr and not (here / "x.png").exists()
    assert run("encode", "photo.png", "-o", "x.bin", cwd=here).exit_code == 0  # any other name is the user's


def test_format_and_extension_that_agree(here):
    run("encode", "photo.png", cwd=here)
    assert run("decode", "photo.wlc", "--format", "jpeg", "-o", "z.jpg", cwd=here).exit_code == 0
    assert Image.open(here / "z.jpg").format == "JPEG"


# -- 10. Decoded output is tunable ---------------------------------------------------------------
def test_jpeg_and_webp_output_options(tmp_path):
    photo = tmp_path / "photo.jpg"
    shutil.copy(DATA / "photo.jpg", photo)
    assert run("encode", str(photo), "-q", "60").exit_code == 0
    wlc = str(tmp_path / "photo.wlc")
    from PIL import JpegImagePlugin

    assert run("decode", wlc, "-o", str(tmp_path / "best.jpg")).exit_code == 0
    assert run("decode", wlc, "-o", str(tmp_path / "small.jpg"), "--jpeg-quality", "75").exit_code == 0
    assert (tmp_path / "small.jpg").stat().st_size < (tmp_path / "best.jpg").stat().st_size / 2
    assert JpegImagePlugin.get_sampling(Image.open(tmp_path / "best.jpg")) == 0  # 4:4:4
    assert JpegImagePlugin.get_sampling(Image.open(tmp_path / "small.jpg")) == 2  # 4:2:0
    assert run("decode", wlc, "-o", str(tmp_path / "lossless.webp"), "--webp-lossless").exit_code == 0
    assert run("decode", wlc, "-o", str(tmp_path / "lossy.webp"), "--webp-quality", "70").exit_code == 0
    assert b"VP8L" in (tmp_path / "lossless.webp").read_bytes()[:40]
    assert b"VP8 " in (tmp_path / "lossy.webp").read_bytes()[:40]


# -- 12. Smaller -----------------------------------------------------------------------------------
def test_info_prints_sections_as_text_and_descends_folders(here):
    run("encode", "photo.png", "-o", "tree/deep/", cwd=here)
    r = run("info", "-r", "tree", cwd=here)
    assert r.exit_code == 0 and r.stdout.startswith("tree/deep/photo.wlc\n")
    line = next(line for line in r.stdout.splitlines() if "sections" in line)
    assert "latents" in line and " B" in line and "{" not in line
    r = run("info", "tree", cwd=here)
    assert r.exit_code == 1 and "use -r" in r.stderr


def test_stdin_is_named_alike_in_text_and_json(here):
    run("encode", "photo.png", cwd=here)
    data = (here / "photo.wlc").read_bytes()
    text = CliRunner().invoke(main, ["info", "-"], input=data).stdout
    assert text.startswith("<stdin>\n")
    assert json.loads(CliRunner().invoke(main, ["info", "--json", "-"], input=data).stdout)["file"] == "<stdin>"


def test_models_json():
    r = run("models", "--json")
    listed = {m["name"]: m for m in map(json.loads, r.stdout.splitlines())}
    assert listed["rgb-1x"]["quality"] and listed["rgb-1x"]["default"] and listed["rgb-1x"]["modality"] == "image"
    assert not listed["rgb-16x"]["quality"]


def test_jobs_zero_means_one_per_core(here):
    shutil.copy(here / "photo.png", here / "other.png")
    r = run("encode", "photo.png", "other.png", "-o", "out/", "-j", "0", cwd=here)
    assert r.exit_code == 0, r.output


def test_top_level_help_does_not_cut_descriptions():
    r = run("--help")
    commands = r.stdout.split("Commands:")[1]
    assert not [line for line in commands.splitlines() if line.endswith("...")]  # click cut them there
    flat = " ".join(commands.split())
    assert "bpp, metadata, header fields." in flat and "speed, BD-rate." in flat


def test_recursive_runs_say_which_files_they_leave_out(here):
    shots = here / "shots"
    shots.mkdir()
    shutil.copy(here / "photo.png", shots / "a.png")
    (shots / "IMG_1.CR2").write_bytes(b"raw")
    (shots / "IMG_2.HEIC").write_bytes(b"heic")
    r = run("encode", "-r", "shots", "-o", "out/", cwd=here)
    assert r.exit_code == 0 and "skipped 2 files" in r.stderr and "(.cr2, .heic)" in r.stderr
    r = run("encode", "-r", "shots", "-o", "out2/", "-v", cwd=here)
    assert "shots/IMG_1.CR2: not an image or audio format walloc reads" in r.stderr


def test_info_into_a_pipe_whose_reader_has_gone_ends_quietly(here):
    run("encode", "photo.png", cwd=here)
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `walloc info *.wlc | head -2` once head has what it wants
    try:
        done = subprocess.run(WALLOC + ["info", "photo.wlc", "photo.wlc"], cwd=here, stdout=write_end,
                              stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    assert done.returncode == 141 and done.stderr == b"", done.stderr  # 128 + SIGPIPE, as cat


def test_the_magic_entry_names_wlc_files(here):
    if not shutil.which("file"):
        pytest.skip("file(1) is not installed")
    run("encode", "photo.png", "song.wav", "-o", f"{here}/", cwd=here)
    magic = str(ROOT / "docs" / "walloc.magic")
    for name, modality in (("photo.wlc", "image"), ("song.wlc", "audio")):
        out = subprocess.run(["file", "-b", "-m", magic, name], cwd=here, capture_output=True, text=True)
        assert out.stdout.strip() == f"walloc compressed data, format version {container.VERSION}, {modality}"
    mime = subprocess.run(["file", "-m", magic, "--mime-type", "-b", "photo.wlc"], cwd=here, capture_output=True,
                          text=True)
    assert mime.stdout.strip() == "application/x-walloc"
    assert "application/x-walloc" in (ROOT / "docs" / "FORMAT.md").read_text()
