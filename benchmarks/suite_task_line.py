"""Print one task line of the suite file (mmmi_dsl/suite/mmmic-suite-1.yaml), its exact MI computed from the spec.

    python benchmarks/suite_task_line.py SPEC FAMILY [--id ID] [--query "I(a; b)"] [--set NAME=VALUE ...] [-n N]

SPEC is relative to specs/ (bmi/student-identity-1-1-1.mmi); the id defaults to the spec's stem (BMI's
task id for specs/bmi/). Paste the line into the suite's task list; tests/suite/test_definition.py checks it.
"""

import argparse
from pathlib import Path

import mmmi_dsl as mm
from mmmi_dsl.cli.args import integer
from mmmi_dsl.suite import specs_dir


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec")
    p.add_argument("family")
    p.add_argument("--id")
    p.add_argument("--query")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("-n", type=integer(1))
    args = p.parse_args()
    sets = dict(s.split("=", 1) for s in args.set)
    spec = mm.load(specs_dir() / args.spec, sets)
    query = args.query or spec.reports[0].text
    parts = [f"id: {args.id or Path(args.spec).stem}", f"family: {args.family}", f"spec: {args.spec}"]
    if args.query:
        parts.append(f'query: "{query}"')
    if sets:
        parts.append("set: {" + ", ".join(f"{k}: {v}" for k, v in sets.items()) + "}")
    if args.n:
        parts.append(f"n: {args.n}")
    parts.append(f"exact_nats: {spec.mi(query, unit='nats')!r}")
    print("  - {" + ", ".join(parts) + "}")


if __name__ == "__main__":
    main()
