"""Variational estimators: a critic trained on one split, a lower bound read on another.

``dv``, ``mine``, ``nwj``, ``infonce``, ``js``, ``smile`` (Poole et al. 2019; Song &
Ermon 2020). The critic ``f(x, y)`` is separable ``g(x) . h(y)`` or joint (an MLP on the
pair), with a small conv encoder for image-shaped samples. Each batch of ``b`` pairs gives
a (b, b) score matrix ``s[i, j] = f(x_i, y_j)``: the diagonal holds the joint samples, the
off-diagonal entries the product of the marginals. Training stops early on a validation
split; the reported estimate and its standard error are read on a held-out test split.
torch is imported only when an estimator runs.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np

from mmmi_dsl.errors import UsageError
from mmmi_dsl.estimators.base import Estimate, EstimatorError, paired
from mmmi_dsl.nets import encoder, is_image, split, standardize, train_early_stopping

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


def _critic(shape_x, shape_y, opts: dict):
    """The critic: ``scores(x, y)`` is the (b, b) matrix f(x_i, y_j)."""
    import torch
    from torch import nn

    def conv_for(shape):
        if opts["conv"] == "auto":
            return is_image(shape)
        if opts["conv"] and not is_image(shape):
            raise UsageError(f"conv critic needs image-shaped samples (C, H, W) or (H, W) >= 8x8, not {list(shape)}")
        return bool(opts["conv"])

    cx, cy = conv_for(shape_x), conv_for(shape_y)

    if opts["critic"] == "separable":
        class Separable(nn.Module):
            def __init__(self):
                super().__init__()
                self.g = encoder(shape_x, opts["embed"], opts["hidden"], opts["layers"], cx)
                self.h = encoder(shape_y, opts["embed"], opts["hidden"], opts["layers"], cy)

            def forward(self, x, y):
                return self.g(x) @ self.h(y).T

        return Separable(), {"critic": "separable", "conv_x": cx, "conv_y": cy}

    class Joint(nn.Module):
        """An MLP on the pair: the first layer is split, W [x; y] = W_x x + W_y y."""

        def __init__(self):
            super().__init__()
            h = opts["hidden"]
            if cx or cy:  # encode each side, then an MLP on the sum of the codes
                self.gx = encoder(shape_x, h, h, opts["layers"], cx)
                self.gy = encoder(shape_y, h, h, opts["layers"], cy)
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

    x, y = paired(x, y, 20)
    n = len(x)
    shape_x, shape_y = x.shape[1:], y.shape[1:]
    rng = np.random.default_rng(seed)
    val_idx, test_idx, train_idx = split(n, opts["validation"], opts["test"], rng)
    if len(train_idx) < 2:
        raise EstimatorError(f"{kind}: {n} samples leave nothing to train on")
    xf = x.reshape(n, -1).astype(np.float32)
    yf = y.reshape(n, -1).astype(np.float32)
    if opts["standardize"]:  # an invertible affine map per column: the MI is unchanged
        for a in (xf, yf):
            standardize(a, train_idx)
    tx, ty = torch.from_numpy(xf), torch.from_numpy(yf)
    dev = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        critic, info = _critic(shape_x, shape_y, opts)
    critic = critic.to(dev)
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
    start = time.perf_counter()
    run = train_early_stopping(
        critic, lambda idx: _loss(kind, critic(tx[idx].to(dev), ty[idx].to(dev)), state, ema),
        lambda: evaluate(val_idx)[0], train_idx, rng, batch=batch, lr=opts["lr"], max_steps=opts["max_steps"],
        eval_every=opts["eval_every"], patience=opts["patience"])
    value, terms = evaluate(test_idx)
    if not math.isfinite(value):
        raise EstimatorError(f"{kind}: the critic diverged (non-finite held-out estimate)")
    stderr = float(np.std(terms, ddof=1) / math.sqrt(len(terms)))
    details = {**info, "steps": run.steps, "best_step": run.best_step, "validation_nats": run.best_score,
               "diverged": run.diverged, "stopped_early": run.steps < opts["max_steps"] and not run.diverged,
               "n_train": len(train_idx), "n_validation": len(val_idx), "n_test": len(test_idx), "batch_size": batch,
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
