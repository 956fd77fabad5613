"""Inconsistent weights files: one line naming the file and the problem, never a traceback (#11 item 9).

Each case writes a damaged copy of a shipped model into a temporary weights folder
(with a correct SHA-256, so the loader gets past the hash and meets the damage
itself) and points the registry there through ``$WALLOC_WEIGHTS``, the documented
first place models are looked up (:func:`walloc_cli.model.weights_dirs`).
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from walloc_cli import api, model
from walloc_cli.cli import main
from walloc_cli.errors import WallocError

SHIPPED = Path(model.__file__).resolve().parent.parent / "weights"


@pytest.fixture
def registry(tmp_path: Path, monkeypatch):
    """write(name, change_arrays, change_json) -> the damaged model's folder, first in the registry."""
    folder = tmp_path / "weights"
    monkeypatch.setenv("WALLOC_WEIGHTS", str(folder))
    model.load_model.cache_clear()

    def write(name: str, arrays_edit: Callable[[dict], Any] | None = None,
              json_edit: Callable[[dict], Any] | None = None) -> Path:
        config = json.loads((SHIPPED / f"{name}.json").read_text())
        with np.load(SHIPPED / f"{name}.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        if arrays_edit:
            arrays_edit(arrays)
        if json_edit:
            json_edit(config)
        config.pop("sha256")
        model.save_model(folder, config, arrays)   # a correct hash of the damaged arrays
        model.load_model.cache_clear()
        return folder

    yield write
    model.load_model.cache_clear()


def _set(key: str, value: Any) -> Callable[[dict], None]:
    return lambda d: d.__setitem__(key, value)


def _drop(key: str) -> Callable[[dict], None]:
    return lambda d: d.pop(key)


ARRAY_CASES = [  # (model, edit of its arrays, what the message says)
    ("rgb-16x", _drop("encoder.bias"), "'encoder.bias' missing"),
    ("rgb-16x", _set("encoder.weight", np.zeros((12, 5))), "'encoder.weight' has shape"),
    ("rgb-16x", _set("entropy.freqs", np.array(1)), "inconsistent shapes"),          # was an IndexError
    ("rgb-16x", _set("entropy.lo", np.array(["a"] * 12)), "'entropy.lo' holds <U1, not numbers"),
    ("rgb-16x", _set("encoder.weight", np.full((12, 192), np.nan)), "NaN or infinite"),
    ("rgb-1x", _set("context.lo", np.zeros(3, np.float32)), "'context.lo' holds float32, expected integers"),
    ("rgb-1x", _set("context.lo", np.array(7)), "inconsistent shapes"),              # was an IndexError
    ("rgb-1x", _set("quality.gain", np.ones((2, 192))), "'quality.gain' has shape (2, 192)"),
    ("rgb-1x", _set("quality.step", np.zeros(101)), "must be positive"),
    ("rgb-1x", _set("quality.deadzone", np.ones(3)), "'quality.deadzone' has shape"),
    ("rgb-1x", _set("quality.offset", np.full((16, 192), -0.5)), "'quality.offset' in (-0.5, 1)"),  # a 1 would rebuild as 1.5
    ("rgb-1x", _set("quality.offset", np.full((16, 192), 1.0)), "'quality.offset' in (-0.5, 1)"),   # a 1 would rebuild as 0
    ("rgb-1x", _drop("decoder.linear.weight"), "'decoder.linear.weight' missing"),
    ("rgb-1x", _set("context.thresholds", np.tile(np.arange(7, 0, -1), (16, 192, 1))), "must be non-decreasing"),
    ("rgb-1x", _set("entropy.freqs", np.ones((192, 2), np.int64) << 40), "outside int32"),
    ("stereo-1x", _set("energy.lo", np.array(1)), "inconsistent shapes"),            # was an IndexError
]

JSON_CASES = [  # (model, edit of its JSON, which file is named, what the message says)
    ("rgb-16x", _set("levels", "3"), ".json", "field 'levels' is '3'"),
    ("rgb-16x", _set("latent_channels", 13), ".npz", "'encoder.weight' has shape (12, 192), expected (13, 192)"),
    ("rgb-16x", _set("wavelet", "no-such"), ".json", "field 'wavelet'"),
    ("rgb-1x", _set("coding", "arithmetic"), ".npz", "field 'coding' is 'arithmetic'"),
    ("rgb-1x", _set("context_bins", 7), ".npz", "'context.thresholds' has shape"),
    ("rgb-1x", _set("neighbour_cuts", [4, 2]), ".json", "field 'neighbour_cuts'"),
    ("rgb-1x", _set("info", []), ".json", "field 'info' is not an object"),
    ("stereo-1x", _set("family", ["audio-ladder"]), ".json", "field 'family'"),           # was unhashable
    ("stereo-1x", _set("frame", True), ".npz", "field 'frame' is True, expected int"),
    ("stereo-1x", _set("deadzone", "x"), ".npz", "field 'deadzone' is 'x', expected float"),
    ("stereo-1x", _set("frame", -1), ".npz", "inconsistent audio ladder parameters"),    # was an FFT error
    ("stereo-1x", _set("segment", 0), ".npz", "inconsistent audio ladder parameters"),   # was range() step 0
]


@pytest.mark.parametrize("name, edit, message", ARRAY_CASES, ids=[f"{c[0]}-{c[2][:30]}" for c in ARRAY_CASES])
def test_inconsistent_arrays_are_one_line_naming_the_file(registry, name, edit, message):
    folder = registry(name, arrays_edit=edit)
    with pytest.raises(WallocError) as caught:
        model.load_model(name)
    text = str(caught.value)
    assert text.startswith(str(folder / f"{name}.npz")) and message in text and "\n" not in text


@pytest.mark.parametrize("name, edit, suffix, message", JSON_CASES, ids=[f"{c[0]}-{c[3][:30]}" for c in JSON_CASES])
def test_inconsistent_json_is_one_line_naming_the_file(registry, name, edit, suffix, message):
    folder = registry(name, json_edit=edit)
    with pytest.raises(WallocError) as caught:
        model.load_model(name)
    text = str(caught.value)
    assert text.startswith(str(folder / f"{name}{suffix}")) and message in text and "\n" not in text


def test_a_json_whose_name_is_not_its_file_name_is_refused(registry):
    """Files record the model's name: a renamed copy would write files no other install can read."""
    path = registry("rgb-16x") / "rgb-16x.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "name": "other"}))
    with pytest.raises(WallocError, match=f"^{path}: field 'name' is 'other', but the file is named 'rgb-16x'$"):
        model.load_model("rgb-16x")


def test_neural_decoder_arrays_that_do_not_fit_name_the_file(registry, small_path):
    """The torch decoder is built on first use; a missing layer is found then, with the same kind of line."""
    folder = registry("rgb-16x", arrays_edit=_drop("decoder.stem.weight"))
    wlc = api.encode_image(small_path.read_bytes(), "rgb-16x").data   # the encoder is intact
    with pytest.raises(WallocError, match=f"^{folder / 'rgb-16x.npz'}: decoder arrays do not match the config"):
        api.decode_image(wlc)


def test_the_cli_prints_one_line_and_exits_1(registry, small_path, tmp_path):
    registry("rgb-1x", arrays_edit=_set("quality.gain", np.ones((2, 192))))
    result = CliRunner().invoke(main, ["encode", str(small_path), "-o", str(tmp_path / "x.wlc")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "rgb-1x.npz: array 'quality.gain' has shape" in result.output
    assert not (tmp_path / "x.wlc").exists()


def test_intact_copies_still_load_and_code(registry):
    """The checks refuse damage only: an unchanged copy of each model loads and codes."""
    registry("rgb-1x")
    registry("stereo-1x")
    rgb = (np.arange(16 * 24 * 3) % 251).astype(np.uint8).reshape(16, 24, 3)
    image = api.media.ImageData(rgb, "RGB", None, None, [])
    assert api.decode_image(api.encode_image_data(image, "rgb-1x")).rgb.shape == (16, 24, 3)
    buf = io.BytesIO()
    soundfile.write(buf, np.zeros((2048, 2)), 44100, format="WAV", subtype="PCM_16")
    assert api.encode_audio(buf.getvalue(), "stereo-1x").data


# -- earlier weights -------------------------------------------------------------------------
def _clip() -> bytes:
    t = np.arange(8192) / 44100
    buf = io.BytesIO()
    soundfile.write(buf, np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)], 1) * 0.3,
                    44100, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_files_of_earlier_weights_decode_with_them(registry, monkeypatch):
    """A refitted model keeps its earlier weights in ``previous/<name>.<short hash>.json``: files
    written with them decode to what they did, files naming weights nobody has are refused."""
    model._load_previous.cache_clear()
    old = api.encode_audio(_clip(), "stereo-1x", quality=40).data
    decoded = api.decode_audio(old)
    short = model.load_model("stereo-1x").config.short_hash
    refit = lambda d: d.__setitem__("ladder.tilt", d["ladder.tilt"] + 8)  # noqa: E731
    folder = registry("stereo-1x", arrays_edit=refit)  # a refit: other tables, another hash
    assert model.load_model("stereo-1x").config.short_hash != short
    with pytest.raises(WallocError, match=f"written with model stereo-1x weights {short}"):
        api.decode_audio(old)
    (folder / model.PREVIOUS).mkdir()
    for suffix in (".json", ".npz"):
        (folder / model.PREVIOUS / f"stereo-1x.{short}{suffix}").write_bytes((SHIPPED / f"stereo-1x{suffix}").read_bytes())
    assert api.decode_audio(old) == decoded
    assert api.encode_audio(_clip(), "stereo-1x", quality=40).data != old  # new files use the refit
    model._load_previous.cache_clear()


@pytest.mark.parametrize("weights", ["é" * 300, "../" * 5 + "rgb-1x", "0123456789ABCDEF", ""])
def test_a_header_naming_odd_weights_is_refused_in_one_line(weights):
    """Found by bench/fuzz.py: a 'weights' field of 300 accented letters made the search for
    earlier weights build a file name too long for the file system (OSError)."""
    from walloc_cli import container

    box = container.unpack(api.encode_audio(_clip(), "stereo-1x", quality=20).data)
    with pytest.raises(WallocError):
        api.decode_audio(container.pack(dict(box.header, weights=weights), box.sections))


@pytest.mark.parametrize("path", sorted(SHIPPED.rglob("*.npz")), ids=lambda p: p.name)
def test_weights_read_as_np_load_reads_them(path):
    """model.read_npz (ISA-L where installed) gives every shipped array exactly as np.load."""
    ours = model.read_npz(path)
    with np.load(path, allow_pickle=False) as z:
        assert sorted(ours) == sorted(z.files)
        for key in z.files:
            assert ours[key].dtype == z[key].dtype and ours[key].shape == z[key].shape, key
            np.testing.assert_array_equal(ours[key], z[key])


def test_weights_read_without_isal_go_through_np_load(monkeypatch):
    """Where ISA-L has no wheel, read_npz falls back to np.load: the same arrays."""
    import sys

    monkeypatch.setitem(sys.modules, "isal", None)  # `from isal import ...` now raises ImportError
    path = SHIPPED / "rgb-16x.npz"
    ours = model.read_npz(path)
    with np.load(path, allow_pickle=False) as z:
        assert sorted(ours) == sorted(z.files)
        for key in z.files:
            np.testing.assert_array_equal(ours[key], z[key])


def test_a_damaged_deflate_stream_is_one_line_naming_the_file(registry):
    """Bytes flipped inside a compressed member, the hash recorded again: one line, no traceback."""
    folder = registry("rgb-16x")
    npz = folder / "rgb-16x.npz"
    data = bytearray(npz.read_bytes())
    with zipfile.ZipFile(npz) as archive:
        member = max(archive.infolist(), key=lambda m: m.compress_size)
    h = member.header_offset  # its deflate stream starts after the local header's name and extra field
    start = h + 30 + int.from_bytes(data[h + 26 : h + 28], "little") + int.from_bytes(data[h + 28 : h + 30], "little")
    data[start : start + 16] = b"\xff" * 16  # an invalid block type: the inflater itself fails
    npz.write_bytes(bytes(data))
    config = json.loads((folder / "rgb-16x.json").read_text())
    config["sha256"] = model.file_sha256(npz)
    (folder / "rgb-16x.json").write_text(json.dumps(config))
    model.load_model.cache_clear()
    with pytest.raises(WallocError) as caught:
        model.load_model("rgb-16x")
    assert "rgb-16x.npz" in str(caught.value) and member.filename in str(caught.value)
    assert "\n" not in str(caught.value)


def test_npy_views_are_the_arrays_np_load_gives():
    """model._npy_view (read_npz's zero-copy reader): C and Fortran order, 0-d, empty, big-endian
    and version-2 headers as np.load reads them, read-only; object arrays refused."""
    import io

    rng = np.random.default_rng(2)
    cases = [rng.integers(-9, 9, (3, 4, 5)).astype(np.int32), np.asfortranarray(rng.random((4, 6))),
             np.array(7, np.int64), np.zeros((0, 3), np.float32), np.arange(6, dtype=">i4").reshape(2, 3)]
    for array in cases:
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        view = model._npy_view(buf.getvalue())
        assert view.dtype == array.dtype and view.shape == array.shape and not view.flags.writeable
        np.testing.assert_array_equal(view, array)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, cases[0], version=(2, 0))
    np.testing.assert_array_equal(model._npy_view(buf.getvalue()), cases[0])
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        model._npy_view(buf.getvalue())
