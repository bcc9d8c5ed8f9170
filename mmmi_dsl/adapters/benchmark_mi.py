"""BMI's estimators as a suite plug-in: ``--estimator mmmi_dsl.adapters.benchmark_mi:estimate``.

BMI (benchmark-mi) needs jax and pinned versions, so it usually lives in its own environment: this
adapter writes the arrays as .npy files and runs :mod:`~mmmi_dsl.adapters.bmi_estimator` with that
environment's Python (option ``python``, else ``$MMMIC_BMI_PYTHON``, else this Python), without a
shell. Options: ``estimator`` (``ksg`` by default; ``cca``, ``histogram``, ``kde``, ``mine``,
``infonce``, ``nwj``, ``dv``) and the estimator's own keywords, e.g. ``--option neighborhoods=5/10``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from mmmi_dsl.process import user_environment

SCRIPT = Path(__file__).with_name("bmi_estimator.py")


def python_for_bmi(python: str | None = None) -> str:
    return python or os.environ.get("MMMIC_BMI_PYTHON") or sys.executable


def estimate(x: np.ndarray, y: np.ndarray, estimator: str = "ksg", python: str | None = None, **options) -> float:
    """BMI's ``estimator`` on ``x`` (n, p), ``y`` (n, q), in nats (BMI's estimators return nats)."""
    with tempfile.TemporaryDirectory(prefix="mmmic-bmi-") as tmp:
        paths = [str(Path(tmp) / "x.npy"), str(Path(tmp) / "y.npy")]
        np.save(paths[0], np.asarray(x, np.float64))
        np.save(paths[1], np.asarray(y, np.float64))
        args = [python_for_bmi(python), str(SCRIPT), estimator, *paths,
                *(f"{k}={_text(v)}" for k, v in options.items())]
        proc = subprocess.run(args, capture_output=True, text=True, check=False, env=user_environment())
    if proc.returncode != 0:
        raise RuntimeError(f"BMI's {estimator} failed: " + " | ".join(proc.stderr.strip().splitlines()[-3:]))
    return float(proc.stdout.strip().splitlines()[-1])


def _text(v) -> str:
    if isinstance(v, (tuple, list)):
        return "/".join(map(str, v)) + "/"  # a list, even of one item
    return str(v).lower() if isinstance(v, bool) else str(v)
