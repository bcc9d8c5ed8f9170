"""The θ regression benchmark (``mmmic bench-regression``): a learned regressor against the exact Bayes RMSE.

For each target value ``t_i`` of ``I(θ; X)`` (θ a scalar target, X a modality) the free
parameter is solved exactly and a dataset of ``n`` tuples generated (seed ``seed + i``), as in
:mod:`mmmi_dsl.benchmark`, whose machinery and resume this shares. A regressor of θ from X is
fit on a training split (70 %), stopped or tuned on a validation split (10 %) and scored on a
test split (20 %):

    RMSE       = sqrt(mean_test (θ − θ̂)²), with a 95 % bootstrap (BCa) interval over the test tuples
    Bayes RMSE = sqrt(Var(θ | X)) = sd(θ) e^{−I(θ; X)}      (:func:`mmmi_dsl.mi.limits.rmse`)

The Bayes RMSE is the least any model can reach (X is a bijection of Gaussian latents, so
E[θ | X] is linear in them); it is read from each dataset's recorded spec at its parameter.
Regressors (:data:`REGRESSORS`): ``linear`` (closed-form ridge, the penalty picked on the
validation split; 0 is least squares), ``mlp`` (2 hidden layers of 256) and ``cnn`` (two
stride-2 convolutions and a hidden layer, for image modalities), both trained with Adam on the
squared error and stopped early on the validation error (:func:`mmmi_dsl.nets.train_early_stopping`).

``DIR`` holds the datasets (``DIR/t00``, ...), ``results.json`` (written after each point, so a
rerun resumes), ``errors/tNN.npy`` (the test errors θ − θ̂ of each point), and what
:func:`mmmi_dsl.report.regression_markdown` and :mod:`mmmi_dsl.plot` render from them:
``results.md``, ``plot.png`` and ``errors.png``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mmmi_dsl import ir
from mmmi_dsl.errors import UsageError

REGRESSORS = ("cnn", "mlp", "linear")
RESULTS = "results.json"
FORMAT = "mmmic-bench-regression/1"
VALIDATION, TEST = 0.1, 0.2
#: Ridge penalties tried by ``linear``, as multiples of the number of training tuples (X standardised).
RIDGE = (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
#: Training of ``mlp`` and ``cnn``.
NET = {"hidden": 256, "layers": 2, "batch_size": 256, "lr": 1e-3, "max_steps": 3000, "eval_every": 50,
       "patience": 10}


@dataclass(frozen=True)
class Fit:
    """A regressor's test errors ``θ − θ̂`` (n_test,) and how it was fit (``details``)."""

    errors: np.ndarray
    details: dict


def _ridge(x: np.ndarray, y: np.ndarray, train, val, test) -> Fit:
    """Ridge regression on standardised columns, the penalty (:data:`RIDGE`) with the least
    validation error (the first of equals); singular values below ``1e-10 s_max`` count as 0."""
    u, s, vt = np.linalg.svd(x[train], full_matrices=False)
    keep = s > 1e-10 * (s[0] if len(s) else 1.0)
    uty = u.T @ y[train]
    best = None
    for alpha in RIDGE:
        lam = alpha * len(train)
        shrink = np.where(keep, s / np.where(keep, s * s + lam, 1.0), 0.0)
        coef = vt.T @ (shrink * uty)
        mse = float(np.mean((y[val] - x[val] @ coef) ** 2))
        if best is None or mse < best[0]:
            best = (mse, alpha, coef)
    mse, alpha, coef = best
    return Fit(y[test] - x[test] @ coef, {"ridge": alpha, "validation_mse": mse})


def _net(x: np.ndarray, y: np.ndarray, shape: tuple[int, ...], conv: bool, train, val, test, *, seed: int,
         device: str, max_steps: int) -> Fit:
    """An MLP or shallow CNN (:func:`mmmi_dsl.nets.encoder`) on the squared error, stopped early on
    the validation error."""
    import torch

    from mmmi_dsl.nets import encoder, train_early_stopping

    dev = torch.device(device)
    tx, ty = torch.from_numpy(x.astype(np.float32)).to(dev), torch.from_numpy(y.astype(np.float32)).to(dev)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = encoder(shape, 1, NET["hidden"], NET["layers"], conv).to(dev)

    def predict(idx) -> "torch.Tensor":
        return net(tx[idx])[:, 0]

    def validation_score() -> float:
        with torch.no_grad():
            return -float(torch.mean((ty[val] - predict(val)) ** 2))

    run = train_early_stopping(net, lambda idx: torch.mean((ty[idx] - predict(idx)) ** 2), validation_score,
                               train, np.random.default_rng(seed), batch=min(NET["batch_size"], len(train)),
                               lr=NET["lr"], max_steps=max_steps, eval_every=NET["eval_every"],
                               patience=NET["patience"])
    with torch.no_grad():
        errors = (ty[test] - predict(test)).double().cpu().numpy()
    return Fit(errors, {"steps": run.steps, "best_step": run.best_step, "validation_mse": -run.best_score,
                        "diverged": run.diverged})


def check_regressor(regressor: str, shape: tuple[int, ...]) -> None:
    """A :class:`UsageError` unless ``regressor`` is one of :data:`REGRESSORS` and fits samples of ``shape``."""
    from mmmi_dsl.nets import is_image

    if regressor not in REGRESSORS:
        raise UsageError(f"regressor {regressor!r}: choose one of {', '.join(REGRESSORS)}")
    if regressor == "cnn" and not is_image(shape):
        raise UsageError(f"the cnn regressor needs image-shaped samples ((C, H, W) or (H, W), at least 8x8), "
                         f"not {list(shape)}; use mlp or linear")


def regress(x, theta, *, regressor: str = "mlp", seed: int = 0, device: str = "cpu",
            max_steps: int | None = None) -> Fit:
    """Fit ``regressor`` to ``theta`` (n,) from ``x`` (n, ...) and return its test errors.

    The splits are :func:`mmmi_dsl.nets.split` (seed ``seed``); x's columns and θ are
    standardised with the training split's moments, and the errors are in θ's own units.
    """
    from mmmi_dsl.nets import split, standardize

    x, theta = np.asarray(x), np.asarray(theta, dtype=np.float64).reshape(len(x), -1)
    if theta.shape[1] != 1:
        raise UsageError(f"the regression target must be a scalar, not of size {theta.shape[1]}")
    check_regressor(regressor, x.shape[1:])
    val, test, train = split(len(x), VALIDATION, TEST, np.random.default_rng(seed))
    if len(train) < 2:
        raise UsageError(f"{len(x)} tuples leave nothing to train on")
    xf = x.reshape(len(x), -1).astype(np.float64)
    standardize(xf, train)
    y = theta[:, 0].copy()
    _, sd = standardize(y[:, None], train)  # a view: y is standardised in place
    if regressor == "linear":
        fit = _ridge(xf, y, train, val, test)
    else:
        fit = _net(xf, y, x.shape[1:], regressor == "cnn", train, val, test, seed=seed, device=device,
                   max_steps=NET["max_steps"] if max_steps is None else max_steps)
    details = {**fit.details, "n_train": len(train), "n_validation": len(val), "n_test": len(test)}
    return Fit(fit.errors * float(sd[0]), details)


def rmse_interval(errors: np.ndarray, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """The ``level`` bootstrap interval (scipy, BCa, 2,000 resamples) of ``sqrt(mean(errors²))``."""
    from scipy.stats import bootstrap

    def statistic(e, axis=-1):
        return np.sqrt(np.mean(np.square(e), axis=axis))

    ci = bootstrap((np.asarray(errors, dtype=np.float64),), statistic, n_resamples=2000, confidence_level=level,
                   method="BCa", random_state=np.random.default_rng(seed)).confidence_interval
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class RegressionPoint:
    """One dataset of the family: the exact ``I(θ; X)`` (``target_nats``), the solved ``param``, the
    test RMSE with its interval, and the Bayes RMSE ``sd(θ) e^{−I}``."""

    target: float
    target_nats: float
    param: float
    dataset: str
    seed: int
    rmse: float
    rmse_ci: tuple[float, float]
    bayes_rmse: float
    sd: float
    seconds: float
    generate_seconds: float
    details: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """RMSE / Bayes RMSE (at least 1 up to sampling noise)."""
        return self.rmse / self.bayes_rmse if self.bayes_rmse > 0 else math.inf

    def to_json(self) -> dict:
        return {**asdict(self), "rmse_ci": list(self.rmse_ci), "ratio": self.ratio}

    @classmethod
    def from_json(cls, data) -> RegressionPoint | None:
        """The point ``to_json`` wrote; None if ``data`` is not one."""
        try:
            return cls(float(data["target"]), float(data["target_nats"]), float(data["param"]), str(data["dataset"]),
                       int(data["seed"]), float(data["rmse"]), tuple(float(c) for c in data["rmse_ci"]),
                       float(data["bayes_rmse"]), float(data["sd"]), float(data["seconds"]),
                       float(data["generate_seconds"]), dict(data.get("details", {})))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class RegressionResults:
    """The benchmark: its ``key`` (spec, parameter, query, targets, n, seed, regressor), the regressed
    ``target`` and ``modality``, and one :class:`RegressionPoint` per target done so far."""

    key: dict
    target: str
    modality: str
    points: tuple[RegressionPoint, ...]

    def to_json(self) -> dict:
        return {"format": FORMAT, "key": self.key, "target": self.target, "modality": self.modality,
                "points": [p.to_json() for p in self.points]}

    def extremes(self) -> list[RegressionPoint]:
        """The points of lowest and highest exact I (one point if they are the same)."""
        order = sorted(range(len(self.points)), key=lambda k: self.points[k].target_nats)
        return [self.points[k] for k in dict.fromkeys((order[0], order[-1]))] if order else []

    def errors(self, out: Path, point: RegressionPoint) -> np.ndarray:
        """The test errors of ``point``, saved in ``out``."""
        return np.load(out / "errors" / f"{point.dataset}.npy", allow_pickle=False)


def regression_pair(model: ir.Model, pair: tuple[str, str]) -> tuple[str, str]:
    """``(target, modality)`` of a query ``I(a; b)``: one side a target of the model, the other a modality."""
    a, b = pair
    for t, m in ((a, b), (b, a)):
        if t in model.targets and m in model.flows:
            return t, m
    raise UsageError(f"query I({a}; {b}): bench-regression needs a target (the regressed θ) and a modality, "
                     f"e.g. I({(model.targets or ['theta'])[0]}; {(list(model.flows) or ['x1'])[0]})")


def default_query(model: ir.Model) -> str | None:
    """``I(first target; first modality)``; None if the model lacks either."""
    if not model.targets or not model.flows:
        return None
    return f"I({model.targets[0]}; {next(iter(model.flows))})"


def _bayes(directory: Path, target: str, modality: str) -> tuple[float, float]:
    """``(sd(θ), RMSE(θ | X))`` of the dataset's recorded spec."""
    from mmmi_dsl.dataset.recorded import load_dataset_spec
    from mmmi_dsl.mi.analysis import Analysis
    from mmmi_dsl.mi.limits import rmse

    analysis = Analysis(load_dataset_spec(directory).model)
    return rmse(analysis, target, []), rmse(analysis, target, [modality])


def run_regression_benchmark(model: ir.Model, param: str, query: str, targets: Sequence[float], n: int, out: Path,
                             *, regressor: str = "mlp", seed: int = 0, device: str = "cpu", threads: int = 1,
                             max_steps: int | None = None, bracket: tuple | None = None, progress: bool = True,
                             log: Callable[[str], None] = print) -> RegressionResults:
    """Run (or resume) the benchmark; returns its results (also in ``out/results.json``).

    Raises:
        UsageError: a query that is not ``I(target; modality)``, a scalar target that is not, a
            regressor that does not fit the modality, or ``out`` holding another benchmark.
    """
    import torch

    from mmmi_dsl.benchmark import generate_point, open_results, solve_family, spec_hash, write_results
    from mmmi_dsl.dataset import load_arrays
    from mmmi_dsl.mi.analysis import Analysis
    from mmmi_dsl.mi.limits import rmse

    q, pair, rows = solve_family(model, param, query, targets, bracket)
    target, modality = regression_pair(model, pair)
    try:
        rmse(Analysis(model), target, [])
    except ValueError as err:
        raise UsageError(f"query {query!r}: {err}") from None
    check_regressor(regressor, tuple(model.flows[modality].shape))
    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    (out / "errors").mkdir(exist_ok=True)
    key = {"model": model.name, "spec_sha256": spec_hash(model), "values": model.env(), "param": param,
           "query": q.text, "targets": [float(t) for t in targets], "n": n, "seed": seed, "regressor": regressor,
           "max_steps": max_steps}
    stored = open_results(out / RESULTS, key, FORMAT, lambda p: RegressionPoint.from_json(p) is not None)
    points = [RegressionPoint.from_json(p) for p in stored["points"]][:len(rows)]
    for i, row in enumerate(rows):
        name = f"t{i:02d}"
        if i < len(points) and (out / "errors" / f"{name}.npy").is_file():
            continue  # done (a point whose errors file is gone is fit again: the same numbers, same seed)
        generate_seconds = generate_point(model.with_params({param: row.value}), out / name, n, seed=seed + i,
                                          device=device, progress=progress)
        start = time.perf_counter()
        fit = regress(np.asarray(load_arrays(out / name, modality)), np.asarray(load_arrays(out / name, target)),
                      regressor=regressor, seed=seed, device=device, max_steps=max_steps)
        seconds = time.perf_counter() - start
        np.save(out / "errors" / f"{name}.npy", fit.errors, allow_pickle=False)
        sd, bayes = _bayes(out / name, target, modality)
        exact = row.results[0].nats
        point = RegressionPoint(float(row.target), float(exact), float(row.value), name, seed + i,
                                float(np.sqrt(np.mean(fit.errors ** 2))), rmse_interval(fit.errors, seed),
                                bayes, sd, seconds, generate_seconds, fit.details)
        points[i:i + 1] = [point]
        write_results(out / RESULTS, {**stored, "points": [p.to_json() for p in points]})
        log(f"[{i + 1}/{len(rows)}] I = {exact:.4f} nats  {regressor} RMSE {point.rmse:.4f} "
            f"[{point.rmse_ci[0]:.4f}, {point.rmse_ci[1]:.4f}]  Bayes {bayes:.4f}  ({seconds:.1f} s)")
    results = RegressionResults(key, target, modality, tuple(points))
    write_results(out / RESULTS, results.to_json())
    return results
