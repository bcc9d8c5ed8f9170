"""Two expressiveness gaps closed: a rank-one term ``c * dot(U, z) * T`` (a template times a scalar
linear function of a latent) and empty ranges (``for j in 3..2``, ``sum(j in 3..2, ...)``: nothing)."""

from __future__ import annotations

import numpy as np
import pytest

from mmmi_dsl import loads
from mmmi_dsl.builtins.realize import template_vector
from mmmi_dsl.errors import SpecError

from ..dense_reference import dense_mi

RANK_ONE = """
dim d = 4
template band = normalize(random(d, 1))
template other = random(d, 2)
proto n1 : vector[d]
proto n2 : vector[d]
latent z1 = n1
latent z2 = 0.5 * dot(band, z1) * band - 2 * dot(other, z1) * band + n2
flow x = identity(z1)
flow y = identity(z2)
"""


def test_rank_one_mi_against_dense_numerics():
    """z2 = A z1 + n2 with A = 0.5 T Tᵀ - 2 T Wᵀ: I(z1; z2) = ½ log det(A Aᵀ + I)."""
    spec = loads(RANK_ONE)
    t, w = (template_vector(spec.templates[k], spec) for k in ("band", "other"))
    a = 0.5 * np.outer(t, t) - 2 * np.outer(t, w)
    want = 0.5 * np.linalg.slogdet(a @ a.T + np.eye(4))[1]
    # 1e-12: log-determinants of 4 x 4 matrices with entries of size about 10
    assert spec.mi("I(x; y)") == pytest.approx(want, rel=1e-12)
    assert dense_mi(spec, ["z1"], ["z2"]) == pytest.approx(want, rel=1e-10)


def test_rank_one_goes_through_one_hidden_scalar_latent_per_product():
    spec = loads(RANK_ONE + "latent z3 = dot(band, z1) * ones(d) + n2\n")
    hidden = {"dot(band, z1)", "dot(other, z1)"}
    assert hidden <= set(spec.variables) and all(spec.variables[h].size == 1 for h in hidden)
    assert [t.sources for t in spec.variables["z3"].terms][0] == ("dot(band, z1)",)  # reused, not a copy


def test_rank_one_is_a_structural_infinity_when_it_should_be():
    """z2 = dot(T, z1) * T alone is a function of one direction of z1: I(z1; z2) = inf, I(n; z2) = 0."""
    spec = loads("dim d = 3\nproto n : vector[d]\nproto m : vector[d]\nlatent z1 = n\n"
                 "latent z2 = dot(ones(d), z1) * ones(d)\n")
    assert spec.mi("I(z1; z2)") == float("inf")
    assert spec.mi("I(m; z2)") == 0.0


def test_one_row_matrix_times_template():
    spec = loads("dim d = 3\nmatrix M = [[1, -1, 2]]\nproto n : vector[d]\nproto m : vector[d]\n"
                 "latent z = 0.5 * (M @ n) * ones(d) + m\n")
    a = 0.5 * np.outer(np.ones(3), [1, -1, 2])
    assert spec.mi("I(n; z)") == pytest.approx(0.5 * np.linalg.slogdet(a @ a.T + np.eye(3))[1], rel=1e-12)


@pytest.mark.parametrize("eq, words", [
    ("u * ones(d) * ones(d)", "two templates"),
    ("(M2 @ n) * ones(d)", "which has 2 rows"),
])
def test_still_not_linear(eq, words):
    with pytest.raises(SpecError) as err:
        loads(f"dim d = 3\nmatrix M2 = uniform(2, 3, seed = 1)\nproto u : scalar\nproto n : vector[d]\n"
              f"latent z = {eq}\n")
    assert any(d.code == "E0201" and words in d.message for d in err.value.diagnostics), err.value.diagnostics


def test_empty_ranges_are_nothing():
    spec = loads("""
dim d = 2
proto n[1..3] : vector[d]
for j in 3..2: latent never[j] = n[j]
for i in 1..2 {
  latent z[i] = n[i] + sum(j in i + 1..2, 0.5 * n[j])
}
latent w = sum(j in 1..0, n[j]) + n[3] - sum(j in 5..1, n[j])
""")
    assert "never[3]" not in spec.variables and "never" not in spec.families
    assert [len(spec.variables[f"z[{i}]"].terms) for i in (1, 2)] == [2, 1]  # z[2]: j in 3..2 is empty
    assert [t.sources for t in spec.variables["w"].terms] == [("n[3]",)]


def test_an_equation_of_empty_sums_is_refused():
    with pytest.raises(SpecError, match="every sum in it is empty"):
        loads("proto n[1..2] : scalar\nlatent z = sum(j in 2..1, n[j])\n")


def test_an_empty_family_is_still_an_error():
    with pytest.raises(SpecError, match="empty range 3..2"):
        loads("proto n[3..2] : scalar\n")
