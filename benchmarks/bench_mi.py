"""Exact MI of decay.mmi: the structured engine vs a plain dense baseline, in one run.

The baseline is written plainly: each query's covariance straight from the equations
(every z_i = b_i u 1_d + sum_j a_ij n_j, so Cov(z_i, z_k) = b_i b_k 1 1^T + (a_i . a_k) I_d;
theta = eta u), then numpy's ``slogdet`` of the three blocks, on one BLAS thread
(``OPENBLAS_NUM_THREADS=1``, set below before numpy loads). Both answer the same queries;
times are per query (best of 3 for the engine). At d = 2048 the baseline answers only the
first 3 queries (about a second each). The load average is printed with the table.

    python benchmarks/bench_mi.py            # ~1-2 minutes on a busy 2-core machine
    python benchmarks/bench_mi.py --quick    # d <= 256 only, no end-to-end runs (~10 s)
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: the baseline runs on one BLAS thread

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from mmmi_dsl import ir, load  # noqa: E402
from mmmi_dsl.cli.args import integer  # noqa: E402
from mmmi_dsl.mi.analysis import Analysis  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "decay.mmi"


def coefficients(model: ir.Model, name: str) -> tuple[float, dict[str, float]]:
    """(b, {n_j: a_j}) of ``name = b u [1_d] + sum_j a_j n_j``, read off its IR terms."""
    env, b, a = model.env(), 0.0, {}
    for t in model.variables[name].terms:
        c = ir.evaluate(t.coef, env)
        if model.protos[t.sources[0]].kind == "scalar":
            b += c
        else:
            a[t.sources[0]] = a.get(t.sources[0], 0.0) + c
    return b, a


def dense_mi(model: ir.Model, x: str, y: str, d: int) -> float:
    """I(x; y) = 1/2 [log|S_xx| + log|S_yy| - log|S|] with S from the equations, dense."""
    blocks = [(name, 1 if model.variables[name].size == 1 else d) for name in (x, y)]
    coefs = [coefficients(model, name) for name, _ in blocks]
    sizes = [s for _, s in blocks]
    S = np.empty((sum(sizes), sum(sizes)))
    offs = np.cumsum([0, *sizes])
    for i, ((bi, ai), si) in enumerate(zip(coefs, sizes)):
        for k, ((bk, ak), sk) in enumerate(zip(coefs, sizes)):
            noise = sum(c * ak.get(p, 0.0) for p, c in ai.items())
            S[offs[i]:offs[i + 1], offs[k]:offs[k + 1]] = bi * bk + (noise * np.eye(si, sk) if si == sk else 0.0)
    ld = lambda m: np.linalg.slogdet(m)[1]  # noqa: E731
    k = sizes[0]
    return 0.5 * (ld(S[:k, :k]) + ld(S[k:, k:]) - ld(S))


def latent(model: ir.Model, name: str) -> str:
    return model.flows[name].latent if name in model.flows else name


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="d <= 256, no end-to-end runs")
    ap.add_argument("--repeat", type=integer(1), default=5, help="end-to-end rounds (default 5)")
    args = ap.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.2f}; OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    print(f"{'N':>4} {'d':>6} {'queries':>8} {'engine ms/q':>12} {'dense ms/q':>11} {'dense/engine':>13} "
          f"{'max rel diff':>13}")
    sizes = [16, 64, 256] + ([] if args.quick else [1024, 2048])
    for d in sizes:
        model = load(SPEC, {"N": "10", "d": str(d)})
        engine = []
        for _ in range(3):
            t = time.perf_counter()
            values = [r.nats for r in Analysis(model).evaluate_all(model.reports)]
            engine.append((time.perf_counter() - t) / len(model.reports))
        queries = model.reports if d <= 1024 else model.reports[:3]
        t = time.perf_counter()
        dense = [dense_mi(model, *(latent(model, g[0]) for g in q.groups), d) for q in queries]
        t_dense = (time.perf_counter() - t) / len(queries)
        diff = max(abs(a - b) / max(1.0, abs(b)) for a, b in zip(values, dense))
        print(f"{10:>4} {d:>6} {len(queries):>8} {1e3 * min(engine):12.2f} {1e3 * t_dense:11.1f} "
              f"{t_dense / min(engine):13.2f} {diff:13.1e}", flush=True)
    if not args.quick:
        end_to_end(args.repeat)
    print(f"load average {os.getloadavg()[0]:.2f}")


def end_to_end(repeat: int) -> None:
    """Whole commands, process start included, interleaved ``repeat`` times (medians), beside the floor
    measured between them: a Python that only imports numpy and pydantic (what any run of mmmic pays)."""
    def seconds(cmd: list[str]) -> float:
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        return time.perf_counter() - t

    mmmic = [sys.executable, "-m", "mmmi_dsl"]
    commands = {"mi (N=10, default)": [*mmmic, "mi", str(SPEC)],
                "mi --set N=100": [*mmmic, "mi", str(SPEC), "--set", "N=100"],
                "mi --set N=300": [*mmmic, "mi", str(SPEC), "--set", "N=300"],
                "mi --set N=1000": [*mmmic, "mi", str(SPEC), "--set", "N=1000"],
                "check --set N=1000": [*mmmic, "check", str(SPEC), "--set", "N=1000"]}
    floor_cmd = [sys.executable, "-c", "import numpy, pydantic"]
    times: dict[str, list[float]] = {name: [] for name in commands}
    floor: list[float] = []
    for _ in range(repeat):
        for name, cmd in commands.items():
            floor.append(seconds(floor_cmd))
            times[name].append(seconds(cmd))
    f = statistics.median(floor)
    print(f"\nend to end, process start included (mmmic ... specs/decay.mmi; median of {repeat}, interleaved):")
    print(f"  {'floor: import numpy, pydantic':<30} {f:6.2f} s")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"  {name:<30} {m:6.2f} s  (min {min(ts):.2f}, max {max(ts):.2f}; {m / f:4.1f}x the floor)", flush=True)


if __name__ == "__main__":
    main()
