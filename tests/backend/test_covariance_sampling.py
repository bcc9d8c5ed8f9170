"""Samples of a covariance given directly (``latent ... ~ gaussian(cov = S)``) have covariance S, and a
rank-one term ``c * dot(U, z) * T`` samples as c T Uᵀ z."""

from __future__ import annotations

import numpy as np

from mmmi_dsl import loads


def _entries(s: np.ndarray) -> str:
    return "[" + ", ".join("[" + ", ".join(repr(float(x)) for x in r) + "]" for r in s) + "]"


def _within_sampling_error(sample: np.ndarray, want: np.ndarray, n: int) -> None:
    """|Ŝ_ij - S_ij| <= 6 standard errors, sqrt((S_ii S_jj + S_ij²) / n) for Gaussian data (plus 1e-12)."""
    d = np.sqrt(np.diag(want))
    se = np.sqrt((np.outer(d, d) ** 2 + want ** 2) / n)
    assert np.all(np.abs(sample - want) <= 6 * se + 1e-12), (sample, want, se)


def test_sample_covariance_is_s():
    s = np.array([[1.0, 0.5, 0.2, 0.1], [0.5, 2.0, -0.3, 0.4], [0.2, -0.3, 1.5, 0.0], [0.1, 0.4, 0.0, 0.6]])
    spec = loads(f"latent a : vector[2], b, c ~ gaussian(cov = {_entries(s)})\n"
                 "flow x = identity(a)\nflow y = identity(b)\nflow w = identity(c)\n")
    n = 100_000
    out = spec.sampler(dtype="float64", seed=3, standardize="none").sample_range(0, n)
    z = np.column_stack([out["x"], out["y"], out["w"]])
    _within_sampling_error(np.cov(z, rowvar=False), s, n)


def test_singular_covariance_samples_on_its_support():
    """equicorrelation(3, -1/2) has rank 2: every sample has a + b + c = 0 (to float64 roundoff)."""
    spec = loads("latent a, b, c ~ gaussian(cov = equicorrelation(3, -0.5))\n"
                 "flow x = identity(a)\nflow y = identity(b)\nflow w = identity(c)\n")
    n = 50_000
    out = spec.sampler(dtype="float64", seed=1, standardize="none").sample_range(0, n)
    z = np.column_stack([out["x"], out["y"], out["w"]])
    assert np.max(np.abs(z.sum(axis=1))) < 1e-12 * max(1.0, np.max(np.abs(z)))
    want = np.full((3, 3), -0.5) + 1.5 * np.eye(3)
    _within_sampling_error(np.cov(z, rowvar=False), want, n)


def test_rank_one_term_samples():
    """z2 = 0.5 * dot(T, z1) * T + n2: Cov(z2) = 0.25 T Tᵀ (Tᵀ T) + I for z1 ~ N(0, I)."""
    spec = loads("dim d = 3\ntemplate T = random(d, 2)\nproto n1 : vector[d]\nproto n2 : vector[d]\n"
                 "latent z1 = n1\nlatent z2 = 0.5 * dot(T, z1) * T + n2\nflow y = identity(z2)\n")
    t = np.random.default_rng(2).standard_normal(3)  # random(d, 2)'s vector: PCG64 from seed 2
    n = 100_000
    out = spec.sampler(dtype="float64", seed=5, standardize="none").sample_range(0, n)
    a = 0.5 * np.outer(t, t)
    _within_sampling_error(np.cov(out["y"], rowvar=False), a @ a.T + np.eye(3), n)
