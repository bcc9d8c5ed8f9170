"""The round trip of a generated dataset's learned flow on every tuple: ``|f^-1(x) - z|``, with ``x``
the saved image and ``z`` the standardised latent it was drawn from (recomputed from the seed):

    OMP_NUM_THREADS=1 python benchmarks/dataset_roundtrip.py out/fashion_views x1 --json x1.json

The model is the manifest's (its spec at its parameters), solved as the manifest records (its
weights are checked, its solver used, as ``mmmic verify`` does). Per latent the largest component
error; the max, quantiles and the ten worst rows, each with how far its latent lies along the
leading eigenvector of the standardised latent's exact covariance (benchmarks/solver_grid.py).
A complete, float (not ``--uint8``) dataset drawn on the CPU; one ODE solve per tuple.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from solver_grid import leading_direction, the_cnf  # noqa: E402

from mmmi_dsl.cli.args import integer  # noqa: E402
from mmmi_dsl.dataset.format import DatasetError, read_manifest  # noqa: E402
from mmmi_dsl.dataset.oracle import Recovery  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("modality")
    ap.add_argument("--batch", type=integer(1), default=50,
                    help="at most this many images per inverse call (a UNet takes 32)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    root = Path(a.dataset)
    try:
        manifest = read_manifest(root / "manifest.json")
    except DatasetError as err:
        ap.error(str(err))
    fp = manifest["fingerprint"]
    if not manifest["complete"] or fp.get("uint8") is not None or fp.get("device_type", "cpu") != "cpu":
        ap.error(f"{root}: needs a complete float dataset drawn on the CPU")
    recovery = Recovery(root, manifest, subsample=manifest["n"])  # every tuple
    model = recovery.model
    if a.modality not in model.flows or a.modality not in manifest["variables"]:
        ap.error(f"{root} has no saved modality {a.modality!r}")
    try:
        sampler = recovery.sampler()  # as verify rebuilds it: its weights checked, its solver, seed and chunk
    except DatasetError as err:
        ap.error(f"{root}: {err}")
    the_cnf(sampler, a.modality)  # one learned CNF step, else exit
    n = manifest["n"]
    z = sampler.flow_inputs(a.modality, 0, n)
    start = time.perf_counter()
    back = torch.from_numpy(sampler.invert(a.modality, recovery.read(a.modality), batch=a.batch))
    err = (back - z).abs().amax(1)
    along = z.float() @ leading_direction(sampler, model, a.modality)
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
