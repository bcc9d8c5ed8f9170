"""Classical estimators: the Gaussian plug-in and KSG (k nearest neighbours).

- ``gaussian``: plug-in Gaussian MI from the sample covariance, minus the exact
  Wishart bias (:func:`mmmi_dsl.dataset.plugin_bias`); standard error from the
  influence function (valid for non-Gaussian data too). Exact only for Gaussian data.
- ``ksg``: Kraskov-Stoegbauer-Grassberger estimator 1 (k = 3, max-norm), neighbours
  with ``scipy.spatial.cKDTree`` (low dimension) or blockwise brute force in torch.
"""

from __future__ import annotations

import math

import numpy as np

from mmmi_dsl.errors import UsageError
from mmmi_dsl.estimators.base import Estimate, EstimatorError, flatten, paired


def gaussian(x, y, *, seed: int = 0, device: str = "cpu", bias_correction: bool = True) -> Estimate:
    """Plug-in Gaussian MI ``1/2 (log|S_xx| + log|S_yy| - log|S|)`` of the flattened columns.

    With ``bias_correction`` the exact expected excess for Gaussian data
    (:func:`mmmi_dsl.dataset.plugin_bias`, about ``p q / 2n``) is subtracted. The
    standard error is ``sd(IF) / sqrt(n)`` with the influence function of the plug-in,
    ``IF(z) = 1/2 [(m_x(z) - p) + (m_y(z) - q) - (m_xy(z) - p - q)]`` (``m`` the squared
    Mahalanobis norms), which holds for non-Gaussian data as well. ``seed`` and
    ``device`` are unused (numpy, float64).
    """
    from scipy.linalg import LinAlgError, cho_factor, solve_triangular

    from mmmi_dsl.dataset import plugin_bias

    x, y = paired(x, y, 3)
    z = np.hstack([flatten(x), flatten(y)])
    n, d = z.shape
    p = d - flatten(y[:1]).shape[1]
    q = d - p
    if n <= d + 1:
        raise EstimatorError(f"gaussian needs more samples than dimensions: n = {n}, p + q = {d}")
    z -= z.mean(axis=0)
    cov = z.T @ z / (n - 1)
    logdets, maha = [], []
    for cols in (slice(0, p), slice(p, d), slice(0, d)):
        try:
            chol, _ = cho_factor(cov[cols, cols], lower=True, check_finite=False)
        except LinAlgError:
            raise EstimatorError("gaussian: the sample covariance is singular (a constant or "
                                 "duplicated column?)") from None
        logdets.append(2 * np.sum(np.log(np.diag(chol))))
        w = solve_triangular(chol, z[:, cols].T, lower=True, check_finite=False)
        maha.append(np.einsum("ij,ij->j", w, w))
    plug = 0.5 * (logdets[0] + logdets[1] - logdets[2])
    bias = plugin_bias(p, q, n) if bias_correction else 0.0
    infl = 0.5 * (maha[0] + maha[1] - maha[2])
    stderr = float(np.std(infl, ddof=1) / math.sqrt(n))
    return Estimate(float(plug - bias), stderr, {"plugin": float(plug), "bias": float(bias), "n": n, "p": p, "q": q})


# ----------------------------------------------------------------- ksg


def ksg(x, y, *, seed: int = 0, device: str = "cpu", k: int = 3, standardize: bool = True,
        jitter: float = 1e-10, method: str = "auto", workers: int = 1) -> Estimate:
    """KSG estimator 1: ``psi(k) + psi(n) - < psi(n_x + 1) + psi(n_y + 1) >``, max-norm.

    ``eps_i`` is the distance to the k-th neighbour of sample i in the joint space
    (max-norm of the two sides' max-norms); ``n_x(i)`` counts the other samples with
    ``|x_j - x_i| < eps_i`` (strictly), likewise ``n_y``.

    Args:
        k: neighbours (3).
        standardize: scale every column to unit variance first (on by default; the
            max-norm is not invariant to per-column scales at finite n).
        jitter: Gaussian noise of this size (after standardising) breaks exact ties;
            drawn from ``seed``. 0 turns it off.
        method: ``kdtree`` (scipy cKDTree), ``brute`` (blockwise torch on ``device``;
            O(n^2 (p + q))), or ``auto``: kdtree up to 20 joint dimensions, else brute.
        workers: threads for the cKDTree queries (-1: all).

    The standard error ``sd(psi(n_x + 1) + psi(n_y + 1)) / sqrt(n)`` ignores the
    dependence between the neighbour counts and is only indicative.
    """
    from scipy.special import digamma

    x, y = paired(x, y, 2)
    n = len(x)
    if not (isinstance(k, (int, np.integer)) and 1 <= k < n):
        raise UsageError(f"ksg: k must be an integer in [1, n - 1] = [1, {n - 1}], not {k!r}")
    if method not in ("auto", "kdtree", "brute"):
        raise UsageError(f"ksg: method must be auto, kdtree or brute, not {method!r}")
    xs, ys = flatten(x), flatten(y)
    if standardize:
        xs, ys = (a / np.where((s := a.std(axis=0)) > 0, s, 1.0) for a in (xs, ys))
    if jitter:
        rng = np.random.default_rng(seed)
        xs = xs + jitter * rng.standard_normal(xs.shape)
        ys = ys + jitter * rng.standard_normal(ys.shape)
    dim = xs.shape[1] + ys.shape[1]
    if method == "auto":
        method = "kdtree" if dim <= 20 else "brute"
    if method == "kdtree":
        nx, ny = _ksg_counts_kdtree(xs, ys, k, workers)
    else:
        nx, ny = _ksg_counts_brute(xs, ys, k, device)
    terms = digamma(nx + 1) + digamma(ny + 1)
    value = digamma(k) + digamma(n) - terms.mean()
    stderr = float(np.std(terms, ddof=1) / math.sqrt(n))
    return Estimate(float(value), stderr, {"k": k, "n": n, "method": method,
                                           "mean_nx": float(nx.mean()), "mean_ny": float(ny.mean())})


def _ksg_counts_kdtree(xs: np.ndarray, ys: np.ndarray, k: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.spatial import cKDTree

    joint = np.hstack([xs, ys])
    dist, _ = cKDTree(joint).query(joint, k=k + 1, p=np.inf, workers=workers)
    radius = np.nextafter(dist[:, -1], 0)  # strictly closer than the k-th neighbour
    counts = []
    for side in (xs, ys):
        found = cKDTree(side).query_ball_point(side, r=radius, p=np.inf, return_length=True, workers=workers)
        counts.append(np.maximum(np.asarray(found) - 1, 0))  # minus the sample itself
    return counts[0], counts[1]


def _ksg_counts_brute(xs: np.ndarray, ys: np.ndarray, k: int, device: str) -> tuple[np.ndarray, np.ndarray]:
    import torch

    dev = torch.device(device)
    dtype = torch.float64 if dev.type == "cpu" else torch.float32
    tx = torch.as_tensor(xs, dtype=dtype, device=dev)
    ty = torch.as_tensor(ys, dtype=dtype, device=dev)
    n = len(tx)
    block = max(1, min(n, (1 << 24) // n))
    nx, ny = [], []
    with torch.no_grad():
        for a in range(0, n, block):
            b = min(n, a + block)
            dx = torch.cdist(tx[a:b], tx, p=float("inf"))
            dy = torch.cdist(ty[a:b], ty, p=float("inf"))
            dz = torch.maximum(dx, dy)
            rows = torch.arange(b - a, device=dev)
            dz[rows, rows + a] = float("inf")
            eps = dz.kthvalue(k, dim=1).values[:, None]
            nx.append(((dx < eps).sum(1) - 1).clamp_min(0).cpu())
            ny.append(((dy < eps).sum(1) - 1).clamp_min(0).cpu())
    return torch.cat(nx).numpy(), torch.cat(ny).numpy()

