"""Round trip of a learned flow's fixed-step solver over time grids: which steps and grid_power to default to.

For each class and each grid ``P x N`` (``grid_power`` P, N rk4 steps; ``u N`` for uniform), the
max and mean of ``|f^-1(f(z)) - z|`` over ``n`` latents ``torch.randn(n, d)`` drawn with
``torch.Generator().manual_seed(class)``, and the seconds it took (one torch thread):

    OMP_NUM_THREADS=1 python benchmarks/solver_grid.py fashion --classes 7 -n 32 \\
        --grids u32,u48,1.5x24,1.5x28,1.5x32,1.25x28,1.75x28 --json benchmarks/results/fashion-solver-grid.json

WEIGHTS is a .safetensors file or a shipped flow's name (digits, fashion). docs/flows.md,
"Choosing the solver", has the table this produced.

``--spec SPEC --modality NAME`` measures on the latents a spec gives that modality's learned flow
instead (its class and weights are the spec's; WEIGHTS is then not read): ``--draws`` tuples are
drawn as ``mmmic generate`` draws them (seed 0, its chunks, standardised as there), and the ``-n`` of them
farthest along the leading eigenvector of the standardised latent's exact covariance (for a template spec, the
template) are round-tripped, the tail where a fixed-step solver is least exact:

    OMP_NUM_THREADS=1 python benchmarks/solver_grid.py --spec specs/fashion_views.mmi --modality x1 \
        -n 16 --draws 1000 --grids 1.5x28,1.5x36,1.25x40 --json benchmarks/results/fashion-solver-spec-x1-step35380.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from mmmi_dsl.builtins import weights as weight_files
from mmmi_dsl.cli.args import integer
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


def leading_direction(sampler, model, modality: str) -> torch.Tensor:
    """The leading eigenvector (d,) float32 of the standardised latent's exact covariance
    S Sigma S^T (S the sampler's standardisation of ``modality``; Sigma from the engine)."""
    S = sampler.standardization(modality)
    s_cov = S @ sampler.analysis.covariance([model.flows[modality].latent]) @ S.T
    return torch.from_numpy(np.linalg.eigh((s_cov + s_cov.T) / 2)[1][:, -1]).float()


def the_cnf(sampler, modality: str) -> CNF:
    """``modality``'s flow when it is one learned CNF step (what these scripts round-trip), else exit."""
    from mmmi_dsl.backend import _key

    steps = list(sampler.flows[_key(modality)].steps)
    if len(steps) != 1 or not isinstance(steps[0], CNF):
        raise SystemExit(f"modality {modality!r}: its flow is {[type(s).__name__ for s in steps]}; "
                         "these scripts round-trip a flow that is one learned CNF")
    return steps[0]


def spec_tail(spec: str, modality: str, n: int, draws: int):
    """The learned flow of ``modality`` in ``spec`` and the ``n`` of ``draws`` standardised latents
    with the largest |projection| on the leading eigenvector of their exact covariance S Sigma S^T
    (S the standardisation), (n, d), with those projections."""
    from mmmi_dsl.spec import spec_from_text

    model = spec_from_text(Path(spec).read_text(), file=spec)
    if modality not in model.flows:
        raise SystemExit(f"{spec} has no modality {modality!r}")
    sampler = model.sampler()
    flow = the_cnf(sampler, modality)
    z = sampler.flow_inputs(modality, 0, draws)
    along = z @ leading_direction(sampler, model, modality)
    pick = torch.argsort(along.abs(), descending=True)[:n]
    return flow, z[pick], along[pick]


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", nargs="?", default=None)
    ap.add_argument("--spec", default=None, help="measure on this spec's own latents (with --modality)")
    ap.add_argument("--modality", default=None, help="with --spec: the modality whose flow is measured")
    ap.add_argument("--draws", type=integer(1), default=1000, help="with --spec: tuples drawn to pick the tail from")
    ap.add_argument("--classes", default="7", help="classes, comma-separated")
    ap.add_argument("-n", type=integer(1), default=32, help="latents per class")
    ap.add_argument("--grids", type=grids, default=grids("u32,1.5x28"), help="grids, comma-separated: uN or PxN")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    if (a.spec is None) == (a.weights is None) or (a.spec is None) != (a.modality is None):
        ap.error("give WEIGHTS, or --spec with --modality")
    if a.n < 1 or (a.spec is not None and a.draws < a.n):
        ap.error("-n must be at least 1, and --draws at least -n")
    torch.set_num_threads(1)
    if a.spec is not None:
        return spec_grids(a)
    path = weight_files.shipped(a.weights) if a.weights in weight_files.SHIPPED else Path(a.weights)
    dim = weight_files.inspect(path).dim
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
    write(a.json, rows)
    return rows


def spec_grids(a) -> list[dict]:
    """The round trip of ``--spec``'s modality on its tail latents, per grid (see the module doc)."""
    flow, z, along = spec_tail(a.spec, a.modality, a.n, a.draws)
    rows = []
    for power, steps in a.grids:
        flow.use_solver({"method": "rk4", "steps": steps, "grid_power": power})
        start = time.perf_counter()
        with torch.no_grad():
            err = (flow.inverse(flow(z)) - z).abs()
        worst = err.amax(1)
        rows.append({"spec": a.spec, "modality": a.modality, "class": flow.label, "draws": a.draws,
                     "grid_power": power, "steps": steps, "n": a.n, "max": float(err.max()),
                     "mean": float(err.mean()), "along": [round(float(x), 3) for x in along],
                     "max_per_latent": [float(x) for x in worst], "seconds": round(time.perf_counter() - start, 1)})
        print(f"{a.modality} (class {flow.label})  p = {power:g}, {steps} steps: max {rows[-1]['max']:.2e}  "
              f"mean {rows[-1]['mean']:.2e}  ({rows[-1]['seconds']} s)", flush=True)
        write(a.json, rows)
    return rows


def write(path: str | None, rows: list[dict]) -> None:
    if path:
        Path(path).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
