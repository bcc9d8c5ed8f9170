"""Writing inside an output directory safely: no planted link is followed, one writer at a time.

Links: the output directory itself may be a symbolic link (the user named it), but every
path the writer, merge and resume create, rename, open or delete *inside* it is checked
with ``lstat`` first, files are opened with ``O_NOFOLLOW`` (and ``O_EXCL`` for new temp
files), folders with ``O_DIRECTORY | O_NOFOLLOW``, and a shard folder must resolve inside
the output directory. A link is refused with a :class:`DatasetError` naming it.

Writers: :class:`WriterLock` is an advisory ``fcntl.flock`` on ``.NAME.lock`` next to the
manifest ``NAME`` a run writes (``manifest.json``, or a job's part manifest, so the jobs
of a split may share a directory). The holder writes its pid, host, command and start
time into the file; a second writer exits 1 naming them. While the lock is held, temp
files of that manifest (``.NAME.*.tmp``) are a dead writer's and are deleted.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import sys
import time
from pathlib import Path

from mmmi_dsl.dataset.format import DatasetError

_HELP = ("\n  = help: mmmic never follows links inside an output directory; remove the link "
         "(or give the directory that holds the data itself as the output)")


def refuse_link(path: Path) -> None:
    """Raise :class:`DatasetError` if ``path`` is a symbolic link (a missing path is fine)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        try:
            where = f" (to {os.readlink(path)})"
        except OSError:
            where = ""
        raise DatasetError(f"{path} is a symbolic link{where}; refusing to write through it" + _HELP)


def is_regular(path: Path) -> bool:
    """Whether ``path`` is a regular file itself (a link to one is not)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def nofollow_new(path: str, flags: int) -> int:
    """An ``opener`` for :func:`open`: create a new file, never through a link nor over one."""
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    except FileExistsError:
        refuse_link(Path(path))
        raise


def safe_folder(root: Path, rel: str) -> Path:
    """``root / rel``, created if missing; refused if it is a link or resolves outside ``root``."""
    folder = root / rel
    refuse_link(folder)
    folder.mkdir(exist_ok=True)
    refuse_link(folder)  # planted between the check and mkdir
    if not folder.resolve().is_relative_to(root.resolve()) or not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder inside {root}" + _HELP)
    return folder


def fsync_folder(path: Path) -> None:
    """Make renames in a folder durable (the folder is opened without following a link)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            refuse_link(path)
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale(folder: Path, pattern: str) -> list[Path]:
    """Delete the files matching ``pattern`` in ``folder`` (a dead writer's temp files); return them.

    ``unlink`` never follows a link: a planted link is removed, not its target.
    """
    gone = []
    for leftover in folder.glob(pattern):
        if is_regular(leftover) or leftover.is_symlink():
            leftover.unlink(missing_ok=True)
            gone.append(leftover)
    return gone


def lock_name(manifest: str) -> str:
    """The lock file of the run writing manifest ``manifest``: ``.manifest.json.lock``."""
    return f".{manifest}.lock"


class WriterLock:
    """An exclusive advisory lock on ``folder / .NAME.lock``, held from :meth:`acquire` to :meth:`release`.

    Release deletes the lock file while still holding it; :meth:`acquire` retries when the
    file it locked was deleted meanwhile, so two writers never both hold one.
    """

    def __init__(self, folder: Path, manifest: str, command: str | None = None):
        self.path = folder / lock_name(manifest)
        self.command = command if command is not None else " ".join(["mmmic", *sys.argv[1:]])
        self.fd: int | None = None

    def acquire(self) -> WriterLock:
        """Take the lock or raise :class:`DatasetError` naming its holder."""
        for _ in range(100):
            refuse_link(self.path)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise DatasetError(f"{self.path.parent} is being written by another mmmic run ({holder}); "
                                   f"it holds {self.path}\n  = help: wait for it to finish; two writers "
                                   "into one dataset would corrupt it") from None
            try:
                same = os.fstat(fd).st_ino == os.lstat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                self._write_holder()
                return self
            os.close(fd)  # the previous holder deleted that file as it released it: take the new one
        raise DatasetError(f"could not lock {self.path}: it keeps being replaced")

    def _write_holder(self) -> None:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                "since": time.strftime("%Y-%m-%d %H:%M:%S %z")}
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, (json.dumps(info) + "\n").encode(), 0)
        except OSError:
            pass  # a full disk: the lock holds without the note

    def release(self) -> None:
        """Delete the lock file and unlock (never raises)."""
        if self.fd is None:
            return
        try:
            if os.fstat(self.fd).st_ino == os.lstat(self.path).st_ino:
                self.path.unlink()
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    """The holder's note, in words: ``pid 123 on host, `mmmic generate ...`, since ...``."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
        return f"pid {info['pid']} on {info['host']}, `{info['command']}`, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its pid and command are not recorded yet"
