"""Stage 7, the command line: ``mmmic check | compile``.

Exit codes: 0 ok, 1 spec or data error, 2 usage error. Errors go to stderr, rendered
with file:line:col, the source line and a caret; never a traceback for a user
mistake (set ``MMMIC_DEBUG=1`` to see tracebacks of internal errors).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from mmmi_dsl import __version__

from mmmi_dsl import load
from mmmi_dsl.errors import MmmicError, SpecError, UsageError
from mmmi_dsl.files import dumps_json


def _at_least(value: int, minimum: int, flag: str) -> None:
    """A usage error unless an integer option is at least ``minimum``."""
    if value < minimum:
        raise UsageError(f"{flag} must be at least {minimum}")


def _load_spec(args):
    """The checked IR of ``args.spec`` with its ``--set`` overrides and ``--allow-paths``."""
    return load(args.spec, _parse_sets(args.set), allow_paths=args.allow_paths)


def _parse_sets(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UsageError(f"--set {item!r}: expected NAME=VALUE, e.g. --set d=64")
        out[name.strip()] = value.strip()
    return out


def _add_queries(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--query", "-q", action="append", default=[], metavar='"I(a; b | c)"', help=help)


def _add_set(p: argparse.ArgumentParser) -> None:
    """The options of every command that reads a spec: --set and --allow-paths."""
    p.add_argument("--set", action="append", metavar="NAME=VALUE", default=[],
                   help="override a param or dim default (repeatable)")
    p.add_argument("--allow-paths", action="store_true",
                   help="let the spec read files outside its own directory (absolute paths, ../, links out)")


#: `mmmic formula`: the symbolic engine's default time budget (decay.mmi at N = 20 takes about 56 s).
FORMULA_TIMEOUT_S = 120.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmmic", description="Compile .mmi specs of multimodal datasets with exact mutual information.")
    parser.add_argument("--version", action="version", version=f"mmmic {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("check", help="check specs; exit 1 on errors")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.add_argument("--flows", action="store_true",
                   help="also build each modality's flow and report its round-trip error |f^-1(f(z)) - z|")
    _add_set(p)
    p.set_defaults(run=cmd_check)

    p = sub.add_parser("compile", help="compile a spec to a bundle (ir.json)")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("-o", "--output", metavar="DIR", help="write the bundle here (default: print the IR)")
    _add_set(p)
    p.set_defaults(run=cmd_compile)

    p = sub.add_parser("mi", help="exact mutual information of a spec's reports or of --query")
    p.add_argument("spec", metavar="SPEC")
    _add_queries(p, "a query (repeatable); default: the spec's reports, else I(target; x) and all pairs")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_set(p)
    p.set_defaults(run=cmd_mi)

    p = sub.add_parser("solve", help="find a parameter value that gives a target MI (exactly)")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--for", dest="param", metavar="PARAM", help="the free parameter to solve for")
    p.add_argument("--target", metavar='"I(a; b) = V [bits]"', help="the MI wanted")
    p.add_argument("--bracket", metavar="LO,HI", help="where to search (default: the parameter's bounds)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_set(p)
    p.set_defaults(run=cmd_solve)

    p = sub.add_parser("sweep", help="a table of exact MI over parameter values or target MIs")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--for", dest="param", metavar="PARAM", help="the free parameter to vary")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--values", metavar='"linspace(a, b, n)"|v1,v2', help="parameter values")
    what.add_argument("--targets", metavar="t1,t2,...", help="target MIs of the one --query (in its unit); "
                      "the parameter is solved for each")
    _add_queries(p, "a query (repeatable); default: the spec's reports, else I(target; x) and all pairs")
    p.add_argument("--bracket", metavar="LO,HI", help="with --targets: where to search")
    p.add_argument("-o", "--output", metavar="FILE", help="write FILE.csv or FILE.json instead of printing")
    _add_set(p)
    p.set_defaults(run=cmd_sweep)

    p = sub.add_parser("formula", help="closed-form MI (sympy): LaTeX, text or sympy")
    p.add_argument("spec", metavar="SPEC")
    _add_queries(p, "a query (repeatable); default: the spec's reports")
    p.add_argument("--format", default="latex", choices=["latex", "text", "sympy"])
    p.add_argument("--numeric", nargs="+", default=[], metavar="NAME",
                   help="replace these params, dims or templates by their values ('templates': every "
                        "template inner product; 'all': everything)")
    p.add_argument("--timeout", type=float, default=FORMULA_TIMEOUT_S, metavar="SECONDS",
                   help=f"give up after this many seconds (default {FORMULA_TIMEOUT_S:g}; 0: no limit)")
    _add_set(p)
    p.set_defaults(run=cmd_formula)

    p = sub.add_parser("graph", help="the causal DAG: DOT, SVG, PNG or dagitty (default: print DOT)")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("-o", "--output", metavar="FILE", help="FILE.dot, FILE.svg or FILE.png (or any name with "
                   "--format dagitty); default: print the DOT text")
    p.add_argument("--format", choices=["dot", "svg", "png", "dagitty"], help="default: from the suffix of -o")
    p.add_argument("--collapse", type=int, default=8, metavar="N",
                   help="draw a family with more than N members as one node n[1..N] (default 8); smaller "
                        "families are drawn as plates")
    _add_set(p)
    p.set_defaults(run=cmd_graph)

    p = sub.add_parser("plot", help="plots of exact MI: the pairwise MI matrix, or MI against a parameter")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--kind", required=True, choices=["mi-matrix", "mi-vs-param"])
    p.add_argument("-o", "--output", required=True, metavar="FILE.png", help="FILE.png, FILE.svg or FILE.pdf")
    p.add_argument("--param", metavar="NAME", help="mi-vs-param: the parameter on the x axis")
    p.add_argument("--values", metavar='"a:b:n"|"linspace(a, b, n)"|v1,v2',
                   help="mi-vs-param: its values (default: 50 points across its bounds)")
    p.add_argument("--over", metavar="INDEX=LO..HI", help='mi-vs-param: a family index on the x axis instead, '
                   'e.g. --over j=2..N with -q "I(x[1]; x[j])" (default queries: I(x[1]; x[j]), I(target; x[j]))')
    _add_queries(p, "mi-vs-param: a query (repeatable); default: the spec's reports")
    p.add_argument("--by", metavar="NAME=v1,v2,...", help="mi-vs-param: one line per value of another "
                   "parameter, one panel per query")
    p.add_argument("--names", metavar="a,b,...", help="mi-matrix: the variables (default: targets and modalities)")
    p.add_argument("--unit", default="nats", choices=["nats", "bits"])
    _add_set(p)
    p.set_defaults(run=cmd_plot)

    p = sub.add_parser("generate", help="generate a dataset: streamed, sharded, resumable")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.add_argument("-n", type=int, required=True, metavar="N", help="number of tuples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, metavar="B", help="tuples per batch in memory (default ~32 MiB)")
    p.add_argument("--shard-size", type=int, metavar="S", help="tuples per shard file (default ~256 MiB)")
    p.add_argument("--chunk-size", type=int, metavar="C",
                   help="tuples per deterministic random chunk (default from the model's size)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--standardize", default="auto", choices=["auto", "none", "scale", "whiten"],
                   help="per-modality invertible standardisation before the flow (keeps the MI); auto: "
                        "whiten before learned flows (cnf, digits, trained on N(0, I) noise), else none")
    p.add_argument("--shard", metavar="I/K", help="write job I of K (0-based); also read from SLURM_ARRAY_TASK_ID/"
                   "SLURM_ARRAY_TASK_COUNT or torchrun's RANK/WORLD_SIZE")
    p.add_argument("--save-latents", action="store_true", help="also save every latent")
    p.add_argument("--uint8", metavar="LO,HI", help="lossy export (write --uint8=-1,1): modalities as 8-bit over the fixed range "
                   "[LO, HI]; the manifest then marks the MI as an upper bound")
    p.add_argument("--pmi", action="append", default=[], metavar='"a;b"', help="add an exact PMI column")
    p.add_argument("--resume", action="store_true", help="require an existing matching run to continue "
                   "(resuming a matching run is automatic anyway)")
    p.add_argument("--overwrite", action="store_true", help="replace a different dataset in DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch (default 1: on a busy 2-core machine the digits flow ran 9x "
                        "faster on one thread than on two; see docs/benchmarks.md)")
    _add_set(p)
    p.set_defaults(run=cmd_generate)

    p = sub.add_parser("train-flow", add_help=False,
                       help="train a class-conditional flow-matching model (see `mmmic train-flow --help`)")
    p.set_defaults(run=cmd_train_flow)  # its arguments are parsed by mmmi_dsl.train

    p = sub.add_parser("preview", help="draw a grid of sample tuples of a dataset (PNG)")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("-o", "--output", required=True, metavar="FILE.png")
    p.add_argument("--rows", type=int, default=8, help="tuples to draw (default 8)")
    p.set_defaults(run=cmd_preview)

    p = sub.add_parser("verify", help="check a dataset's files, checksums and MI statistics")
    p.add_argument("dir", metavar="DIR")
    p.set_defaults(run=cmd_verify)

    p = sub.add_parser("merge", help="join the part manifests of a split run into manifest.json")
    p.add_argument("sources", nargs="+", metavar="DIR_OR_PART")
    p.add_argument("-o", "--output", metavar="DIR", help="where manifest.json goes (default: the first DIR)")
    p.set_defaults(run=cmd_merge)

    p = sub.add_parser("estimate", help="run MI estimators on a generated dataset, beside the exact MI")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--query", "-q", required=True, metavar='"I(a; b)"', help="two saved variables")
    p.add_argument("--estimator", "-e", action="append", default=[], metavar="NAME",
                   help="repeatable; default: all (gaussian, ksg, dv, mine, nwj, infonce, js, smile)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (variational critics, brute-force KSG)")
    p.add_argument("--max-samples", type=int, metavar="N", help="use the first N samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, metavar="S", help="training steps of the variational critics")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads while training critics (default 1)")
    p.set_defaults(run=cmd_estimate)

    p = sub.add_parser("bench-estimators", help="solve a parameter per target MI, generate each dataset, "
                       "run the estimators; table + plot of estimated vs exact MI")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--for", dest="param", required=True, metavar="PARAM", help="the free parameter to solve for")
    p.add_argument("--targets", required=True, metavar='t1,t2,...|"linspace(a, b, n)"',
                   help="target MIs of --query (nats unless the query ends in `bits`)")
    p.add_argument("--query", "-q", metavar='"I(a; b)"', help="two modalities (default: the first such report)")
    p.add_argument("-n", type=int, default=10_000, metavar="N", help="tuples per dataset (default 10000)")
    p.add_argument("-o", "--output", metavar="DIR", help="datasets, results.json/.md, plot.png "
                   "(default: out/bench-MODEL); a rerun resumes")
    p.add_argument("--estimator", "-e", action="append", default=[], metavar="NAME[:key=value,...]",
                   help="repeatable; default: gaussian ksg dv mine nwj infonce js smile:tau=1 smile:tau=5 "
                        "smile:tau=inf")
    p.add_argument("--bracket", metavar="LO,HI", help="where to search the parameter")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (generation and critics)")
    p.add_argument("--seed", type=int, default=0, help="dataset i uses seed + i; the estimators use seed")
    p.add_argument("--max-steps", type=int, metavar="S", help="training steps of the variational critics")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--oracle", action="store_true", help="add a check column: invert the known flows and read "
                   "the recovered latents' MI with the Gaussian plug-in (should match the exact MI)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_set(p)
    p.set_defaults(run=cmd_bench_estimators)
    return parser


def cmd_check(args) -> int:
    overrides = _parse_sets(args.set)
    from mmmi_dsl.report import summary
    failed = 0
    for spec in args.specs:
        try:
            model = load(spec, dict(overrides), allow_paths=args.allow_paths)
        except SpecError as err:
            print(err.render(), file=sys.stderr)
            failed += 1
            continue
        print(f"ok {spec}: {summary(model)}")
        if args.flows:
            from mmmi_dsl.backend import Sampler
            try:
                report = Sampler(model, standardize="auto").flow_roundtrip()
            except SpecError as err:
                print(err.render(), file=sys.stderr)
                failed += 1
                continue
            for name, r in report.items():
                print(f"  flow {name} = {r['chain']}: round trip max {r['roundtrip_max']:.2e}, "
                      f"mean {r['roundtrip_mean']:.2e}")
    return 1 if failed else 0


def cmd_mi(args) -> int:
    from mmmi_dsl.mi.analysis import Analysis, default_queries
    from mmmi_dsl.lang.lower import resolve_query
    from mmmi_dsl.report import mi_json, mi_table
    model = _load_spec(args)
    queries = [resolve_query(model, q) for q in args.query] or default_queries(model)
    engine = Analysis(model)
    results = []
    for q in queries:
        try:
            results.append(engine.evaluate(q))
        except SpecError as err:
            if q.span is not None and q.span.file == "--query":
                err.sources["--query"] = q.text
            raise
    if args.json:
        print(dumps_json(mi_json(model, results)))
    else:
        print(mi_table(model, queries, results))
    return 0


def cmd_solve(args) -> int:
    from mmmi_dsl.mi.solve import parse_bracket, parse_target, solve, solve_all, solve_text
    model = _load_spec(args)
    errors = []
    if args.param is None and args.target is None:
        if args.bracket is not None:
            raise UsageError("--bracket goes with --for PARAM --target \"QUERY = VALUE\"")
        if not model.solves:
            raise UsageError(f"{args.spec} has no `solve` statements; give --for PARAM --target \"QUERY = VALUE\"")
        results, errors = solve_all(model)
    elif args.param is None or args.target is None:
        raise UsageError("--for PARAM and --target \"QUERY = VALUE\" go together")
    else:
        query, value, unit, span = parse_target(model, args.target)
        bracket = parse_bracket(args.bracket) if args.bracket else None
        results = [solve(model, args.param, query, value, unit, bracket, span=span,
                         sources={"--target": args.target.strip()})]
    if args.json:
        print(dumps_json({"model": model.name, "solves": [r.to_json() for r in results]}))
    elif results:
        print(solve_text(model, results))
    if errors:
        raise SpecError([d for err in errors for d in err.diagnostics])
    return 0


def cmd_sweep(args) -> int:
    from mmmi_dsl.mi.solve import run_sweep_command
    model = _load_spec(args)
    print(run_sweep_command(model, args.param, args.values, args.targets, args.query, args.bracket, args.output))
    return 0


def cmd_formula(args) -> int:
    from mmmi_dsl.mi.analysis import default_queries
    from mmmi_dsl.lang.lower import resolve_query
    from mmmi_dsl.report import formula_text
    model = _load_spec(args)
    queries = [resolve_query(model, q) for q in args.query] or default_queries(model)
    if args.timeout < 0:
        raise UsageError("--timeout must be 0 (no limit) or a positive number of seconds")
    print(formula_text(model, queries, args.format, set(args.numeric), budget_s=args.timeout or None))
    return 0


def cmd_graph(args) -> int:
    from mmmi_dsl.graph import run_graph_command
    model = _load_spec(args)
    print(run_graph_command(model, args.output, args.format, args.collapse))
    return 0


def cmd_plot(args) -> int:
    from mmmi_dsl.plot import run_plot_command
    model = _load_spec(args)
    print(run_plot_command(model, args.kind, args.output, args.param, args.values, args.over, args.query,
                           args.by, args.unit, args.names))
    return 0


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


def cmd_generate(args) -> int:
    import torch

    from mmmi_dsl.dataset import manifest_name, run_to_resume, shard_from_env
    from mmmi_dsl.dataset.generate import generate_dataset

    _at_least(args.n, 1, "-n")
    _at_least(args.threads, 1, "--threads")
    torch.set_num_threads(args.threads)
    model = _load_spec(args)
    job = shard_from_env(args.shard)
    out = Path(args.output)
    if args.resume and not run_to_resume(out, job):  # a manifest, or the temp file of a run killed writing it
        raise UsageError(f"--resume: no run to resume in {out} (no {manifest_name(job)})")
    from mmmi_dsl.mi.solve import parse_bracket
    uint8_range = parse_bracket(args.uint8, "--uint8") if args.uint8 else None
    manifest = generate_dataset(model, out, args.n, seed=args.seed, device=args.device, dtype=args.dtype,
                                standardize=args.standardize, save_latents=args.save_latents,
                                pmi=tuple(_pmi_pairs(model, args.pmi)), chunk_size=args.chunk_size,
                                uint8_range=uint8_range, shard_size=args.shard_size, batch_size=args.batch_size,
                                job=job, progress=not args.no_progress, overwrite=args.overwrite)
    done = sum(s["n"] for s in manifest["shards"])
    print(f"wrote {done:,} of {args.n:,} tuples in {len(manifest['shards'])} shard(s) to {out}"
          + ("" if job == (0, 1) else f" (job {job[0]}/{job[1]}; run `mmmic merge {out}` when all jobs are done)"))
    return 0


def cmd_train_flow(args) -> int:
    from mmmi_dsl.flows.train import main as train_main
    return train_main(args.extra, prog="mmmic train-flow")


def cmd_preview(args) -> int:
    from mmmi_dsl.dataset.preview import preview_grid
    _at_least(args.rows, 1, "--rows")
    drawn = preview_grid(Path(args.dir), Path(args.output), args.rows)
    print(f"wrote {args.output}: {args.rows} tuples of {', '.join(drawn)}")
    return 0


def cmd_verify(args) -> int:
    from mmmi_dsl.dataset import verify
    report = verify(args.dir)
    for line in report.lines:
        print(line)
    return 0 if report.ok else 1


def cmd_merge(args) -> int:
    from mmmi_dsl.dataset import merge
    manifest = merge(args.sources, args.output)
    state = "complete" if manifest.get("complete") else "INCOMPLETE"
    print(f"merged {len(manifest['shards'])} shard(s), {sum(s['n'] for s in manifest['shards']):,} tuples: {state}")
    return 0 if manifest.get("complete") else 1


def cmd_estimate(args) -> int:
    from mmmi_dsl.estimators import run_estimate_command
    _at_least(args.threads, 1, "--threads")
    options = {"threads": args.threads}
    if args.max_steps is not None:
        options["max_steps"] = args.max_steps
    text, code = run_estimate_command(args.dir, args.query, args.estimator, as_json=args.json, device=args.device,
                                      max_samples=args.max_samples, seed=args.seed, options=options)
    print(text)
    return code


def cmd_bench_estimators(args) -> int:
    from mmmi_dsl.benchmark import DEFAULT_ESTIMATORS, default_pair, parse_estimator, run_benchmark
    from mmmi_dsl.mi.solve import parse_bracket, parse_values
    _at_least(args.n, 20, "-n")
    _at_least(args.threads, 1, "--threads")
    configs = [parse_estimator(e) for e in (args.estimator or DEFAULT_ESTIMATORS)]
    targets = parse_values(args.targets, "--targets")
    model = _load_spec(args)
    out = Path(args.output or f"out/bench-{model.name}")
    results = run_benchmark(model, args.param, args.query or default_pair(model), targets, args.n, out,
                            estimators=configs, seed=args.seed, device=args.device, threads=args.threads,
                            max_steps=args.max_steps, bracket=parse_bracket(args.bracket) if args.bracket else None,
                            oracle=args.oracle, progress=not args.no_progress)
    print((out / "results.md").read_text(encoding="utf-8"))
    print(f"wrote {out / 'results.json'}, {out / 'results.md'} and {out / 'plot.png'}")
    return 1 if any(s["failed"] for s in results["summary"]) else 0


def cmd_compile(args) -> int:
    from mmmi_dsl.report import ir_json, write_bundle
    model = _load_spec(args)
    if args.output is None:
        print(ir_json(model))
        return 0
    for path in write_bundle(model, Path(args.output)):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.run is not cmd_train_flow:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        return args.run(args)
    except MmmicError as err:
        msg = err.render() if isinstance(err, SpecError) else f"error: {err}"
        print(msg, file=sys.stderr)
        return err.exit_code
    except OSError as err:  # the file system said no (permissions, a file where a folder goes, disk full)
        print(f"error: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError:  # check refuses what clearly will not fit; this is the rest
        from mmmi_dsl.lang.check import gib, physical_memory
        print(f"error: mmmic ran out of memory (this machine has {gib(physical_memory())})\n"
              "  = help: use smaller dims (--set d=...), fewer variables or smaller matrices", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    except Exception as err:  # noqa: BLE001 - last resort: an internal error, not the user's
        if os.environ.get("MMMIC_DEBUG"):
            traceback.print_exc()
        print(f"internal error: {type(err).__name__}: {err}\n"
              "  = note: this is a bug in mmmic, not in your spec; rerun with MMMIC_DEBUG=1 for a traceback",
              file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
