"""The adapters for other packages' estimators, each run when its package is present (skipped otherwise):
latentmi in this Python; BMI in the Python named by $MMMIC_BMI_PYTHON (BMI lives in its own venv)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest


def _pair(n: int, rho: float, seed: int = 0):
    """x, y (n, 2) with two independent coordinate pairs of correlation rho: MI = -log(1 - rho^2) nats."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2))
    y = rho * x + np.sqrt(1 - rho ** 2) * rng.standard_normal((n, 2))
    return x, y, -np.log(1 - rho ** 2)


@pytest.mark.slow  # LMI trains an autoencoder: minutes on a shared CPU
def test_latentmi_adapter():
    pytest.importorskip("latentmi")
    from mmmi_dsl.adapters.latentmi import estimate

    x, y, exact = _pair(2000, 0.8)  # 1.02 nats
    got = estimate(x, y, seed=0, epochs=30, N_dims=2)
    # LMI through a 2-d embedding on 1,000 validation points, KSG on it: within 0.3 nats of the truth
    assert abs(got - exact) < 0.3, (got, exact)


def _bmi_python() -> str:
    python = os.environ.get("MMMIC_BMI_PYTHON") or sys.executable
    try:
        ok = subprocess.run([python, "-c", "import bmi"], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        pytest.skip("BMI (benchmark-mi) is not importable; set MMMIC_BMI_PYTHON to the Python that has it")
    return python


def test_bmi_adapter_and_script(mmmic, tmp_path):
    python = _bmi_python()
    from mmmi_dsl.adapters.benchmark_mi import SCRIPT, estimate

    x, y, exact = _pair(2000, 0.8)
    got = estimate(x, y, estimator="ksg", python=python, neighborhoods=(5,))
    assert abs(got - exact) < 0.1, (got, exact)  # BMI's KSG in 2 + 2 dims at n = 2000
    out = tmp_path / "res"
    r = mmmic("suite", "run", "--estimator-cmd", f"{python} {SCRIPT} cca {{x}} {{y}}", "--tasks",
              "multinormal-dense-2-*", "-n", 2000, "--seeds", "0", "-o", out, "--cache", tmp_path / "cache",
              "--no-progress", "--quick-verify")
    assert r.code == 0, r.stderr
    (row,) = json.loads((out / "results.json").read_text())["rows"]
    assert abs(row["error"]) < 0.1, row  # CCA is exact for Gaussian data up to sampling error
