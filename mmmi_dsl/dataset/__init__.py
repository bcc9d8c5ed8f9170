"""Stage 6, output: generated datasets on disk, format ``mmmi-dataset/1``.

A dataset is a directory: ``manifest.json`` plus one ``.npy`` per variable per shard
(``shard-00000/x.npy``, first axis = sample), loadable with numpy alone. Shards are
streamed batch by batch, hashed as written, fsynced and renamed into place, and the
manifest is rewritten atomically after each one, so a killed run resumes where it
stopped and ends byte-identical to an uninterrupted run. Jobs of a split write
disjoint shards into part manifests that :func:`merge` joins. ``docs/dataset-format.md``
is the reference.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import re
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np
from tqdm import tqdm

from mmmi_dsl.errors import MmmicError, UsageError, did_you_mean
from mmmi_dsl.files import dumps_json, write_atomic

FORMAT = "mmmi-dataset/1"
MANIFEST = "manifest.json"
# The fields that decide whether an existing directory holds this run's dataset.
IDENTITY = ("format", "n", "seed", "chunk_size", "shard_size", "spec_sha256", "params", "variables",
            "fingerprint")
# Keys this module writes; the caller's metadata may not use them.
RESERVED = frozenset({"format", "n", "seed", "chunk_size", "shard_size", "variables", "fingerprint",
                      "job", "parts", "complete", "shards"})
REQUIRED_METADATA = ("spec", "spec_sha256", "params", "mi")
SHARD_KEYS = ("index", "start", "n", "files", "sha256", "bytes")

MI_BATCHES = 20          # batch means for the standard error of the plug-in MI
MAX_PLUGIN_DIM = 512     # p + q above this: no plug-in check
MIN_ROWS_PER_DIM = 5     # each batch needs at least 5 (p + q) samples
MI_SIGMAS = 5.0
READ_ROWS = 8192         # rows per read when streaming moments
MAX_LINES = 20           # problems of one kind listed before "... and k more"


class DatasetError(MmmicError):
    """A dataset directory that is missing, corrupt or from another run (exit code 1)."""

    exit_code = 1


class ChunkSampler(Protocol):
    """What :func:`write_dataset` consumes.

    ``sample_range(start, stop)`` returns, for every variable, an array of shape
    ``(stop - start, *shape)`` and dtype ``variables[name][1]``; sample k depends only on
    (seed, k), whatever ranges are asked for.
    """

    chunk_size: int
    variables: dict[str, tuple[tuple[int, ...], str]]

    def sample_range(self, start: int, stop: int) -> dict[str, np.ndarray]: ...


# ----------------------------------------------------------------- naming


def manifest_name(job: tuple[int, int]) -> str:
    """``manifest.json`` for an unsplit run, ``manifest.part-I-of-K.json`` for job I of K."""
    i, k = job
    return MANIFEST if k == 1 else f"manifest.part-{i}-of-{k}.json"


def file_stems(variables: Iterable[str]) -> dict[str, str]:
    """File stems of variable names: ``x[1]`` -> ``x_1_``, made unique ignoring case.

    Every character outside ``[A-Za-z0-9_-]`` becomes ``_``; a clash gets ``-2``, ``-3``,
    ... in sorted name order, so the mapping depends only on the set of names.
    """
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in sorted(variables):
        base = re.sub(r"[^A-Za-z0-9_-]", "_", name) or "_"
        stem, k = base, 1
        while stem.lower() in used:
            k += 1
            stem = f"{base}-{k}"
        used.add(stem.lower())
        out[name] = stem
    return out


def shard_count(n: int, shard_size: int) -> int:
    """The number of shards S of n samples."""
    return -(-n // shard_size)


def _shard_rows(manifest: dict, index: int) -> tuple[int, int]:
    """The samples ``[start, stop)`` of shard ``index``."""
    size = manifest["shard_size"]
    return index * size, min(manifest["n"], (index + 1) * size)


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """The ``.npy`` (version 1.0) header of a C-order array of this shape and dtype."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(shape)})
    return buf.getvalue()


def _file_bytes(manifest: dict, index: int, var: str) -> int:
    """The size of one shard file: header plus data."""
    start, stop = _shard_rows(manifest, index)
    spec = manifest["variables"][var]
    shape = (stop - start, *spec["shape"])
    return len(_npy_header(shape, np.dtype(spec["dtype"]))) + math.prod(shape) * np.dtype(spec["dtype"]).itemsize


# ----------------------------------------------------------------- manifests


def read_manifest(path: Path) -> dict:
    """A manifest file, checked for the keys this module relies on."""
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:
        raise DatasetError(f"cannot read {path}: {err}") from None
    problem = _manifest_problem(manifest)
    if problem:
        raise DatasetError(f"{path} is not a valid {FORMAT} manifest: {problem}")
    return manifest


def _manifest_problem(m) -> str | None:
    """What makes ``m`` unusable as a manifest (a missing key or a value of the wrong type), or None."""
    if not isinstance(m, dict):
        return "not a JSON object"
    missing = [k for k in (*IDENTITY, "shards", "complete") if k not in m]
    if missing:
        return f"missing {', '.join(missing)}"
    checks = [("format", str, None), ("n", int, 1), ("seed", int, None), ("chunk_size", int, 1),
              ("shard_size", int, 1), ("spec_sha256", str, None), ("params", dict, None),
              ("variables", dict, None), ("fingerprint", dict, None), ("complete", bool, None),
              ("shards", list, None)]
    checks += [(k, t, None) for k, t in (("mi", list), ("gaussian_arrays", dict), ("parts", list), ("job", list))
               if k in m]
    for key, kind, low in checks:
        problem = _type_problem(m[key], kind, low, f"`{key}`")
        if problem:
            return problem
    for name, v in m["variables"].items():
        if not isinstance(v, dict) or not isinstance(v.get("shape"), list) or not isinstance(v.get("dtype"), str):
            return f"`variables.{name}` is {_short(v)}, expected {{\"shape\": [...], \"dtype\": \"float32\"}}"
        problem = next((_type_problem(d, int, 0, f"`variables.{name}.shape`") for d in v["shape"]
                        if _type_problem(d, int, 0, "")), None)
        if problem:
            return problem
        try:
            if np.dtype(v["dtype"]).hasobject:
                return f"`variables.{name}.dtype` is {v['dtype']!r}: object arrays are not allowed"
        except TypeError:
            return f"`variables.{name}.dtype` is {v['dtype']!r}, not a numpy dtype"
    for i, r in enumerate(m.get("mi", [])):
        if not isinstance(r, dict) or not isinstance(r.get("query"), str):
            return f"`mi[{i}]` is {_short(r)}, expected {{\"query\": \"I(a; b)\", \"nats\": ...}}"
    for i, s in enumerate(m["shards"]):
        where = f"shards[{i}]"
        if not isinstance(s, dict) or any(k not in s for k in SHARD_KEYS):
            return f"`{where}` is {_short(s)}, expected an object with {', '.join(SHARD_KEYS)}"
        for key in ("index", "start", "n"):
            problem = _type_problem(s[key], int, 0, f"`{where}.{key}`")
            if problem:
                return problem
        for key, kind in (("files", str), ("sha256", str), ("bytes", int)):
            entry = s[key]
            if not isinstance(entry, dict) or any(not isinstance(x, kind) or isinstance(x, bool) for x in entry.values()):
                return f"`{where}.{key}` is {_short(entry)}, expected {{variable: {kind.__name__}}}"
            if key != "files" and set(entry) != set(s["files"]):
                return f"`{where}.{key}` names other variables than `{where}.files`"
    return None


def _type_problem(value, kind: type, low: int | None, where: str) -> str | None:
    """``where is "7", expected an integer >= 1`` when ``value`` is not of JSON type ``kind``, or None."""
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if ok and low is not None and value < low:
        ok = False
    if ok:
        return None
    names = {int: "an integer", str: "a string", dict: "an object", list: "a list", bool: "true or false"}
    return f"{where} is {_short(value)}, expected {names[kind]}" + (f" >= {low}" if low is not None else "")


def _identity_difference(old: dict, new: dict) -> str | None:
    """Where two manifests' identities first differ (``seed is 7 there, 8 here``), or None."""
    for key in IDENTITY:
        if old.get(key) != new.get(key):
            where, a, b = _first_difference(old.get(key), new.get(key), key)
            return f"{where} is {_short(a)} there, {_short(b)} here"
    return None


def _first_difference(a, b, path: str) -> tuple[str, object, object]:
    """Descend into dicts to the first differing key (``params.rho``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}")
    return path, a, b


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _new_manifest(sampler: ChunkSampler, n: int, seed: int, shard_size: int, metadata: dict,
                  fingerprint: dict, job: tuple[int, int]) -> dict:
    """The manifest of a run before any shard is written (JSON-normalised)."""
    clash = sorted(RESERVED & metadata.keys())
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if clash or missing:
        raise ValueError(f"metadata: {', '.join(missing)} missing; {', '.join(clash)} reserved")
    variables = {name: {"shape": list(shape), "dtype": np.dtype(dtype).name}
                 for name, (shape, dtype) in sampler.variables.items()}
    head = {"format": FORMAT, "n": n, "seed": seed, "chunk_size": sampler.chunk_size,
            "shard_size": shard_size, "variables": variables, "fingerprint": fingerprint}
    return json.loads(dumps_json({**head, **metadata, "job": list(job), "complete": False, "shards": []}))


def _manifest_paths(out_dir: Path) -> list[Path]:
    """The manifests in a directory: ``manifest.json`` and the part manifests."""
    return sorted(p for p in [out_dir / MANIFEST, *out_dir.glob("manifest.part-*-of-*.json")] if p.is_file())


def run_to_resume(out_dir: str | Path, job: tuple[int, int] = (0, 1)) -> bool:
    """Whether ``out_dir`` holds job ``job``'s manifest, or the temp file of one being written when killed."""
    name = manifest_name(job)
    out_dir = Path(out_dir)
    return (out_dir / name).is_file() or any(out_dir.glob(f".{name}.*.tmp"))


def _on_disk(out_dir: Path, shard: dict) -> bool:
    """Whether every file of a shard exists with its recorded size."""
    return all((out_dir / rel).is_file() and (out_dir / rel).stat().st_size == shard["bytes"][var]
               for var, rel in shard["files"].items())


def _prepare(out_dir: Path, manifest: dict, job: tuple[int, int], overwrite: bool) -> dict[int, dict]:
    """Check the manifests already in ``out_dir`` against this run; return the shards to keep.

    A manifest from another run raises :class:`DatasetError` naming the differing field;
    with ``overwrite`` it is deleted instead, with the files it lists for shards this job
    owns or this run will not have (as is this job's own manifest, so it starts over).
    Otherwise every matching manifest contributes its shards of this job still on disk.
    """
    i, k = job
    n_shards = shard_count(manifest["n"], manifest["shard_size"])
    keep: dict[int, dict] = {}
    for path in _manifest_paths(out_dir):
        try:
            old = read_manifest(path)
        except DatasetError:
            if not overwrite:
                raise
            path.unlink(missing_ok=True)
            continue
        diff = _identity_difference(old, manifest)
        if overwrite and (diff or path.name == manifest_name(job)):
            _remove(out_dir, path, [s for s in old["shards"] if s["index"] % k == i or s["index"] >= n_shards])
        elif diff:
            raise DatasetError(f"{path} belongs to another dataset: {diff}; "
                               "choose another directory or overwrite it")
        elif not overwrite:
            keep.update({s["index"]: s for s in old["shards"] if s["index"] % k == i and _on_disk(out_dir, s)})
    return keep


def _remove(out_dir: Path, manifest_path: Path, shards: list[dict]) -> None:
    """Delete shard files inside ``out_dir`` (never outside it), their emptied folders, then a manifest."""
    root = out_dir.resolve()
    folders = set()
    for shard in shards:
        for rel in shard["files"].values():
            path = (out_dir / rel).resolve()
            if path.is_relative_to(root):
                path.unlink(missing_ok=True)
                folders.add(path.parent)
    for folder in folders - {root}:
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty: it holds files this job does not own
    manifest_path.unlink(missing_ok=True)


# ----------------------------------------------------------------- writing


class _NpyWriter:
    """One shard file being written: a temp file with the full header, rows appended, hashed."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.tmp = path, path.with_name(f".{path.name}.tmp")
        self.shape, self.dtype = shape, np.dtype(dtype)
        self.rows = 0
        self.sha = hashlib.sha256()
        self.file = open(self.tmp, "wb")
        self._write(_npy_header(shape, self.dtype))

    def _write(self, data) -> None:
        self.sha.update(data)
        with _naming(self.path):
            self.file.write(data)

    def append(self, rows: np.ndarray) -> None:
        """Append a batch, (b, *shape) of the file's dtype."""
        if rows.dtype != self.dtype or rows.shape[1:] != self.shape[1:]:
            raise DatasetError(f"sampler returned {rows.dtype}{list(rows.shape[1:])} per sample for "
                               f"{self.path.name}, expected {self.dtype}{list(self.shape[1:])}")
        self._write(np.ascontiguousarray(rows).reshape(-1).view(np.uint8))
        self.rows += len(rows)

    def close(self) -> tuple[str, int]:
        """Flush and fsync; return (sha256 hex, size in bytes)."""
        with _naming(self.path):
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
        if self.rows != self.shape[0]:
            raise DatasetError(f"sampler returned {self.rows} rows for {self.path.name}, expected {self.shape[0]}")
        return self.sha.hexdigest(), self.tmp.stat().st_size

    def discard(self) -> None:
        """Close and delete the temp file; never raises (a full disk fails the close's flush)."""
        try:
            self.file.close()
        except OSError:
            pass
        self.tmp.unlink(missing_ok=True)


def _write_shard(out_dir: Path, sampler: ChunkSampler, manifest: dict, index: int, batch_size: int,
                 bar: tqdm) -> dict:
    """Stream shard ``index`` to its files (temp, fsync, rename); return its manifest entry."""
    start, stop = _shard_rows(manifest, index)
    rel_dir = f"shard-{index:05d}"
    shard_dir = out_dir / rel_dir
    shard_dir.mkdir(parents=True, exist_ok=True)
    for leftover in shard_dir.glob(".*.tmp"):  # from a killed run
        leftover.unlink()
    stems = file_stems(manifest["variables"])
    files = {var: f"{rel_dir}/{stems[var]}.npy" for var in manifest["variables"]}
    writers: dict[str, _NpyWriter] = {}
    try:
        for var, spec in manifest["variables"].items():
            writers[var] = _NpyWriter(out_dir / files[var], (stop - start, *spec["shape"]), spec["dtype"])
        for a in range(start, stop, batch_size):
            b = min(stop, a + batch_size)
            batch = sampler.sample_range(a, b)
            for var, w in writers.items():
                w.append(batch[var])
            bar.update(b - a)
        done = {var: w.close() for var, w in writers.items()}
    except BaseException:
        for w in writers.values():
            w.discard()
        raise
    for w in writers.values():
        os.replace(w.tmp, w.path)
    _fsync_dir(shard_dir)
    return {"index": index, "start": start, "n": stop - start, "files": files,
            "sha256": {var: d[0] for var, d in done.items()}, "bytes": {var: d[1] for var, d in done.items()}}


def _fsync_dir(path: Path) -> None:
    """Make renames in a folder durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_space(out_dir: Path, manifest: dict, todo: list[int]) -> None:
    """Refuse to start when the free disk space is smaller than the bytes still to write."""
    need = sum(_file_bytes(manifest, s, var) for s in todo for var in manifest["variables"])
    probe = out_dir
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need:
        raise DatasetError(f"not enough disk space in {out_dir}: {_size(need)} ({need} bytes) still to write, "
                           f"{_size(free)} ({free} bytes) free\n  = help: free some space, write to another "
                           "disk (-o), or split the run over several disks (--shard I/K, then merge)")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n:.1f} TiB"


def write_dataset(out_dir: str | Path, sampler: ChunkSampler, n: int, *, seed: int, shard_size: int,
                  batch_size: int, metadata: dict, fingerprint: dict, job: tuple[int, int] = (0, 1),
                  progress: bool = True, overwrite: bool = False) -> dict:
    """Write (or resume) the shards of job ``job`` of a dataset of ``n`` samples.

    Memory is bounded by ``batch_size`` samples; a ``batch_size`` that is a multiple of
    ``sampler.chunk_size`` (as is ``shard_size``) never cuts a chunk. Shard files do not
    depend on ``batch_size`` or on the job split.

    Args:
        out_dir: the dataset directory (created).
        sampler: a :class:`ChunkSampler` seeded with ``seed``.
        n: number of samples.
        seed: the sampler's seed (recorded; an identity field).
        shard_size: samples per shard; shard s holds ``[s * shard_size, (s + 1) * shard_size)``.
        batch_size: samples per ``sampler.sample_range`` call.
        metadata: the run's description, stored verbatim at the top level of the manifest;
            needs ``spec``, ``spec_sha256``, ``params``, ``mi`` (a list of
            ``{"query", "nats", ...}``) and may hold ``gaussian_arrays`` (see :func:`verify`).
        fingerprint: further identity fields (e.g. standardisation, dtype).
        job: (I, K): write shards with ``index % K == I`` into ``manifest.part-I-of-K.json``
            (``manifest.json`` when K == 1).
        progress: show a progress bar over samples on stderr.
        overwrite: delete a dataset of another run found in ``out_dir`` (and this job's
            own shards) instead of refusing.

    Returns:
        The manifest written.

    Raises:
        DatasetError: ``out_dir`` holds another run's dataset, or the disk is too small.
        UsageError: a bad n, shard_size, batch_size or job.
    """
    out_dir = Path(out_dir)
    n, seed = int(n), int(seed)
    _check_args(n, shard_size, batch_size, job)
    manifest = _new_manifest(sampler, n, seed, shard_size, metadata, fingerprint, job)
    done = _prepare(out_dir, manifest, job, overwrite) if out_dir.is_dir() else {}
    owned = [s for s in range(shard_count(n, shard_size)) if s % job[1] == job[0]]
    todo = [s for s in owned if s not in done]
    _check_space(out_dir, manifest, todo)
    target = out_dir / manifest_name(job)
    out_dir.mkdir(parents=True, exist_ok=True)
    for leftover in out_dir.glob(f".{target.name}.*.tmp"):  # write_atomic's, from a killed run
        leftover.unlink()

    recorded = [len(done)]

    def save() -> None:
        manifest["shards"] = [done[s] for s in sorted(done)]
        manifest["complete"] = len(done) == len(owned)
        with _naming(target):
            write_atomic(target, dumps_json(manifest) + "\n")
        recorded[0] = len(done)

    total = sum(_rows(manifest, s) for s in owned)
    try:
        save()
        with tqdm(total=total, initial=total - sum(_rows(manifest, s) for s in todo), unit="sample",
                  unit_scale=True, file=sys.stderr, disable=not progress,
                  desc=f"job {job[0]}/{job[1]}" if job[1] > 1 else "samples") as bar:
            for s in todo:
                done[s] = _write_shard(out_dir, sampler, manifest, s, batch_size, bar)
                save()
    except OSError as err:
        if err.errno not in _NO_SPACE:
            raise
        raise DatasetError(
            f"{_NO_SPACE[err.errno]} while writing {err.filename or out_dir} ({err.strerror}): {recorded[0]} of "
            f"{len(owned)} shards are complete and recorded in {target}; the unfinished shard's temp files were "
            "deleted\n  = help: free some space (or raise the limit) and rerun the same command (--resume) to "
            "finish the dataset") from None
    return manifest


@contextmanager
def _naming(path: Path):
    """Re-raise an OSError as one about ``path``: a full disk's write error carries no file name."""
    try:
        yield
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from None


# The errors of a write that ran out of room, and what to call them.
_NO_SPACE = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded",
             errno.EFBIG: "file size limit reached (ulimit -f)"}


def _rows(manifest: dict, index: int) -> int:
    start, stop = _shard_rows(manifest, index)
    return stop - start


def _check_args(n: int, shard_size: int, batch_size: int, job: tuple[int, int]) -> None:
    for name, value in (("n", n), ("shard size", shard_size), ("batch size", batch_size)):
        if value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}")
    _split(*job, "job")


# ----------------------------------------------------------------- job splits


def _split(i: int, k: int, source: str) -> tuple[int, int]:
    """Check a job split (I, K): K >= 1 and 0 <= I < K."""
    if k < 1 or not 0 <= i < k:
        raise UsageError(f"{source}: job {i} of {k} is not a split; need K >= 1 and 0 <= I < K (I is 0-based)")
    return i, k


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise UsageError(f"{name} is not set; pass --shard I/K")
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{name}={value!r} is not an integer") from None


def shard_from_env(arg: str | None) -> tuple[int, int]:
    """This process's job split (I, K), 0-based.

    From ``--shard I/K`` if given, else a SLURM array (``SLURM_ARRAY_TASK_ID`` relative to
    ``SLURM_ARRAY_TASK_MIN``, in steps of ``SLURM_ARRAY_TASK_STEP``, of
    ``SLURM_ARRAY_TASK_COUNT`` tasks), else torchrun's ``RANK`` of ``WORLD_SIZE``, else (0, 1).

    Raises:
        UsageError: a malformed value, or an array whose task ids are not evenly spaced.
    """
    if arg is not None:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", arg)
        if not m:
            raise UsageError(f"--shard {arg!r}: expected I/K with 0 <= I < K, e.g. --shard 0/4")
        return _split(int(m[1]), int(m[2]), f"--shard {arg}")
    if "SLURM_ARRAY_TASK_ID" in os.environ:
        task, count = _env_int("SLURM_ARRAY_TASK_ID"), _env_int("SLURM_ARRAY_TASK_COUNT")
        low, step = _env_int("SLURM_ARRAY_TASK_MIN", 0), _env_int("SLURM_ARRAY_TASK_STEP", 1)
        i, rem = divmod(task - low, step) if step >= 1 else (0, 1)
        if rem:
            raise UsageError(f"SLURM array task {task} is not min {low} + a multiple of step {step}; "
                             "pass --shard I/K")
        return _split(i, count, f"SLURM array task {task} (min {low}, step {step}, count {count})")
    if "RANK" in os.environ or "WORLD_SIZE" in os.environ:
        return _split(_env_int("RANK"), _env_int("WORLD_SIZE"), "RANK/WORLD_SIZE")
    return 0, 1


def merge(sources: Iterable[str | Path], out_dir: str | Path | None = None) -> dict:
    """Join the part manifests of a split run into ``manifest.json``.

    Args:
        sources: dataset directories (all their ``manifest.part-*-of-*.json``) and/or part
            manifest files. Nothing is copied: shards in other directories are recorded by
            paths relative to ``out_dir``.
        out_dir: where ``manifest.json`` goes (default: the first part's directory).

    Returns:
        The merged manifest; ``complete`` is true iff every shard 0..S-1 is present.

    Raises:
        DatasetError: no part manifests, parts of different runs (the field is named), a
            shard in two parts, or an ``out_dir`` holding another run's manifest.
    """
    parts = _part_paths(sources)
    out = Path(out_dir) if out_dir is not None else parts[0].parent
    manifests = [read_manifest(p) for p in parts]
    first = manifests[0]
    shards: dict[int, tuple[Path, dict]] = {}
    for path, m in zip(parts, manifests):
        diff = _identity_difference(m, first)
        if diff:
            raise DatasetError(f"{path} and {parts[0]} are parts of different runs: {diff}")
        for shard in m["shards"]:
            if shard["index"] in shards:
                raise DatasetError(f"shard {shard['index']} is in both {shards[shard['index']][0]} and {path}")
            shards[shard["index"]] = (path, _rebase(shard, path.parent, out))
    existing = out / MANIFEST
    if existing.is_file():
        diff = _identity_difference(read_manifest(existing), first)
        if diff:
            raise DatasetError(f"{existing} belongs to another dataset: {diff}")
    merged = {k: v for k, v in first.items() if k not in ("job", "shards", "complete")}
    merged["parts"] = [Path(os.path.relpath(p, out)).as_posix() for p in parts]
    merged["shards"] = [shards[i][1] for i in sorted(shards)]
    merged["complete"] = sorted(shards) == list(range(shard_count(first["n"], first["shard_size"])))
    write_atomic(existing, dumps_json(merged) + "\n")
    return merged


def _part_paths(sources: Iterable[str | Path]) -> list[Path]:
    """The part manifests named by directories or files, deduplicated, in order."""
    parts: list[Path] = []
    for src in map(Path, sources):
        found = sorted(src.glob("manifest.part-*-of-*.json")) if src.is_dir() else [src]
        if not found or not all(p.is_file() for p in found):
            raise DatasetError(f"{src}: no part manifests (manifest.part-I-of-K.json) there")
        parts += [p for p in found if p.resolve() not in {q.resolve() for q in parts}]
    if not parts:
        raise DatasetError("merge: nothing to merge")
    return parts


def _rebase(shard: dict, part_dir: Path, out: Path) -> dict:
    """A shard entry with its file paths relative to ``out`` instead of ``part_dir``."""
    files = {var: Path(os.path.relpath(part_dir / rel, out)).as_posix() for var, rel in shard["files"].items()}
    return {**shard, "files": files}


# ----------------------------------------------------------------- reading


def load_arrays(path: str | Path, name: str) -> np.ndarray:
    """Variable ``name`` of a complete dataset, (n, *shape); memory-mapped if one shard."""
    root = Path(path)
    manifest = read_manifest(root / MANIFEST)
    if name not in manifest["variables"]:
        raise DatasetError(f"{root} has no variable `{name}`; {did_you_mean(name, manifest['variables'])}")
    if not manifest["complete"]:
        raise DatasetError(f"{root} is incomplete: resume the run (or merge its parts) first")
    arrays = [np.load(root / s["files"][name], mmap_mode="r") for s in sorted(manifest["shards"],
                                                                            key=lambda s: s["index"])]
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


@dataclass
class VerifyReport:
    """What :func:`verify` found; ``lines`` are meant to be printed."""

    ok: bool = True
    incomplete: bool = False
    lines: list[str] = field(default_factory=list)

    def fail(self, problems: list[str]) -> None:
        """Record problems (at most MAX_LINES listed)."""
        if problems:
            self.ok = False
            self.lines += [f"FAIL: {p}" for p in problems[:MAX_LINES]]
            if len(problems) > MAX_LINES:
                self.lines.append(f"FAIL: ... and {len(problems) - MAX_LINES} more")


def verify(path: str | Path) -> VerifyReport:
    """Check a dataset directory: files, then the data against the exact MI.

    Files: format, every shard 0..S-1 listed exactly once with its rows (so the total is
    n), each file's size, ``.npy`` header (shape, dtype) and sha256, the complete flag. A
    killed run whose written shards are intact is ``incomplete`` (resume it), not corrupt.
    Data (only when the files are intact): see :func:`_check_mi`.
    """
    root = Path(path)
    report = VerifyReport()
    if not (root / MANIFEST).is_file():
        parts = sorted(root.glob("manifest.part-*-of-*.json"))
        if parts:
            report.ok, report.incomplete = False, True
            report.lines.append(f"incomplete: no {MANIFEST} but {len(parts)} part manifests; merge them")
        elif run_to_resume(root):
            report.ok, report.incomplete = False, True
            report.lines.append(f"incomplete: no {MANIFEST} yet, only the temp files of a generate run killed "
                                "before it recorded anything; rerun the same command to resume")
        else:
            report.fail([f"no {MANIFEST} in {root}"])
        return report
    try:
        manifest = read_manifest(root / MANIFEST)
    except DatasetError as err:
        report.fail([str(err)])
        return report
    if manifest["format"] != FORMAT:
        report.fail([f"format is {manifest['format']!r}, expected {FORMAT!r}"])
        return report
    _check_listing(manifest, report)
    _check_files(root, manifest, report)
    if report.ok:
        _check_mi(root, manifest, report)
    return report


def _check_listing(manifest: dict, report: VerifyReport) -> None:
    """Every shard listed once with its rows; the complete flag agrees."""
    n_shards = shard_count(manifest["n"], manifest["shard_size"])
    seen: dict[int, int] = {}
    problems = []
    for s in manifest["shards"]:
        i = s["index"]
        seen[i] = seen.get(i, 0) + 1
        if not isinstance(i, int) or not 0 <= i < n_shards:
            problems.append(f"shard index {i!r} is outside 0..{n_shards - 1}")
        elif (s["start"], s["start"] + s["n"]) != _shard_rows(manifest, i):
            problems.append(f"shard {i} covers samples [{s['start']}, {s['start'] + s['n']}), "
                            f"expected {list(_shard_rows(manifest, i))}")
    problems += [f"shard {i} is listed {c} times" for i, c in seen.items() if c > 1]
    missing = [i for i in range(n_shards) if i not in seen]
    if manifest["complete"] and missing:
        problems.append(f"the manifest says complete but shards {_ranges(missing)} are missing")
    elif not manifest["complete"]:
        report.ok, report.incomplete = False, True
        report.lines.append(f"incomplete: {n_shards - len(missing)} of {n_shards} shards written "
                            f"(missing {_ranges(missing) or 'none'}); rerun the same command to resume")
    report.fail(problems)


def _ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2, 5``."""
    out, i = [], 0
    while i < len(indices):
        j = i
        while j + 1 < len(indices) and indices[j + 1] == indices[j] + 1:
            j += 1
        out.append(str(indices[i]) if i == j else f"{indices[i]}-{indices[j]}")
        i = j + 1
    return ", ".join(out)


def _check_files(root: Path, manifest: dict, report: VerifyReport) -> None:
    """Size, header and sha256 of every listed file."""
    problems = []
    count = 0
    for s in manifest["shards"]:
        for var, rel in s["files"].items():
            count += 1
            problem = _file_problem(root / rel, manifest["variables"].get(var), s, var)
            if problem:
                problems.append(f"{rel}: {problem}")
    report.fail(problems)
    if not problems:
        rows = sum(s["n"] for s in manifest["shards"])
        report.lines.append(f"ok: {len(manifest['shards'])} shards, {rows} samples, "
                            f"{len(manifest['variables'])} variables; sizes, headers and sha256 of {count} files match")


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            sha.update(block)
    return sha.hexdigest()


def _file_problem(path: Path, spec: dict | None, shard: dict, var: str) -> str | None:
    """What is wrong with one shard file, or None."""
    if spec is None:
        return f"variable `{var}` is not in the manifest's variables"
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != shard["bytes"][var]:
        return f"size {size} bytes, the manifest says {shard['bytes'][var]} (truncated or rewritten)"
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
        except ValueError as err:
            return f"not a .npy file ({err})"
        expected = (shard["n"], *spec["shape"])
        if shape != expected or dtype != np.dtype(spec["dtype"]) or fortran:
            order = " (Fortran order)" if fortran else ""
            return f"header says {dtype}{list(shape)}{order}, expected {spec['dtype']}{list(expected)}"
        if f.tell() + math.prod(shape) * dtype.itemsize != size:
            return f"size {size} bytes does not match its header"
    if _sha256(path) != shard["sha256"][var]:
        return "sha256 differs from the manifest (corrupted)"
    return None


# ----------------------------------------------------------------- MI statistics


def plugin_bias(p: int, q: int, n: int) -> float:
    """Expected excess of the Gaussian plug-in MI over the truth, n samples, mean estimated.

    Exact for Gaussian data, from E log|S| of a Wishart matrix with n - 1 degrees of
    freedom (marginal blocks are Wishart with the same degrees):

        bias = 1/2 sum_{j=1}^{q} [psi((n - j) / 2) - psi((n - p - j) / 2)]  ~  p q / (2 n)

    independent of the true covariance. Needs n > p + q.
    """
    j = np.arange(1, q + 1)
    return float(0.5 * np.sum(_digamma((n - j) / 2) - _digamma((n - p - j) / 2)))


def _digamma(x: np.ndarray) -> np.ndarray:
    """psi(x) for x > 0: recurrence up to 6, then the asymptotic series (error < 1e-12)."""
    x = np.array(x, dtype=np.float64)
    acc = np.zeros_like(x)
    while (small := x < 6).any():
        acc[small] -= 1 / x[small]
        x[small] += 1
    x2 = 1 / (x * x)
    return acc + np.log(x) - 0.5 / x - x2 * (1 / 12 - x2 * (1 / 120 - x2 * (1 / 252 - x2 * (1 / 240 - x2 / 132))))


def gaussian_mi(cov: np.ndarray, p: int) -> float:
    """Gaussian MI between the first ``p`` coordinates and the rest, (d, d) covariance.

    Raises:
        np.linalg.LinAlgError: a singular block.
    """
    signs, logdets = zip(*(np.linalg.slogdet(c) for c in (cov[:p, :p], cov[p:, p:], cov)))
    if min(signs) <= 0:
        raise np.linalg.LinAlgError("singular covariance")
    return 0.5 * (logdets[0] + logdets[1] - logdets[2])


def plain_pair(query: str) -> tuple[list[str], list[str]] | None:
    """The two sides of ``I(a, b; c)``; None for TC, II or a conditional query."""
    m = re.fullmatch(r"\s*I\((.*)\)\s*", query)
    if not m or "|" in m[1] or m[1].count(";") != 1:
        return None
    a, b = m[1].split(";")
    sides = [x.strip() for x in a.split(",")], [x.strip() for x in b.split(",")]
    return None if "" in sides[0] or "" in sides[1] else sides


def _check_mi(root: Path, manifest: dict, report: VerifyReport) -> None:
    """Compare the data's Gaussian plug-in MI with each exact ``I(a; b)`` of the manifest.

    ``manifest["gaussian_arrays"]`` maps query names to the saved variables holding their
    Gaussian latents (a modality with a non-identity flow maps to its latent's array).
    The estimate is plug-in minus :func:`plugin_bias`; its standard error SE comes from
    MI_BATCHES batch means. Pass: ``|estimate - exact| <= 5 SE + 1e-3 (1 + |exact|)``.
    """
    arrays = manifest.get("gaussian_arrays", {})
    n = manifest["n"]
    for result in manifest.get("mi", []):
        query = result["query"]
        sides = plain_pair(query)
        if sides is None:
            report.lines.append(f"skip: {query}: only unconditional I(a; b) is checked against data")
            continue
        unmapped = [x for x in sides[0] + sides[1] if arrays.get(x) not in manifest["variables"]]
        if unmapped:
            report.lines.append(f"skip: {query}: no saved Gaussian array for `{unmapped[0]}`")
            continue
        a, b = ([arrays[x] for x in side] for side in sides)
        p, q = (sum(math.prod(manifest["variables"][v]["shape"]) for v in side) for side in (a, b))
        if not isinstance(result.get("nats"), (int, float)):
            report.lines.append(f"skip: {query}: the exact value is {result.get('nats')}")
        elif set(a) & set(b):
            report.lines.append(f"skip: {query}: both sides use the same saved array")
        elif p + q > MAX_PLUGIN_DIM or n < MI_BATCHES * MIN_ROWS_PER_DIM * (p + q):
            report.lines.append(f"skip: {query}: p + q = {p + q} dimensions for {n} samples; the plug-in check "
                                f"needs p + q <= {MAX_PLUGIN_DIM} and n >= {MI_BATCHES * MIN_ROWS_PER_DIM} (p + q)")
        else:
            _check_one(root, manifest, query, float(result["nats"]), a + b, p, report)


def _check_one(root: Path, manifest: dict, query: str, exact: float, names: list[str], p: int,
               report: VerifyReport) -> None:
    """The plug-in test of one query.

    Args:
        names: the saved arrays of side a, then of side b.
        p: the number of columns (flattened) of side a.
    """
    counts, sums, cross = _batch_moments(root, manifest, names)
    d = sums.shape[1]
    try:
        full = gaussian_mi(_covariance(counts.sum(), sums.sum(0), cross.sum(0)), p)
        means = [gaussian_mi(_covariance(c, s, x), p) - plugin_bias(p, d - p, int(c))
                 for c, s, x in zip(counts, sums, cross)]
    except np.linalg.LinAlgError:
        report.lines.append(f"skip: {query}: the sample covariance is singular")
        return
    n = int(counts.sum())
    bias = plugin_bias(p, d - p, n)
    se = float(np.std(means, ddof=1) / math.sqrt(len(means)))
    tol = MI_SIGMAS * se + 1e-3 * (1 + abs(exact))
    diff = full - bias - exact
    line = (f"{query}: plug-in {full:.4f} - bias {bias:.4f} = {full - bias:.4f} nats vs exact {exact:.4f} "
            f"(diff {diff:+.4f}, allowed {tol:.4f} = 5 SE + slack, SE {se:.4f}; n={n}, p={p}, q={d - p})")
    if abs(diff) <= tol:
        report.lines.append("ok: " + line)
    else:
        report.fail([line])


def _covariance(count: float, total: np.ndarray, cross: np.ndarray) -> np.ndarray:
    """Unbiased covariance from a count, a sum (d,) and a cross-product sum (d, d)."""
    return (cross - np.outer(total, total) / count) / (count - 1)


def _batch_moments(root: Path, manifest: dict, names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-batch counts (B,), sums (B, d) and cross-products (B, d, d) of the flattened columns.

    Samples are cut into MI_BATCHES contiguous batches; float64, shifted by the first
    rows' mean against cancellation; shards are memory-mapped and read READ_ROWS at a time.
    """
    n = manifest["n"]
    edges = np.array([n * b // MI_BATCHES for b in range(MI_BATCHES + 1)])
    d = sum(math.prod(manifest["variables"][v]["shape"]) for v in names)
    counts, sums, cross = np.zeros(MI_BATCHES), np.zeros((MI_BATCHES, d)), np.zeros((MI_BATCHES, d, d))
    shift = None
    for s in sorted(manifest["shards"], key=lambda s: s["index"]):
        cols = [np.load(root / s["files"][v], mmap_mode="r").reshape(s["n"], -1) for v in names]
        for a in range(0, s["n"], READ_ROWS):
            x = np.concatenate([c[a:a + READ_ROWS] for c in cols], axis=1, dtype=np.float64)
            shift = x.mean(axis=0) if shift is None else shift
            x -= shift
            rows = s["start"] + a + np.arange(len(x))
            ids = np.searchsorted(edges, rows, side="right") - 1
            for b in np.unique(ids):
                xb = x[ids == b]
                counts[b] += len(xb)
                sums[b] += xb.sum(axis=0)
                cross[b] += xb.T @ xb
    return counts, sums, cross
