"""Commands that train and measure: train-flow, estimate, bench-estimators, bench-regression."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mmmi_dsl.cli.args import add_spec_options, check_device, integer, load_spec
from mmmi_dsl.errors import UsageError

if TYPE_CHECKING:
    from mmmi_dsl.benchmark import EstimatorConfig


def add_parsers(sub) -> None:
    """Add this family's subcommands to the ``mmmic`` parser."""
    p = sub.add_parser("train-flow", add_help=False,
                       help="train a class-conditional flow-matching model (see `mmmic train-flow --help`)")
    p.set_defaults(run=cmd_train_flow, passes_extra=True)  # its arguments are parsed by mmmi_dsl.flows.train
    p = sub.add_parser("convert-weights", help="a torch checkpoint (read with weights_only=True) as safetensors "
                       "weights for cnf(z, weights = ...), with its architecture's config")
    p.add_argument("input", metavar="IN.pt")
    p.add_argument("output", metavar="OUT.safetensors")
    p.add_argument("--config", required=True, metavar="CONFIG.json",
                   help='the architecture: {"arch": "mlp"|"unet"|"custom", "dim": ..., "n_classes": ..., ...} '
                        "(docs/flows.md)")
    p.add_argument("--key", metavar="KEY", help="where the tensors are in the checkpoint (a dotted path; default: "
                   "the checkpoint itself, else ema, state_dict, model or net)")
    p.add_argument("--prefix", default="", metavar="P", help="strip P from the tensors' names (e.g. module.)")
    p.set_defaults(run=cmd_convert_weights)
    p = sub.add_parser("estimate", help="run MI estimators on a generated dataset, beside the exact MI")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--query", "-q", required=True, metavar='"I(a; b)"',
                   help="two saved variables, or two groups of them (\"I(x1, x2; theta)\": their arrays "
                   "concatenated along the features)")
    p.add_argument("--estimator", "-e", action="append", default=[], metavar="NAME",
                   help="repeatable; default: all (gaussian, ksg, dv, mine, nwj, infonce, js, smile)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (variational critics, brute-force KSG)")
    p.add_argument("--max-samples", type=integer(2), metavar="N", help="use the first N samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=integer(1), metavar="S", help="training steps of the variational critics")
    p.add_argument("--threads", type=integer(1), default=1, help="torch CPU threads while training critics (default 1)")
    p.set_defaults(run=cmd_estimate)
    p = sub.add_parser("bench-estimators", help="solve a parameter per target MI, generate each dataset, "
                       "run the estimators; table + plot of estimated vs exact MI")
    add_family_flags(p, "target MIs", '"I(a; b)"', "two modalities (default: the first such report)")
    p.add_argument("-o", "--output", metavar="DIR", help="datasets, results.json/.md, plot.png "
                   "(default: out/bench-MODEL); a rerun resumes")
    p.add_argument("--estimator", "-e", action="append", default=[], metavar="NAME[:key=value,...]",
                   help="repeatable; default: gaussian ksg dv mine nwj infonce js smile:tau=1 smile:tau=5 "
                        "smile:tau=inf")
    p.add_argument("--bracket", metavar="LO,HI", help="where to search the parameter")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (generation and critics)")
    p.add_argument("--seed", type=int, default=0, help="dataset i uses seed + i; the estimators use seed")
    p.add_argument("--max-steps", type=integer(1), metavar="S", help="training steps of the variational critics")
    p.add_argument("--threads", type=integer(1), default=1, help="torch CPU threads (default 1)")
    p.add_argument("--oracle", action="store_true", help="add a check column: invert the known flows and read "
                   "the recovered latents' MI with the Gaussian plug-in (should match the exact MI)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_spec_options(p)
    p.set_defaults(run=cmd_bench_estimators)
    p = sub.add_parser("bench-probe", help="linear probes for labels (and targets) on a generated dataset, beside "
                       "the exact Bayes accuracy (and best R²) of each")
    p.add_argument("dir", metavar="DIR", help="a complete dataset (mmmic generate)")
    p.add_argument("--labels", required=True, metavar="y1,y2", help="labels of the spec, saved in DIR")
    p.add_argument("--features", default="raw", metavar="raw|FILE.npy|module:function",
                   help="what the probes read: the raw modalities (default), one (n, k) array aligned with DIR "
                        "(with one --modality), or embeddings from a Python function f(array) -> (n, k) that "
                        "this command imports and runs on each modality")
    p.add_argument("--modality", "-m", action="append", default=[], metavar="NAME",
                   help="repeatable; default: every modality")
    p.add_argument("--target", action="append", metavar="NAME",
                   help="scalar targets for the R² probe (repeatable; default: the spec's targets saved in DIR)")
    p.add_argument("-o", "--output", metavar="OUT", help="where probe.json and probe.md go (default: DIR)")
    p.add_argument("--seed", type=int, default=0, help="the probes' and the bootstrap's seed")
    p.set_defaults(run=cmd_bench_probe)
    add_regression_parser(sub)


def cmd_convert_weights(args) -> int:
    import json

    from mmmi_dsl.builtins.weights import WeightsError
    from mmmi_dsl.dataset import DatasetError
    from mmmi_dsl.flows.convert import ConversionError, convert_checkpoint

    try:
        config = json.loads(Path(args.config).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UsageError(f"--config {args.config}: not a readable JSON file ({err})") from None
    if not isinstance(config, dict):
        raise UsageError(f"--config {args.config}: expected a JSON object")
    if not Path(args.input).is_file():
        raise UsageError(f"{args.input}: no such checkpoint")
    try:
        written = convert_checkpoint(Path(args.input), Path(args.output), config, args.key, args.prefix)
    except (ConversionError, WeightsError) as err:
        raise DatasetError(str(err)) from None
    print(f"wrote {args.output}: arch {written.get('arch', 'mlp')}, dim {written['dim']}, "
          f"{written['n_classes']} classes (from `{written['converted_from']['key'] or 'the checkpoint'}`)")
    return 0


def cmd_train_flow(args) -> int:
    from mmmi_dsl.flows.train import main as train_main
    return train_main(args.extra, prog="mmmic train-flow")


def cmd_estimate(args) -> int:
    from mmmi_dsl.estimators import ESTIMATORS, get_estimator
    from mmmi_dsl.estimators.saved import load_pair, parse_groups, run_estimators
    from mmmi_dsl.files import dumps_json
    from mmmi_dsl.report import estimate_json, estimate_table

    options = {"threads": args.threads}
    if args.max_steps is not None:
        options["max_steps"] = args.max_steps
    device = check_device(args.device)
    names = list(args.estimator or ESTIMATORS)
    for name in names:
        get_estimator(name)
    groups = parse_groups(args.query)
    if groups is None:
        raise UsageError(f"--query {args.query!r}: give a plain \"I(a; b)\" of two saved variables, or of two "
                         "groups of them, \"I(a1, a2; b)\" (no conditioning, no TC or II)")
    try:
        data = load_pair(args.dir, groups, args.max_samples)
    except UsageError as err:  # a name that is not a saved variable
        raise UsageError(f"--query {args.query!r}: {err}") from None
    rows = run_estimators(names, data.x, data.y, seed=args.seed, device=device, options=options)
    query = args.query.strip()
    print(dumps_json(estimate_json(query, data, rows)) if args.json else estimate_table(query, args.dir, data, rows))
    return int(any(r.nats is None for r in rows))


def parse_estimator(text: str) -> EstimatorConfig:
    """``-e NAME`` or ``NAME:key=value,key=value`` (numbers as numbers, ``inf`` too; ``true``/``false``)."""
    from mmmi_dsl.benchmark import EstimatorConfig
    from mmmi_dsl.estimators import get_estimator

    name, _, rest = text.strip().partition(":")
    get_estimator(name)
    options = []
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UsageError(f"--estimator {text!r}: expected NAME or NAME:key=value,..., e.g. smile:tau=5")
        options.append((key.strip(), option_value(value.strip())))
    return EstimatorConfig(text.strip(), name, tuple(options))


def option_value(text: str) -> bool | float | int | str:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def cmd_bench_estimators(args) -> int:
    from mmmi_dsl.benchmark import DEFAULT_ESTIMATORS, default_pair, run_benchmark
    from mmmi_dsl.cli.args import parse_bracket
    from mmmi_dsl.mi.targets import parse_values
    configs = [parse_estimator(e) for e in (args.estimator or DEFAULT_ESTIMATORS)]
    targets = parse_values(args.targets, "--targets")
    model = load_spec(args)
    query = args.query or default_pair(model)
    if query is None:
        raise UsageError(f"{model.name} has fewer than two modalities; give --query \"I(a; b)\"")
    out = Path(args.output or f"out/bench-{model.name}")
    results = run_benchmark(model, args.param, query, targets, args.n, out,
                            estimators=configs, seed=args.seed, device=check_device(args.device), threads=args.threads,
                            max_steps=args.max_steps, bracket=parse_bracket(args.bracket) if args.bracket else None,
                            oracle=args.oracle, progress=not args.no_progress)
    print((out / "results.md").read_text(encoding="utf-8"))
    print(f"wrote {out / 'results.json'}, {out / 'results.md'} and {out / 'plot.png'}")
    return 1 if any(s["failed"] for s in results["summary"]) else 0


def cmd_bench_probe(args) -> int:
    from mmmi_dsl.files import dumps_json, write_atomic
    from mmmi_dsl.probe import run_probes
    from mmmi_dsl.report import probe_markdown

    labels = [x.strip() for x in args.labels.split(",") if x.strip()]
    if not labels:
        raise UsageError("--labels: give one label or more, y1,y2")
    embed = _embedding(args.features, args.modality)
    report = run_probes(args.dir, labels, modalities=args.modality, targets=args.target, features=args.features,
                        embed=embed, seed=args.seed)
    out = Path(args.output or args.dir)
    out.mkdir(parents=True, exist_ok=True)
    table = probe_markdown(report)
    write_atomic(out / "probe.json", dumps_json(report.to_json()) + "\n")
    write_atomic(out / "probe.md", table + "\n")
    print(table)
    print(f"wrote {out / 'probe.json'} and {out / 'probe.md'}")
    return 0


def _embedding(features: str, modalities: list[str]):
    """``--features``: None (raw), an aligned .npy (one modality), or ``module:function`` imported on request."""

    import numpy as np

    if features == "raw":
        return None
    if features.endswith(".npy"):
        if len(modalities) != 1:
            raise UsageError(f"--features {features}: one array is the embedding of one modality; name it with "
                             "one --modality NAME (its exact limit is the one compared)")
        try:
            array = np.load(features, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise UsageError(f"--features {features}: not a readable .npy array ({err})") from None
        return lambda name, x: array
    from mmmi_dsl.user_code import import_named

    if ":" not in features:
        raise UsageError(f"--features {features!r}: expected raw, FILE.npy or module:function")
    try:
        fn = import_named(features)
    except ValueError as err:
        raise UsageError(f"--features {features}: {err}") from None
    if not callable(fn):
        raise UsageError(f"--features {features}: `{features.partition(':')[2]}` is not a function")
    return lambda name, x: fn(x)


# ---------------------------------------------------------------- bench-regression


def add_family_flags(p, what: str, query: str, query_help: str) -> None:
    """The flags of a benchmark over a solved family: SPEC, --for, --targets, --query, -n."""
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--for", dest="param", required=True, metavar="PARAM", help="the free parameter to solve for")
    p.add_argument("--targets", required=True, metavar='t1,t2,...|"linspace(a, b, n)"',
                   help=f"{what} of --query (nats unless the query ends in `bits`)")
    p.add_argument("--query", "-q", metavar=query, help=query_help)
    p.add_argument("-n", type=integer(20), default=10_000, metavar="N", help="tuples per dataset (default 10000)")


def add_regression_parser(sub) -> None:
    """``mmmic bench-regression``: its flags."""
    p = sub.add_parser("bench-regression", help="solve a parameter per target I(theta; x), generate each dataset, "
                       "regress theta; test RMSE beside the exact Bayes RMSE, table + plots")
    add_family_flags(p, "target values", '"I(theta; x1)"',
                     "a scalar target and a modality (default: the first target and the first modality)")
    p.add_argument("-o", "--output", metavar="DIR", help="datasets, results.json/.md, plot.png, errors.png "
                   "(default: out/regress-MODEL); a rerun resumes")
    p.add_argument("--model", dest="regressor", default="mlp", metavar="cnn|mlp|linear",
                   help="the regressor: a shallow CNN (image modalities), an MLP, or closed-form ridge "
                        "(default mlp)")
    p.add_argument("--bracket", metavar="LO,HI", help="where to search the parameter")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (generation and training)")
    p.add_argument("--seed", type=int, default=0, help="dataset i uses seed + i; the splits and the net use seed")
    p.add_argument("--max-steps", type=integer(1), metavar="S", help="training steps of mlp and cnn (default 3000; "
                   "they stop early on the validation error)")
    p.add_argument("--threads", type=integer(1), default=1, help="torch CPU threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_spec_options(p)
    p.set_defaults(run=cmd_bench_regression)


def cmd_bench_regression(args) -> int:
    from mmmi_dsl.cli.args import parse_bracket
    from mmmi_dsl.mi.targets import parse_values
    from mmmi_dsl.plot import plot_regression, plot_regression_errors
    from mmmi_dsl.regression import REGRESSORS, default_query, run_regression_benchmark
    from mmmi_dsl.report import regression_markdown

    if args.regressor not in REGRESSORS:
        raise UsageError(f"--model {args.regressor!r}: choose one of {', '.join(REGRESSORS)}")
    targets = parse_values(args.targets, "--targets")
    bracket = parse_bracket(args.bracket) if args.bracket else None
    device = check_device(args.device)
    model = load_spec(args)
    query = args.query or default_query(model)
    if query is None:
        raise UsageError(f"{model.name} needs a target and a modality; give --query \"I(theta; x1)\"")
    out = Path(args.output or f"out/regress-{model.name}")
    results = run_regression_benchmark(model, args.param, query, targets, args.n, out, regressor=args.regressor,
                                       seed=args.seed, device=device, threads=args.threads,
                                       max_steps=args.max_steps, bracket=bracket, progress=not args.no_progress)
    (out / "results.md").write_text(regression_markdown(results), encoding="utf-8")
    plot_regression(results, out / "plot.png")
    plot_regression_errors(results, [(p, results.errors(out, p)) for p in results.extremes()], out / "errors.png")
    print((out / "results.md").read_text(encoding="utf-8"))
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'plot.png'} and {out / 'errors.png'}")
    return 0
