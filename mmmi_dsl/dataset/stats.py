"""Statistics for checking data against the exact MI: the Gaussian plug-in MI, its bias,
and moments streamed from a dataset's shards."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

MI_BATCHES = 20          # batch means for the standard error of the plug-in MI
READ_ROWS = 8192         # rows per read when streaming moments


def plugin_bias(p: int, q: int, n: int) -> float:
    """Expected excess of the Gaussian plug-in MI over the truth, n samples, mean estimated.

    Note:
        Exact for Gaussian data, from E log|S| of a Wishart matrix with n - 1 degrees of
        freedom (marginal blocks are Wishart with the same degrees)::

            bias = 1/2 sum_{j=1}^{q} [psi((n - j) / 2) - psi((n - p - j) / 2)]  ~  p q / (2 n)

        independent of the true covariance. Needs n > p + q.
    """
    j = np.arange(1, q + 1)
    from scipy.special import digamma  # on first use: the CLI starts without scipy

    return float(0.5 * np.sum(digamma((n - j) / 2) - digamma((n - p - j) / 2)))


def gaussian_mi(cov: np.ndarray, p: int) -> float:
    """Gaussian MI (nats) between the first ``p`` coordinates and the rest, (d, d) covariance.

    Note:
        ``I = 1/2 (log|S_aa| + log|S_bb| - log|S|)``.

    Raises:
        np.linalg.LinAlgError: a singular block.
    """
    signs, logdets = zip(*(np.linalg.slogdet(c) for c in (cov[:p, :p], cov[p:, p:], cov)))
    if min(signs) <= 0:
        raise np.linalg.LinAlgError("singular covariance")
    return 0.5 * (logdets[0] + logdets[1] - logdets[2])


def plain_pair(query: str) -> tuple[list[str], list[str]] | None:
    """The two sides of ``I(a, b; c)`` as variable names (``z[1]`` for a family member);
    None for TC, II, a conditional query or text that is not a query.

    The text is read by the language's own query parser (:func:`mmmi_dsl.lang.parse.parse_query`).
    """
    from mmmi_dsl.errors import SpecError
    from mmmi_dsl.lang.parse import Number, parse_query

    try:
        q, _unit = parse_query(query, "<manifest>")
    except SpecError:
        return None
    if q.op != "I" or q.given or len(q.groups) != 2:
        return None
    sides: list[list[str]] = []
    for group in q.groups:
        names = []
        for v in group:
            if v.index is None:
                names.append(v.name)
            elif isinstance(v.index, Number) and v.index.is_int:
                names.append(f"{v.name}[{int(v.index.value)}]")
            else:
                return None  # an index expression: not a saved variable's name
        sides.append(names)
    return sides[0], sides[1]


def covariance(count: float, total: np.ndarray, cross: np.ndarray) -> np.ndarray:
    """Unbiased covariance (d, d) from a count, a sum (d,) and a cross-product sum (d, d)."""
    return (cross - np.outer(total, total) / count) / (count - 1)


def batch_moments(root: Path, manifest: dict, names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-batch counts (B,), sums (B, d) and cross-products (B, d, d) of the flattened columns.

    Samples are cut into B = MI_BATCHES contiguous batches; float64, shifted by the first
    rows' mean against cancellation; shards are memory-mapped and read READ_ROWS at a time.
    """
    n = manifest["n"]
    edges = np.array([n * b // MI_BATCHES for b in range(MI_BATCHES + 1)])
    d = sum(math.prod(manifest["variables"][v]["shape"]) for v in names)
    counts, sums, cross = np.zeros(MI_BATCHES), np.zeros((MI_BATCHES, d)), np.zeros((MI_BATCHES, d, d))
    shift = None
    for s in sorted(manifest["shards"], key=lambda s: s["index"]):
        cols = [np.load(root / s["files"][v], mmap_mode="r").reshape(s["n"], -1) for v in names]
        for a in range(0, s["n"], READ_ROWS):
            x = np.concatenate([c[a:a + READ_ROWS] for c in cols], axis=1, dtype=np.float64)
            shift = x.mean(axis=0) if shift is None else shift
            x -= shift
            rows = s["start"] + a + np.arange(len(x))
            ids = np.searchsorted(edges, rows, side="right") - 1
            for b in np.unique(ids):
                xb = x[ids == b]
                counts[b] += len(xb)
                sums[b] += xb.sum(axis=0)
                cross[b] += xb.T @ xb
    return counts, sums, cross
