"""Round trip of a learned flow's fixed-step solver over time grids: which steps and grid_power to default to.

For each class and each grid ``P x N`` (``grid_power`` P, N rk4 steps; ``u N`` for uniform), the
max and mean of ``|f^-1(f(z)) - z|`` over ``n`` latents ``torch.randn(n, d)`` drawn with
``torch.Generator().manual_seed(class)``, and the seconds it took (one torch thread):

    OMP_NUM_THREADS=1 python benchmarks/solver_grid.py fashion --classes 7 -n 32 \\
        --grids u32,u48,1.5x24,1.5x28,1.5x32,1.25x28,1.75x28 --json benchmarks/results/fashion-solver-grid.json

WEIGHTS is a .safetensors file or a shipped flow's name (digits, fashion). docs/flows.md,
"Choosing the solver", has the table this produced.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from mmmi_dsl.builtins import weights as weight_files
from mmmi_dsl.flows.cnf import CNF


def grid(text: str) -> tuple[float, int]:
    """``u32`` -> (1.0, 32); ``1.5x28`` -> (1.5, 28)."""
    try:
        if text.startswith("u"):
            return 1.0, int(text[1:])
        power, steps = text.split("x")
        return float(power), int(steps)
    except ValueError:
        raise argparse.ArgumentTypeError(f"grid {text!r}: expected uN or PxN (e.g. u32, 1.5x28)") from None


def grids(text: str) -> list[tuple[float, int]]:
    return [grid(g) for g in text.split(",") if g.strip()]


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights")
    ap.add_argument("--classes", default="7", help="classes, comma-separated")
    ap.add_argument("-n", type=int, default=32, help="latents per class")
    ap.add_argument("--grids", type=grids, default=grids("u32,1.5x28"), help="grids, comma-separated: uN or PxN")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    path = weight_files.shipped(a.weights) if a.weights in weight_files.SHIPPED else Path(a.weights)
    dim = weight_files.inspect(path).dim
    torch.set_num_threads(1)
    rows = []
    for label in (int(c) for c in a.classes.split(",")):
        z = torch.randn(a.n, dim, generator=torch.Generator().manual_seed(label))
        for power, steps in a.grids:
            flow = CNF(dim, weights=str(path), **{"class": label}, steps=steps, grid_power=power)
            start = time.perf_counter()
            with torch.no_grad():
                err = (flow.inverse(flow(z)) - z).abs()
            rows.append({"class": label, "grid_power": power, "steps": steps, "n": a.n, "max": float(err.max()),
                         "mean": float(err.mean()), "seconds": round(time.perf_counter() - start, 1)})
            r = rows[-1]
            print(f"class {label}  p = {power:g}, {steps} steps: max {r['max']:.2e}  mean {r['mean']:.2e}  "
                  f"({r['seconds']} s)", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
