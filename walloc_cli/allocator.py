"""Keep freed memory for reuse in ``walloc`` processes (glibc's malloc), instead of handing
every large array back to the kernel and faulting it in again for the next file.

Why: a photo's encode or decode makes dozens of arrays of a few MB (1.2 M latents, 9 MB
of float pixels).  glibc serves blocks above its mmap threshold (128 KB at start, raised
adaptively only up to 32 MB and only after such a block is freed) with fresh mappings,
and every page of a fresh mapping is a page fault on first touch.  Decoding 24 photos
(768×512) spent 0.30–0.47 s of *system* time that way against 0.04–0.09 s with the
thresholds below — 10–15 % of the batch's wall time (``bench/speed.py``; the peak
memory was the same, 93–94 MB).  The thresholds keep blocks up to 64 MB on the heap and
let up to 256 MB of freed heap stay mapped between files.

Only the command line calls :func:`keep_freed_memory`: a library must not change its
host's allocator.  Other C libraries (musl, macOS) are left alone; so is any setting
the user made through glibc's own ``MALLOC_*`` environment variables.
"""
from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1   # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 256 << 20


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True if they were set."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):  # cheap: no file is read
            return False
    except (AttributeError, ValueError, OSError):  # not a glibc system (or no confstr at all)
        return False
    if any(name.startswith("MALLOC_") for name in os.environ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
