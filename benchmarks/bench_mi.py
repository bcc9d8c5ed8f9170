"""Exact MI of decay.mmi: the structured engine vs the dense-determinant baseline.

For each size the engine answers all reports (`I(x[1]; x[j])`, `I(theta; x[j])`),
and the baseline does what the seed code did: form the dense covariance of each
query's blocks and take numpy's slogdet, in the same run. Reported: seconds and
the ratio baseline / engine. The baseline is skipped where its largest Σ would not
fit comfortably in memory (it needs 8 (N d)^2 bytes per query set).

    python benchmarks/bench_mi.py            # ~1-2 minutes on 2 cores
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mmmi_dsl import load
from mmmi_dsl.mi.analysis import Analysis

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "decay.mmi"


def engine_time(n: int, d: int) -> tuple[float, list[float]]:
    model = load(SPEC, {"N": str(n), "d": str(d)})
    t = time.perf_counter()
    results = Analysis(model).evaluate_all(model.reports)
    return time.perf_counter() - t, [r.nats for r in results]


def dense_time(n: int, d: int) -> tuple[float, list[float]]:
    """The seed code's way: dense Σ of the blocks of each query, slogdet."""
    model = load(SPEC, {"N": str(n), "d": str(d)})
    t = time.perf_counter()
    analysis = Analysis(model)
    system = analysis.system
    out = []
    for q in model.reports:
        a = [model.flows[x].latent if x in model.flows else x for x in q.groups[0]]
        b = [model.flows[x].latent if x in model.flows else x for x in q.groups[1]]
        cov = analysis.covariance(a + b)
        ka = sum(system.blocks[x].size for x in a)
        ld = lambda m: np.linalg.slogdet(m)[1]  # noqa: E731
        out.append(0.5 * (ld(cov[:ka, :ka]) + ld(cov[ka:, ka:]) - ld(cov)))
    return time.perf_counter() - t, out


def main() -> None:
    print(f"{'N':>4} {'d':>6} {'queries':>8} {'engine s':>10} {'dense s':>10} {'dense/engine':>13} {'max |diff|':>11}")
    for n, d in [(10, 64), (10, 256), (10, 1024), (10, 3072), (100, 3072)]:
        te, ve = engine_time(n, d)
        if n == 10 and d <= 1024:  # the dense baseline takes ~20 s at d = 1024, ~10 min at 3072
            td, vd = dense_time(n, d)
            ratio = f"{td / te:13.0f}"
            diff = f"{max(abs(x - y) / max(1, abs(y)) for x, y in zip(ve, vd)):11.1e}"
            tds = f"{td:10.3f}"
        else:
            tds, ratio, diff = f"{'-':>10}", f"{'-':>13}", f"{'-':>11}"
        print(f"{n:>4} {d:>6} {2 * n - 1:>8} {te:10.4f} {tds} {ratio} {diff}")
    print("\nend to end (process start included):")
    import subprocess
    import sys
    for sets in ([], ["--set", "N=100"]):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mmmi_dsl", "mi", str(SPEC), *sets], check=True,
                       capture_output=True)
        print(f"  mmmic mi specs/decay.mmi {' '.join(sets):<12} {time.perf_counter() - t:6.2f} s")


if __name__ == "__main__":
    main()
