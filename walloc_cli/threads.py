"""One BLAS thread around walloc's numeric kernels, whatever the caller's settings.

A matrix product split over several OpenBLAS threads may sum in another order, and the
decoded pixels of a float decoder can then move by one step between a program that
set ``OPENBLAS_NUM_THREADS=1`` (the CLI) and one that did not (any Python API user).
The kernels here are small (8×64 filter blocks, 192-wide projections) and gain nothing
from BLAS threads, so the library limits them itself, for the duration of the call,
and restores the caller's setting afterwards (threadpoolctl; torch's own threads are
handled by the neural decoder).
"""
from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # a dependency; without it the caller's BLAS settings apply
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
