"""Fuzzing the decoder: whatever the bytes, the result is a decode or a WallocError.

Each case must end in one of the two — never another exception type, a hang or
a huge allocation (the pixel limit and the payload-size check guard those).
"""
from __future__ import annotations

import json
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from walloc_cli import api, container
from walloc_cli.errors import WallocError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def wlc(small_path) -> bytes:
    return api.encode_image(small_path.read_bytes()).data


def decode_or_error(data: bytes) -> None:
    try:
        api.decode_image(data, max_pixels=1 << 22)
    except WallocError:
        pass
    try:
        api.info(data)
    except WallocError:
        pass


def reseal(header: dict, payload: bytes, version: int = 2) -> bytes:
    """A file with a valid CRC around an arbitrary header, to get past the checksum."""
    head = json.dumps(header).encode()
    body = struct.pack("<4sBI", container.MAGIC, version, len(head)) + head + struct.pack("<Q", len(payload)) + payload
    return body + struct.pack("<I", zlib.crc32(body))


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data):
    decode_or_error(data)
    decode_or_error(container.MAGIC + data)


def test_every_truncation(wlc):
    for n in range(len(wlc)):
        with pytest.raises(WallocError):
            api.decode_image(wlc[:n])


@FUZZ
@given(st.data())
def test_random_byte_flips_with_valid_crc(wlc, data):
    """Flip bytes anywhere after the prefix, then repair the CRC so the parser goes deeper."""
    body = bytearray(wlc[:-4])
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(9, len(body) - 1))
        body[i] = data.draw(st.integers(0, 255))
    decode_or_error(bytes(body) + struct.pack("<I", zlib.crc32(bytes(body))))


extreme_ints = st.one_of(st.integers(-(2**63), 2**63), st.sampled_from([0, 1, -1, 2**31, 2**32, 10**18]))
field_values = st.one_of(extreme_ints, st.none(), st.booleans(), st.text(max_size=5),
                         st.lists(extreme_ints, max_size=4), st.floats(allow_nan=True))


@FUZZ
@given(st.data())
def test_header_fields_set_to_extreme_values(wlc, data):
    box = container.unpack(wlc)
    header = dict(box.header)
    for key in data.draw(st.lists(st.sampled_from(sorted(header) + ["sections", "extra"]), min_size=1, max_size=3)):
        header[key] = data.draw(field_values)
    sections = [[name, len(b)] for name, b in box.sections.items()]
    header.setdefault("sections", sections)
    payload = b"".join(box.sections.values())
    decode_or_error(reseal(header, payload))


@FUZZ
@given(payload=st.binary(max_size=512), width=st.integers(1, 5000), height=st.integers(1, 5000))
def test_random_payload_under_a_valid_header(wlc, payload, width, height):
    box = container.unpack(wlc)
    block = 8
    pad = [(-height) % block, (-width) % block]
    header = {**box.header, "width": width, "height": height, "pad": pad,
              "latent_shape": [12, (height + pad[0]) // block, (width + pad[1]) // block],
              "sections": [["latents", len(payload)]]}
    decode_or_error(reseal(header, payload))


# -- the standing harness (bench/fuzz.py), a fixed slice of it -----------------------------------
def _harness():
    """bench/fuzz.py as a module (bench/ is not a package)."""
    import importlib.util
    import sys
    from pathlib import Path

    if "walloc_fuzz_harness" in sys.modules:
        return sys.modules["walloc_fuzz_harness"]
    path = Path(__file__).resolve().parent.parent / "bench" / "fuzz.py"
    spec = importlib.util.spec_from_file_location("walloc_fuzz_harness", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


CI_CASES = 2000   # `make fuzz` runs 100,000 of the same stream in worker processes


def test_the_fuzz_harness_finds_nothing_in_its_first_cases():
    """Cases 0 … CI_CASES − 1 of `make fuzz`, in this process: every seed of every model and
    modality, every mutator, every decode entry point.  Each case must decode or raise
    WallocError; the same cases run on every machine (they depend on their index alone)."""
    fuzz = _harness()
    seeds = fuzz.make_seeds()
    parsed = [fuzz.parse(data) for _, data in seeds]
    outcomes, findings = {}, []
    for index in range(CI_CASES):
        description, data = fuzz.make_case(index, seeds, parsed)
        outcome, detail = fuzz.run_case(data, index)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if outcome == "exception":
            findings.append(f"case {index} ({description}): {detail}")
    assert not findings, "\n".join(findings[:5])
    # the stream reaches deep: many cases decode, many are refused (the shares move with the
    # seed mix: 24 % decoded once the golden files of the refitted rgb-1x joined the seeds)
    assert outcomes.get("ok", 0) > CI_CASES // 5 and outcomes.get("WallocError", 0) > CI_CASES // 4


def test_the_fuzz_harness_reports_what_escapes(monkeypatch):
    """The harness itself: an exception other than WallocError is a finding, not an 'ok'."""
    fuzz = _harness()
    monkeypatch.setattr(fuzz.api, "info", lambda data: 1 / 0)
    outcome, detail = fuzz.run_case(b"WLOC", 0)
    assert outcome == "exception" and "info: ZeroDivisionError" in detail


def test_the_fuzz_harness_counts_hangs_crashes_and_memory_hogs(monkeypatch, wlc):
    """Worker supervision: a case that never returns is a hang, one that kills its process a crash,
    one whose worker outgrows the RSS cap is stopped; each worker is replaced and the run goes on."""
    import os
    import signal
    import threading

    import numpy as np

    fuzz = _harness()
    monkeypatch.setattr(fuzz, "make_seeds", lambda: [("small", wlc)])

    def misbehave(data, index):
        if index == 1:
            threading.Event().wait()                 # never returns
        if index == 2:
            os.kill(os.getpid(), signal.SIGKILL)     # dies as a crash in a C library would
        if index == 3:
            hog = np.ones(400 << 20, np.uint8)       # 400 MB resident, held
            threading.Event().wait()
            del hog
        return "ok", ""

    monkeypatch.setattr(fuzz, "run_case", misbehave)
    cap = fuzz._status_kb("self", "VmRSS") // 1024 + 200   # forked workers start as large as this process
    # 8 s: the 400 MB hog must pass the cap (a fraction of a second) long before it could count as a hang,
    # even on a loaded CI machine
    counts = fuzz.run(6, 2, timeout=8, rss_mb=cap, out=None, base=0, report=lambda line: None)
    assert (counts["ok"], counts["crash"], counts["rss-cap"], counts["hang"]) == (3, 1, 1, 1)
