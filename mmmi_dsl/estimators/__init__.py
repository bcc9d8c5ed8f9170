"""MI estimators to benchmark on datasets whose MI is known (``mmmic estimate``).

Every estimator has one signature::

    estimate = ESTIMATORS[name](x, y, *, seed=0, device="cpu", **options)

``x`` is ``(n, *shape_x)``, ``y`` is ``(n, *shape_y)``; the result is an
:class:`Estimate` (nats, a standard error or None, and details). The estimators:

- ``gaussian``: plug-in Gaussian MI from the sample covariance, minus the exact
  Wishart bias (:func:`mmmi_dsl.dataset.plugin_bias`); standard error from the
  influence function (valid for non-Gaussian data too). Exact only for Gaussian data.
- ``ksg``: Kraskov-Stoegbauer-Grassberger estimator 1 (k = 3, max-norm), neighbours
  with ``scipy.spatial.cKDTree`` (low dimension) or blockwise brute force in torch.
- ``dv``, ``mine``, ``nwj``, ``infonce``, ``js``, ``smile``: variational bounds with a
  trained critic (Poole et al. 2019; Song & Ermon 2020), read on a held-out test split.

``docs/estimators.md`` is the reference (options, tolerances, caveats).
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from mmmi_dsl.errors import MmmicError, UsageError, did_you_mean


class EstimatorError(MmmicError):
    """Data an estimator cannot work on (too few samples, singular, non-finite) (exit code 1)."""

    exit_code = 1


@dataclass(frozen=True)
class Estimate:
    """One MI estimate: ``nats``, its standard error (None when there is none) and details."""

    nats: float
    stderr: float | None
    details: dict = field(default_factory=dict)


# ----------------------------------------------------------------- inputs


def _samples(a, name: str) -> np.ndarray:
    """``a`` as a float array (n, *shape) with at least one sample axis; finite."""
    a = np.asarray(a)
    if a.ndim == 0:
        raise EstimatorError(f"{name} is a scalar; expected an array with samples on the first axis")
    if a.dtype.kind not in "fiub":
        raise EstimatorError(f"{name} has dtype {a.dtype}; expected numbers")
    if a.ndim == 1:
        a = a[:, None]
    if not np.isfinite(a).all():
        raise EstimatorError(f"{name} holds NaN or infinite values")
    return a


def _pair(x, y, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = _samples(x, "x"), _samples(y, "y")
    if len(x) != len(y):
        raise EstimatorError(f"x has {len(x)} samples and y {len(y)}; they must be paired")
    if len(x) < minimum:
        raise EstimatorError(f"{len(x)} samples is too few (at least {minimum} needed)")
    return x, y


def _flat(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.reshape(len(a), -1), dtype=np.float64)


# ----------------------------------------------------------------- gaussian


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

    x, y = _pair(x, y, 3)
    z = np.hstack([_flat(x), _flat(y)])
    n, d = z.shape
    p = d - _flat(y[:1]).shape[1]
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

    x, y = _pair(x, y, 2)
    n = len(x)
    if not (isinstance(k, (int, np.integer)) and 1 <= k < n):
        raise UsageError(f"ksg: k must be an integer in [1, n - 1] = [1, {n - 1}], not {k!r}")
    if method not in ("auto", "kdtree", "brute"):
        raise UsageError(f"ksg: method must be auto, kdtree or brute, not {method!r}")
    xs, ys = _flat(x), _flat(y)
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


# ----------------------------------------------------------------- variational bounds

# Training options shared by the variational estimators (see docs/estimators.md).
TRAIN_DEFAULTS: dict = {
    "critic": "separable",   # separable g(x).h(y), or joint f([x, y])
    "conv": "auto",          # conv encoder for image-shaped inputs (>= 2-D per sample, >= 8x8)
    "hidden": 256,
    "layers": 2,
    "embed": 32,             # separable critic: embedding size
    "batch_size": None,      # 512 (separable) or 128 (joint)
    "lr": 5e-4,
    "max_steps": 1000,
    "eval_every": 50,
    "patience": 5,           # evaluations without a better validation estimate before stopping
    "validation": 0.1,       # fraction of the samples for early stopping
    "test": 0.2,             # fraction of the samples the reported estimate is read on
    "eval_batch": None,      # held-out block size (default: batch_size)
    "standardize": True,
    "threads": None,         # torch CPU threads while training (None: leave torch's setting)
}
EXTRA_OPTIONS = {"dv": {}, "mine": {"ema": 0.01}, "nwj": {}, "infonce": {}, "js": {}, "smile": {"tau": 5.0}}
VARIATIONAL = tuple(EXTRA_OPTIONS)


def _options(kind: str, options: dict) -> dict:
    allowed = {**TRAIN_DEFAULTS, **EXTRA_OPTIONS[kind]}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UsageError(f"{kind}: unknown option {', '.join(map(repr, unknown))}; "
                         f"valid: {', '.join(sorted(allowed))}")
    opts = {**allowed, **options}
    if opts["critic"] not in ("separable", "joint"):
        raise UsageError(f"{kind}: critic must be separable or joint, not {opts['critic']!r}")
    if opts["batch_size"] is None:
        opts["batch_size"] = 512 if opts["critic"] == "separable" else 128
    if opts["eval_batch"] is None:
        opts["eval_batch"] = opts["batch_size"]
    for name in ("hidden", "layers", "embed", "batch_size", "max_steps", "eval_every", "patience", "eval_batch"):
        if not isinstance(opts[name], (int, np.integer)) or opts[name] < 1 or (
                name in ("batch_size", "eval_batch") and opts[name] < 2):
            raise UsageError(f"{kind}: {name} must be a positive integer (batch sizes >= 2), not {opts[name]!r}")
    fractions = (opts["validation"], opts["test"])
    if not all(isinstance(f, (int, float)) and 0 < f < 1 for f in fractions) or sum(fractions) >= 1:
        raise UsageError(f"{kind}: validation and test must be fractions in (0, 1) with a sum below 1, "
                         f"not {fractions}")
    if opts["threads"] is not None and not (isinstance(opts["threads"], (int, np.integer)) and opts["threads"] >= 1):
        raise UsageError(f"{kind}: threads must be a positive integer or None, not {opts['threads']!r}")
    if kind == "smile" and not opts["tau"] > 0:
        raise UsageError(f"smile: tau must be positive (or inf), not {opts['tau']!r}")
    if kind == "mine" and not 0 < opts["ema"] <= 1:
        raise UsageError(f"mine: ema must be in (0, 1], not {opts['ema']!r}")
    return opts


def _is_image(shape: tuple[int, ...]) -> bool:
    return len(shape) in (2, 3) and shape[-1] >= 8 and shape[-2] >= 8


def _encoder(shape: tuple[int, ...], out: int, opts: dict, conv: bool):
    """An MLP (hidden x layers) on the flattened sample, or a small conv net for images."""
    from torch import nn

    h = opts["hidden"]
    if conv:
        channels = shape[0] if len(shape) == 3 else 1
        rows, cols = (math.ceil(math.ceil(size / 2) / 2) for size in shape[-2:])  # after two stride-2 convs
        pool = [] if rows * cols <= 16 else [nn.AdaptiveAvgPool2d(4)]  # only ever shrinks (upsampling is slow)
        return nn.Sequential(
            nn.Unflatten(1, (channels, shape[-2], shape[-1])),
            nn.Conv2d(channels, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            *pool, nn.Flatten(),
            nn.Linear(32 * min(rows * cols, 16), h), nn.ReLU(), nn.Linear(h, out))
    width = math.prod(shape)
    mods = [nn.Linear(width, h), nn.ReLU()]
    for _ in range(opts["layers"] - 1):
        mods += [nn.Linear(h, h), nn.ReLU()]
    return nn.Sequential(*mods, nn.Linear(h, out))


def _critic(shape_x, shape_y, opts: dict):
    """The critic: ``scores(x, y)`` is the (b, b) matrix f(x_i, y_j)."""
    import torch
    from torch import nn

    def conv_for(shape):
        if opts["conv"] == "auto":
            return _is_image(shape)
        if opts["conv"] and not _is_image(shape):
            raise UsageError(f"conv critic needs image-shaped samples (C, H, W) or (H, W) >= 8x8, not {list(shape)}")
        return bool(opts["conv"])

    cx, cy = conv_for(shape_x), conv_for(shape_y)

    if opts["critic"] == "separable":
        class Separable(nn.Module):
            def __init__(self):
                super().__init__()
                self.g = _encoder(shape_x, opts["embed"], opts, cx)
                self.h = _encoder(shape_y, opts["embed"], opts, cy)

            def forward(self, x, y):
                return self.g(x) @ self.h(y).T

        return Separable(), {"critic": "separable", "conv_x": cx, "conv_y": cy}

    class Joint(nn.Module):
        """An MLP on the pair: the first layer is split, W [x; y] = W_x x + W_y y."""

        def __init__(self):
            super().__init__()
            h = opts["hidden"]
            if cx or cy:  # encode each side, then an MLP on the sum of the codes
                self.gx, self.gy = _encoder(shape_x, h, opts, cx), _encoder(shape_y, h, opts, cy)
                depth = opts["layers"]
            else:
                self.gx, self.gy = nn.Linear(math.prod(shape_x), h), nn.Linear(math.prod(shape_y), h)
                depth = opts["layers"] - 1
            mods = []
            for _ in range(depth):
                mods += [nn.Linear(h, h), nn.ReLU()]
            self.head = nn.Sequential(*mods, nn.Linear(h, 1))

        def forward(self, x, y):
            grid = torch.relu(self.gx(x)[:, None, :] + self.gy(y)[None, :, :])
            return self.head(grid)[..., 0]

    return Joint(), {"critic": "joint", "conv_x": cx, "conv_y": cy}


def _lme_offdiag_rows(s):
    """Row-wise log mean exp over the off-diagonal entries of a square score matrix."""
    import torch

    b = s.shape[0]
    eye = torch.eye(b, dtype=torch.bool, device=s.device)
    return torch.logsumexp(s.masked_fill(eye, float("-inf")), dim=1) - math.log(b - 1)


def _lme_offdiag(s):
    import torch

    return torch.logsumexp(_lme_offdiag_rows(s), dim=0) - math.log(s.shape[0])


def _per_sample(kind: str, s, tau: float):
    """The held-out estimate of one block and each sample's influence on it.

    Returns (value, terms): the block's bound value and per-row terms whose mean is the
    value to first order (their spread gives the standard error).
    """
    import torch

    diag = torch.diagonal(s)
    b = s.shape[0]
    if kind == "infonce":
        t = diag - torch.logsumexp(s, dim=1) + math.log(b)
        return t.mean(), t
    if kind in ("nwj", "js"):
        shift = 1.0 if kind == "nwj" else 0.0   # js: NWJ read with the critic f + 1
        t = (1.0 - shift) + diag - torch.exp(_lme_offdiag_rows(s) - shift)
        return t.mean(), t
    # dv, mine, smile: DV; smile clips the scores inside the partition function
    inner = s if kind != "smile" or math.isinf(tau) else s.clamp(-tau, tau)
    rows = _lme_offdiag_rows(inner)
    logz = torch.logsumexp(rows, dim=0) - math.log(b)
    return diag.mean() - logz, diag - torch.exp(rows - logz)


def _loss(kind: str, s, state: dict, ema: float):
    """The training loss (minus the objective) on one batch's score matrix."""
    import torch
    import torch.nn.functional as F

    diag = torch.diagonal(s)
    if kind in ("js", "smile"):  # f-GAN Jensen-Shannon objective
        off = ~torch.eye(s.shape[0], dtype=torch.bool, device=s.device)
        return F.softplus(-diag).mean() + F.softplus(s[off]).mean()
    if kind == "mine":  # DV with the moving average in the gradient of log E_q[e^f]
        logmean = _lme_offdiag(s)
        with torch.no_grad():
            cur, prev = logmean.detach(), state.get("log_ema")
            if prev is None or ema >= 1:
                state["log_ema"] = cur
            else:  # log of (1 - ema) * exp(prev) + ema * exp(cur)
                state["log_ema"] = torch.logaddexp(prev + math.log1p(-ema), cur + math.log(ema))
        return -(diag.mean() - torch.exp(logmean - state["log_ema"]))
    value, _ = _per_sample(kind, s, math.inf)
    return -value


def _variational(kind: str, x, y, seed: int, device: str, options: dict) -> Estimate:
    import torch

    opts = _options(kind, options)
    threads = torch.get_num_threads()
    if opts["threads"] is not None:
        torch.set_num_threads(opts["threads"])
    try:
        return _train(kind, x, y, seed, device, opts)
    finally:
        torch.set_num_threads(threads)


def _train(kind: str, x, y, seed: int, device: str, opts: dict) -> Estimate:
    """Train the critic on the training split with early stopping; read the bound on the test split."""
    import torch

    x, y = _pair(x, y, 20)
    n = len(x)
    shape_x, shape_y = x.shape[1:], y.shape[1:]
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_val = max(2, int(round(opts["validation"] * n)))
    n_test = max(2, int(round(opts["test"] * n)))
    if n - n_val - n_test < 2:
        raise EstimatorError(f"{kind}: {n} samples leave nothing to train on")
    val_idx, test_idx, train_idx = perm[:n_val], perm[n_val:n_val + n_test], perm[n_val + n_test:]
    xf = x.reshape(n, -1).astype(np.float32)
    yf = y.reshape(n, -1).astype(np.float32)
    if opts["standardize"]:  # an invertible affine map per column: the MI is unchanged
        for a in (xf, yf):
            mu, sd = a[train_idx].mean(axis=0), a[train_idx].std(axis=0)
            a -= mu
            a /= np.where(sd > 0, sd, 1.0)
    tx, ty = torch.from_numpy(xf), torch.from_numpy(yf)
    dev = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        critic, info = _critic(shape_x, shape_y, opts)
    critic = critic.to(dev)
    optim = torch.optim.Adam(critic.parameters(), lr=opts["lr"])
    batch = min(opts["batch_size"], len(train_idx))
    tau = float(opts.get("tau", math.inf))
    ema = float(opts.get("ema", 0.01))

    def evaluate(idx: np.ndarray) -> tuple[float, np.ndarray]:
        blocks = np.array_split(idx, max(1, math.ceil(len(idx) / opts["eval_batch"])))
        values, terms, weights = [], [], []
        with torch.no_grad():
            for blk in blocks:
                s = critic(tx[blk].to(dev), ty[blk].to(dev)).double()
                v, t = _per_sample(kind, s, tau)
                values.append(float(v))
                terms.append(t.cpu().numpy())
                weights.append(len(blk))
        return float(np.average(values, weights=weights)), np.concatenate(terms)

    state: dict = {}
    best = (-math.inf, 0, copy.deepcopy(critic.state_dict()))
    stale, step, diverged = 0, 0, False
    order, pos = rng.permutation(train_idx), 0
    start = time.perf_counter()
    while step < opts["max_steps"]:
        if pos + batch > len(order):
            order, pos = rng.permutation(train_idx), 0
        idx = order[pos:pos + batch]
        pos += batch
        s = critic(tx[idx].to(dev), ty[idx].to(dev))
        loss = _loss(kind, s, state, ema)
        if not torch.isfinite(loss):
            diverged = True
            break
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        step += 1
        if step % opts["eval_every"] == 0 or step == opts["max_steps"]:
            value, _ = evaluate(val_idx)
            if value > best[0]:
                best, stale = (value, step, copy.deepcopy(critic.state_dict())), 0
            else:
                stale += 1
                if stale >= opts["patience"]:
                    break
    critic.load_state_dict(best[2])
    value, terms = evaluate(test_idx)
    if not math.isfinite(value):
        raise EstimatorError(f"{kind}: the critic diverged (non-finite held-out estimate)")
    stderr = float(np.std(terms, ddof=1) / math.sqrt(len(terms)))
    details = {**info, "steps": step, "best_step": best[1], "validation_nats": best[0], "diverged": diverged,
               "stopped_early": step < opts["max_steps"] and not diverged, "n_train": len(train_idx),
               "n_validation": len(val_idx), "n_test": len(test_idx), "batch_size": batch,
               "eval_batch": opts["eval_batch"], "train_seconds": time.perf_counter() - start}
    if kind == "infonce":
        details["cap_nats"] = math.log(min(opts["eval_batch"], len(test_idx)))
    if kind == "smile":
        details["tau"] = tau
    return Estimate(value, stderr, details)


def _bound(kind: str) -> Callable[..., Estimate]:
    def run(x, y, *, seed: int = 0, device: str = "cpu", **options) -> Estimate:
        return _variational(kind, x, y, seed, device, options)

    run.__name__ = kind
    run.__doc__ = f"The {kind} variational estimator; options: docs/estimators.md."
    return run


dv = _bound("dv")
mine = _bound("mine")
nwj = _bound("nwj")
infonce = _bound("infonce")
js = _bound("js")
smile = _bound("smile")

ESTIMATORS: dict[str, Callable[..., Estimate]] = {
    "gaussian": gaussian, "ksg": ksg, "dv": dv, "mine": mine, "nwj": nwj, "infonce": infonce, "js": js,
    "smile": smile,
}


def get_estimator(name: str) -> Callable[..., Estimate]:
    """The estimator called ``name``; a :class:`UsageError` listing the valid names otherwise."""
    try:
        return ESTIMATORS[name]
    except (KeyError, TypeError):
        close = did_you_mean(str(name), ESTIMATORS)
        hint = f" ({close})" if close.startswith("did you") else ""
        raise UsageError(f"unknown estimator {name!r}{hint}; valid: {', '.join(ESTIMATORS)}") from None


def estimate(name: str, x, y, *, seed: int = 0, device: str = "cpu", **options) -> Estimate:
    """Run estimator ``name``; unknown options are a :class:`UsageError` naming the valid ones."""
    fn = get_estimator(name)
    if name not in VARIATIONAL:
        params = inspect.signature(fn).parameters
        unknown = sorted(set(options) - set(params))
        if unknown:
            valid = sorted(p for p in params if p not in ("x", "y", "seed", "device"))
            raise UsageError(f"{name}: unknown option {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")
    return fn(x, y, seed=seed, device=device, **options)


# ----------------------------------------------------------------- mmmic estimate

def parse_pair(query: str) -> tuple[str, str] | None:
    """The two names of a plain ``I(a; b)``; None for anything else (groups, ``|``, TC, II)."""
    from mmmi_dsl.dataset import plain_pair

    sides = plain_pair(query)
    if sides is None or len(sides[0]) != 1 or len(sides[1]) != 1:
        return None
    return sides[0][0], sides[1][0]


def exact_value(manifest: dict, pair: tuple[str, str]):
    """The manifest's exact MI (nats; float, or "inf") of this pair, in either order; None if unknown."""
    for entry in manifest.get("mi", []):
        other = parse_pair(str(entry.get("query", "")))
        if other in (pair, pair[::-1]):
            return entry.get("nats")
    return None


def run_estimate_command(directory: str, query: str, names: list[str] | None, *, as_json: bool = False,
                         device: str = "cpu", max_samples: int | None = None, seed: int = 0,
                         options: dict | None = None) -> tuple[str, int]:
    """``mmmic estimate``: the printable result and the exit code (1 if an estimator failed)."""
    from mmmi_dsl.dataset import MANIFEST, read_manifest, load_arrays

    names = list(names or ESTIMATORS)
    for name in names:
        get_estimator(name)
    if max_samples is not None and max_samples < 2:
        raise UsageError("--max-samples must be at least 2")
    pair = parse_pair(query)
    if pair is None:
        raise UsageError(f"--query {query!r}: give a plain \"I(a; b)\" of two saved variables "
                         "(no conditioning, no groups)")
    manifest = read_manifest(Path(directory) / MANIFEST)
    for name in pair:
        if name not in manifest["variables"]:
            raise UsageError(f"--query {query!r}: `{name}` is not a saved variable of {directory}; "
                             f"{did_you_mean(name, manifest['variables'])}")
    arrays = [load_arrays(directory, name) for name in pair]
    n = len(arrays[0]) if max_samples is None else min(len(arrays[0]), max_samples)
    x, y = (np.asarray(a[:n]) for a in arrays)
    exact = exact_value(manifest, pair)
    rows, failed = [], False
    for name in names:
        start = time.perf_counter()
        opts = {k: v for k, v in (options or {}).items() if name in VARIATIONAL}
        try:
            est = estimate(name, x, y, seed=seed, device=device, **opts)
        except EstimatorError as err:
            failed = True
            rows.append({"estimator": name, "nats": None, "stderr": None,
                         "seconds": time.perf_counter() - start, "error": str(err)})
            continue
        rows.append({"estimator": name, "nats": est.nats, "stderr": est.stderr,
                     "seconds": time.perf_counter() - start})
    if as_json:
        return json.dumps({"query": query.strip(), "exact_nats": exact, "n": n, "estimates": rows},
                          indent=2, allow_nan=False), int(failed)
    return _table(query.strip(), directory, n, exact, rows), int(failed)


def _table(query: str, directory: str, n: int, exact, rows: list[dict]) -> str:
    known = isinstance(exact, (int, float))
    head = (f"exact {exact:.6f} nats" if known else "exact: infinite" if exact == "inf"
            else "exact: none known in the manifest")
    lines = [f"# {query} on {directory} ({n:,} samples): {head}",
             f"{'estimator':<10}  {'nats':>10}  {'stderr':>9}  {'error':>10}  {'seconds':>8}",
             f"{'-' * 10}  {'-' * 10}  {'-' * 9}  {'-' * 10}  {'-' * 8}"]
    for r in rows:
        if r["nats"] is None:
            lines.append(f"{r['estimator']:<10}  failed: {r['error']}")
            continue
        se = f"{r['stderr']:.4f}" if r["stderr"] is not None else "-"
        err = f"{r['nats'] - exact:+.4f}" if known else "-"
        lines.append(f"{r['estimator']:<10}  {r['nats']:>10.4f}  {se:>9}  {err:>10}  {r['seconds']:>8.2f}")
    return "\n".join(lines)
