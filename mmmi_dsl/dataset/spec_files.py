"""The data files a spec reads (image and npy templates, npy matrices, flow weights), kept with its dataset.

A manifest records its spec's text, and the recorded spec resolves relative paths against the
dataset directory (dataset/recorded.py). So ``generate`` copies every file the spec names by a
relative path inside its folder (``templates/a.png``) to the same path in the dataset directory,
and records each file's SHA-256 in ``fingerprint.files``: ``mmmic mi DIR`` and ``verify`` work on
the dataset as written, wherever it is moved; a resume with a changed file is refused; ``verify``
checks the copies. A file named by an absolute path, or through ``..`` (both need
``--allow-paths``), is recorded but not copied: the recorded spec reads it where it is.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath

from mmmi_dsl import ir
from mmmi_dsl.builtins import FLOWS
from mmmi_dsl.dataset.format import DatasetError
from mmmi_dsl.dataset.safety import is_regular, nofollow_new, refuse_link, safe_folder
from mmmi_dsl.files import sha256_file

#: First path parts a copied file may not take: the dataset's own files (manifests, croissant.json,
#: shard folders, lock and temp files)
OWN = ("manifest", "croissant", "shard-", ".")


def spec_files(model: ir.Model, spec_dir: Path) -> dict[str, Path]:
    """Each data file ``model`` reads, by the name its spec gives it: ``{"templates/a.png": full path}``.

    ``spec_dir``: the folder the spec's relative paths resolved against when it was lowered.
    """
    files: dict[str, Path] = {}
    for node in (*model.templates.values(), *model.matrices.values()):
        if node.path is not None:
            files[str(node.args["file"])] = Path(node.path)
    for flow in model.flows.values():
        for step in flow.steps:
            for key, value in step.args.items():
                builtin = FLOWS.get(step.name)
                arg = builtin.arg(key) if builtin is not None else None
                if (arg.type == "file" if arg is not None else builtin is None and key == "weights"):
                    full = Path(str(value))  # lowering keeps spec_dir / the given name, unnormalised
                    files[full.relative_to(spec_dir).as_posix() if full.is_relative_to(spec_dir) else str(full)] = full
    return files


def copied(name: str) -> bool:
    """Whether ``name`` is copied into the dataset: relative, with no ``..`` (else it is read where it is)."""
    p = PurePosixPath(name)
    return not p.is_absolute() and ".." not in p.parts


def fingerprint(files: dict[str, Path]) -> dict[str, str]:
    """``{name: sha256}`` of each file (the identity of the run's data files)."""
    return {name: sha256_file(path) for name, path in sorted(files.items())}


def check_names(files: dict[str, Path]) -> None:
    """Raise :class:`DatasetError` if a file to copy would take the place of one of the dataset's own."""
    for name in filter(copied, files):
        if PurePosixPath(name).parts[0].startswith(OWN):
            raise DatasetError(f"the spec reads `{name}`, a name the dataset uses for its own files, so it cannot "
                               "be kept beside the manifest\n  = help: rename the file (and its name in the spec) "
                               "so that its first part starts with none of " + ", ".join(f"`{o}`" for o in OWN))


def copy_spec_files(out: Path, files: dict[str, Path], recorded: dict[str, str]) -> None:
    """Copy each copied file of ``files`` to ``out / name`` unless an equal one is there (same SHA-256).

    The folders on the way are checked (a planted link is refused, never followed); each file is
    written to a new temp file and renamed over its place.

    Raises:
        DatasetError: a name that is one of the dataset's own (:func:`check_names`), or a link on the way.
    """
    check_names(files)
    for name, source in files.items():
        if not copied(name):
            continue
        parts = PurePosixPath(name).parts
        folder = out
        for part in parts[:-1]:
            folder = safe_folder(folder, part)
        target = folder / parts[-1]
        refuse_link(target)
        if is_regular(target) and sha256_file(target) == recorded[name]:
            continue
        tmp = folder / f".{parts[-1]}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        try:
            with open(source, "rb") as src, open(tmp, "wb", opener=nofollow_new) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(tmp, target)  # a rename replaces a link planted meanwhile, never writes through it
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def file_problems(root: Path, recorded: dict[str, str]) -> list[str]:
    """What is wrong with the copies of a dataset's spec files (``fingerprint.files``), one line each."""
    if not isinstance(recorded, dict) or not all(isinstance(v, str) for v in recorded.values()):
        return ["fingerprint.files: expected a table of file names and their sha256"]
    problems = []
    for name, sha in recorded.items():
        if not copied(name):
            continue
        path = root / name
        if path.is_symlink():
            problems.append(f"{name}: a symbolic link, not the copy of the spec's file")
        elif not is_regular(path):
            problems.append(f"{name}: missing (the recorded spec reads it; copy it from beside the spec)")
        elif sha256_file(path) != sha:
            problems.append(f"{name}: sha256 differs from the manifest (not the file the dataset was generated "
                            "with)")
    return problems
