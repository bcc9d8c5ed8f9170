"""generate, verify and estimate end to end on one BMI spec per new family.

The families issue 17 added: Student-t groups (plain and through asinh), uniform noise, a
covariance block, and BMI's bijections (bimodal, wiggly, BMI's half-cube and spiral, the
injective swiss roll). For each: ``mmmic generate`` writes a dataset, ``mmmic verify`` accepts it
(checking the Gaussian ones against the exact MI, saying why it skips the Student and uniform
ones), ``mmmic estimate`` reports the spec's exact MI beside KSG, and the files hold exactly the
spec's sampler draws (``Spec.sampler(seed=0)``), whose law tests/bmi/test_bmi_specs.py compares
with BMI's own samples: together the check of the files for the families verify skips.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import mmmi_dsl as mm
from tests.bmi.test_bmi_specs import ROOT, TASKS, in_float32

#: task -> whether verify checks it (Gaussian statistics after inverting the flows) or skips it.
FAMILIES = {
    "student-identity-2-2-1": "skip",        # Student-t, nu = 1 (Cauchy)
    "asinh-student-identity-3-3-2": "skip",  # Student-t through asinh
    "1v1-additive-0.1": "skip",              # uniform noise
    "1v1-bimodal-0.75": "ok",
    "wiggly-1v1-normal-0.75": "ok",
    "half_cube-1v1-normal-0.75": "ok",       # BMI's x sqrt|x|
    "spiral-multinormal-sparse-3-3-2-2.0": "ok",
    "swissroll_x-normal_cdf-1v1-normal-0.75": "ok",  # R -> R^2
}
FAST = {"student-identity-2-2-1", "1v1-additive-0.1", "swissroll_x-normal_cdf-1v1-normal-0.75"}

#: A covariance block (no BMI task needs one: BMI's multinormals are written as equations):
#: S = [[A, C], [C, A]], A = [[1, 0.5], [0.5, 1]], C = 0.4 I, then BMI's half-cube on y.
COVARIANCE = """\
model cov_block
matrix S = [[1, 0.5, 0.4, 0], [0.5, 1, 0, 0.4], [0.4, 0, 1, 0.5], [0, 0.4, 0.5, 1]]
latent zx : vector[2], zy : vector[2] ~ gaussian(cov = S)
flow x = identity(zx)
flow y = half_cube(zy, convention = "bmi")
report I(x; y)
"""


def _run(mmmic, spec, tmp_path):
    """generate (2,000 samples, seed 0) -> verify -> estimate (KSG): (verify's stdout, estimate's JSON).

    Also checks that the files are the sampler's draws at seed 0 (float32, as written), to a
    relative 1e-6 (Student scales and dense maps go through BLAS)."""
    out = tmp_path / "data"
    code, _, err = mmmic("generate", str(spec), "-n", "2000", "-o", str(out))
    assert code == 0, err
    draws = mm.load(spec).sampler(seed=0).sample(2000)
    for v in ("x", "y"):
        np.testing.assert_allclose(mm.load_arrays(out, v), draws[v].numpy(), rtol=1e-6, atol=1e-6)
    code, verified, err = mmmic("verify", str(out))
    assert code == 0, verified + err
    code, estimated, err = mmmic("estimate", str(out), "-q", "I(x; y)", "-e", "ksg", "--json")
    assert code == 0, err
    return verified, json.loads(estimated)


@pytest.mark.parametrize("task_id", [pytest.param(t, marks=() if t in FAST else pytest.mark.slow, id=t)
                                     for t in FAMILIES])
def test_generate_verify_estimate_on_a_bmi_spec(mmmic, tmp_path, task_id):
    task = TASKS[task_id]
    verified, row = _run(mmmic, ROOT / "specs" / "bmi" / f"{task_id}.mmi", tmp_path)
    kind = FAMILIES[task_id]
    assert f"{kind}: I(x; y)" in verified, verified
    if kind == "skip":
        assert "Student-t or built from uniform noise" in verified
    tol = float(np.spacing(np.float32(task["mi"]))) if in_float32(task["mi"]) else 1e-9
    assert abs(row["exact_nats"] - task["mi"]) < tol, (row["exact_nats"], task["mi"])
    assert row["n"] == 2000 and np.isfinite(row["estimates"][0]["nats"])


def test_generate_verify_estimate_on_a_covariance_block(mmmic, tmp_path):
    spec = tmp_path / "cov.mmi"
    spec.write_text(COVARIANCE)
    a = np.array([[1, 0.5], [0.5, 1]])
    s = np.block([[a, 0.4 * np.eye(2)], [0.4 * np.eye(2), a]])
    exact = 0.5 * (2 * np.linalg.slogdet(a)[1] - np.linalg.slogdet(s)[1])  # 0.547709; half-cube keeps it
    verified, row = _run(mmmic, spec, tmp_path)
    assert "ok: I(x; y): x inverted through identity, y inverted through half_cube" in verified, verified
    assert row["exact_nats"] == pytest.approx(exact, abs=1e-12)
    # KSG at 2,000 samples: within 5 standard errors of the exact value (measured: 0.531 +- 0.019)
    est = row["estimates"][0]
    assert abs(est["nats"] - exact) < 5 * est["stderr"], est
