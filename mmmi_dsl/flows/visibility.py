"""Where a template's cause shows in a flow's images (issue 15, item 5).

One scalar cause u spread by a unit-norm Gaussian blob at pixel (row, col), plus unit
noise, is drawn through an image flow:

    z = rho * u * blob / |blob| + n,     x = f(standardize(z))

If the flow and the standardisation keep spatial structure, the images of high-u
tuples differ from those of low-u tuples where the blob is. Measured as the mean image
of the top ``quantile`` of u minus that of the bottom ``quantile`` (C x H x W), and its
Pearson correlation over pixels with the template itself and, as the control, with the
same blob moved to the ``control`` position. The MI I(u; x) is the same at every
position away from the border (docs/science.md, story 4), so only *where* changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmmi_dsl.builtins.templates import TEMPLATES

SPEC = """model visibility
dim img = {shape}
dim d = size(img)
proto u : scalar
proto n : vector[d]
template where = normalize(blob(img, {row}, {col}, {sigma}))
target theta = u
latent z = {rho} * u * where + n
flow x = {flow}(z, class = {klass}) : image[img]
report I(theta; x)
"""


@dataclass(frozen=True)
class Visibility:
    """One position's measurement: ``difference`` (C, H, W) and its correlations (in [-1, 1])."""

    flow: str
    klass: int
    standardize: str
    row: float
    col: float
    sigma: float
    rho: float
    n: int
    quantile: float
    mi_nats: float
    correlation: float           # corr(difference, template at (row, col))
    control_correlation: float   # corr(difference, the same template at the control position)
    difference: np.ndarray
    mean_image: np.ndarray


def blob_template(shape: tuple[int, ...], row: float, col: float, sigma: float) -> np.ndarray:
    """The built-in ``blob`` template (docs/builtins.md) as an array of ``shape``."""

    class _Call:  # the realiser reads only .args
        args = {"shape": list(shape), "row": row, "col": col, "sigma": sigma}

    return TEMPLATES["blob"].realise(_Call, None).reshape(shape)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays over all their entries."""
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def measure(flow: str, klass: int, shape: tuple[int, int, int], row: float, col: float,
            control: tuple[float, float], *, sigma: float = 3.0, rho: float = 3.0, n: int = 1000,
            quantile: float = 0.25, standardize: str = "auto", seed: int = 0) -> Visibility:
    """Draw ``n`` images of class ``klass`` with the cause at (row, col) and measure where it shows."""
    import mmmi_dsl as mm

    if not 0 < quantile <= 0.5:
        raise ValueError(f"quantile {quantile}: must be in (0, 0.5]")
    if n * quantile < 2:
        raise ValueError(f"n = {n} gives fewer than two samples in each quantile of {quantile}")
    text = SPEC.format(shape="x".join(map(str, shape)), row=row, col=col, sigma=sigma, rho=rho, flow=flow,
                       klass=klass)
    spec = mm.loads(text)
    # one chunk of exactly n tuples: a chunk is drawn (and flowed) whole, so a larger one would cost
    # more images than are measured
    sampler = spec.sampler(seed=seed, standardize=standardize, chunk_size=n)
    standardize = sampler.standardized_as["x"]
    tuples = sampler.sample_range(0, n)
    x = tuples["x"].reshape(n, *shape).astype(np.float64)
    u = tuples["theta"].reshape(n)
    order = np.argsort(u, kind="stable")
    k = int(n * quantile)
    difference = x[order[-k:]].mean(axis=0) - x[order[:k]].mean(axis=0)
    return Visibility(flow, klass, standardize,
                      row, col, sigma, rho, n, quantile, spec.mi("I(theta; x)"),
                      correlation(difference, blob_template(shape, row, col, sigma)),
                      correlation(difference, blob_template(shape, *control, sigma)),
                      difference, x.mean(axis=0))
