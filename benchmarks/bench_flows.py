"""Digits flows: tuples per second and round-trip error for a few ODE solver settings.

For digits_views (2 modalities) and digits_decay (10), each setting replaces the
flows' solver in the spec text; the baseline in the same run is the same spec with
identity flows (the Gaussian part alone). One torch thread (the CLI default).

Then the floor of the default setting (rk4, 32 steps): the velocity network's own forward
passes (4 per step, per modality) on the same batch, timed alone, with one and with two torch
threads in the same run (what ``--threads auto`` chooses between). The load average is printed.

    python benchmarks/bench_flows.py
    python benchmarks/bench_flows.py --quick    # only the floor table (digits_views, ~20 s)
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

import torch

from mmmi_dsl import loads
from mmmi_dsl.backend import Sampler
from mmmi_dsl.flows.cnf import CNF

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


def floor(spec: str, n: int) -> tuple[float, float]:
    """(tuples/s of the sampler, tuples/s of its flows' network forward passes alone), rk4 32 steps."""
    path = ROOT / "specs" / spec
    model = loads(path.read_text(), file=str(path), base_dir=path.parent)
    s = Sampler(model, standardize="auto", seed=0, chunk_size=n)
    s.sample_tensors(0, n)  # warm-up
    t = time.perf_counter()
    s.sample_tensors(0, n)
    ours = n / (time.perf_counter() - t)
    nets = [(m.steps, m) for flow in s.flows.values() for m in flow.modules() if isinstance(m, CNF)]
    assert nets and all(m.method == "rk4" for _, m in nets)
    x, tt = torch.randn(n, 64), torch.tensor(0.5)
    with torch.no_grad():
        t = time.perf_counter()
        for steps, f in nets:
            for _ in range(4 * steps):
                f.velocity(tt, x)
        passes = n / (time.perf_counter() - t)
    return ours, passes


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the floor table")
    args = ap.parse_args(argv)
    print(f"floor: rk4 32 steps vs the velocity network's forward passes alone (load average "
          f"{os.getloadavg()[0]:.2f})")
    print(f"{'spec':<18} {'threads':>7} {'tuples/s':>9} {'passes alone':>13} {'ours/passes':>12}")
    for spec, n in (("digits_views.mmi", 512),) + ((("digits_decay.mmi", 128),) if not args.quick else ()):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            ours, passes = floor(spec, n)
            print(f"{spec:<18} {threads:>7} {ours:9.1f} {passes:13.1f} {ours / passes:12.2f}", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}")
    if args.quick:
        return
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
