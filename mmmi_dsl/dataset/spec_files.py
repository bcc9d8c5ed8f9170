"""The data files a spec reads (image and npy templates, npy matrices and covariances, flow weights),
kept with its dataset.

A manifest records its spec's text, and the recorded spec resolves relative paths against the
dataset directory (dataset/recorded.py). So ``generate`` copies every file the spec names by a
relative path that stays inside its folder (``templates/a.png``) to that path in the dataset
directory, and records each file's SHA-256 in ``fingerprint.files`` under the name the spec gives
it: ``mmmic mi DIR`` and ``verify`` work on the dataset as written, wherever it is moved; a resume
after a file changed is refused; ``verify`` checks the copies. A file named by an absolute path, or
by one that leaves the spec's folder through ``..`` (``--allow-paths``), is recorded but not
copied: the recorded spec reads it where it is.

Inside the dataset directory no link is followed, on the way to a copy or at it.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from pathlib import Path

from mmmi_dsl import ir
from mmmi_dsl.dataset.format import DatasetError, short
from mmmi_dsl.dataset.safety import fsync_folder, is_regular, nofollow_new, refuse_link, safe_folder
from mmmi_dsl.files import sha256_file

#: First path parts a copied file may not take: the dataset's own files (manifests, croissant.json,
#: shard folders, lock and temp files)
OWN = ("manifest", "croissant", "shard-", ".")


def spec_files(model: ir.Model) -> dict[str, Path]:
    """Each data file ``model`` read, by the name its spec gives it: ``{"templates/a.png": full path}``."""
    return {name: Path(path) for name, path in model.files.items()}


def destination(name: str) -> str | None:
    """Where in the dataset directory the copy of ``name`` goes (``data/../data/t.npy`` -> ``data/t.npy``),
    or None when it is not copied: absolute, leaving the folder, or not a usable file name."""
    if not isinstance(name, str) or not name or "\x00" in name:
        return None
    rel = posixpath.normpath(name)
    if posixpath.isabs(rel) or rel == "." or rel == ".." or rel.startswith("../"):
        return None
    return rel


def fingerprint(files: dict[str, Path]) -> dict[str, str]:
    """``{name: sha256}`` of each file (the identity of the run's data files)."""
    return {name: sha256_file(path) for name, path in sorted(files.items())}


def check_destinations(out: Path, files: dict[str, Path]) -> None:
    """Refuse, before anything is written, a copy that would take the place of one of the dataset's own
    files, or whose way in ``out`` is blocked by a link or a file (:class:`DatasetError`)."""
    for name in files:
        rel = destination(name)
        if rel is None:
            continue
        parts = rel.split("/")
        if parts[0].startswith(OWN):
            raise DatasetError(f"the spec reads `{name}`, a name the dataset uses for its own files, so it cannot "
                               "be kept beside the manifest\n  = help: rename the file (and its name in the spec) "
                               "so that its first part starts with none of " + ", ".join(f"`{o}`" for o in OWN))
        folder = out
        for part in parts[:-1]:
            folder = folder / part
            refuse_link(folder)
            if folder.exists() and not folder.is_dir():
                raise DatasetError(f"{folder} is a file where the folder of the spec's `{name}` goes\n  = help: "
                                   "remove it, or choose another directory")
        refuse_link(folder / parts[-1])


def copy_spec_files(out: Path, files: dict[str, Path], recorded: dict[str, str]) -> None:
    """Copy each file of ``files`` that is copied to its :func:`destination` in ``out``, unless an equal one
    is there; each copy is hashed as it is written and must have its ``recorded`` SHA-256.

    The folders on the way are checked (a planted link is refused, never followed); each file is
    written to a new temp file and renamed over its place.

    Raises:
        DatasetError: a name like the dataset's own, a link on the way, or a file that changed since
        its hash was recorded.
    """
    check_destinations(out, files)
    for name, source in files.items():
        rel = destination(name)
        if rel is None:
            continue
        parts = rel.split("/")
        folder = out
        for part in parts[:-1]:
            folder = safe_folder(folder, part)
        target = folder / parts[-1]
        refuse_link(target)
        if is_regular(target) and sha256_file(target) == recorded[name]:
            continue
        tmp = folder / f".{parts[-1][:200]}.{os.urandom(4).hex()}.tmp"
        try:
            sha = hashlib.sha256()
            with open(source, "rb") as src, open(tmp, "wb", opener=nofollow_new) as dst:
                while block := src.read(1 << 20):
                    sha.update(block)
                    dst.write(block)
                dst.flush()
                os.fsync(dst.fileno())
            if sha.hexdigest() != recorded[name]:
                raise DatasetError(f"{source} changed while the dataset was written (its sha256 is not the one "
                                   "recorded)\n  = help: rerun with --overwrite once the file is final")
            os.replace(tmp, target)  # a rename replaces a link planted meanwhile, never writes through it
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_folder(folder)


def inside(root: Path, name: str) -> Path | None:
    """``root / destination(name)`` if that is a regular file reached through no link; else None."""
    rel = destination(name)
    if rel is None:
        return None
    path = root
    try:
        for part in rel.split("/"):
            path = path / part
            if stat.S_ISLNK(os.lstat(path).st_mode):
                return None
        return path if stat.S_ISREG(os.lstat(path).st_mode) else None
    except (OSError, ValueError):
        return None


def file_problems(root: Path, recorded: dict[str, str]) -> list[str]:
    """What is wrong with the copies of a dataset's spec files (``fingerprint.files``), one line each."""
    if not isinstance(recorded, dict) or not all(isinstance(v, str) for v in recorded.values()):
        return ["fingerprint.files: expected a table of file names and their sha256"]
    problems = []
    for name, sha in recorded.items():
        if not name or "\x00" in name:
            problems.append(f"fingerprint.files: {short(name)} is not a file name")
            continue
        if destination(name) is None:
            continue
        path = inside(root, name)
        if path is None:
            problems.append(f"{short(name)}: missing, or reached through a symbolic link (the recorded spec reads "
                            "it; copy it from beside the spec)")
            continue
        try:
            same = sha256_file(path) == sha
        except OSError as err:
            problems.append(f"{short(name)}: cannot be read ({err.strerror or err})")
            continue
        if not same:
            problems.append(f"{short(name)}: sha256 differs from the manifest (not the file the dataset was "
                            "generated with)")
    return problems


def copied_names(recorded) -> list[str]:
    """The names of ``fingerprint.files`` that have a copy in the dataset directory."""
    return [name for name in recorded if destination(name) is not None] if isinstance(recorded, dict) else []
