"""One BLAS thread around walloc's numeric kernels, whatever the caller's settings.

A matrix product split over several OpenBLAS threads may sum in another order, and the
decoded pixels of a float decoder can then move by one step between a program that
set ``OPENBLAS_NUM_THREADS=1`` (the CLI) and one that did not (any Python API user).
The kernels here are small (8×64 filter blocks, 192-wide projections) and gain nothing
from BLAS threads, so the library limits them itself, for the duration of the call,
and restores the caller's setting afterwards (threadpoolctl; torch's own threads are
handled by the neural decoder).

The controller (the list of loaded BLAS libraries) is built once and rebuilt only when
the process has imported modules since, one of which may have loaded another BLAS
(torch, say): ``threadpool_limits`` scans every loaded library on each call, about
1 ms, paid twice per photo by a batch that codes hundreds, while the limit itself costs
microseconds.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator

_controller: Any = None
_modules_seen = -1  # len(sys.modules) when the controller was built: a new import may bring a BLAS


def _blas_controller() -> Any:
    """threadpoolctl's controller of this process's BLAS libraries (None without threadpoolctl)."""
    global _controller, _modules_seen
    if _controller is None or len(sys.modules) != _modules_seen:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # a dependency; without it the caller's BLAS settings apply
            return None
        _controller, _modules_seen = ThreadpoolController(), len(sys.modules)
    return _controller


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    controller = _blas_controller()
    if controller is None:
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, as ``-j 0`` and zstd's ``-T0``
    count them), else the machine's count."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
