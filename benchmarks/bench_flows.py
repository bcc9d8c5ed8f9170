"""Digits flows: tuples per second and round-trip error for a few ODE solver settings.

For digits_views (2 modalities) and digits_decay (10), each setting replaces the
flows' solver in the spec text; the baseline in the same run is the same spec with
identity flows (the Gaussian part alone). One torch thread (the CLI default).

    python benchmarks/bench_flows.py
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import torch

from mmmi_dsl import loads
from mmmi_dsl.backend import Sampler

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {"rk4, 16 steps": 'method = "rk4", steps = 16', "rk4, 32 steps (default)": 'method = "rk4", steps = 32',
            "dopri5 (rtol 1e-7)": 'method = "dopri5"'}


def with_solver(text: str, solver: str | None) -> str:
    if solver is None:
        return re.sub(r"digits\((z\[?\w*\]?), class = [^)]*\)", r"identity(\1)", text)
    return re.sub(r"digits\((z\[?\w*\]?), class = ([^)]*)\)", rf"digits(\1, class = \2, {solver})", text)


def rate(spec: str, solver: str | None, n: int) -> tuple[float, float]:
    path = ROOT / "specs" / spec
    model = loads(with_solver(path.read_text(), solver), file=str(path), base_dir=path.parent)
    s = Sampler(model, standardize="auto", seed=0, chunk_size=256)
    s.sample_tensors(0, 256)  # warm-up
    t = time.perf_counter()
    s.sample_tensors(0, n)
    dt = time.perf_counter() - t
    err = max(r["roundtrip_max"] for r in s.flow_roundtrip().values())
    return n / dt, err


def main() -> None:
    torch.set_num_threads(1)
    for spec, n in (("digits_views.mmi", 2048), ("digits_decay.mmi", 512)):
        base, _ = rate(spec, None, n)
        print(f"\n{spec}: identity flows (baseline) {base:,.0f} tuples/s")
        print(f"{'solver':<26} {'tuples/s':>9} {'x baseline':>11} {'round trip max':>15}")
        for label, solver in SETTINGS.items():
            r, err = rate(spec, solver, n)
            print(f"{label:<26} {r:9.1f} {r / base:11.4f} {err:15.1e}")


if __name__ == "__main__":
    main()
