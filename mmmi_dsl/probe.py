"""Probes on a generated dataset beside their exact limits (``mmmic bench-probe``).

For each label y and modality x (or embedding of x), a logistic probe (scikit-learn,
standardised features) is trained on the first part of the tuples and tested on the
rest; its test accuracy, with a Wilson 95% interval, stands beside the exact Bayes
accuracy ``ACC(y | x)`` (:func:`mmmi_dsl.mi.limits.bayes_accuracy`). For each scalar
target θ, a ridge probe's test R² (a bootstrap 95% interval) stands beside its exact
limit ``1 − e^{−2 I(θ; x)}``. No model can beat the limits; a probe far below them
shows what the features (or the probe) lose. Results are data (:class:`ProbeReport`);
:mod:`mmmi_dsl.report` renders them. numpy, scipy and scikit-learn; never torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmmi_dsl.errors import UsageError

__all__ = ["ProbeReport", "ProbeRow", "run_probes", "wilson_interval"]

#: The test part of the tuples: the last 20 % (tuples are i.i.d., so a contiguous split is a fair one).
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class ProbeRow:
    """One probe: ``score`` (test accuracy, or R²) with its 95% interval ``ci``, beside ``exact``,
    the Bayes accuracy ``ACC(variable | modality)`` or the best R² from the modality."""

    kind: str  # "accuracy" or "r2"
    variable: str
    modality: str
    score: float
    ci: tuple[float, float]
    exact: float
    n_train: int
    n_test: int

    @property
    def query(self) -> str:
        return f"ACC({self.variable} | {self.modality})" if self.kind == "accuracy" else \
            f"R2({self.variable} | {self.modality})"

    @property
    def within_limit(self) -> bool:
        """The probe does not beat the exact limit beyond its interval (it never can, but for chance)."""
        return self.ci[0] <= self.exact

    def to_json(self) -> dict:
        return {"kind": self.kind, "variable": self.variable, "modality": self.modality, "score": self.score,
                "ci95": list(self.ci), "exact": self.exact, "gap": self.exact - self.score,
                "n_train": self.n_train, "n_test": self.n_test}


@dataclass(frozen=True)
class ProbeReport:
    """All probes of one dataset with one kind of features (``raw``, a file, or ``module:function``)."""

    directory: str
    model: str
    features: str
    rows: tuple[ProbeRow, ...]

    def to_json(self) -> dict:
        return {"directory": self.directory, "model": self.model, "features": self.features,
                "test_fraction": TEST_FRACTION, "probes": [r.to_json() for r in self.rows]}


def wilson_interval(hits: int, n: int) -> tuple[float, float]:
    """The Wilson score 95% interval of a proportion ``hits / n`` (scipy)."""
    from scipy.stats import binomtest

    ci = binomtest(int(hits), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def _split(n: int) -> int:
    n_test = max(1, int(round(n * TEST_FRACTION)))
    if n - n_test < 10:
        raise UsageError(f"the dataset has {n} tuples: too few to train a probe on 80% and test it on 20%")
    return n - n_test


def _accuracy_probe(features: np.ndarray, y: np.ndarray, seed: int) -> tuple[float, tuple[float, float], int]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cut = _split(len(y))
    train_y = y[:cut]
    if train_y.min() == train_y.max():  # one class only: the probe predicts it
        predicted = np.full(len(y) - cut, train_y[0])
    else:
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
        probe.fit(features[:cut], train_y)
        predicted = probe.predict(features[cut:])
    hits = int(np.sum(predicted == y[cut:]))
    n_test = len(y) - cut
    return hits / n_test, wilson_interval(hits, n_test), cut


def _r2_probe(features: np.ndarray, t: np.ndarray, seed: int) -> tuple[float, tuple[float, float], int]:
    from scipy.stats import bootstrap
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cut = _split(len(t))
    probe = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-4, 3, 15)))
    probe.fit(features[:cut], t[:cut])
    guess, truth = probe.predict(features[cut:]), t[cut:]

    def r2(a, b, axis=-1):
        res = np.sum((a - b) ** 2, axis=axis)
        tot = np.sum((a - np.mean(a, axis=axis, keepdims=True)) ** 2, axis=axis)
        return 1.0 - res / tot

    score = float(r2(truth, guess))
    ci = bootstrap((truth, guess), r2, paired=True, vectorized=True, n_resamples=1000, method="percentile",
                   random_state=seed).confidence_interval
    return score, (float(ci.low), float(ci.high)), cut


def run_probes(directory: str | Path, labels: Sequence[str], *, modalities: Sequence[str] = (),
               targets: Sequence[str] | None = None, features: str = "raw",
               embed: Callable[[str, np.ndarray], np.ndarray] | None = None, seed: int = 0) -> ProbeReport:
    """Probe each label (accuracy) and target (R²) from each modality of a generated dataset.

    Args:
        directory: a complete dataset (``mmmic generate``) whose manifest records its spec.
        labels: labels of the spec, saved in the dataset.
        modalities: modalities to probe from (default: all).
        targets: scalar targets for the R² probe (default: the spec's targets the dataset saves).
        features: what the probes read, for the report: ``raw`` or the name of ``embed``.
        embed: ``(modality, array (n, *shape)) -> (n, k)`` embeddings; None: the raw modality, flattened.

    Raises:
        UsageError: a name that is not a label, target or modality of the dataset, or embeddings
            that are not (n, k) finite numbers.
    """
    from mmmi_dsl.dataset import load_arrays
    from mmmi_dsl.dataset.recorded import load_dataset_spec
    from mmmi_dsl.mi import limits
    from mmmi_dsl.mi.analysis import Analysis

    found = load_dataset_spec(directory)
    model = found.model
    mods = list(modalities) or list(model.flows)
    saved = found.manifest["variables"]
    targets = [t for t in model.targets if t in saved] if targets is None else list(targets)
    for name, known, what in [(n, model.labels, "label") for n in labels] + \
            [(n, model.flows, "modality") for n in mods] + [(n, model.targets, "target") for n in targets]:
        if name not in known:
            raise UsageError(f"`{name}` is not a {what} of {found.path.parent} (its {what}s: "
                             f"{', '.join(known) or 'none'})")
    for name in [*labels, *mods, *targets]:
        if name not in saved:
            raise UsageError(f"`{name}` is not saved in {found.path.parent} (saved: {', '.join(saved)})")
    engine = Analysis(model)
    ys = {lab: np.asarray(load_arrays(directory, lab)).reshape(-1).astype(np.int64) for lab in labels}
    thetas = {t: np.asarray(load_arrays(directory, t), dtype=np.float64).reshape(-1) for t in targets}
    rows = []
    for m in mods:
        x = np.asarray(load_arrays(directory, m))
        if embed:
            try:
                embedded = embed(m, x)
            except Exception as err:  # the user's own function, named on the command line
                raise UsageError(f"features {features}: it raised {type(err).__name__} on `{m}`: {err}") from None
        f = _features(embedded if embed else x.reshape(len(x), -1), len(x), m, features)
        for lab in labels:
            y = ys[lab]
            score, ci, cut = _accuracy_probe(f, y, seed)
            rows.append(ProbeRow("accuracy", lab, m, score, ci, limits.bayes_accuracy(engine, lab, [m]), cut,
                                 len(y) - cut))
        for t in targets:
            theta = thetas[t]
            score, ci, cut = _r2_probe(f, theta, seed)
            rows.append(ProbeRow("r2", t, m, score, ci, limits.r2_limit(engine, t, [m]), cut, len(theta) - cut))
    return ProbeReport(str(directory), model.name, features, tuple(rows))


def _features(array, n: int, modality: str, what: str) -> np.ndarray:
    """Embeddings checked once: (n, k) finite numbers, aligned with the dataset's n tuples."""
    try:
        a = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError):
        raise UsageError(f"--features {what}: the embeddings of `{modality}` are not an array of numbers") from None
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] != n:
        raise UsageError(f"--features {what}: the embeddings of `{modality}` have shape {a.shape}; expected "
                         f"({n}, k), one row per tuple of the dataset")
    if not np.all(np.isfinite(a)):
        raise UsageError(f"--features {what}: the embeddings of `{modality}` hold NaN or infinite values")
    return a
