"""``--dask ADDRESS``: run a batch of ``walloc encode`` / ``walloc latents`` on a Dask cluster.

    walloc latents -r photos/ -o latents/ --dtype int8 --dask tcp://scheduler:8786
    walloc encode  -r photos/ -o wlc/ --dask tcp://scheduler:8786 --skip-existing

The plan (which input goes to which output, collisions, inputs that would be
overwritten) is made here, on the client, exactly as for a local run; each file is
then one task that runs the very function a local ``-j`` worker runs
(:func:`walloc_cli.cli.process`): read, code, check the target, write it through a
temporary file and a no-clobber link.  So the outputs are byte-identical to a local
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


def run_task(kind: str, job: batch.Job, options: dict, force: bool) -> "Outcome":
    """What one Dask task runs: the local batch runner's own per-file function."""
    from .cli import process

    _prepare_worker()
    return process(kind, job, options, force)


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

    A task that dies with an unexpected error (a worker lost, a bug) is reported as a
    failure of its file, like any other; the rest of the batch goes on.
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
        futures = client.map(run_task, [kind] * len(jobs), [absolute(j) for j in jobs],
                             [remote_options] * len(jobs), [force] * len(jobs), pure=False)
        for job, future in zip(jobs, futures):
            try:
                outcome = future.result()
            except Exception as exc:  # noqa: BLE001 - a task's failure is its file's failure
                detail = str(exc).splitlines()[0] if str(exc) else ""
                outcome = Outcome(job.source, job.target,
                                  f"failed on the cluster ({type(exc).__name__}{': ' + detail if detail else ''})")
            yield replace(outcome, source=job.source, target=job.target)  # the paths as the user wrote them
    finally:
        if futures:
            client.cancel(futures)
        client.close()
