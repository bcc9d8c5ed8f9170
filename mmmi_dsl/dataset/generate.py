"""Generate a dataset from a model: the one code path of ``mmmic generate`` and the benchmarks."""

from __future__ import annotations

import hashlib
from pathlib import Path

from mmmi_dsl import ir
from mmmi_dsl.builtins import FLOWS
from mmmi_dsl.dataset.reader import DEFAULT_SPLITS
from mmmi_dsl.errors import SpecError
from mmmi_dsl.lang.laws import first_non_gaussian


def dataset_metadata(model: ir.Model, sampler, results) -> dict:
    """What a dataset's manifest records besides its shards (see docs/dataset-format.md)."""
    import torch

    from mmmi_dsl.dataset.format import spec_source
    from mmmi_dsl.mi.limits import is_limit
    from mmmi_dsl.version import __version__

    spec_text, spec_file = spec_source(model)  # a dataset's own spec when regenerating from one
    gaussian = {}
    for t in model.targets:
        gaussian[t] = t
    for v in sampler.saved_latents:
        gaussian[v] = v
    for name, f in model.flows.items():
        if all(s.name in FLOWS and FLOWS[s.name].linear for s in f.steps) and sampler.uint8_range is None:
            gaussian[name] = name  # a linear bijection of a Gaussian: still Gaussian, same MI
        elif f.latent in sampler.saved_latents:
            gaussian[name] = f.latent
    if not model.gaussian:  # Student-t and uniform variables are not Gaussian arrays (lang/laws.py)
        gaussian = {k: v for k, v in gaussian.items() if first_non_gaussian(model, [k, v]) is None}
    return {
        "model": model.name,
        "spec": spec_text,
        "spec_file": spec_file,
        # of the IR's JSON where the text is unknown (a spec given as a string): two such specs never share it
        "spec_sha256": hashlib.sha256((spec_text or model.model_dump_json()).encode()).hexdigest(),
        "params": {k: p.value for k, p in model.params.items()},
        "dims": {k: d.value for k, d in model.dims.items()},
        "mi": [r.to_json() for r in results if not is_limit(r)],  # MI only: limits are recomputed from the spec
        "mi_is_upper_bound": sampler.uint8_range is not None,  # lossy export: I(q(x1); q(x2)) <= I(x1; x2)
        "gaussian_arrays": gaussian,
        "flows": sampler.flow_roundtrip(),
        "roles": variable_roles(model, sampler),
        "splits": DEFAULT_SPLITS,
        "generator": {"mmmic": __version__, "torch": torch.__version__, "device_type": sampler.device.type,
                      "dtype": str(sampler.dtype).replace("torch.", ""), "standardize": sampler.standardize},
    }


def variable_roles(model: ir.Model, sampler) -> dict[str, str]:
    """Each saved variable's role (``modality``, ``target``, ``label``, ``latent``, ``pmi``), as recorded."""
    out = {}
    for name in sampler.variables:
        out[name] = ("modality" if name in model.flows else "target" if name in model.targets else
                     "label" if name in model.labels else "pmi" if name.startswith("pmi:") else "latent")
    return out


#: Bytes per shard and per batch, and per file at least: a shard of many modalities holds many files,
#: each opened, fsynced and renamed (about 1 ms apiece), and each batch is one write per file.
SHARD_BYTES, SHARD_FILE_BYTES = 256 << 20, 2 << 20
BATCH_BYTES, BATCH_FILE_BYTES = 32 << 20, 64 << 10


def default_sizes(sampler, shard_size: int | None, batch_size: int | None) -> tuple[int, int]:
    """Shard and batch sizes, multiples of the chunk: ~256 MiB per shard and ~32 MiB per batch, more
    when there are many files, so that the mean file gets ~2 MiB per shard and ~64 KiB per batch
    (decay at N = 1,000, 1,001 files: ~2 GiB shards, ~64 MiB batches). Where a flow's working set
    caps the chunk (``sampler.flow_rows`` below MAX_CHUNK: a UNet), a sample's bytes count that
    working set too, so the batches (the progress bar's steps) and the shards (what a resume keeps)
    hold minutes of work, not hours: fashion_views, 32 tuples a batch and 288 a shard."""
    import numpy as np

    from mmmi_dsl.backend import MAX_CHUNK

    per_sample = sum(int(np.prod(shape)) * np.dtype(dt).itemsize for shape, dt in sampler.variables.values())
    if getattr(sampler, "flow_rows", MAX_CHUNK) < MAX_CHUNK:  # a ChunkSampler need not have it
        per_sample += sampler.working_floats * sampler.dtype.itemsize
    c = sampler.chunk_size

    def round_to_chunks(x: float) -> int:
        return max(c, int(x) // c * c)

    files = len(sampler.variables)
    shard_bytes, batch_bytes = max(SHARD_BYTES, SHARD_FILE_BYTES * files), max(BATCH_BYTES, BATCH_FILE_BYTES * files)
    # None means "choose"; a given 0 or negative is passed on for the writer to refuse (never replaced)
    shard = round_to_chunks(min(1_048_576, shard_bytes / max(1, per_sample))) if shard_size is None else shard_size
    batch = round_to_chunks(min(max(shard, 1), batch_bytes / max(1, per_sample))) if batch_size is None else batch_size
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

    from mmmi_dsl.backend import Sampler
    from mmmi_dsl.dataset.croissant import dataset_croissant, write_croissant
    from mmmi_dsl.dataset.format import manifest_name
    from mmmi_dsl.dataset.safety import WriterLock
    from mmmi_dsl.dataset.spec_files import check_destinations, copy_spec_files, spec_files
    from mmmi_dsl.dataset.spec_files import fingerprint as file_fingerprint
    from mmmi_dsl.dataset.writer import write_dataset
    from mmmi_dsl.mi.analysis import default_queries

    torch_dtype = torch.float32 if dtype == "float32" else torch.float64
    sampler = Sampler(model, device=device, dtype=torch_dtype, standardize=standardize,
                      save_latents=save_latents, pmi=list(pmi), seed=seed, chunk_size=chunk_size,
                      uint8_range=uint8_range)
    problems = sampler.flow_problems()  # before anything is written: a flow that cannot invert is refused
    if problems:
        raise SpecError(problems)
    results = sampler.analysis.evaluate_all(default_queries(model))
    shard_size, batch_size = default_sizes(sampler, shard_size, batch_size)
    fingerprint = {"standardize": standardize, "dtype": dtype, "device_type": sampler.device.type,
                   "save_latents": save_latents, "pmi": [list(p) for p in sampler.pmi_pairs],
                   "uint8": list(uint8_range) if uint8_range else None}
    learned = sampler.learned_flows()
    if learned:  # the weights and solver behind the images: a resume with other weights is refused
        fingerprint["learned_flows"] = learned
    files = spec_files(model)
    if files:  # the templates, matrices and weights the spec reads: copied beside the manifest (spec_files.py)
        check_destinations(Path(out), files)  # before anything is written
        fingerprint["files"] = file_fingerprint(files)
    manifest = write_dataset(out, sampler, n, seed=seed, shard_size=shard_size, batch_size=batch_size,
                             metadata=dataset_metadata(model, sampler, results), fingerprint=fingerprint,
                             job=job, progress=progress, overwrite=overwrite)
    with WriterLock(Path(out), manifest_name(job)):
        copy_spec_files(Path(out), files, fingerprint.get("files", {}))
        if manifest["complete"] and job[1] == 1:  # a part's croissant.json is written by merge
            write_croissant(Path(out), dataset_croissant(Path(out), manifest))
    return manifest
