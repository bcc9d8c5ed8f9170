"""The frozen estimator suite: ``mmmic suite list``, ``mmmic suite generate``, ``mmmic suite run``."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmmi_dsl.cli.args import check_device, integer, positive
from mmmi_dsl.errors import UsageError


def add_parsers(sub) -> None:
    """Add ``suite`` and its three subcommands to the ``mmmic`` parser."""
    p = sub.add_parser("suite", help="the frozen estimator benchmark suite (mmmic-suite/1): list its tasks, "
                       "generate their datasets, run an estimator on them against the exact MI")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    lst = verbs.add_parser("list", help="the suite's tasks: id, family, dims, exact MI, n, spec")
    _common(lst)
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lst.set_defaults(run=cmd_list)
    gen = verbs.add_parser("generate", help="generate (or resume) and verify the selected tasks' datasets in the "
                           "cache")
    _common(gen)
    _data(gen)
    gen.set_defaults(run=cmd_generate)
    run = verbs.add_parser("run", help="run one estimator on the selected tasks; results.json/.csv/.md, "
                           "summary.csv, plot.png")
    _common(run)
    _data(run)
    which = run.add_mutually_exclusive_group(required=True)
    which.add_argument("--estimator", "-e", metavar="NAME[:k=v,...]|module:function",
                       help="a built-in estimator (gaussian, ksg, dv, mine, nwj, infonce, js, smile; options as "
                            "in bench-estimators, e.g. smile:tau=5) or a Python callable f(x, y, **options) -> "
                            "float on (n, p), (n, q) arrays, or a class with an estimate(x, y) method")
    which.add_argument("--estimator-cmd", metavar='"CMD {x} {y}"',
                       help="a command that reads two .npy files (their paths replace {x} and {y}) and prints "
                            "the estimate in nats as its last line; run without a shell")
    run.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                     help="an option passed to the estimator (numbers as numbers, true/false; repeatable)")
    run.add_argument("-o", "--output", required=True, metavar="DIR", help="where the results go; a rerun resumes")
    run.add_argument("--timeout", type=positive, default=1800.0, metavar="S",
                     help="seconds an estimate may take per task (default 1800); a task past it is recorded as "
                          "failed")
    run.add_argument("--threads", type=integer(1), default=1, help="torch CPU threads of the built-in variational "
                     "estimators (default 1)")
    run.set_defaults(run=cmd_run)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", metavar="GLOB,...", help="comma-separated glob patterns of task ids (default: all)")
    p.add_argument("--suite", default="mmmic-suite/1", metavar="VERSION", help="the suite version")


def _data(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", type=integer(20), metavar="N", help="tuples per dataset instead of each task's n")
    p.add_argument("--seeds", metavar="S1,S2,...", help="seeds instead of the suite's (0,1,2)")
    p.add_argument("--cache", metavar="DIR", help="where the datasets go (default: $MMMIC_CACHE, else "
                   "~/.cache/mmmic/suite)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (generation and the built-in critics)")
    p.add_argument("--quick-verify", action="store_true", help="verify the files only (sizes, sha256), not the "
                   "data against the exact MI (that check inverts the flows: slow for images)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _suite_and_tasks(args):
    from mmmi_dsl.suite import load_suite, select
    suite = load_suite(args.suite)
    return suite, select(suite, args.tasks)


def _seeds(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        seeds = tuple(dict.fromkeys(int(s) for s in text.split(",") if s.strip()))
    except ValueError:
        raise UsageError(f"--seeds {text!r}: expected integers, e.g. --seeds 0,1,2") from None
    if not seeds or min(seeds) < 0:
        raise UsageError(f"--seeds {text!r}: give one seed or more, each >= 0")
    return seeds


def _cache(args) -> Path:
    from mmmi_dsl.suite.run import default_cache
    return Path(args.cache) if args.cache else default_cache()


def _data_args(args) -> None:
    check_device(args.device)


def cmd_list(args) -> int:
    from mmmi_dsl.files import dumps_json
    from mmmi_dsl.suite import available, specs_dir

    suite, tasks = _suite_and_tasks(args)
    rows = [{"id": t.id, "family": t.family, "query": t.query, "spec": t.spec, "set": dict(t.set),
             "n": suite.size(t), "exact_nats": t.exact_nats, "available": available(t)} for t in tasks]
    if args.json:
        print(dumps_json({"suite": suite.format, "seeds": list(suite.seeds), "tasks": rows}))
        return 0
    width = max(len(r["id"]) for r in rows)
    print(f"# {suite.format}: {len(rows)} of {len(suite.tasks)} tasks, seeds {', '.join(map(str, suite.seeds))}")
    print(f"{'task':<{width}}  {'family':<22}  {'exact nats':>11}  {'n':>6}  spec")
    for r in rows:
        sets = " ".join(f"{k}={v}" for k, v in r["set"].items())
        note = "" if r["available"] else "  (not shipped here)"
        print(f"{r['id']:<{width}}  {r['family']:<22}  {r['exact_nats']:>11.6f}  {r['n']:>6}  {r['spec']}"
              f"{' ' + sets if sets else ''}{' ' + r['query'] if r['query'] else ''}{note}")
    missing = [r for r in rows if not r["available"]]
    if missing:
        print(f"# {len(missing)} task(s) have no spec in {specs_dir()}: this installation does not ship them")
    return 0


def cmd_generate(args) -> int:
    from mmmi_dsl.errors import MmmicError
    from mmmi_dsl.suite import require_available, resolve
    from mmmi_dsl.suite.run import prepare

    _data_args(args)
    suite, tasks = _suite_and_tasks(args)
    require_available(tasks)
    for t in tasks:
        resolve(t)
    cache, seeds = _cache(args), _seeds(args.seeds) or suite.seeds
    seen, failed = set(), 0
    for t in tasks:
        for seed in seeds:
            n = args.n or suite.size(t)
            try:
                p = prepare(t, cache, n, seed, device=args.device, progress=not args.no_progress,
                            full_verify=not args.quick_verify)
            except MmmicError as err:
                print(f"{t.id} (seed {seed}): failed: {err}")
                failed += 1
                continue
            if p.directory in seen:
                continue
            seen.add(p.directory)
            what = f"generated in {p.generate_seconds:.1f} s" if p.generate_seconds else "cached"
            print(f"{p.directory}: {what}, verified in {p.verify_seconds:.1f} s ({t.id}, seed {seed}, n {n})")
    print(f"{len(seen)} dataset(s) ready in {cache}" + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0


def parse_options(items: list[str]) -> dict:
    """``--option KEY=VALUE`` items (values as in ``-e NAME:key=value``)."""
    from mmmi_dsl.cli.bench import option_value

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UsageError(f"--option {item!r}: expected KEY=VALUE, e.g. --option k=5")
        out[key.strip()] = option_value(value.strip())
    return out


def make_estimator(args):
    """The estimator of ``--estimator`` / ``--estimator-cmd`` and ``--option``."""
    from mmmi_dsl.cli.bench import parse_estimator
    from mmmi_dsl.estimators import ESTIMATORS, VARIATIONAL
    from mmmi_dsl.suite import plugins

    options = parse_options(args.option)
    if args.estimator_cmd is not None:
        if options:
            raise UsageError("--option goes to --estimator; a command takes its options in its own arguments")
        return plugins.command(args.estimator_cmd)
    text = args.estimator.strip()
    if text.partition(":")[0] in ESTIMATORS:
        config = parse_estimator(text)
        merged = {**dict(config.options), **options}
        if config.name in VARIATIONAL:
            merged.setdefault("threads", args.threads)
        return plugins.builtin(config.name, merged)
    if ":" not in text:
        raise UsageError(f"--estimator {text!r}: not a built-in estimator ({', '.join(ESTIMATORS)}) nor "
                         "module:function")
    return plugins.python(text, options)


def cmd_run(args) -> int:
    from mmmi_dsl.suite import require_available
    from mmmi_dsl.suite.run import run_suite
    from mmmi_dsl.suite.summary import write_outputs

    _data_args(args)
    estimator = make_estimator(args)
    suite, tasks = _suite_and_tasks(args)
    require_available(tasks)
    out = Path(args.output)
    results = run_suite(suite, tasks, estimator, out, cache=_cache(args), seeds=_seeds(args.seeds), n=args.n,
                        timeout=args.timeout, device=args.device, full_verify=not args.quick_verify,
                        progress=not args.no_progress)
    summary = write_outputs(results, out)
    print((out / "results.md").read_text(encoding="utf-8").split("\n\n| task |")[0])
    print(f"wrote {out / 'results.json'}, results.csv, summary.csv, results.md and plot.png")
    return 1 if summary["all"]["failed"] else 0
