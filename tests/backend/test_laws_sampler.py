"""The sampler draws Student-t groups and uniform protos exactly: laws of the draws, shared scale, determinism.

Tolerances: fixed seeds make every statistic below deterministic; each bound is several
standard errors of its statistic at this n, so a correct sampler passes on any seed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import mmmi_dsl

pytest.importorskip("torch")

SPEC = """
param nu = 10
proto g : scalar
proto h : scalar
proto e : vector[2]
latent a = 2 * g
latent b = h
latent c : vector[2] = e
latent twice = 3 * a
student(nu): a, b, c
flow G = identity(g)
flow H = identity(h)
flow A = asinh(a)
flow B = identity(b)
flow T = identity(twice)
proto x0 : uniform[0, 1]
proto n : uniform[-0.25, 0.25]
latent y = x0 + n
flow X = identity(x0)
flow Y = identity(y)
"""

N = 60_000


@pytest.fixture(scope="module")
def draws():
    s = mmmi_dsl.loads(SPEC)
    sampler = s.sampler(standardize="none", save_latents=True, dtype="float64", seed=3)
    return sampler, sampler.sample_range(0, N)


def test_student_members_share_one_chi_square_scale(draws):
    _, out = draws
    scale_a = out["a"] / (2 * out["G"][:, 0])  # a = 2 g / sqrt(W / nu)
    scale_b = out["b"] / out["H"][:, 0]
    assert np.allclose(scale_a, scale_b, rtol=1e-9)
    assert np.allclose(out["twice"], 3 * out["a"], rtol=1e-12)  # a variable computed from a member: same scale
    w = 10 / scale_a ** 2  # W ~ chi2(nu)
    assert stats.kstest(w, stats.chi2(10).cdf).pvalue > 1e-3


def test_student_variance_is_nu_over_nu_minus_2_times_dispersion(draws):
    """Var(a) = 4 * 10 / 8 = 5; sample variance SE = sqrt((2 + kurtosis 6/(nu-4)) / n) * 5 ~ 0.035."""
    _, out = draws
    assert np.var(out["a"]) == pytest.approx(5.0, abs=5 * 5 * math.sqrt(3 / N))
    c = out["c"]
    assert np.cov(c.T) == pytest.approx(np.eye(2) * 10 / 8, abs=5 * 1.25 * math.sqrt(3 / N))
    assert stats.kstest(out["b"], stats.t(10).cdf).pvalue > 1e-3  # a member alone is Student-t(nu)


def test_uniform_protos_are_uniform(draws):
    _, out = draws
    x, y = out["X"][:, 0], out["Y"][:, 0]
    assert 0 <= x.min() and x.max() <= 1
    assert stats.kstest(x, stats.uniform(0, 1).cdf).pvalue > 1e-3
    noise = y - x
    assert -0.25 <= noise.min() and noise.max() <= 0.25
    assert stats.kstest(noise, stats.uniform(-0.25, 0.5).cdf).pvalue > 1e-3
    assert abs(np.corrcoef(x, noise)[0, 1]) < 5 / math.sqrt(N)  # independent draws


def test_student_and_uniform_draws_are_deterministic_per_sample(draws):
    sampler, out = draws
    again = mmmi_dsl.loads(SPEC).sampler(standardize="none", save_latents=True, dtype="float64", seed=3)
    parts = [again.sample_range(0, 1000), again.sample_range(1000, 2500)]
    for k in ("A", "B", "T", "X", "Y", "c"):
        assert np.array_equal(np.concatenate([p[k] for p in parts]), out[k][:2500]), k
    other = mmmi_dsl.loads(SPEC).sampler(standardize="none", dtype="float64", seed=4).sample_range(0, 100)
    assert not np.array_equal(other["B"], out["B"][:100])


def test_gaussian_parts_of_a_law_model_draw_as_before():
    """Adding a Student group or a uniform proto does not move the Gaussian variables' draws."""
    gauss = "proto g : scalar\nproto h : scalar\nlatent a = 2 * g\nflow G = identity(g)\nflow A = identity(a)\n"
    with_group = gauss + "latent b = h\nstudent(3): b\nflow B = identity(b)\n"
    kw = dict(standardize="none", dtype="float64", seed=1)
    plain = mmmi_dsl.loads(gauss + "flow H = identity(h)\n").sampler(**kw).sample_range(0, 500)
    heavy = mmmi_dsl.loads(with_group).sampler(**kw).sample_range(0, 500)
    assert np.array_equal(plain["A"], heavy["A"]) and np.array_equal(plain["G"], heavy["G"])


def test_pmi_column_averages_to_the_mi():
    s = mmmi_dsl.loads("""
proto u : scalar
proto g : vector[2]
proto h : scalar
latent a : vector[2] = 0.8 * u * ones(2) + g
latent b = u + 0.5 * h
student(4): a, b
""")
    out = s.sampler(standardize="none", dtype="float64", pmi=[("a", "b")], seed=2).sample_range(0, 20_000)
    col = out["pmi:a;b"]
    assert abs(col.mean() - s.mi("I(a; b)")) < 5 * col.std() / math.sqrt(len(col))
