"""Output folders: checked writable before any work, locked against a second writer, replaced atomically.

* :func:`writable_folder` / :func:`writable_file` fail with one line (``OutputError``, a ``ValueError``)
  when a folder cannot be created or written (``/proc/x``, a path that is a file, a read-only folder), so a
  command fails before its first episode, not after it;
* :func:`output_lock` takes an exclusive ``flock`` on ``<folder>/.prunegym.lock`` for the duration of a
  ``compare`` (the file holds the holder's pid and is removed when the command ends; the kernel drops the
  lock when the process dies, even on ``kill -9``, leaving the file, which the next writer reuses); a second
  writer gets an ``OutputError`` naming that pid;
* :func:`replace_folder` moves a fully written staging folder over a destination folder (a TensorBoard
  run): a reader sees the old run or the new one, never two runs' events in one folder.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "LOCK_NAME",
    "OutputError",
    "new_staging_dir",
    "output_lock",
    "replace_folder",
    "staging_folder",
    "writable_file",
    "writable_folder",
]

LOCK_NAME = ".prunegym.lock"


class OutputError(ValueError):
    """An output path that cannot be used (printed as one line by the CLI, exit status 2)."""


def _reason(exc: OSError) -> str:
    return f"{type(exc).__name__}: {exc.strerror or exc}"


def writable_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """``path`` as a folder that exists (created if needed) and accepts a new file; ``OutputError`` if not."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError(f"{what} {str(p)!r} is a file, not a folder; choose another path")
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=p, prefix=".prunegym-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{what} {str(p)!r} is not writable ({_reason(exc)}); choose another path") from exc
    return p


def writable_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """``path`` as a file that can be written (its folder created if needed); ``OutputError`` if not."""
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"{what} {str(p)!r} is a folder, not a file; choose another path")
    writable_folder(p.parent if str(p.parent) else ".", f"folder of {what} {str(p)!r}")
    if p.exists() and not os.access(p, os.W_OK):
        raise OutputError(f"{what} {str(p)!r} is not writable; choose another path")
    return p


@contextmanager
def output_lock(folder: str | os.PathLike, command: str = "prunegym", name: str = LOCK_NAME) -> Iterator[Path]:
    """Hold the exclusive lock ``<folder>/<name>`` for the block (``OutputError`` naming the holder's pid if another
    process holds it; ``name``: one lock of several in a folder, e.g. one per tuning study). The lock file is
    removed when the block ends, while the lock is still held; a process that opened it before the removal sees that
    its file is no longer the one at the path and opens again."""

    p = writable_folder(folder)
    lock = p / name
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            what = str(p) if name == LOCK_NAME else str(lock)  # a folder's lock, or one of several in it
            raise OutputError(
                f"{what!r} is in use by another {command} (pid {holder}); wait for it to finish "
                "or choose another output folder"
            ) from None
        if _is_file_at(fd, lock):
            break
        os.close(fd)  # the previous holder removed it after we opened it: take the file now at the path
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield p
    finally:
        try:
            os.unlink(lock)
        except OSError:
            pass
        os.close(fd)  # releases the lock


def _is_file_at(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is the one at ``path`` (not removed or replaced since it was opened)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (own.st_dev, own.st_ino) == (st.st_dev, st.st_ino)


def staging_folder(root: str | os.PathLike) -> Path:
    """The staging area for folders written under ``root``: ``<parent>/.<root name>.staging``, beside (not
    inside) ``root`` so that TensorBoard, reading ``root``, never lists a half-written run."""
    r = Path(root)
    return r.parent / f".{r.name}.staging"


def replace_folder(new: Path, dest: Path, staging: Path) -> Path:
    """Move the complete folder ``new`` (inside ``staging``) to ``dest``, replacing what is there."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if dest.exists():
        old = staging / f"old-{uuid.uuid4().hex}"
        os.replace(dest, old)
    os.replace(new, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return dest


def new_staging_dir(staging: Path) -> Path:
    """A fresh, uniquely named folder in ``staging``."""
    staging.mkdir(parents=True, exist_ok=True)
    d = staging / f"new-{os.getpid()}-{uuid.uuid4().hex}"
    d.mkdir()
    return d
