"""Template visibility (issue 15, item 5): does a blob template's cause show where the blob is?

For a blob at each of two positions, draws N images through a shipped image flow with the
cause u spread by the blob (mmmi_dsl/flows/visibility.py), and plots the template beside the
mean image of the top quarter of u minus the bottom quarter, for each standardisation asked
for. Prints the Pearson correlation (over pixels) of that difference with the template and
with the blob at the other position (the control), and the exact I(u; x) (the same at both
positions). Writes the figure and the numbers as JSON.

    OMP_NUM_THREADS=1 python benchmarks/template_visibility.py fashion --class 7 -n 1000 \\
        --positions 9,9:20,20 --sigma 3 --rho 3 --standardize radius,whiten \\
        --figure docs/bench/template-visibility.png --json benchmarks/results/template-visibility.json
    python benchmarks/template_visibility.py digits --class 3 -n 400 --positions 3,3:6,6 --sigma 1.5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

SHAPES = {"digits": (1, 8, 8), "fashion": (1, 28, 28)}


def positions(text: str) -> list[tuple[float, float]]:
    try:
        pairs = [tuple(float(v) for v in p.split(",")) for p in text.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ROW,COL:ROW,COL, got {text!r}") from None
    if len(pairs) != 2 or any(len(p) != 2 for p in pairs):
        raise argparse.ArgumentTypeError(f"expected two positions ROW,COL:ROW,COL, got {text!r}")
    return pairs


def main(argv: list[str] | None = None) -> int:
    from mmmi_dsl.cli.args import integer, positive

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("flow", choices=sorted(SHAPES), help="a shipped image flow")
    p.add_argument("--class", dest="klass", type=integer(0), default=0)
    p.add_argument("-n", type=integer(1), default=1000, help="images per position and standardisation")
    p.add_argument("--positions", type=positions, default=None, help="ROW,COL:ROW,COL (1-based pixels)")
    p.add_argument("--sigma", type=positive, default=3.0, help="the blob's width in pixels")
    p.add_argument("--rho", type=float, default=3.0, help="the cause's strength along the unit-norm blob")
    p.add_argument("--quantile", type=float, default=0.25)
    p.add_argument("--standardize", default="auto", help="comma-separated: auto, radius, scale, whiten, none")
    p.add_argument("--seed", type=integer(0), default=0)
    p.add_argument("--figure", default=None)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    if not 0 < a.quantile <= 0.5 or a.n * a.quantile < 2:
        p.error(f"--quantile {a.quantile} of -n {a.n}: needs 0 < quantile <= 0.5 and at least two images per quantile")
    from mmmi_dsl.flows.visibility import measure

    shape = SHAPES[a.flow]
    spots = a.positions or [(shape[1] / 3, shape[2] / 3), (2 * shape[1] / 3 + 1, 2 * shape[2] / 3 + 1)]
    modes = [m.strip() for m in a.standardize.split(",") if m.strip()]
    results, started = [], time.perf_counter()
    for i, spot in enumerate(spots):
        for mode in modes:
            v = measure(a.flow, a.klass, shape, *spot, spots[1 - i], sigma=a.sigma, rho=a.rho, n=a.n,
                        quantile=a.quantile, standardize=mode, seed=a.seed)
            results.append(v)
            print(f"blob at {spot}, standardize {v.standardize}: corr(difference, template) = "
                  f"{v.correlation:.3f}, control (blob at {spots[1 - i]}) = {v.control_correlation:.3f}, "
                  f"I(u; x) = {v.mi_nats:.4f} nats  [{time.perf_counter() - started:.0f} s]", flush=True)
    if a.json:
        rows = [{k: getattr(v, k) for k in ("flow", "klass", "standardize", "row", "col", "sigma", "rho", "n",
                                            "quantile", "mi_nats", "correlation", "control_correlation")}
                for v in results]
        Path(a.json).write_text(json.dumps({"command": " ".join(sys.argv), "results": rows}, indent=2) + "\n")
    if a.figure:
        figure(results, spots, modes, a).savefig(a.figure, dpi=110, bbox_inches="tight")
    return 0


def figure(results, spots, modes, a):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmmi_dsl.flows.visibility import blob_template

    shape = SHAPES[a.flow]
    cols = 2 + len(modes)
    fig, axes = plt.subplots(len(spots), cols, figsize=(2.1 * cols, 2.3 * len(spots)), squeeze=False)
    for i, spot in enumerate(spots):
        row = [v for v in results if (v.row, v.col) == spot]
        panels = [(blob_template(shape, *spot, a.sigma)[0], f"template: blob at {spot[0]:g},{spot[1]:g}", "magma"),
                  (row[0].mean_image[0], "mean image", "gray")]
        panels += [(v.difference[0], f"high - low u ({v.standardize})\ncorr {v.correlation:.2f}", "RdBu_r")
                   for v in row]
        for ax, (img, title, cmap) in zip(axes[i], panels):
            lim = abs(img).max() or 1.0
            ax.imshow(img, cmap=cmap, vmin=-lim if cmap == "RdBu_r" else None, vmax=lim if cmap == "RdBu_r" else None)
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{a.flow}, class {a.klass}: where a blob template's cause shows (n = {a.n} per panel)", fontsize=9)
    return fig


if __name__ == "__main__":
    sys.exit(main())
