"""Commands that write and read datasets: generate, preview, verify, merge, export."""

from __future__ import annotations

from pathlib import Path

from mmmi_dsl.builtins.flows import STANDARDIZE
from mmmi_dsl.cli.args import add_spec_options, check_device, integer, load_spec
from mmmi_dsl.errors import SpecError, UsageError


def _auto_table() -> dict[str, list[str]]:
    """``--standardize auto``: the flows that ask for each standardisation, from their definitions."""
    from mmmi_dsl.builtins import FLOWS

    table: dict[str, list[str]] = {}
    for name, b in FLOWS.items():
        if b.standardize != "none":
            table.setdefault(b.standardize, []).append(name)
    return table


def add_parsers(sub) -> None:
    """Add this family's subcommands to the ``mmmic`` parser."""
    p = sub.add_parser("generate", help="generate a dataset: streamed, sharded, resumable; the files the spec reads "
                       "(templates, matrices, weights) are copied into it")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.add_argument("-n", type=integer(1), required=True, metavar="N", help="number of tuples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, metavar="B",
                   help="tuples per batch in memory, the progress bar's step (default ~32 MiB, or ~64 KiB per file "
                        "when there are many; where a flow's working set caps the chunk, a tuple's bytes count it)")
    p.add_argument("--shard-size", type=int, metavar="S",
                   help="tuples per shard, the unit a resume keeps (default ~256 MiB, or ~2 MiB per file when there "
                        "are many; where a flow's working set caps the chunk, a tuple's bytes count it)")
    p.add_argument("--chunk-size", type=int, metavar="C",
                   help="tuples per deterministic random chunk, each one flow call (default: a power of two with "
                        "~8 M floats of draws and outputs, and at most as many rows as keep the widest flow call's "
                        "working set within ~8 M floats: 1,024 for small models, 32 for fashion_views; part of the "
                        "seeding, so another chunk size draws other tuples)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--standardize", default="auto", choices=list(STANDARDIZE),
                   help="per-modality invertible standardisation before the flow (keeps the MI): scale (unit "
                        "variance per component), radius (one scale per modality: keeps the layout of templates), "
                        "whiten (exactly N(0, I)); auto: what each flow's definition asks for ("
                        + "; ".join(f"{how} before {', '.join(names)}" for how, names in _auto_table().items())
                        + "; radius before a cnf whose weights are convolutional; else none)")
    p.add_argument("--shard", metavar="I/K", help="write job I of K (0-based); also read from SLURM_ARRAY_TASK_ID/"
                   "SLURM_ARRAY_TASK_COUNT, HTCondor's _CONDOR_PROCNO/_CONDOR_NPROCS or torchrun's RANK/WORLD_SIZE "
                   "(docs/cluster.md)")
    p.add_argument("--save-latents", action="store_true", help="also save every latent")
    p.add_argument("--uint8", metavar="LO,HI",
                   help="lossy export (write --uint8=-1,1): modalities as 8-bit over the fixed range "
                   "[LO, HI]; the manifest then marks the MI as an upper bound")
    p.add_argument("--pmi", action="append", default=[], metavar='"a;b"', help="add an exact PMI column")
    p.add_argument("--resume", action="store_true", help="require an existing matching run to continue "
                   "(resuming a matching run is automatic anyway)")
    p.add_argument("--overwrite", action="store_true", help="replace a different dataset in DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=int_or_auto, default=1, metavar="THREADS",
                   help="CPU threads for torch, or auto (default 1: on a busy 2-core machine the digits flow ran 9x "
                        "faster on one thread than on two; see docs/benchmarks.md). auto: 2 for a spec with a "
                        "learned flow when at least 2 cores may be used and 1.5 of them are idle (1-minute load "
                        "average <= cores - 1.5), else 1")
    add_spec_options(p)
    p.set_defaults(run=cmd_generate)
    p = sub.add_parser("preview", help="draw a figure of sample tuples of a dataset (PNG): a column per modality, "
                       "a row per tuple with its target values")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("-o", "--output", required=True, metavar="FILE.png")
    p.add_argument("--rows", type=integer(1), default=8, help="tuples to draw (default 8)")
    p.add_argument("--scale", type=float, default=1.0, help="size of each panel, relative (default 1)")
    p.set_defaults(run=cmd_preview)
    p = sub.add_parser("verify", help="check a dataset's files, checksums and MI statistics")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--subsample", type=subsample, default=None, metavar="M",
                   help="invert the flows of at most M tuples (default 2000; at least 10): learned image flows "
                        "cost an ODE solve per tuple")
    p.set_defaults(run=cmd_verify)
    p = sub.add_parser("merge", help="join the part manifests of a split run into manifest.json")
    p.add_argument("sources", nargs="+", metavar="DIR_OR_PART")
    p.add_argument("-o", "--output", metavar="DIR", help="where manifest.json goes (default: the first DIR)")
    p.set_defaults(run=cmd_merge)
    p = sub.add_parser("export", help="export a dataset as Parquet, WebDataset tar shards or a Hugging Face "
                       "dataset folder, with a dataset card and croissant.json")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--to", required=True, choices=["parquet", "webdataset", "hf"],
                   help="parquet: data/SPLIT-0000i-of-0000N.parquet (datasets.load_dataset('parquet', ...)); "
                        "webdataset: SPLIT-0000i-of-0000N.tar (webdataset.WebDataset); hf: a folder "
                        "datasets.load_from_disk opens")
    p.add_argument("out", metavar="OUT", help="a new or empty folder")
    p.add_argument("--images", default="array", choices=["array", "png"],
                   help="image modalities ((H, W) or (C, H, W) per sample) as arrays (default) or PNG")
    p.add_argument("--png-range", metavar="LO,HI", help="with --images png on float data: quantise "
                   "round(255 clip((x-LO)/(HI-LO), 0, 1)) (lossy; the card says the MI is then an upper bound)")
    p.add_argument("--rows-per-file", type=int, metavar="R", help="samples per file (default ~256 MiB each)")
    p.set_defaults(run=cmd_export)


def _pmi_pairs(model, items: list[str]) -> list[tuple[str, str]]:
    from mmmi_dsl.lang.lower import resolve_query
    pairs = []
    for item in items:
        try:
            q = resolve_query(model, f"I({item})")
        except SpecError as err:
            raise UsageError(f"--pmi {item!r}: {err.diagnostics[0].message}; give two variables as \"a;b\"") from None
        if q.given or any(len(g) != 1 for g in q.groups) or any(n in model.labels for g in q.groups for n in g):
            raise UsageError(f"--pmi {item!r}: give two Gaussian variables as \"a;b\"")
        pairs.append((q.groups[0][0], q.groups[1][0]))
    return pairs


def int_or_auto(text: str) -> int | str:
    """``--threads``: a number, or ``auto``."""
    import argparse

    if text == "auto":
        return text
    try:
        int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of threads or auto, got {text!r}") from None
    return integer(1)(text)


def subsample(text: str) -> int:
    """``--subsample``: a number of tuples, at least the verifier's minimum."""
    from mmmi_dsl.dataset.oracle import MIN_SUBSAMPLE

    return integer(MIN_SUBSAMPLE)(text)


def _threads(arg: int | str, model) -> int:
    """The torch thread count of ``--threads`` (``auto``: :func:`mmmi_dsl.dataset.jobs.auto_threads`)."""
    if arg != "auto":
        return arg
    from mmmi_dsl.builtins import FLOWS
    from mmmi_dsl.dataset.jobs import auto_threads, machine_load

    learned = any(FLOWS[s.name].weights is not None for f in model.flows.values() for s in f.steps
                  if s.name in FLOWS)
    return auto_threads(learned, *machine_load())


def _job(arg: str | None) -> tuple[int, int]:
    """``--shard I/K`` if given, else the split of a SLURM array or torchrun, else (0, 1)."""
    from mmmi_dsl.dataset.jobs import parse_split, split_from_env

    try:
        return parse_split(arg) if arg is not None else split_from_env()
    except UsageError as err:
        raise UsageError(f"--shard {err}" if arg is not None else f"{err}; pass --shard I/K") from None


def cmd_generate(args) -> int:
    import torch

    from mmmi_dsl.dataset import manifest_name, run_to_resume
    from mmmi_dsl.dataset.generate import generate_dataset

    model = load_spec(args)
    torch.set_num_threads(_threads(args.threads, model))
    job = _job(args.shard)
    out = Path(args.output)
    if args.resume and not run_to_resume(out, job):  # a manifest, or the temp file of a run killed writing it
        raise UsageError(f"--resume: no run to resume in {out} (no {manifest_name(job)})")
    from mmmi_dsl.cli.args import parse_bracket
    uint8_range = parse_bracket(args.uint8, "--uint8") if args.uint8 else None
    before = {} if args.overwrite else _recorded(out, job)
    manifest = generate_dataset(model, out, args.n, seed=args.seed, device=check_device(args.device), dtype=args.dtype,
                                standardize=args.standardize, save_latents=args.save_latents,
                                pmi=tuple(_pmi_pairs(model, args.pmi)), chunk_size=args.chunk_size,
                                uint8_range=uint8_range, shard_size=args.shard_size, batch_size=args.batch_size,
                                job=job, progress=not args.no_progress, overwrite=args.overwrite)
    done = sum(s["n"] for s in manifest["shards"])
    kept = [s for s in manifest["shards"] if before.get(s["index"]) == s["sha256"]]
    if kept and len(kept) == len(manifest["shards"]) and manifest["complete"]:
        print(f"{out}: complete, nothing to do ({done:,} tuples in {len(kept)} shard(s) already written; "
              f"their sizes were checked, not their sha256: run `mmmic verify {out}` for that)")
        return 0
    print(f"wrote {done:,} of {args.n:,} tuples in {len(manifest['shards'])} shard(s) to {out}"
          + ("" if job == (0, 1) else f" (job {job[0]}/{job[1]}; run `mmmic merge {out}` when all jobs are done)"))
    if kept:
        print(f"resumed: kept {len(kept)} shard(s) already on disk, checked by size only, not rehashed; "
              f"run `mmmic verify {out}` to check their sha256")
    return 0


def _recorded(out: Path, job: tuple[int, int]) -> dict[int, dict]:
    """The shards (index -> sha256 per variable) a manifest in ``out`` records now and whose files are
    on disk with their sizes (those a resume keeps); {} if none."""
    from mmmi_dsl.dataset import DatasetError, manifest_name, read_manifest
    from mmmi_dsl.dataset.safety import is_regular
    from mmmi_dsl.dataset.writer import on_disk

    path = out / manifest_name(job)
    try:
        shards = read_manifest(path)["shards"] if is_regular(path) else []
    except DatasetError:
        return {}
    return {s["index"]: s["sha256"] for s in shards if on_disk(out, s)}


def cmd_preview(args) -> int:
    from mmmi_dsl.dataset.preview import preview_grid
    if not 0.1 <= args.scale <= 20:
        raise UsageError("--scale must be between 0.1 and 20")
    if args.rows > 64:
        raise UsageError("--rows: at most 64 tuples fit in one figure")
    drawn = preview_grid(Path(args.dir), Path(args.output), args.rows, args.scale)
    print(f"wrote {args.output}: {args.rows} tuples of {', '.join(drawn)}")
    return 0


def cmd_verify(args) -> int:
    from mmmi_dsl.dataset import verify
    from mmmi_dsl.dataset.oracle import SUBSAMPLE

    report = verify(args.dir, args.subsample or SUBSAMPLE)
    for finding in report.findings:
        print(finding.line())
    return 0 if report.ok else 1


def cmd_merge(args) -> int:
    from mmmi_dsl.dataset import merge
    manifest = merge(args.sources, args.output)
    state = "complete" if manifest.get("complete") else "INCOMPLETE"
    print(f"merged {len(manifest['shards'])} shard(s), {sum(s['n'] for s in manifest['shards']):,} tuples: {state}")
    return 0 if manifest.get("complete") else 1


def cmd_export(args) -> int:
    import shlex
    import sys

    from mmmi_dsl.cli.args import parse_bracket
    from mmmi_dsl.dataset.export import export

    if args.png_range and args.images != "png":
        raise UsageError("--png-range is for --images png")
    png_range = parse_bracket(args.png_range, "--png-range") if args.png_range else None
    command = shlex.join(["mmmic", *sys.argv[1:]]) if sys.argv[1:2] == ["export"] else ""
    done = export(args.dir, args.out, args.to, images=args.images == "png", png_range=png_range,
                  rows_per_file=args.rows_per_file, command=command or shlex.join(
                      ["mmmic", "export", args.dir, "--to", args.to, args.out]))
    splits = ", ".join(f"{s} {k:,}" for s, k in done.splits.items())
    print(f"exported {sum(done.splits.values()):,} samples ({splits}) to {done.out} as {done.to}: "
          f"{len(done.files)} data file(s), README.md, croissant.json")
    for note in done.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0
