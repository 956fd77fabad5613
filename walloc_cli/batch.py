"""File plumbing for the CLI: which output goes where, and writing it safely.

Kept apart from :mod:`walloc_cli.cli` so the rules (mirrored trees, collision
checks, never overwriting without ``--force``, temp-file-then-rename) are plain
functions that tests can call without a terminal.
"""
from __future__ import annotations

import errno
import fcntl
import io
import os
import re
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Union

from .errors import WallocError

STDIO = "-"


class PlanError(Exception):
    """The request as a whole cannot be carried out (nothing has been written)."""


@dataclass(frozen=True)
class Job:
    source: str       # a path, or "-" for stdin
    target: str       # a path, or "-" for stdout
    problem: str | None = None  # set when this one input cannot be processed at all
    suffix_from_content: bool = False  # target lacks its extension: the content decides (.png / .wav)

    def resolved(self, suffix: str) -> str:
        """The target path, with ``suffix`` appended when the content decides it."""
        return self.target + suffix if self.suffix_from_content else self.target


def _walk(root: Path, accept: Callable[[Path], bool], unreadable: list[OSError] | None = None,
          rejected: list[Path] | None = None) -> list[Path]:
    """Accepted files under ``root``, sorted; folders that cannot be read go to ``unreadable``
    (os.walk skips them silently by default: a run looked complete while it was not), and
    files that are not accepted (a camera's .CR2, a .txt) to ``rejected``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=None if unreadable is None else unreadable.append):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if accept(p):
                found.append(p)
            elif rejected is not None:
                rejected.append(p)
    return found


DECODED_INFIX = ".decoded"  # walloc decode photo.wlc -> photo.decoded.png: never the original's name


def names_folder(output: str) -> bool:
    """Whether ``-o`` names a folder: an existing one, or any name ending in a slash (then created)."""
    return output.endswith(("/", os.sep)) or Path(output).is_dir()


def plan(inputs: Iterable[str], output: str | None, recursive: bool, new_suffix: str | None,
         accept: Callable[[Path], bool], infix: str = "", rejected: list[Path] | None = None) -> list[Job]:
    """Map inputs to outputs (``new_suffix=None``: the extension is chosen per file later).

    * no ``-o``: next to each input, suffix replaced, ``infix`` before it (``decode`` gives
      ``.decoded``, so a decoded file never takes its original's name); stdin goes to stdout;
    * ``-o -``: stdout, for exactly one input;
    * ``-o DIR`` (an existing folder, or a name ending in ``/``): each output inside DIR; with
      ``-r`` the tree under each input folder is mirrored;
    * ``-o NAME`` with one input: that file; with one folder and ``-r``, NAME is the folder
      to create (as ``cp -r SRC NEW``); with several inputs NAME must be a folder (as ``cp``
      and ``mv``), else :class:`PlanError` before any work.

    Files under ``-r`` folders that ``accept`` turns down are added to ``rejected``.
    """
    inputs = list(inputs)
    expanded: list[tuple[str, Path | None]] = []  # (source, path relative to an input folder)
    jobs_with_problems: list[Job] = []
    for item in inputs:
        if item == STDIO:
            expanded.append((STDIO, None))
            continue
        p = Path(item)
        if p.is_dir():
            if not recursive:
                jobs_with_problems.append(Job(item, "", "is a directory (use -r to process folders)"))
                continue
            unreadable: list[OSError] = []
            for f in _walk(p, accept, unreadable, rejected):
                expanded.append((str(f), f.relative_to(p)))
            for exc in unreadable:
                reason = (exc.strerror or str(exc)).lower()
                jobs_with_problems.append(Job(str(exc.filename or p), "", f"folder cannot be read ({reason}); "
                                                                        f"its files were not processed"))
        else:
            expanded.append((item, None))

    if output == STDIO and len(expanded) + len(jobs_with_problems) != 1:
        raise PlanError("-o - (stdout) takes exactly one input")
    to_dir = False
    if output is not None and output != STDIO:
        to_dir = names_folder(output)
        one_folder = recursive and len(inputs) == 1 and Path(inputs[0]).is_dir()
        if not to_dir and one_folder and not os.path.lexists(output):
            to_dir = True  # walloc encode -r shots -o out: out is made, as cp -r shots out would
        elif not to_dir and (len(inputs) > 1 or one_folder):
            what = "is not a folder" if os.path.lexists(output) else "is not an existing folder"
            raise PlanError(f"{output} {what}: several inputs need an existing folder or a name ending in / "
                            f"(which is then created)")

    jobs: list[Job] = list(jobs_with_problems)
    for source, relative in expanded:
        if output == STDIO or (output is None and source == STDIO):
            target = STDIO
        elif source == STDIO and to_dir:
            raise PlanError("stdin input needs -o FILE or -o -")
        elif to_dir:
            rel = relative if relative is not None else Path(Path(source).name)
            target = str(Path(output) / rel.with_suffix(new_suffix or ""))
        elif output is not None:
            jobs.append(Job(source, output))
            continue
        else:
            stem = Path(source).with_suffix("")
            target = str(stem.with_name(stem.name + infix + (new_suffix or "")))
        jobs.append(Job(source, target, suffix_from_content=new_suffix is None and target != STDIO))

    seen: dict[str, str] = {}
    for job in jobs:
        if job.problem or job.target == STDIO:
            continue
        key = os.path.realpath(job.target)  # without extension when content decides: still unique per stem
        if key in seen:
            raise PlanError(f"{seen[key]} and {job.source} would both be written to {job.target}")
        seen[key] = job.source
        if job.source != STDIO and same_file(job.source, job.target):
            raise PlanError(f"{job.source}: output would overwrite the input")
    return jobs


def same_file(a: str, b: str) -> bool:
    """Whether paths ``a`` and ``b`` name one file: the same resolved path (symbolic links
    followed), or the same inode (hard links)."""
    if STDIO in (a, b):
        return False
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def read_input(source: str) -> bytes:
    if source == STDIO:
        if sys.stdin is None:
            raise TargetError("standard input is closed")
        return sys.stdin.buffer.read()
    with open(source, "rb") as f:
        return f.read()


Payload = Union[bytes, Callable[[BinaryIO], None]]


class TargetError(WallocError):
    """The output path cannot be written as asked (message says why; nothing was written)."""


MADE_BY_WALLOC = (".wlc", ".npy", ".npz")


def made_by_walloc(target: str) -> bool:
    """Whether a name is one walloc gives its own outputs (``x.wlc``, ``x.decoded.png``, latents),
    as opposed to a name an original image or sound may have."""
    name = Path(target).name
    return Path(name).suffix.lower() in MADE_BY_WALLOC or DECODED_INFIX + "." in name


def exists_message(target: str) -> str:
    """Why an existing output stops a file, and what to do: ``--force`` is suggested only for
    names of walloc's own outputs; a decoded image must never replace its original because
    the user followed the advice."""
    if made_by_walloc(target):
        return f"{target} exists (use --force to overwrite, or -n to skip existing outputs)"
    return (f"{target} exists and may be an original; not replaced (choose another name with -o, "
            f"or -n to skip existing outputs)")


def _exists(target: str, force: bool) -> FileExistsError:
    return FileExistsError(exists_message(target))


def check_target(target: str, force: bool) -> Path:
    """Where ``target`` is really written, refusing what must not be replaced.

    * absent: written (temporary file, then a no-clobber link into place);
    * a regular file: replaced only with ``force``;
    * a symbolic link (dangling or not): only with ``force``, and then written *through*:
      the file it names is replaced and the link is kept, as an editor saving through a
      link would; replacing the link itself with a file would silently detach it;
    * a character device or FIFO (``/dev/null``, a named pipe): only with ``force``, and
      then written *into* — the node is never replaced by a regular file (as root that
      would replace ``/dev/null`` for the whole system);
    * a folder, block device or socket: refused.
    Returns the path to write (the symbolic link resolved).
    """
    path = Path(target)
    try:
        link = stat.S_ISLNK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return path
    except NotADirectoryError:  # a parent is a file: reported where the folder is made
        return path
    if not force:
        if link and not path.exists():
            raise FileExistsError(f"{target} exists (a dangling symbolic link; use --force to write through it)")
        mode = os.stat(path).st_mode
        if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):  # no original lives in a device or a pipe
            what = "a character device" if stat.S_ISCHR(mode) else "a FIFO"
            raise FileExistsError(f"{target} exists ({what}; use --force to write into it)")
        raise _exists(target, force)
    final = Path(os.path.realpath(path)) if link else path
    try:
        mode = os.stat(final).st_mode
    except FileNotFoundError:
        return final
    if stat.S_ISREG(mode) or stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return final
    what = "a folder" if stat.S_ISDIR(mode) else "a block device" if stat.S_ISBLK(mode) else "not a regular file"
    raise TargetError(f"{target} is {what}; walloc writes regular files, character devices and FIFOs only")


def write_atomic(target: str, payload: Payload, force: bool, times: tuple[int, int] | None = None) -> None:
    """Write bytes, or let a writer function fill the file, via a temporary file and a rename.

    An interrupted run leaves either the complete old state or the complete new
    file, never a partial one; an existing file is replaced only with ``force``
    (see :func:`check_target` for links, devices and FIFOs).  Without ``force`` the
    file is published with a hard link, which fails if the name appeared meanwhile
    (another walloc finished it), so a file is never replaced by a race either.
    ``times`` (access, modification; nanoseconds) are set on the file before it is
    published, so it never appears with the wrong date.
    """
    if target == STDIO:
        if sys.stdout is None:
            raise TargetError("standard output is closed")
        sys.stdout.buffer.write(_as_bytes(payload))
        sys.stdout.buffer.flush()
        return
    final = check_target(target, force)
    if final.exists() and not stat.S_ISREG(os.stat(final).st_mode):
        _write_into(final, payload)  # a device or FIFO, and force was given
        return
    folder = _make_folder(final.parent, target)
    sweep_stale_temporaries(folder)
    fd, tmp = _new_temporary(folder, final.name, target)
    try:
        with os.fdopen(fd, "w+b") as f:
            if callable(payload):
                payload(f)
            else:
                f.write(payload)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o644 & ~_umask())
            if times is not None:
                os.utime(f.fileno(), ns=times)
            _publish(tmp, final, target, force)  # still locked: a sweeper cannot take it meanwhile
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _as_bytes(payload: Payload) -> bytes:
    if callable(payload):  # writers may seek (WAV headers): buffer for a pipe
        buf = io.BytesIO()
        payload(buf)
        return buf.getvalue()
    return payload


def _write_into(node: Path, payload: Payload) -> None:
    """A character device or FIFO: the whole output is made first, then written in one go."""
    data = _as_bytes(payload)
    fd = os.open(node, os.O_WRONLY | getattr(os, "O_NOCTTY", 0))
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _make_folder(folder: Path, target: str) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), folder)
        raise TargetError(f"cannot create folder {folder}: {blocker} is a file, not a folder") from None
    except PermissionError:
        raise PermissionError(errno.EACCES, "Permission denied", target) from None
    return folder


TEMP_SUFFIX = ".walloc.part"
# ".NAME.XXXXXXXX.walloc.part", as mkstemp names it
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX))


def _new_temporary(folder: Path, name: str, target: str) -> tuple[int, str]:
    """A new temporary file beside the target, exclusively locked for as long as it is open.

    The lock tells a sweeper (:func:`sweep_stale_temporaries`) that a live process owns
    the file; the kernel drops it when the process dies, however it dies.
    """
    while True:
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=TEMP_SUFFIX, dir=folder)
        except PermissionError:
            raise PermissionError(errno.EACCES, "Permission denied", target) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_ino == os.stat(tmp).st_ino:
                return fd, tmp
        except FileNotFoundError:
            pass  # swept between mkstemp and flock: make another
        except BaseException:
            os.close(fd)
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        os.close(fd)


def _publish(tmp: str, final: Path, target: str, force: bool) -> None:
    if force:
        os.replace(tmp, final)
        return
    try:
        os.link(tmp, final)  # atomic and never replaces: fails if the name exists now
    except FileExistsError:
        raise _exists(target, force) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        _rename_noreplace(tmp, final, target)  # a file system without hard links
        return
    os.unlink(tmp)


def _rename_noreplace(tmp: str, final: Path, target: str) -> None:
    """renameat2(RENAME_NOREPLACE) where the kernel has it, else check-then-rename."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        at_fdcwd, rename_noreplace = -100, 1
        if renameat2(at_fdcwd, os.fsencode(tmp), at_fdcwd, os.fsencode(str(final)), rename_noreplace) == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise _exists(target, False)
        if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(err, os.strerror(err), target)
    if os.path.lexists(final):
        raise _exists(target, False)
    os.replace(tmp, final)


_swept: set[str] = set()


def sweep_stale_temporaries(folder: Path) -> int:
    """Delete temporary files of walloc's own pattern that no live process holds; once per
    folder and process.  A walloc that was killed (SIGKILL, power loss) cannot clean up
    after itself; its temporary file's lock died with it.  Returns how many were removed."""
    key = os.path.realpath(folder)
    if key in _swept:
        return 0
    _swept.add(key)
    removed = 0
    try:
        names = [n for n in os.listdir(folder) if _TEMP_NAME.fullmatch(n)]
    except OSError:
        return 0
    for name in names:
        path = os.path.join(folder, name)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by a live writer: not stale
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                os.unlink(path)
                removed += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def remove_partial_outputs(targets: Iterable[str]) -> int:
    """Delete temporary files that :func:`write_atomic` left for ``targets``; returns how many.

    :func:`write_atomic` removes its own temporary file when interrupted, but a
    signal can land in the few bytecodes between creating the file and entering
    its ``try`` (or inside the cleanup itself), and a worker process killed by
    Ctrl-C may not clean up at all.  The CLI therefore sweeps once more after an
    interrupted batch, matching exactly the names ``mkstemp`` gives our temps.
    """
    removed = 0
    for target in targets:
        if target == STDIO or not target:
            continue
        path = Path(target)
        # ".NAME[.suffix].XXXXXXXX[.walloc].part": the suffix is there when the content chose it
        # (".walloc" is in the names of this version; earlier ones wrote without it)
        pattern = re.compile(re.escape(f".{path.name}") + r"(\.[^./]+)?\.[a-z0-9_]{8}(\.walloc)?\.part")
        try:
            candidates = list(path.parent.iterdir())
        except OSError:
            continue
        for leftover in candidates:
            if pattern.fullmatch(leftover.name):
                try:
                    leftover.unlink()
                    removed += 1
                except OSError:
                    pass
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
