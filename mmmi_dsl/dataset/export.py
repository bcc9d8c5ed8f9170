"""``mmmic export DIR --to parquet|webdataset|hf OUT``: a dataset in the formats training code reads.

- ``parquet``: ``OUT/data/SPLIT-00000-of-0000N.parquet`` per split, written with pyarrow under the
  Hugging Face ``datasets`` features of every column (so ``datasets.load_dataset("parquet",
  data_files=...)`` gives arrays their shapes): modalities as fixed-size lists (1-D) or
  ``ArrayND`` (2- to 4-D), or PNG (``datasets.Image``) for image modalities on request;
  targets, labels and PMI columns as scalars; ``sample_index``, the sample's index in DIR.
- ``hf``: the same rows as a ``datasets.DatasetDict`` saved with ``save_to_disk`` (open it with
  ``datasets.load_from_disk(OUT)``).
- ``webdataset``: ``OUT/SPLIT-00000-of-0000N.tar``, one key per sample (its index, 9 digits), one
  ``STEM.npy`` (or ``STEM.png``) per array variable and a ``.json`` with the index, the split and
  every scalar (targets, labels, PMI) under its variable name; ``webdataset.WebDataset`` reads it.

Every export gets a dataset card (``README.md``: the exact MI table, the spec, the command) and
``croissant.json`` (its files with sha256). Rows are read in batches from memory maps; memory
is bounded by the batch. ``OUT`` must be new or empty; nothing inside it is followed if it is a
link (files are created with ``O_EXCL | O_NOFOLLOW``).

PNG is exact for 8-bit data (``generate --uint8``); float data needs a range ``(lo, hi)`` and is
quantised as ``--uint8`` does, ``round(255 clip((x - lo)/(hi - lo), 0, 1))``: the MI of the
pictures is then at most the model's (the card and croissant.json say so).
"""

from __future__ import annotations

import io
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmmi_dsl.dataset.card import dataset_card, export_croissant
from mmmi_dsl.dataset.croissant import CROISSANT, dataset_croissant, write_croissant
from mmmi_dsl.dataset.format import MANIFEST, DatasetError, file_stems
from mmmi_dsl.dataset.reader import SPLIT_NAMES, Column, ShardReader, split_indices
from mmmi_dsl.dataset.safety import WriterLock, nofollow_new, refuse_link, safe_folder
from mmmi_dsl.errors import UsageError
from mmmi_dsl.files import sha256_file

FORMATS = ("parquet", "webdataset", "hf")
INDEX = "sample_index"
_FILE_BYTES = 256 << 20  # about this much data per exported file
_BATCH_BYTES = 32 << 20  # about this much data in memory at a time


@dataclass
class Exported:
    """What an export wrote: ``files`` (relative to ``out``) per split, and notes for the user."""

    out: Path
    to: str
    splits: dict[str, int]
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def quantize(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """8-bit pixels of float data over ``[lo, hi]``: ``round(255 clip((x - lo)/(hi - lo), 0, 1))``."""
    return np.rint(255 * np.clip((x.astype(np.float64) - lo) / (hi - lo), 0, 1)).astype(np.uint8)


def png_bytes(x: np.ndarray, png_range: tuple[float, float] | None) -> bytes:
    """One image sample ``(H, W)`` or ``(C, H, W)`` (C = 1, 3, 4) as PNG bytes (Pillow)."""
    from PIL import Image

    pixels = x if x.dtype == np.uint8 else quantize(x, *png_range)
    if pixels.ndim == 3:
        pixels = pixels[0] if pixels.shape[0] == 1 else np.moveaxis(pixels, 0, -1)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG")
    return buf.getvalue()


def npy_bytes(x: np.ndarray) -> bytes:
    """An array as ``.npy`` bytes (no pickle)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(x), allow_pickle=False)
    return buf.getvalue()


class _Plan:
    """The columns of an export, their encodings and the batch and file sizes."""

    def __init__(self, reader: ShardReader, images: bool, png_range: tuple[float, float] | None,
                 rows_per_file: int | None):
        self.reader = reader
        self.columns = reader.columns
        self.png = {c.name for c in self.columns if images and c.image}
        if images and not self.png:
            raise UsageError("--images png: the dataset has no image modality (a per-sample shape (H, W) or "
                             "(C, H, W) with C = 1, 3 or 4)")
        floats = sorted(c.name for c in self.columns if c.name in self.png and c.dtype != "uint8")
        if floats and png_range is None:
            raise UsageError(f"--images png: {', '.join(floats)} hold float data; give --png-range LO,HI to "
                             "quantise them to 8 bits (lossy), or generate with --uint8 LO,HI")
        if png_range is not None and not png_range[0] < png_range[1]:
            raise UsageError(f"--png-range {png_range[0]},{png_range[1]}: need LO < HI")
        self.png_range = png_range
        self.lossy = bool(floats)
        self.stems = file_stems([c.name for c in self.columns])
        per_sample = sum(math.prod(c.shape) * np.dtype(c.dtype).itemsize for c in self.columns) or 1
        self.rows_per_file = rows_per_file or max(1, _FILE_BYTES // per_sample)
        self.batch = max(1, min(self.rows_per_file, _BATCH_BYTES // per_sample))
        self.splits = {s: split_indices(reader.manifest, s) for s in SPLIT_NAMES}
        self.splits = {s: idx for s, idx in self.splits.items() if len(idx)}
        self.index_column = INDEX not in {c.name for c in self.columns}

    def files(self, split: str) -> list[np.ndarray]:
        """The sample indices of each file of ``split``."""
        idx = self.splits[split]
        count = max(1, -(-len(idx) // self.rows_per_file))
        return [idx[i * self.rows_per_file:(i + 1) * self.rows_per_file] for i in range(count)]

    def batches(self, indices: np.ndarray):
        """``(indices, {name: rows})`` batches of at most ``self.batch`` samples."""
        for a in range(0, len(indices), self.batch):
            part = indices[a:a + self.batch]
            yield part, self.reader.rows(part)

    def features(self):
        """The ``datasets.Features`` of a row (pyarrow schema: ``.arrow_schema``)."""
        import datasets

        out = {}
        for c in self.columns:
            out[c.name] = _feature(datasets, c, c.name in self.png)
        if self.index_column:
            out[INDEX] = datasets.Value("int64")
        return datasets.Features(out)

    def hf_batch(self, indices: np.ndarray, rows: dict[str, np.ndarray]) -> dict:
        """A batch as the column lists ``datasets`` encodes (PNG as ``{"bytes", "path"}``)."""
        out = {}
        for c in self.columns:
            a = rows[c.name]
            if c.name in self.png:
                out[c.name] = [{"bytes": png_bytes(x, self.png_range), "path": None} for x in a]
            elif len(c.shape) > 4:
                out[c.name] = list(a.reshape(len(a), -1))
            else:
                out[c.name] = list(a) if c.shape else a
        if self.index_column:
            out[INDEX] = indices
        return out


def _feature(datasets, c: Column, png: bool):
    if png:
        return datasets.Image()
    value = datasets.Value(c.dtype)
    if not c.shape:
        return value
    if len(c.shape) == 1 or len(c.shape) > 4:
        return datasets.List(value, length=math.prod(c.shape))
    return getattr(datasets, f"Array{len(c.shape)}D")(shape=c.shape, dtype=c.dtype)


def _prepare_out(out: Path, root: Path) -> None:
    """``out`` created, or checked new or empty (a link to a folder is followed: the user named it)."""
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise DatasetError(f"{out} exists and is not a folder\n  = help: give a new folder for the export")
        if any(out.iterdir()):
            raise DatasetError(f"{out} is not empty; an export goes into a new or empty folder\n"
                               "  = help: choose another folder or remove this one")
    if out.resolve() == root.resolve():
        raise DatasetError(f"{out} is the dataset itself; export into another folder")
    out.mkdir(parents=True, exist_ok=True)


def _new_file(path: Path):
    """A new binary file, never through or over a link."""
    refuse_link(path)
    return open(path, "wb", opener=nofollow_new)


def write_parquet(plan: _Plan, folder: Path, rel: str = "data") -> list[str]:
    """``folder/rel/SPLIT-0000i-of-0000N.parquet`` for every split; the paths relative to ``folder``."""
    import datasets
    import pyarrow.parquet as pq

    features = plan.features()
    schema = features.arrow_schema
    data = safe_folder(folder, rel)
    written = []
    for split in plan.splits:
        parts = plan.files(split)
        for i, indices in enumerate(parts):
            name = f"{rel}/{split}-{i:05d}-of-{len(parts):05d}.parquet"
            with _new_file(data / Path(name).name) as f, pq.ParquetWriter(f, schema) as writer:
                for idx, rows in plan.batches(indices):
                    table = datasets.Dataset.from_dict(plan.hf_batch(idx, rows), features=features).data.table
                    writer.write_table(table.cast(schema))
            written.append(name)
    return written


def write_hf(plan: _Plan, out: Path) -> list[str]:
    """A ``datasets.DatasetDict`` saved in ``out`` (through Parquet files in a temp folder beside it)."""
    import datasets

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # the command prints its own summary
    try:
        files = write_parquet(plan, tmp)
        by_split = {s: [str(tmp / f) for f in files if Path(f).name.startswith(f"{s}-")] for s in plan.splits}
        dd = datasets.DatasetDict({s: datasets.Dataset.from_parquet(paths, features=plan.features(),
                                                                    cache_dir=str(tmp / "cache"))
                                   for s, paths in by_split.items()})
        dd.save_to_disk(str(out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if bars:
            datasets.enable_progress_bars()
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


def write_webdataset(plan: _Plan, out: Path) -> list[str]:
    """``out/SPLIT-0000i-of-0000N.tar`` for every split, written with ``webdataset.TarWriter``."""
    import webdataset

    written = []
    for split in plan.splits:
        parts = plan.files(split)
        for i, indices in enumerate(parts):
            name = f"{split}-{i:05d}-of-{len(parts):05d}.tar"
            with _new_file(out / name) as f:
                sink = webdataset.TarWriter(f)
                for idx, rows in plan.batches(indices):
                    for j, k in enumerate(idx):
                        sink.write(_wds_sample(plan, int(k), split, {c: a[j] for c, a in rows.items()}))
                sink.close()
            written.append(name)
    return written


def _wds_sample(plan: _Plan, k: int, split: str, row: dict[str, np.ndarray]) -> dict:
    meta: dict = {"index": k, "split": split}
    sample: dict = {"__key__": f"{k:09d}"}
    for c in plan.columns:
        x = row[c.name]
        if not c.shape:
            meta[c.name] = x.item()
        elif c.name in plan.png:
            sample[f"{plan.stems[c.name]}.png"] = png_bytes(x, plan.png_range)
        else:
            sample[f"{plan.stems[c.name]}.npy"] = npy_bytes(x)
    sample["json"] = meta
    return sample


def export(root: str | Path, out: str | Path, to: str, *, images: bool = False,
           png_range: tuple[float, float] | None = None, rows_per_file: int | None = None,
           command: str = "") -> Exported:
    """Export the complete dataset ``root`` to ``out`` as ``to`` (one of :data:`FORMATS`).

    Args:
        images: write image modalities as PNG (exact for 8-bit data; float data needs ``png_range``).
        png_range: ``(lo, hi)`` for quantising float images to 8 bits (lossy).
        rows_per_file: samples per exported file (default about 256 MiB of data each).
        command: the command line, for the dataset card.

    Returns:
        What was written, and notes (a lossy PNG export, a croissant.json added to ``root``).

    Raises:
        DatasetError: no complete dataset at ``root``, ``out`` not new or empty, a link inside ``out``.
        UsageError: a bad format, ``images`` without image modalities, float images without a range.
    """
    root, out = Path(root), Path(out)
    if to not in FORMATS:
        raise UsageError(f"--to {to!r}: expected one of {', '.join(FORMATS)}")
    if rows_per_file is not None and rows_per_file < 1:
        raise UsageError(f"--rows-per-file must be at least 1, got {rows_per_file}")
    reader = ShardReader(root)
    plan = _Plan(reader, images, png_range, rows_per_file)
    _prepare_out(out, root)
    writer = {"parquet": lambda: write_parquet(plan, out), "hf": lambda: write_hf(plan, out),
              "webdataset": lambda: write_webdataset(plan, out)}[to]
    result = Exported(out, to, {s: len(i) for s, i in plan.splits.items()}, writer())
    if plan.lossy:
        result.notes.append(f"PNG images are 8-bit over [{png_range[0]}, {png_range[1]}]: the MI of the pictures "
                            "is at most the model's exact MI")
    card = dataset_card(reader.manifest, plan.columns, result.splits, to, plan.png, plan.lossy, command)
    with _new_file(out / "README.md") as f:
        f.write(card.encode("utf-8"))
    files = [(rel, sha256_file(out / rel), (out / rel).stat().st_size) for rel in result.files + ["README.md"]]
    write_croissant(out, export_croissant(reader.manifest, plan.columns, files, to, plan.png, plan.lossy))
    result.notes += _add_root_croissant(root, reader.manifest)
    return result


def _add_root_croissant(root: Path, manifest: dict) -> list[str]:
    """Write ``root/croissant.json`` if the dataset has none (datasets written before it existed)."""
    if (root / CROISSANT).is_file():
        return []
    try:
        with WriterLock(root, MANIFEST):
            write_croissant(root, dataset_croissant(root, manifest))
    except (OSError, DatasetError) as err:
        return [f"{root / CROISSANT} could not be added: {err}"]
    return [f"added {root / CROISSANT} (the dataset had none; no other file of it changed)"]

