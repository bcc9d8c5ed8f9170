"""Joining the part manifests of a split run into ``manifest.json`` (no shard is copied)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from mmmi_dsl.dataset.croissant import dataset_croissant, write_croissant
from mmmi_dsl.dataset.format import MANIFEST, DatasetError, identity_difference, read_manifest, shard_count
from mmmi_dsl.dataset.safety import WriterLock, refuse_link, remove_stale
from mmmi_dsl.dataset.spec_files import copied_names, copy_spec_files, destination, inside
from mmmi_dsl.files import dumps_json, write_atomic


def merge(sources: Iterable[str | Path], out_dir: str | Path | None = None) -> dict:
    """Join the part manifests of a split run into ``manifest.json``.

    Args:
        sources: dataset directories (all their ``manifest.part-*-of-*.json``) and/or part
            manifest files. No shard is copied: shards in other directories are recorded by
            paths relative to ``out_dir``. The spec's data files (templates, matrices, weights)
            are copied into ``out_dir`` where it is not a part's directory.
        out_dir: where ``manifest.json`` goes (default: the first part's directory).

    Returns:
        The merged manifest; ``complete`` is true iff every shard 0..S-1 is present.

    Raises:
        DatasetError: no part manifests, parts of different runs (the field is named), a
            shard in two parts, an ``out_dir`` holding another run's manifest, a link in
            place of its ``manifest.json``, or another writer holding ``out_dir``'s lock.
    """
    parts = _part_paths(sources)
    out = Path(out_dir) if out_dir is not None else parts[0].parent
    manifests = [read_manifest(p) for p in parts]
    first = manifests[0]
    shards: dict[int, tuple[Path, dict]] = {}
    for path, m in zip(parts, manifests):
        diff = identity_difference(m, first)
        if diff:
            raise DatasetError(f"{path} and {parts[0]} are parts of different runs: {diff}")
        for shard in m["shards"]:
            if shard["index"] in shards:
                raise DatasetError(f"shard {shard['index']} is in both {shards[shard['index']][0]} and {path}")
            shards[shard["index"]] = (path, _rebase(shard, path.parent, out))
    merged = {k: v for k, v in first.items() if k not in ("job", "shards", "complete")}
    merged["parts"] = [Path(os.path.relpath(p, out)).as_posix() for p in parts]
    merged["shards"] = [shards[i][1] for i in sorted(shards)]
    merged["complete"] = sorted(shards) == list(range(shard_count(first["n"], first["shard_size"])))
    existing = out / MANIFEST
    out.mkdir(parents=True, exist_ok=True)
    with WriterLock(out, MANIFEST):
        remove_stale(out, f".{MANIFEST}.*.tmp")  # of a merge or generate killed while writing it
        refuse_link(existing)
        if existing.is_file():
            diff = identity_difference(read_manifest(existing), first)
            if diff:
                raise DatasetError(f"{existing} belongs to another dataset: {diff}")
        _copy_spec_files(parts, out, first["fingerprint"].get("files", {}))  # before the manifest names them
        write_atomic(existing, dumps_json(merged) + "\n")
        if merged["complete"]:
            write_croissant(out, dataset_croissant(out, merged))
    return merged


def _copy_spec_files(parts: list[Path], out: Path, recorded: dict) -> None:
    """The spec's data files (dataset/spec_files.py) into ``out``, from the first part's folder holding each."""
    sources = {}
    for name in copied_names(recorded):  # a bad table is verify's to name
        found = [path for path in (inside(p.parent, name) for p in parts) if path is not None]
        if found and found[0].resolve() != (out / destination(name)).resolve():
            sources[name] = found[0]  # a copy that differs from the record raises in copy_spec_files
    copy_spec_files(out, sources, recorded)


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

