"""specs/bmi/: BMI's tasks as specs, checked against BMI's own ground truth and samples.

tests/fixtures/bmi/ (benchmarks/bmi_fixture.py, BMI 0.1.3) records every task's MI and
``task.sample(n, 0)``. Each spec's first report must equal BMI's MI to 1e-9, and mmmic's samples
of (x, y) must be indistinguishable from BMI's by an energy-distance permutation test (on asinh
of the coordinates for the heavy-tailed Student-t tasks: see ``comparable``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from mmmi_dsl import load, loads

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "bmi"
TASKS = {t["id"]: t for t in json.loads((FIXTURE / "tasks.json").read_text())["tasks"]}
SPECS = sorted((ROOT / "specs" / "bmi").glob("*.mmi"))

PERMUTATIONS = 299
#: Reject at p <= 1e-3 per task: over the 40 specs a family-wise false-rejection rate below 0.04.
ALPHA = 1e-3
#: One spec per family runs by default; all of them with --runslow (about 1.5 s each).
FAST = {"1v1-normal-0.75", "1v1-bimodal-0.75", "swissroll_x-normal_cdf-1v1-normal-0.75",
        "multinormal-dense-3-3-0.5", "spiral-multinormal-sparse-3-3-2-2.0", "half_cube-multinormal-sparse-3-3-2-2.0",
        "student-identity-2-2-1", "asinh-student-identity-3-3-2", "1v1-additive-0.1"}


def _marked(stems):
    return [pytest.param(s, marks=() if s in FAST else pytest.mark.slow, id=s) for s in stems]


def test_every_task_has_a_spec():
    assert len(TASKS) == 40
    have = {p.stem for p in SPECS}
    assert have == set(TASKS), (sorted(have - set(TASKS)), sorted(set(TASKS) - have))


def in_float32(mi: float) -> bool:
    """Whether BMI computed this MI in jax's default 32-bit mode: its value is a float32 exactly.

    Only ``1v1-additive-0.1`` (``eps - jnp.log(2 eps)`` = 1.7094379663467407, the float32 rounding
    of 1.7094379124341004); every other recorded MI is a float64 (numpy/scipy) value, which a
    float32 is with probability about 2**-29.
    """
    return float(np.float32(mi)) == mi


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_first_report_is_bmis_mi(spec):
    """To 1e-9; an MI BMI rounded to float32 to one float32 ulp (and to its closed form below)."""
    task = TASKS[spec.stem]
    first = load(spec).results()[0]
    tol = float(np.spacing(np.float32(task["mi"]))) if in_float32(task["mi"]) else 1e-9
    assert abs(first.nats - task["mi"]) < tol, (first.nats, task["mi"])


@pytest.mark.parametrize("task_id", ["1v1-additive-0.1", "1v1-additive-0.75"])
def test_additive_tasks_equal_bmis_closed_form_in_float64(task_id):
    """BMI's own formula (AdditiveUniformSampler: 1 / (4 eps) for eps > 1/2, else eps - log(2 eps)),
    evaluated here in float64 from the task's recorded epsilon, to 1e-12."""
    eps = TASKS[task_id]["params"]["epsilon"]
    exact = 0.25 / eps if eps > 0.5 else eps - math.log(2 * eps)
    first = load(ROOT / "specs" / "bmi" / f"{task_id}.mmi").results()[0]
    assert abs(first.nats - exact) < 1e-12, (first.nats, exact)


def energy_test(a: np.ndarray, b: np.ndarray, permutations: int = PERMUTATIONS,
                seed: int = 0) -> tuple[float, float]:
    """The energy distance of samples a (n, d), b (m, d) and its p-value under a permutation null.

    ``E = 2 mean|a - b| - mean|a - a'| - mean|b - b'|`` (Szekely and Rizzo, Euclidean) is
    ``-w' D w`` with D the pooled distances and ``w = s / n - (1 - s) / m`` for s the indicator of
    the first sample: every relabelling is one column of one matrix product. The p-value is the
    tail of a gamma fitted to the permuted statistics' mean and variance (the null law of E is a
    weighted sum of chi-squares, which a gamma matches closely), so 299 relabellings resolve
    p-values far below 1 / 100.
    """
    from scipy import stats

    pooled = np.concatenate([a, b])
    d = cdist(pooled, pooled)
    n, m = len(a), len(b)
    rng = np.random.default_rng(seed)
    s = np.zeros((n + m, permutations + 1))
    s[:n, 0] = 1
    for k in range(1, permutations + 1):
        s[rng.permutation(n + m)[:n], k] = 1
    w = s / n - (1 - s) / m
    e = -(w * (d @ w)).sum(0)
    mean, var = e[1:].mean(), e[1:].var(ddof=1)
    return float(e[0]), float(stats.gamma.sf(e[0], mean ** 2 / var, scale=var / mean))


def mmmic_pairs(model, n: int, seed: int = 0) -> np.ndarray:
    """n draws of (x, y) from a spec, side by side (n, dim_x + dim_y), float64."""
    import torch

    out = model.sampler(seed=seed, dtype="float64").sample(n)
    return torch.cat([out["x"].reshape(n, -1), out["y"].reshape(n, -1)], dim=1).numpy()


def bmi_pairs(task_id: str, n: int) -> np.ndarray:
    data = np.load(FIXTURE / f"{task_id}.npz")
    return np.concatenate([data["x"][:n], data["y"][:n]], axis=1).astype(np.float64)


def comparable(task_id: str, pairs: np.ndarray) -> np.ndarray:
    """The draws the energy test compares: asinh of every coordinate for the Student-t tasks.

    The energy distance characterises equal laws only among laws with a finite first moment, and
    its permutation statistics are dominated by a few huge draws when tails are heavy: the
    ``student-identity-*`` tasks have nu = 1 (Cauchy: no mean), 2 (no variance) or 3. asinh is a
    bijection of each coordinate, so the two samples' laws are equal exactly when those of their
    images are; P(|t| > r) ~ r**-nu makes asinh(t) exponentially tailed (every moment finite for
    any nu > 0), and unlike a bounded map (arctan) it keeps the tails apart on a log scale: a
    Cauchy spec run with nu = 2 is rejected at p ~ 1e-17 after asinh, only at ~3e-4 after arctan.
    The ``asinh-student-identity-*`` tasks are drawn through asinh already.
    """
    return np.arcsinh(pairs) if task_id.startswith("student-identity-") else pairs


@pytest.mark.parametrize("task_id", _marked(p.stem for p in SPECS))
def test_samples_match_bmis(task_id):
    """mmmic's draws (seed 1) against all of BMI's recorded draws of the task (2,000; 1,000 at 50 x 50)."""
    task = TASKS[task_id]
    ours = mmmic_pairs(load(ROOT / "specs" / "bmi" / f"{task_id}.mmi"), task["n"], seed=1)
    assert ours.shape[1] == task["dim_x"] + task["dim_y"]
    e, p = energy_test(comparable(task_id, ours), comparable(task_id, bmi_pairs(task_id, task["n"])))
    assert p > ALPHA, (task_id, e, p)


#: Wrongly parametrised specs: each must be rejected (the test above can fail).
WRONG = {
    "1v1-normal-0.75": ("param rho = 0.75", "param rho = 0.5"),
    "half_cube-1v1-normal-0.75": ('convention = "bmi"', 'convention = "mmmic"'),  # z^3 / 2
    # BMI's spiral without its speed / d (normalize_speed=False)
    "spiral-multinormal-sparse-3-3-2-2.0": ('convention = "bmi", plane = 1)',
                                            'convention = "bmi", plane = 1, speed = 3)'),
    "1v1-bimodal-0.75": ("mean1 = 0, mean2 = 5", "mean1 = 0, mean2 = 4"),
    "wiggly-1v1-normal-0.75": ('wiggly(zy, variant = "y")', 'wiggly(zy, variant = "x")'),
    "multinormal-dense-5-5-0.5": ("param c = 0.5", "param c = 0.3"),
    "student-identity-2-2-1": ("param nu = 1", "param nu = 2"),  # Student-t for Cauchy
    "asinh-student-identity-3-3-2": ("param nu = 2", "param nu = 4"),
    "student-identity-2-2-2": ("student(nu): zx, zy", "student(nu): zx\nstudent(nu): zy"),  # a scale each: independent
    "1v1-additive-0.1": ("param eps = 0.1", "param eps = 0.2"),
    "1v1-additive-0.75": ("param eps = 0.75", "param eps = 0.9"),
}


@pytest.mark.parametrize("task_id", _marked(sorted(WRONG)))
def test_a_wrongly_parametrised_spec_is_rejected(task_id):
    old, new = WRONG[task_id]
    text = (ROOT / "specs" / "bmi" / f"{task_id}.mmi").read_text()
    assert old in text
    wrong, n = loads(text.replace(old, new)), TASKS[task_id]["n"]
    e, p = energy_test(comparable(task_id, mmmic_pairs(wrong, n, seed=1)), comparable(task_id, bmi_pairs(task_id, n)))
    assert p <= ALPHA, (task_id, e, p)
