"""``--dask ADDRESS``: run a batch of ``walloc encode`` / ``walloc latents`` on a Dask cluster.

    walloc latents -r photos/ -o latents/ --dtype int8 --dask tcp://scheduler:8786
    walloc encode  -r photos/ -o wlc/ --dask tcp://scheduler:8786 --skip-existing

The plan (which input goes to which output, collisions, inputs that would be
overwritten) is made here, on the client, exactly as for a local run; each file is
then processed on a worker by the very function a local ``-j`` worker runs
(:func:`walloc_cli.cli.process`; files go a few per task, so that a million files are not
a million tasks): read, code, check the target, write it through a temporary file and a
no-clobber link.  So the outputs are byte-identical to a local
run (the codec is deterministic and uses one BLAS thread), every failure is one
error line naming its file, and an interrupted or partly failed run resumes with
``--skip-existing``: an output that exists is complete.

What the cluster must offer: the same paths on every worker (a shared file system:
NFS, a cluster file system, the same mount point everywhere), walloc and
``dask[distributed]`` installed in the same versions (``pip install 'walloc[dask]'``).
Workers write the outputs themselves; only one-line outcomes travel back.

``dask.distributed`` is an optional dependency, imported only when ``--dask`` is given.
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING, Iterator

from . import batch
from .errors import WallocError

if TYPE_CHECKING:
    from .cli import Outcome

INSTALL_HINT = "--dask needs dask.distributed: pip install 'walloc[dask]'"
CONNECT_TIMEOUT_S = 30


class ClusterError(WallocError):
    """The cluster cannot be used (not installed, not reachable): nothing was done."""


def absolute(job: batch.Job) -> batch.Job:
    """The job with absolute paths: a worker has its own working directory, maybe on another machine."""
    if job.problem:
        return job
    return replace(job, source=os.path.abspath(job.source), target=os.path.abspath(job.target))


def check(jobs: list[batch.Job]) -> None:
    if any(j.source == batch.STDIO or j.target == batch.STDIO for j in jobs):
        raise ClusterError("--dask reads and writes files, not stdin or stdout")


def _prepare_worker() -> None:
    """One BLAS / torch thread per task, as in a local -j worker (a Dask worker runs tasks in threads)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
    except ImportError:
        pass


MAX_FILES_PER_TASK = 64


def run_task(kind: str, jobs: list[batch.Job], options: dict, force: bool) -> list["Outcome"]:
    """What one Dask task runs: the local batch runner's own per-file function, over a few files."""
    from .cli import process

    _prepare_worker()
    return [process(kind, job, options, force) for job in jobs]


def files_per_task(count: int, threads: int) -> int:
    """Files in one task: about 4 tasks per worker thread, at most MAX_FILES_PER_TASK.

    One task per file would put a million tasks on the scheduler for ImageNet (it spends
    about a millisecond on each); a few tasks per thread still balance the load.
    """
    return max(1, min(MAX_FILES_PER_TASK, count // max(1, 4 * threads)))


def connect(address: str):
    try:
        from dask.distributed import Client
    except ImportError:
        raise ClusterError(INSTALL_HINT) from None
    try:
        return Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address} ({exc})") from None


def outcomes(kind: str, jobs: list[batch.Job], options: dict, force: bool, cluster) -> Iterator["Outcome"]:
    """Each job's outcome in input order, the work done by ``cluster`` (a Dask Client, or a scheduler's
    address); the client is closed at the end.

    Files go to the cluster a few per task (:func:`files_per_task`).  A task that dies with
    an unexpected error (a worker lost, a bug) is reported as a failure of each of its
    files, like any other; the rest of the batch goes on, and ``-n`` redoes just those.
    """
    from .cli import Outcome

    check(jobs)
    client = connect(cluster) if isinstance(cluster, str) else cluster
    if not jobs:
        client.close()
        return
    futures = []
    try:
        remote_options = {k: v for k, v in options.items() if k != "dask"}
        threads = sum(w.get("nthreads", 1) for w in client.scheduler_info().get("workers", {}).values())
        size = files_per_task(len(jobs), threads)
        chunks = [jobs[i:i + size] for i in range(0, len(jobs), size)]
        futures = client.map(run_task, [kind] * len(chunks), [[absolute(j) for j in c] for c in chunks],
                             [remote_options] * len(chunks), [force] * len(chunks), pure=False)
        for chunk, future in zip(chunks, futures):
            try:
                results = future.result()
            except Exception as exc:  # noqa: BLE001 - a task's failure is its files' failure
                detail = str(exc).splitlines()[0] if str(exc) else ""
                why = f"failed on the cluster ({type(exc).__name__}{': ' + detail if detail else ''})"
                results = [Outcome(job.source, job.target, why) for job in chunk]
            for job, outcome in zip(chunk, results):
                yield replace(outcome, source=job.source, target=job.target)  # the paths as the user wrote them
    finally:
        if futures:
            client.cancel(futures)
        client.close()
