"""Lowering + checking time per term of decay.mmi at N = 10, 100, 300, 1000 (issue 20: flat in N).

The spec is parsed once; each timing is ``lower`` + ``check`` of the parsed program with
``--set N=...`` (best of a few runs after a warm-up, one fresh process per case), in process CPU
seconds (``time.process_time``: what other jobs on a shared machine do not inflate) and wall seconds.
decay.mmi has N^2 + N + 1 terms (the N^2 of ``sum(j in 1..N, ...)``).

    python benchmarks/bench_lower.py                  # N = 10, 100, 300, 1000 (~1 min on a busy 2-core machine)
    python benchmarks/bench_lower.py --quick          # N = 10, 100
    python benchmarks/bench_lower.py --before DIR     # also DIR (another checkout), interleaved, and after/before

With ``--before`` each case runs in both checkouts alternately, so both see the same load; the
ratio, not the absolute time, is the result on a shared machine. us/term is CPU time per term.
A checkout that refuses a case (E0215: N = 1,000 before issue 20's family terms) shows "refused".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = """
import json, sys, time
from mmmi_dsl.lang.check import check
from mmmi_dsl.lang.lower import lower
from mmmi_dsl.lang.parse import parse_file
spec, n, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
program = parse_file(spec)
check(lower(program, {"N": "10"}))  # warm-up: imports, builtin tables
ts, cpu = [], []
for _ in range(repeat):
    t, c = time.perf_counter(), time.process_time()
    model = check(lower(program, {"N": n}))
    ts.append(time.perf_counter() - t)
    cpu.append(time.process_time() - c)
terms = sum(getattr(t, "count", 1) for v in model.variables.values() for t in v.terms)  # family terms: members
print(json.dumps({"s": min(ts), "cpu": min(cpu), "terms": terms}))
"""


def probe(tree: Path, n: int, repeat: int) -> dict | None:
    """Best-of-``repeat`` lower + check time of decay.mmi at N = n in checkout ``tree`` (fresh process);
    None where that checkout refuses the case."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE, str(tree / "specs" / "decay.mmi"), str(n), str(repeat)],
                         env=env, cwd=tree, capture_output=True, text=True)
    if out.returncode and "E0215" in out.stderr:
        return None
    out.check_returncode()
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N = 10 and 100 only")
    ap.add_argument("--before", type=Path, help="another checkout to time alongside this one")
    args = ap.parse_args(argv)
    sizes = [(10, 7), (100, 3)] + ([] if args.quick else [(300, 2), (1000, 2)])
    print(f"load average {os.getloadavg()[0]:.2f}")
    head = f"{'N':>4} {'terms':>7} {'wall s':>8} {'cpu s':>8} {'us/term':>8}"
    print(head + (f" {'before cpu s':>12} {'before us/term':>14} {'after/before':>12}" if args.before else ""))
    for n, repeat in sizes:
        before = probe(args.before.resolve(), n, repeat) if args.before else None
        after = probe(ROOT, n, repeat)
        line = (f"{n:>4} {after['terms']:>7} {after['s']:8.3f} {after['cpu']:8.3f}"
                f" {1e6 * after['cpu'] / after['terms']:8.1f}")
        if args.before and before is None:
            line += f" {'refused':>12}"
        elif before:
            line += (f" {before['cpu']:12.3f} {1e6 * before['cpu'] / before['terms']:14.1f}"
                     f" {after['cpu'] / before['cpu']:12.2f}")
        print(line, flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
