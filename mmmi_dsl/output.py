"""Stage 6, output: compiled bundles on disk.

``mmmic compile SPEC -o DIR`` writes ``DIR/ir.json`` (the resolved IR). Files are
written atomically (temp file, then rename) so a killed run never leaves half a file.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from pathlib import Path

from . import ir


def ir_json(model: ir.Model) -> str:
    """The IR as indented JSON; ``Model.model_validate_json`` reads it back equal."""
    return model.model_dump_json(indent=2)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a file so that readers see the old content or the new, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the file a normal file's mode
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def mi_json(model: ir.Model, results) -> dict:
    """The JSON of ``mmmic mi --json`` and of ``mi.json`` in a bundle."""
    return {"model": model.name,
            "params": {k: p.value for k, p in model.params.items()},
            "dims": {k: d.value for k, d in model.dims.items()},
            "results": [r.to_json() for r in results]}


def mi_table(model: ir.Model, queries, results) -> str:
    """A plain-text table of exact MI values (nats and bits)."""
    rows = [(r.query, _fmt(r.nats), _fmt(r.bits), r.reason if r.reason and math.isinf(r.nats) else "")
            for r in results]
    w = max([len("query")] + [len(r[0]) for r in rows])
    lines = [f"# model {model.name}: exact mutual information",
             f"{'query':<{w}}  {'nats':>12}  {'bits':>12}", f"{'-' * w}  {'-' * 12}  {'-' * 12}"]
    for q, nats, bits, note in rows:
        lines.append(f"{q:<{w}}  {nats:>12}  {bits:>12}" + (f"  ({note})" if note else ""))
    return "\n".join(lines)


def _fmt(x: float) -> str:
    if math.isinf(x):
        return "inf"
    return f"{x:.6f}" if x == 0 or abs(x) >= 1e-4 else f"{x:.6e}"


#: compile's formulas.tex: stop deriving after this many seconds, and skip models with
#: more equation terms than this (decay: 12 s at N = 10, 56 s at N = 20 for all queries).
BUNDLE_FORMULA_SECONDS = 15.0
BUNDLE_FORMULA_MAX_TERMS = 1000


def formula_text(model: ir.Model, queries, fmt: str = "latex", numeric: set[str] | None = None,
                 skip_unsupported: bool = False, budget_s: float | None = None) -> str:
    """Closed forms of ``queries``: a LaTeX document body, text lines or sympy expressions.

    ``budget_s`` bounds the whole derivation (:func:`mmmi_dsl.symbolic.time_budget`).
    With ``skip_unsupported``, queries outside the symbolic engine's structure, and the
    ones the budget did not reach, become comments (LaTeX); without it they are errors
    (E0211, E0215).
    """
    from .errors import Diagnostic, SpecError
    from .symbolic import Deriver, GaveUp, derive, time_budget

    queries = list(queries)
    out: list[str] = []
    done = 0
    try:
        with time_budget(budget_s):
            deriver = Deriver(model, set(numeric or ()))
            for q in queries:
                try:
                    f = derive(model, q, numeric or set(), deriver=deriver)
                    text = ("\\begin{equation}\n  " + f.latex() + "\n\\end{equation}" if fmt == "latex"
                            else f.text() if fmt == "text" else f.sympy())
                except (SpecError, RecursionError) as caught:
                    err = caught if isinstance(caught, SpecError) else SpecError([Diagnostic(
                        "E0211", f"no closed form for {q.text}: its expressions are nested too deeply for sympy",
                        q.span, "", "mmmic mi computes its exact value numerically")])
                    if not skip_unsupported:
                        raise err from None
                    out.append(f"% {q.text}: {err.diagnostics[0].message}")
                else:
                    out.append(text)
                done += 1
    except GaveUp as stop:
        left = queries[done:]
        if not skip_unsupported:
            q = left[0]
            raise SpecError([Diagnostic(
                "E0215", f"the symbolic engine gave up on {q.text} after {stop.seconds:g} s", q.span,
                f"{done} of {done + len(left)} queries were derived",
                "raise the budget (--timeout SECONDS, 0 for none), replace symbols by numbers (--numeric "
                "templates, --numeric all), or get the exact value numerically with `mmmic mi`")]) from None
        out += [f"% {q.text}: skipped, the {stop.seconds:g} s budget for formulas ran out; "
                f"run `mmmic formula SPEC --query \"{q.text}\"`" for q in left]
    return "\n".join(out)


def write_bundle(model: ir.Model, out_dir: Path) -> list[Path]:
    """Write the compiled bundle (ir.json, mi.json, formulas.tex); returns the files written."""
    from .analysis import Analysis, default_queries

    out_dir = Path(out_dir)
    target = out_dir / "ir.json"
    write_atomic(target, ir_json(model) + "\n")
    queries = default_queries(model)
    results = Analysis(model).evaluate_all(queries)
    mi_path = out_dir / "mi.json"
    write_atomic(mi_path, dumps_json(mi_json(model, results)) + "\n")
    tex_path = out_dir / "formulas.tex"
    header = f"% exact mutual information of model {model.name} (nats unless marked bits), by mmmic\n"
    n_terms = sum(len(v.terms) for v in model.variables.values())
    if n_terms > BUNDLE_FORMULA_MAX_TERMS:
        body = (f"% skipped: {n_terms} equation terms (more than {BUNDLE_FORMULA_MAX_TERMS}) would take long to "
                "derive symbolically; run `mmmic formula SPEC --query ...` for the ones you need")
    else:
        body = formula_text(model, queries, "latex", skip_unsupported=True, budget_s=BUNDLE_FORMULA_SECONDS)
    write_atomic(tex_path, header + body + "\n")
    return [target, mi_path, tex_path]


def summary(model: ir.Model) -> str:
    """One line describing a model, for ``mmmic check``."""
    parts = [f"{len(model.params)} params", f"{len(model.protos)} proto-latents",
             f"{len(model.variables)} latents/targets", f"{len(model.flows)} modalities"]
    if model.labels:
        parts.append(f"{len(model.labels)} labels")
    if model.reports:
        parts.append(f"{len(model.reports)} reports")
    return f"model {model.name}: " + ", ".join(parts)


def dumps_json(obj) -> str:
    return json.dumps(obj, indent=2, allow_nan=False)


# ---------------------------------------------------------------- datasets

LINEAR_FLOWS = {"identity", "affine"}  # a modality through these is still Gaussian


def dataset_metadata(model: ir.Model, sampler, results) -> dict:
    """What a dataset's manifest records besides its shards (see docs/dataset-format.md)."""
    import hashlib

    import torch

    from . import __version__

    spec_text = ""
    if model.source_file and Path(model.source_file).is_file():
        spec_text = Path(model.source_file).read_text(encoding="utf-8")
    gaussian = {}
    for t in model.targets:
        gaussian[t] = t
    for v in sampler.saved_latents:
        gaussian[v] = v
    for name, f in model.flows.items():
        if all(s.name in LINEAR_FLOWS for s in f.steps) and sampler.uint8_range is None:
            gaussian[name] = name  # a linear bijection of a Gaussian: still Gaussian, same MI
        elif f.latent in sampler.saved_latents:
            gaussian[name] = f.latent
    return {
        "model": model.name,
        "spec": spec_text,
        "spec_file": Path(model.source_file).name,
        "spec_sha256": hashlib.sha256(spec_text.encode()).hexdigest(),
        "params": {k: p.value for k, p in model.params.items()},
        "dims": {k: d.value for k, d in model.dims.items()},
        "mi": [r.to_json() for r in results],
        "mi_is_upper_bound": sampler.uint8_range is not None,  # lossy export: I(q(x1); q(x2)) <= I(x1; x2)
        "gaussian_arrays": gaussian,
        "flows": sampler.flow_roundtrip(),
        "generator": {"mmmic": __version__, "torch": torch.__version__, "device_type": sampler.device.type,
                      "dtype": str(sampler.dtype).replace("torch.", ""), "standardize": sampler.standardize},
    }


def default_sizes(sampler, shard_size: int | None, batch_size: int | None) -> tuple[int, int]:
    """Shard and batch sizes: multiples of the chunk, ~256 MiB per shard and ~32 MiB per batch."""
    import numpy as np

    per_sample = sum(int(np.prod(shape)) * np.dtype(dt).itemsize for shape, dt in sampler.variables.values())
    c = sampler.chunk_size

    def round_to_chunks(x: float) -> int:
        return max(c, int(x) // c * c)

    shard = shard_size or round_to_chunks(min(1_048_576, (256 << 20) / max(1, per_sample)))
    batch = batch_size or round_to_chunks(min(shard, (32 << 20) / max(1, per_sample)))
    return int(shard), int(batch)


def generate_dataset(model: ir.Model, out: Path, n: int, *, seed: int = 0, device: str = "cpu",
                     dtype: str = "float32", standardize: str = "auto", save_latents: bool = False,
                     pmi: tuple = (), chunk_size: int | None = None, uint8_range: tuple | None = None,
                     shard_size: int | None = None, batch_size: int | None = None, job: tuple[int, int] = (0, 1),
                     progress: bool = True, overwrite: bool = False) -> dict:
    """Sample ``n`` tuples of ``model`` into ``out`` (mmmi-dataset/1); returns the manifest.

    One code path for ``mmmic generate`` and the estimator benchmark: the manifest
    records the exact MI of the default queries, and a matching run in ``out`` resumes.
    """
    import torch

    from .analysis import default_queries
    from .backend import Sampler
    from .dataset import write_dataset

    torch_dtype = torch.float32 if dtype == "float32" else torch.float64
    sampler = Sampler(model, device=device, dtype=torch_dtype, standardize=standardize,
                      save_latents=save_latents, pmi=list(pmi), seed=seed, chunk_size=chunk_size,
                      uint8_range=uint8_range)
    results = sampler.analysis.evaluate_all(default_queries(model))
    shard_size, batch_size = default_sizes(sampler, shard_size, batch_size)
    fingerprint = {"standardize": standardize, "dtype": dtype, "device_type": sampler.device.type,
                   "save_latents": save_latents, "pmi": [list(p) for p in sampler.pmi_pairs],
                   "uint8": list(uint8_range) if uint8_range else None}
    return write_dataset(out, sampler, n, seed=seed, shard_size=shard_size, batch_size=batch_size,
                         metadata=dataset_metadata(model, sampler, results), fingerprint=fingerprint,
                         job=job, progress=progress, overwrite=overwrite)


def preview_grid(dataset_dir: Path, out_png: Path, rows: int = 8, scale: int = 4) -> list[str]:
    """Draw the first ``rows`` tuples of a dataset, one column per image-shaped modality.

    Display only: each modality is mapped to [0, 255] with its own 1st/99th
    percentiles over the shown samples (the data on disk are untouched).
    Returns the modalities drawn.
    """
    import numpy as np
    from PIL import Image

    from .dataset import MANIFEST, DatasetError, read_manifest

    manifest = read_manifest(Path(dataset_dir) / MANIFEST)
    if not manifest.get("shards"):
        raise DatasetError(f"{dataset_dir}: no shards to preview yet")
    shard = min(manifest["shards"], key=lambda s: s["start"])
    images = [name for name, v in manifest["variables"].items() if len(v["shape"]) in (2, 3)]
    if not images:
        raise DatasetError(f"{dataset_dir}: no image-shaped modality (shapes CxHxW or HxW) to preview")
    columns = []
    for name in images:
        arr = np.load(Path(dataset_dir) / shard["files"][name], mmap_mode="r", allow_pickle=False)[:rows]
        arr = np.asarray(arr, dtype=np.float64)
        if arr.ndim == 3:
            arr = arr[:, None]
        lo, hi = np.percentile(arr, [1, 99])
        arr = np.clip((arr - lo) / max(hi - lo, 1e-12), 0, 1)
        if arr.shape[1] not in (1, 3):
            arr = arr[:, :1]
        tiles = [np.repeat(a.transpose(1, 2, 0), 3 // a.shape[0], axis=2) for a in arr]
        columns.append(np.concatenate([np.pad(t, ((1, 1), (1, 1), (0, 0)), constant_values=1) for t in tiles]))
    height = max(c.shape[0] for c in columns)
    grid = np.concatenate([np.pad(c, ((0, height - c.shape[0]), (0, 0), (0, 0)), constant_values=1)
                           for c in columns], axis=1)
    img = Image.fromarray((grid * 255).round().astype(np.uint8), mode="RGB")
    tile = max(max(c.shape[0] for c in columns) // max(1, min(rows, len(arr))), 1)
    scale = max(scale, -(-64 // tile))  # small images (8x8 digits) get at least 64 px per tile
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    write_atomic(Path(out_png), buf.getvalue())
    return images
