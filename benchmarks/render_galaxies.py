"""Render GalSim galaxy images (3 x 32 x 32, bands g, r, i) as training data for a `galaxies` flow.

Image i shows its own galaxy through telescope y = i % 2 (0 ground, 1 space); the physics, the
scaling to [-1, 1] and the seeding are in mmmi_dsl/flows/galaxies.py. Needs the `galaxies` extra
(pip install 'mmmi-dsl[galaxies]').

    python benchmarks/render_galaxies.py -n 200000 --seed 0 --workers 16 --out galaxies.npz
    python benchmarks/render_galaxies.py --preview docs/bench/galaxies-rendered.png

The .npz trains directly: mmmic train-flow --data galaxies.npz --arch unet ... (docs/flows.md).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from mmmi_dsl.cli.args import integer
from mmmi_dsl.errors import UsageError
from mmmi_dsl.flows import galaxies as G


def preview(path: str, seed: int, columns: int = 8) -> None:
    """A 2 x columns picture: the same galaxies through the ground (top) and space (bottom)
    telescope, RGB = (i, r, g) of the stretched values (x + 1) / 2."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    G.galsim_module().utilities.set_omp_threads(1)
    fig, axes = plt.subplots(2, columns, figsize=(1.3 * columns, 3.0))
    for j in range(columns):
        rng, noise_seed = G.image_seeds(seed, j)
        galaxy = G.draw_galaxy(rng)
        for row, telescope in enumerate(G.TELESCOPES):
            x = G.stretch(G.render_counts(galaxy, telescope, noise_seed), telescope.sigma)
            ax = axes[row, j]
            ax.imshow(np.clip((x[::-1].transpose(1, 2, 0) + 1) / 2, 0, 1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"{telescope.name}\n{telescope.pixel_scale}\"/px", fontsize=8)
        axes[0, j].set_title(f"B/T {galaxy.bulge_fraction:.2f}\nr_d {galaxy.disk_hlr:.2f}\"", fontsize=7)
    fig.suptitle("GalSim galaxies, the same galaxy per column (RGB = i, r, g)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=integer(1), default=1000, help="images to render (half per telescope)")
    p.add_argument("--seed", type=integer(0), default=0)
    p.add_argument("--out", help="the .npz to write (arrays x, y and the per-image parameters)")
    p.add_argument("--workers", type=integer(1), default=1, help="processes (the images do not depend on it)")
    p.add_argument("--chunk", type=integer(1), default=500, help="images per task handed to a worker")
    p.add_argument("--preview", metavar="PNG", help="also draw 8 galaxies through both telescopes")
    a = p.parse_args(argv)
    if not (a.out or a.preview):
        p.error("give --out FILE.npz, --preview FILE.png or both")
    if a.n < 1 or a.workers < 1 or a.chunk < 1:
        p.error("-n, --workers and --chunk must be positive")
    if a.out and not a.out.endswith(".npz"):
        p.error(f"--out must name a .npz file, got {a.out}")
    try:
        if a.preview:
            preview(a.preview, a.seed)
            print(f"wrote {a.preview}")
        if a.out:
            from tqdm import tqdm

            start = time.perf_counter()
            with tqdm(total=a.n, unit="img", disable=None) as bar:
                arrays = G.render_dataset(a.n, a.seed, workers=a.workers, chunk=a.chunk, progress=bar.update)
            seconds = time.perf_counter() - start
            G.save_npz(a.out, arrays)
            print(f"wrote {a.out}: x {arrays['x'].shape}, {np.bincount(arrays['y']).tolist()} ground/space, "
                  f"{seconds:.1f} s ({seconds / a.n * 1000:.1f} s per 1,000 with {a.workers} worker(s))")
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
