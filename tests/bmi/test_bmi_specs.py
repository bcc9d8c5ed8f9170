"""specs/bmi/: BMI's tasks as specs, checked against BMI's own ground truth and samples.

tests/fixtures/bmi/ (benchmarks/bmi_fixture.py, BMI 0.1.3) records every task's MI and
``task.sample(n, 0)``. Each spec's first report must equal BMI's MI to 1e-9, and mmmic's samples
of (x, y) must be indistinguishable from BMI's by an energy-distance permutation test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from mmmi_dsl import load, loads

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "bmi"
TASKS = {t["id"]: t for t in json.loads((FIXTURE / "tasks.json").read_text())["tasks"]}
SPECS = sorted((ROOT / "specs" / "bmi").glob("*.mmi"))
#: Tasks without a spec yet, and what they need (docs/bmi.md): the Student-t and additive-noise statements.
NEEDS = {t: "student" for t in TASKS if "student" in t} | {t: "additive" for t in TASKS if "additive" in t}

PERMUTATIONS = 99
#: Reject at p <= 1e-3 per task: over the 27 specs a family-wise false-rejection rate below 0.03.
ALPHA = 1e-3
#: One spec per family runs by default; all of them with --runslow (about 1.5 s each).
FAST = {"1v1-normal-0.75", "1v1-bimodal-0.75", "swissroll_x-normal_cdf-1v1-normal-0.75",
        "multinormal-dense-3-3-0.5", "spiral-multinormal-sparse-3-3-2-2.0", "half_cube-multinormal-sparse-3-3-2-2.0"}


def _marked(stems):
    return [pytest.param(s, marks=() if s in FAST else pytest.mark.slow, id=s) for s in stems]


def test_every_task_has_a_spec_or_a_recorded_need():
    assert len(TASKS) == 40
    have = {p.stem for p in SPECS}
    assert have <= set(TASKS), have - set(TASKS)
    assert set(TASKS) - have == set(NEEDS), sorted(set(TASKS) - have - set(NEEDS))
    assert len(have) == 27


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_first_report_is_bmis_mi(spec):
    task = TASKS[spec.stem]
    first = load(spec).results()[0]
    assert abs(first.nats - task["mi"]) < 1e-9, (first.nats, task["mi"])


def energy_test(a: np.ndarray, b: np.ndarray, permutations: int = PERMUTATIONS,
                seed: int = 0) -> tuple[float, float]:
    """The energy distance of samples a (n, d), b (m, d) and its p-value under a permutation null.

    ``E = 2 mean|a - b| - mean|a - a'| - mean|b - b'|`` (Szekely and Rizzo, Euclidean) is
    ``-w' D w`` with D the pooled distances and ``w = s / n - (1 - s) / m`` for s the indicator of
    the first sample: every relabelling is one column of one matrix product. The p-value is the
    tail of a gamma fitted to the permuted statistics' mean and variance (the null law of E is a
    weighted sum of chi-squares, which a gamma matches closely), so 99 relabellings resolve
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


@pytest.mark.parametrize("task_id", _marked(p.stem for p in SPECS))
def test_samples_match_bmis(task_id):
    """mmmic's draws (seed 1) against all of BMI's recorded draws of the task (2,000; 1,000 at 50 x 50)."""
    task = TASKS[task_id]
    ours = mmmic_pairs(load(ROOT / "specs" / "bmi" / f"{task_id}.mmi"), task["n"], seed=1)
    assert ours.shape[1] == task["dim_x"] + task["dim_y"]
    e, p = energy_test(ours, bmi_pairs(task_id, task["n"]))
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
}


@pytest.mark.parametrize("task_id", _marked(sorted(WRONG)))
def test_a_wrongly_parametrised_spec_is_rejected(task_id):
    old, new = WRONG[task_id]
    text = (ROOT / "specs" / "bmi" / f"{task_id}.mmi").read_text()
    assert old in text
    wrong, n = loads(text.replace(old, new)), TASKS[task_id]["n"]
    e, p = energy_test(mmmic_pairs(wrong, n, seed=1), bmi_pairs(task_id, n))
    assert p <= ALPHA, (task_id, e, p)
