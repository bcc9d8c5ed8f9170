"""Writing a dataset: shards streamed batch by batch, hashed as written, resumable.

Each shard file is written to a temp file with its full ``.npy`` header, fsynced and
renamed into place, and the manifest is rewritten atomically after each shard, so a
killed run resumes where it stopped and ends byte-identical to an uninterrupted run.
Job I of K writes the shards with ``index % K == I`` into its part manifest.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from mmmi_dsl.dataset.format import (
    FORMAT,
    REQUIRED_METADATA,
    RESERVED,
    DatasetError,
    file_bytes,
    file_stems,
    identity_difference,
    manifest_name,
    manifest_paths,
    npy_header,
    read_manifest,
    resume_flags,
    shard_count,
    shard_rows,
)
from mmmi_dsl.dataset.jobs import check_split
from mmmi_dsl.dataset.safety import (
    WriterLock,
    fsync_folder,
    is_regular,
    nofollow_new,
    refuse_link,
    remove_stale,
    safe_folder,
)
from mmmi_dsl.errors import UsageError
from mmmi_dsl.files import dumps_json, write_atomic

if TYPE_CHECKING:  # imported where a dataset is written: every command imports this package
    from tqdm import tqdm


class ChunkSampler(Protocol):
    """What :func:`write_dataset` consumes.

    ``sample_range(start, stop)`` returns, for every variable, an array of shape
    ``(stop - start, *shape)`` and dtype ``variables[name][1]``; sample k depends only on
    (seed, k), whatever ranges are asked for. The arrays are not changed afterwards (they are
    hashed on another thread while the next batch is drawn).
    """

    chunk_size: int
    variables: dict[str, tuple[tuple[int, ...], str]]

    def sample_range(self, start: int, stop: int) -> dict[str, np.ndarray]: ...


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



def run_to_resume(out_dir: str | Path, job: tuple[int, int] = (0, 1)) -> bool:
    """Whether ``out_dir`` holds job ``job``'s manifest, or the temp file of one being written when killed."""
    name = manifest_name(job)
    out_dir = Path(out_dir)
    return (out_dir / name).is_file() or any(out_dir.glob(f".{name}.*.tmp"))


def on_disk(out_dir: Path, shard: dict) -> bool:
    """Whether every file of a shard exists, is no link, and has its recorded size (not rehashed)."""
    return all(is_regular(out_dir / rel) and (out_dir / rel).stat().st_size == shard["bytes"][var]
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
    for path in manifest_paths(out_dir):
        refuse_link(path)
        try:
            old = read_manifest(path)
        except DatasetError:
            if not overwrite:
                raise
            path.unlink(missing_ok=True)
            continue
        diff = identity_difference(old, manifest)
        if overwrite and (diff or path.name == manifest_name(job)):
            _remove(out_dir, path, [s for s in old["shards"] if s["index"] % k == i or s["index"] >= n_shards])
        elif diff:
            flags = resume_flags(old, manifest)
            continue_it = f"rerun with {flags} to continue it, or " if flags else ""
            raise DatasetError(f"{path} holds a run this one cannot continue: {diff}; "
                               f"{continue_it}choose another directory or overwrite it")
        elif not overwrite:
            keep.update({s["index"]: s for s in old["shards"] if s["index"] % k == i and on_disk(out_dir, s)})
    return keep


def _remove(out_dir: Path, manifest_path: Path, shards: list[dict]) -> None:
    """Delete shard files inside ``out_dir`` (never outside it), their emptied folders, then a manifest."""
    root = out_dir.resolve()
    folders = set()
    for shard in shards:
        for rel in shard["files"].values():
            path = (out_dir / rel).resolve()
            if path.is_relative_to(root) and path == root / rel:  # no link on the way
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
    """One shard file being written: a temp file with the full header, rows appended, hashed.

    :meth:`append` writes a batch and returns its bytes; the caller hashes them (``sha``), on a
    background thread, in the order they were written (see :func:`_write_shard`).
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.tmp = path, path.with_name(f".{path.name}.tmp")
        self.shape, self.dtype = shape, np.dtype(dtype)
        self.rows = 0
        self.sha = hashlib.sha256()
        refuse_link(path)
        self.file = open(self.tmp, "wb", opener=nofollow_new)
        header = npy_header(shape, self.dtype)
        self._write(header)
        self.sha.update(header)

    def _write(self, data) -> None:
        with _naming(self.path):
            self.file.write(data)

    def append(self, rows: np.ndarray) -> memoryview:
        """Append a batch, (b, *shape) of the file's dtype; its bytes, still to be hashed."""
        if rows.dtype != self.dtype or rows.shape[1:] != self.shape[1:]:
            raise DatasetError(f"sampler returned {rows.dtype}{list(rows.shape[1:])} per sample for "
                               f"{self.path.name}, expected {self.dtype}{list(self.shape[1:])}")
        data = memoryview(np.ascontiguousarray(rows).reshape(-1).view(np.uint8))
        self._write(data)
        self.rows += len(rows)
        return data

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
    start, stop = shard_rows(manifest, index)
    rel_dir = f"shard-{index:05d}"
    shard_dir = safe_folder(out_dir, rel_dir)
    remove_stale(shard_dir, ".*.tmp")  # from a killed run
    stems = file_stems(manifest["variables"])
    files = {var: f"{rel_dir}/{stems[var]}.npy" for var in manifest["variables"]}
    writers: dict[str, _NpyWriter] = {}
    from concurrent.futures import ThreadPoolExecutor

    hashed = None  # the previous batch's hashing (one background thread, in write order; hashlib releases the GIL)
    with ThreadPoolExecutor(1, thread_name_prefix="mmmic-sha256") as hasher:
        try:
            for var, spec in manifest["variables"].items():
                writers[var] = _NpyWriter(out_dir / files[var], (stop - start, *spec["shape"]), spec["dtype"])
            for a in range(start, stop, batch_size):
                b = min(stop, a + batch_size)
                batch = sampler.sample_range(a, b)  # the previous batch is hashed meanwhile
                if hashed is not None:
                    hashed.result()  # at most two batches in memory
                written = [(w.sha, w.append(batch[var])) for var, w in writers.items()]
                hashed = hasher.submit(_hash, written)  # one task per batch, not per file
                bar.update(b - a)
            if hashed is not None:
                hashed.result()
            done = {var: w.close() for var, w in writers.items()}
        except BaseException:
            for w in writers.values():
                w.discard()
            raise
    for w in writers.values():
        refuse_link(w.path)
        os.replace(w.tmp, w.path)
    fsync_folder(shard_dir)
    return {"index": index, "start": start, "n": stop - start, "files": files,
            "sha256": {var: d[0] for var, d in done.items()}, "bytes": {var: d[1] for var, d in done.items()}}


def _hash(written: list) -> None:
    """Feed each file's new bytes to its sha256: ``[(sha, bytes), ...]``."""
    for sha, data in written:
        sha.update(data)


def _check_space(out_dir: Path, manifest: dict, todo: list[int]) -> None:
    """Refuse to start when the free disk space is smaller than the bytes still to write."""
    need = sum(file_bytes(manifest, s, var) for s in todo for var in manifest["variables"])
    probe = out_dir
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need:
        raise DatasetError(f"not enough disk space in {out_dir}: {_size(need)} ({need} bytes) still to write, "
                           f"{_size(free)} ({free} bytes) free\n  = help: free some space, write to another "
                           "disk, or split the run over several disks (jobs I/K, then merge)")


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

    Shards already on disk are kept when their files have the recorded sizes; they are
    not rehashed (``verify`` does that). A rerun of a finished run writes nothing.

    Raises:
        DatasetError: ``out_dir`` holds another run's dataset, the disk is too small, a
            symbolic link sits where a file or folder of the run goes (never followed), or
            another writer holds the run's lock (it is named).
        UsageError: a bad n, shard_size, batch_size or job.
    """
    out_dir = Path(out_dir)
    n, seed = int(n), int(seed)
    _check_args(n, shard_size, batch_size, job)
    manifest = _new_manifest(sampler, n, seed, shard_size, metadata, fingerprint, job)
    owned = [s for s in range(shard_count(n, shard_size)) if s % job[1] == job[0]]
    if not out_dir.exists():
        _check_space(out_dir, manifest, owned)  # refuse before creating anything
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / manifest_name(job)
    with WriterLock(out_dir, target.name):
        remove_stale(out_dir, f".{target.name}.*.tmp")  # write_atomic's, of a dead writer
        done = _prepare(out_dir, manifest, job, overwrite)
        todo = [s for s in owned if s not in done]
        _check_space(out_dir, manifest, todo)
        return _write_todo(out_dir, sampler, manifest, target, done, owned, todo, batch_size, progress, job)


def _write_todo(out_dir: Path, sampler: ChunkSampler, manifest: dict, target: Path, done: dict[int, dict],
                owned: list[int], todo: list[int], batch_size: int, progress: bool, job: tuple[int, int]) -> dict:
    """Write the shards ``todo`` (``done`` are kept), recording each in ``target``; the manifest."""
    recorded = [len(done)]

    def save() -> None:
        manifest["shards"] = [done[s] for s in sorted(done)]
        manifest["complete"] = len(done) == len(owned)
        text = dumps_json(manifest) + "\n"
        refuse_link(target)
        if is_regular(target) and target.read_bytes() == text.encode():
            return  # a rerun of a finished run writes nothing (so it also finishes on a full disk)
        with _naming(target):
            write_atomic(target, text)
        recorded[0] = len(done)

    from tqdm import tqdm

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
            "deleted\n  = help: free some space (or raise the limit) and rerun the same command to resume and "
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
    start, stop = shard_rows(manifest, index)
    return stop - start


def _check_args(n: int, shard_size: int, batch_size: int, job: tuple[int, int]) -> None:
    for name, value in (("n", n), ("shard size", shard_size), ("batch size", batch_size)):
        if value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}")
    check_split(*job, "job")


