"""A covariance given directly (``latent a, b ~ gaussian(cov = S)``): exact MI against −½ log det
formulas computed from S itself, structural zeros and infinities from S's structure, and a
hypothesis property over random PSD matrices (full rank and singular)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmmi_dsl import loads
from mmmi_dsl.errors import SpecError

from ..dense_reference import dense_mi


def logdet(s: np.ndarray) -> float:
    sign, value = np.linalg.slogdet(s)
    assert sign > 0
    return float(value)


def gaussian_mi(s: np.ndarray, a: list[int], b: list[int], c: list[int] = ()) -> float:
    """I(A; B | C) of N(0, S) from S's blocks: ½ (log|S_AC| + log|S_BC| − log|S_ABC| − log|S_C|)."""
    def ld(idx):
        idx = list(idx)
        return logdet(s[np.ix_(idx, idx)]) if idx else 0.0
    c = list(c)
    return 0.5 * (ld(a + c) + ld(b + c) - ld(a + b + c) - ld(c))


def rows(s: np.ndarray) -> str:
    return "[" + ", ".join("[" + ", ".join(repr(float(x)) for x in r) + "]" for r in s) + "]"


S4 = np.array([[1.0, 0.5, 0.2, 0.0], [0.5, 1.0, 0.0, 0.1], [0.2, 0.0, 1.0, 0.3], [0.0, 0.1, 0.3, 2.0]])


def test_block_mi_equals_the_log_det_formula():
    spec = loads(f"latent a, b : vector[2] ~ gaussian(cov = {rows(S4)})\n")
    # 1e-12: both are log-determinants of 4 x 4 matrices with entries near 1 (a few ulps each)
    assert spec.mi("I(a; b)") == pytest.approx(gaussian_mi(S4, [0, 1], [2, 3]), rel=1e-12, abs=1e-14)


def test_cross_covariance_between_two_blocks_and_conditioning():
    """Two vector latents and a scalar, one statement: the off-diagonal blocks are their cross-covariances."""
    s = np.array([[2.0, 0.3, 0.5, 0.1, 0.0],
                  [0.3, 1.0, 0.2, 0.4, 0.3],
                  [0.5, 0.2, 1.5, 0.0, 0.2],
                  [0.1, 0.4, 0.0, 1.0, 0.1],
                  [0.0, 0.3, 0.2, 0.1, 1.0]])
    spec = loads(f"latent x, y : vector[2], w ~ gaussian(cov = {rows(s)})\n")
    assert spec.variables["x"].size == 2 and spec.variables["w"].size == 1
    cases = {"I(x; y)": ([0, 1], [2, 3], []), "I(x; w)": ([0, 1], [4], []),
             "I(x; y | w)": ([0, 1], [2, 3], [4]), "I(x, w; y)": ([0, 1, 4], [2, 3], [])}
    for q, (a, b, c) in cases.items():
        assert spec.mi(q) == pytest.approx(gaussian_mi(s, a, b, c), rel=1e-11, abs=1e-14), q


def test_mixed_with_structural_equations_against_the_dense_reference():
    """Latents defined by equations read the block's latents; the IR's dense A Aᵀ agrees with the engine,
    and both with the formula on the covariance of (a, c) worked out by hand."""
    spec = loads(f"""
latent a, b : vector[2] ~ gaussian(cov = {rows(S4)})
proto n : vector[2]
latent c = 2 * b + n
flow x = identity(a)
flow y = identity(c)
""")
    joint = S4.copy()
    joint[2:, :2] *= 2
    joint[:2, 2:] *= 2
    joint[2:, 2:] = 4 * S4[2:, 2:] + np.eye(2)
    want = gaussian_mi(joint, [0, 1], [2, 3])
    assert spec.mi("I(x; y)") == pytest.approx(want, rel=1e-11)
    assert dense_mi(spec, ["a"], ["c"]) == pytest.approx(want, rel=1e-9)


def test_structure_decides_zeros_and_infinities():
    """Block-diagonal S: independent blocks by structure (exactly 0); a singular S: exactly infinite."""
    spec = loads("latent a : vector[2], b ~ gaussian(cov = blockdiag(equicorrelation(2, 0.9), [[3]]))\n")
    assert spec.mi("I(a; b)") == 0.0
    assert len([p for p in spec.protos if p.startswith("gaussian(")]) == 2  # one proto per component
    spec = loads("latent a, b, c ~ gaussian(cov = equicorrelation(3, -0.5))\n")  # rank 2 exactly: a + b + c = 0
    assert spec.mi("I(a, b; c)") == math.inf
    assert spec.protos["gaussian(a, b, c)"].size == 2
    assert spec.mi("I(a; b)") == pytest.approx(-0.5 * math.log(1 - 0.25), rel=1e-12)
    spec = loads("latent a, b ~ gaussian(cov = [[0.1, 0.3], [0.3, 0.9]])\n")  # singular in decimals, not in binary
    assert spec.mi("I(a; b)") == math.inf
    spec = loads("latent a, b ~ gaussian(cov = diagonal([1, 0]))\nproto n : scalar\nlatent c = b + n\n")
    assert spec.mi("I(a; c)") == 0.0 and spec.mi("I(b; c)") == 0.0


def test_equicorrelation_closed_form():
    """I(x1; x2..xk) for equicorrelation ρ: ½ log(det S_{2..k} / det S) with det = (1-ρ)^{k-1}(1+(k-1)ρ)."""
    k, rho = 5, 0.3

    def det(m):
        return (1 - rho) ** (m - 1) * (1 + (m - 1) * rho)
    spec = loads(f"latent x[1..{k}] ~ gaussian(cov = equicorrelation({k}, {rho}))\n")
    rest = ", ".join(f"x[{j}]" for j in range(2, k + 1))
    assert spec.mi(f"I(x[1]; {rest})") == pytest.approx(0.5 * math.log(det(k - 1) / det(k)), rel=1e-12)


def test_npy_covariance(tmp_path):
    s = np.array([[2.0, 0.3, 0.1], [0.3, 1.0, -0.2], [0.1, -0.2, 0.5]])
    np.save(tmp_path / "S.npy", s)
    spec = loads('matrix S = npy("S.npy")\nlatent a, b ~ gaussian(cov = S)\nlatent z ~ gaussian(cov = npy("S.npy"))\n'
                 .replace("latent a, b", "latent a : vector[2], b"), base_dir=tmp_path)
    assert spec.mi("I(a; b)") == pytest.approx(gaussian_mi(s, [0, 1], [2]), rel=1e-12)
    assert spec.variables["z"].size == 3


def test_not_psd_names_the_smallest_eigenvalue():
    with pytest.raises(SpecError) as err:
        loads("latent a, b, c ~ gaussian(cov = [[1, 0.9, -0.9], [0.9, 1, 0.9], [-0.9, 0.9, 1]])\n")
    (d,) = err.value.diagnostics
    assert d.code == "E0207" and "smallest eigenvalue is -0.8" in d.message and d.span.column == 33
    with pytest.raises(SpecError, match="rho >= -1/"):
        loads("latent x[1..4] ~ gaussian(cov = equicorrelation(4, -0.5))\n")


@pytest.mark.parametrize("text, code, words", [
    ("latent a, b ~ gaussian(cov = [[1, 0.5], [0.4, 1]])", "E0207", "not symmetric"),
    ("latent a, b ~ gaussian(cov = [[1, 0.5, 0], [0.5, 1, 0]])", "E0203", "square"),
    ("latent a, b ~ gaussian(cov = equicorrelation(3, 0.5))", "E0203", "have 2 values"),
    ("param r = 0.5\nlatent a, b ~ gaussian(cov = [[1, r], [r, 1]])", "E0202", "parameter `r`"),
    ("latent a, b ~ normal(cov = [[1, 0.5], [0.5, 1]])", "E0209", "not a distribution"),
    ("latent a, b ~ gaussian(cov = [[1, 0.5], [0.5]])", "E0203", "1 entry"),
    ("latent a ~ gaussian(cov = [[1]])\nlatent a = a", "E0102", "defined twice"),
    ("matrix M = [[1, 0], [0, 1]]\nlatent a, b ~ gaussian(cov = blockdiag(M))", "E0209", "two or more"),
])
def test_bad_blocks(text, code, words):
    with pytest.raises(SpecError) as err:
        loads(text + "\n")
    assert any(d.code == code and words in d.message for d in err.value.diagnostics), err.value.diagnostics


def test_go_style_types_and_families():
    spec = loads("latent a, b : vector[2], c ~ gaussian(cov = identity(5))\nlatent n[1..2] ~ gaussian(cov = "
                 "[[1, 0.2], [0.2, 1]])\n")
    assert [spec.variables[v].size for v in ("a", "b", "c", "n[1]", "n[2]")] == [2, 2, 1, 1, 1]
    assert spec.mi("I(a; b, c)") == 0.0


def test_matrix_declared_below_and_used_in_a_product():
    spec = loads("latent a, b ~ gaussian(cov = S)\nmatrix S = blockdiag(T, [[2]])\nmatrix T = [[1]]\n"
                 "matrix M = [[1, 2], [3, 4]]\nproto n : vector[2]\nlatent z = M @ n\n")
    assert spec.matrices["M"].kind == "values" and spec.mi("I(a; b)") == 0.0


@st.composite
def psd_matrices(draw):
    """S = B Bᵀ with B (n, r) of small decimal entries: rank r <= n, exactly singular when r < n."""
    n = draw(st.integers(2, 6))
    r = draw(st.integers(1, n))
    entries = st.integers(-9, 9).map(lambda k: k / 4)
    b = np.array([[draw(entries) for _ in range(r)] for _ in range(n)])
    if not np.any(b):
        b[0, 0] = 1.0
    return b @ b.T, int(np.linalg.matrix_rank(b))  # quarters: B Bᵀ is exact in float64


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=psd_matrices(), cut=st.integers(1, 5))
def test_random_psd_blocks(data, cut):
    s, rank = data
    n = len(s)
    k = min(cut, n - 1)
    spec = loads(f"latent a : vector[{k}], b : vector[{n - k}] ~ gaussian(cov = {rows(s)})\n")
    assert sum(p.size for p in spec.protos.values()) == rank  # the exact rank of B Bᵀ
    a, b = list(range(k)), list(range(k, n))
    ra, rb = (np.linalg.matrix_rank(s[np.ix_(idx, idx)]) for idx in (a, b))
    got = spec.mi("I(a; b)")
    if ra + rb > rank:  # a deterministic relation between a and b: structurally infinite
        assert got == math.inf
    elif ra == k and rb == n - k:
        assert got == pytest.approx(gaussian_mi(s, a, b), rel=1e-8, abs=1e-9)
    else:  # rank-deficient blocks without a shared null direction: the dense reference on supports
        assert got == pytest.approx(dense_mi(spec, ["a"], ["b"]), rel=1e-7, abs=1e-9)


def test_float_path_beyond_the_exact_limit(monkeypatch):
    """Past EXACT_LIMIT coordinates: float64 eigenvalues, rank by n·eps·max|λ| (here lowered to 2)."""
    from mmmi_dsl.lang.lower import factor

    monkeypatch.setattr(factor, "EXACT_LIMIT", 2)
    rng = np.random.default_rng(4)
    b = rng.standard_normal((6, 4))
    s = b @ b.T  # rank 4 of 6, in float64 roundoff
    s = (s + s.T) / 2
    spec = loads(f"latent a : vector[4], c : vector[2] ~ gaussian(cov = {rows(s)})\n")
    assert spec.protos["gaussian(a, c)"].size == 4
    assert spec.mi("I(a; c)") == math.inf  # c is a linear function of a
    full = s + np.eye(6)
    spec = loads(f"latent a : vector[4], c : vector[2] ~ gaussian(cov = {rows(full)})\n")
    assert spec.mi("I(a; c)") == pytest.approx(gaussian_mi(full, list(range(4)), [4, 5]), rel=1e-10)
    with pytest.raises(SpecError, match="smallest eigenvalue is -1"):
        loads(f"latent a : vector[4], c : vector[2] ~ gaussian(cov = {rows(s - np.eye(6))})\n")


def test_a_huge_exact_power_in_a_covariance_is_refused_quickly(mmmic, tmp_path):
    """((1e300^64)^64)^64 as exact fractions would grow to ~10^(1.2e9) digits (a hang); beyond
    MAX_EXACT_BITS the entry is evaluated in float64 and overflows with E0212 at its place."""
    import time

    spec = tmp_path / "huge.mmi"
    spec.write_text("model b\nlatent a, b ~ gaussian(cov = [[((1e300^64)^64)^64, 0], [0, 1]])\n"
                    "flow x = identity(a)\nflow y = identity(b)\nreport I(x; y)\n")
    t = time.process_time()
    r = mmmic("check", spec)
    assert r.code == 1 and "E0212" in r.stderr and "huge.mmi:2:" in r.stderr and "Traceback" not in r.stderr
    assert time.process_time() - t < 10
