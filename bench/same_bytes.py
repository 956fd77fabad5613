"""Check that two walloc source trees write the same image files and decode them to the same pixels.

    python bench/same_bytes.py --before /path/to/old/checkout --after . [--data ../shared/data/images/val]

For refactors that must not change the bitstream (speed work on the encoder and the
decoder): every tree encodes the same photos in its own process — 26 validation photos at
q 10, 25, 50, 75, 90 and 100 in turn, 4 more with ``--effort 2``, a greyscale photo, a
37×23 crop and a 2400×1800 upscale (coded in two strips) — and decodes its own files; the
SHA-256 of each file and of each decoded image are compared.  Exit status 1 on any
difference.  (``git worktree add --detach /tmp/old <commit>`` gives an old checkout.)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

# Run inside each tree (its own walloc_cli first on sys.path): prints {name: [file hash, pixels hash, bytes]}.
_WORKER = r"""
import hashlib, io, json, sys
from pathlib import Path
import numpy as np
from PIL import Image
from walloc_cli import api
photos = sorted(p for p in Path(sys.argv[1]).iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
jobs = [(f.name, f.read_bytes(), [10, 25, 50, 75, 90, 100][i % 6], 1) for i, f in enumerate(photos[:26])]
jobs += [(f.name + "-effort2", f.read_bytes(), 60, 2) for f in photos[26:30]]
def png(im):
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=1)
    return buf.getvalue()
jobs.append(("grey", png(Image.open(photos[30]).convert("L")), 40, 1))
jobs.append(("crop-37x23", png(Image.open(photos[31]).convert("RGB").crop((0, 0, 37, 23))), 70, 1))
jobs.append(("two-strips", png(Image.open(photos[32]).convert("RGB").resize((2400, 1800))), 55, 1))
out = {}
for name, data, q, effort in jobs:
    wlc = api.encode_image(data, quality=q, effort=effort).data
    pixels = np.ascontiguousarray(api.decode_image(wlc).rgb).tobytes()
    out[f"{name}@q{q}"] = [hashlib.sha256(wlc).hexdigest(), hashlib.sha256(pixels).hexdigest(), len(wlc)]
print(json.dumps(out))
"""


def hashes(tree: Path, data: Path) -> dict[str, list]:
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    run = subprocess.run([sys.executable, "-c", _WORKER, str(data.resolve())], env=env, cwd=tree,
                         check=True, capture_output=True, text=True)
    return json.loads(run.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the old source tree")
    parser.add_argument("--after", type=Path, default=Path("."), help="the new source tree")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/images/val"))
    args = parser.parse_args()
    before, after = hashes(args.before, args.data), hashes(args.after, args.data)
    differ = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    for name in differ:
        print(f"differs: {name}: {before.get(name)} -> {after.get(name)}")
    print(f"{len(before)} encodes and decodes compared: " + ("identical" if not differ else f"{len(differ)} differ"))
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
