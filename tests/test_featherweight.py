"""Encoding is numpy + pywavelets + constriction only: torch stays out of the process."""
from __future__ import annotations

import subprocess
import sys


def test_import_and_encode_do_not_import_torch(small_path, tmp_path):
    code = f"""
import sys
import walloc_cli
from walloc_cli import api, cli
from walloc_cli.cli import main
assert "torch" not in sys.modules, "import walloc_cli pulled in torch"
try:
    main(["encode", {str(small_path)!r}, "-o", {str(tmp_path / 'x.wlc')!r}, "--quiet"])
except SystemExit as exit:
    assert exit.code == 0, exit.code
assert "torch" not in sys.modules, "encoding pulled in torch"
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "x.wlc").stat().st_size > 0


def test_quality_ladder_encode_and_decode_do_not_import_torch(small_path, tmp_path):
    """rgb-1x decodes with a numpy linear decoder: `walloc decode` never pays torch's import."""
    code = f"""
import sys
from walloc_cli.cli import main
for args in (["encode", {str(small_path)!r}, "-q", "40", "-o", {str(tmp_path / 'x.wlc')!r}, "--quiet"],
             ["decode", {str(tmp_path / 'x.wlc')!r}, "-o", {str(tmp_path / 'x.png')!r}, "--quiet"]):
    try:
        main(args)
    except SystemExit as exit:
        assert exit.code == 0, exit.code
    assert "torch" not in sys.modules, args[0] + " pulled in torch"
    assert not [m for m in sys.modules if m.startswith("walloc_cli.fit")], args[0] + " imported the fitting code"
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "x.png").stat().st_size > 0
