"""The round trip of a generated dataset's learned flow on every tuple: ``|f^-1(x) - z|``, with ``x``
the saved image and ``z`` the standardised latent it was drawn from (recomputed from the seed):

    OMP_NUM_THREADS=1 python benchmarks/dataset_roundtrip.py out/fashion_views specs/fashion_views.mmi x1 \\
        --json x1.json

Per latent the largest component error; the max, quantiles and the ten worst rows, each with how
far its latent lies along the leading eigenvector of the standardised latent's exact covariance
(benchmarks/solver_grid.py). Reads a complete single-shard-or-more dataset written by ``mmmic generate``
with the spec's defaults (no ``--set``), one ODE solve per tuple.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from solver_grid import leading_direction  # noqa: E402

from mmmi_dsl.backend import _key  # noqa: E402
from mmmi_dsl.spec import spec_from_text  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("spec")
    ap.add_argument("modality")
    ap.add_argument("--batch", type=int, default=50, help="images per inverse call")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    root = Path(a.dataset)
    manifest = json.loads((root / "manifest.json").read_text())
    model = spec_from_text(Path(a.spec).read_text(), file=a.spec)
    if manifest["spec"] != Path(a.spec).read_text():
        ap.error(f"{a.dataset} was not generated from {a.spec} as it is now")
    sampler = model.sampler(chunk_size=manifest["chunk_size"], seed=manifest["seed"],
                            standardize=manifest["fingerprint"]["standardize"])
    n, latent = manifest["n"], model.flows[a.modality].latent
    C = manifest["chunk_size"]
    z = torch.cat([sampler._gaussians(c)[2][latent] for c in range((n + C - 1) // C)])[:n]
    z = sampler._standardized(a.modality, z).float()
    x = torch.cat([torch.from_numpy(np.load(root / s["files"][a.modality])) for s in manifest["shards"]])
    x = x.reshape(n, -1).float()
    flow = sampler.flows[_key(a.modality)]
    start = time.perf_counter()
    with torch.no_grad():
        err = torch.cat([(flow.inverse(x[i:i + a.batch]) - z[i:i + a.batch]).abs().amax(1)
                         for i in range(0, n, a.batch)])
    along = z @ leading_direction(sampler, model, a.modality)
    worst = torch.argsort(err, descending=True)[:10]
    report = {"dataset": str(root), "modality": a.modality, "n": n, "max": float(err.max()),
              "mean_of_row_max": float(err.mean()),
              "quantiles_of_row_max": {str(q): float(err.quantile(q)) for q in (0.5, 0.9, 0.99)},
              "worst_rows": [{"row": int(r), "max": float(err[r]), "along": round(float(along[r]), 2)} for r in worst],
              "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(report, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
