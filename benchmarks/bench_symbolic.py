"""Symbolic derivation of every default query of decay.mmi (N = 10): target under 30 s.

Two settings: everything symbolic, and only alpha, beta, d symbolic (the others as
numbers). The baseline in the same run is the numeric engine on the same queries.

    python benchmarks/bench_symbolic.py
"""

from __future__ import annotations

import time
from pathlib import Path

from mmmi_dsl import load
from mmmi_dsl.mi.analysis import Analysis
from mmmi_dsl.mi.symbolic import derive_all, evaluate_formula

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    model = load(ROOT / "specs" / "decay.mmi")
    t = time.perf_counter()
    exact = [r.nats for r in Analysis(model).evaluate_all(model.reports)]
    t_numeric = time.perf_counter() - t
    print(f"numeric engine, {len(exact)} queries: {t_numeric:.3f} s (baseline)")
    for label, numeric in [("all symbolic", set()), ("alpha, beta, d symbolic", {"eta", "rho_t", "rho_h"})]:
        t = time.perf_counter()
        formulas = derive_all(model, model.reports, numeric)
        dt = time.perf_counter() - t
        worst = max(abs(evaluate_formula(f, model) / e - 1) for f, e in zip(formulas, exact))
        print(f"{label:<26} {dt:7.2f} s  ({dt / t_numeric:,.0f}x the numeric engine); "
              f"max rel. diff to numeric {worst:.1e}")


if __name__ == "__main__":
    main()
