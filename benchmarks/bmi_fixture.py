"""BMI's ground truth for tests/fixtures/bmi/: every v1 task's MI, a description and samples.

BMI ("Beyond Normal", the package ``benchmark-mi``) imports only with pinned jax, so this
script runs in a venv of its own, never in mmmic's:

    python3 -m venv /work/bmi-venv
    /work/bmi-venv/bin/pip install benchmark-mi==0.1.3 jax==0.4.23 jaxlib==0.4.23 scipy==1.11.4 chex==0.1.85
    /work/bmi-venv/bin/python benchmarks/bmi_fixture.py tests/fixtures/bmi

It writes ``tasks.json`` (per task: id, name, dims, BMI's MI, the sampler's description, the
parameters; plus this command and the versions) and one ``<task id>.npz`` per task with

- ``x``, ``y``: ``task.sample(N, SEED)``, BMI's own samples (float32: BMI runs jax in its
  default 32-bit mode), N = 2,000 (1,000 for tasks of 50 or more dimensions, to keep the
  fixture a few MB);
- for transformed tasks, ``base_x``, ``base_y`` and ``out_x``, ``out_y``: PAIRS draws of the
  innermost untransformed sampler and of the task with the same seed (the task samples its base
  with the seed it is given and maps it), so a bijection can be checked value by value.

Nothing here is mmmic: the tests read only the files it writes.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

SEED = 0  # task.sample(N, SEED)
PAIRS_SEED = 1  # the base/out pairs
PAIRS = 256
COMMAND = "/work/bmi-venv/bin/python benchmarks/bmi_fixture.py tests/fixtures/bmi"


def n_samples(task) -> int:
    return 1_000 if task.dim_x + task.dim_y >= 50 else 2_000


def _transform_name(f) -> str:
    inner = getattr(f, "__wrapped__", f)
    if type(inner).__name__ == "Spiral":
        gen = np.asarray(inner.generator)
        i, j = np.argwhere(gen > 0)[0][::-1]  # generator[j, i] = +speed for the plane (i, j), i < j
        return f"Spiral(plane=({int(i)}, {int(j)}), speed={float(gen[j, i]):.17g})"
    name = getattr(inner, "__name__", type(inner).__name__)
    if name == "g":  # bmi.transforms.invert_cdf's bisection; its CDF is a lambda, read from the task's source
        return "invert_cdf(a mixture's CDF, bisection on [-10, 10])"
    return name


def describe(sampler) -> str:
    """The sampler as text: its class, and for a transformed one its maps and its base."""
    cls = type(sampler).__name__
    base = getattr(sampler, "_base_sampler", None)
    if base is None:
        return f"{cls}(dim_x={sampler.dim_x}, dim_y={sampler.dim_y})"
    fx = _transform_name(sampler._vectorized_transform_x)
    fy = _transform_name(sampler._vectorized_transform_y)
    return f"{cls}(x: {fx}, y: {fy}, dim_x={sampler.dim_x}, dim_y={sampler.dim_y}) of {describe(base)}"


def innermost(sampler):
    while getattr(sampler, "_base_sampler", None) is not None:
        sampler = sampler._base_sampler
    return sampler


def main(out: Path) -> None:
    from bmi.benchmark import BENCHMARK_TASKS

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for task_id, task in BENCHMARK_TASKS.items():
        n = n_samples(task)
        x, y = task.sample(n, SEED)
        arrays = {"x": np.asarray(x, dtype=np.float32), "y": np.asarray(y, dtype=np.float32)}
        if getattr(task.sampler, "_base_sampler", None) is not None:
            bx, by = innermost(task.sampler).sample(PAIRS, PAIRS_SEED)
            ox, oy = task.sampler.sample(PAIRS, PAIRS_SEED)
            arrays.update(base_x=np.asarray(bx), base_y=np.asarray(by), out_x=np.asarray(ox), out_y=np.asarray(oy))
        np.savez_compressed(out / f"{task_id}.npz", **arrays)
        params = {k: v for k, v in task.params.items() if k != "covariance"}  # dense: 0.5 + 0.5 I, from off_diag
        sampler = describe(task.sampler)
        if task_id.startswith("1v1-bimodal"):  # the CDFs of bmi/benchmark/tasks/bimodal_gaussians.py
            sampler += "; x's CDF 0.3 Phi(x) + 0.7 Phi(x - 5), y's CDF 0.5 Phi(y + 1) + 0.5 Phi(y - 3)"
        rows.append({"id": task_id, "name": task.name, "dim_x": task.dim_x, "dim_y": task.dim_y,
                     "mi": float(task.mutual_information), "sampler": sampler, "params": params,
                     "n": n, "pairs": PAIRS if "base_x" in arrays else 0})
        print(f"{task_id:55s} {task.dim_x:>3} x {task.dim_y:<3} MI {task.mutual_information:.6f}")
    meta = {"command": COMMAND, "seed": SEED, "pairs_seed": PAIRS_SEED,
            "versions": {p: version(p) for p in ("benchmark-mi", "jax", "jaxlib", "numpy", "scipy")},
            "tasks": rows}
    (out / "tasks.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/bmi"))
