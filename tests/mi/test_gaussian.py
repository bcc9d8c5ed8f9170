"""Tests for mmmi_dsl.mi.gaussian: structured log-determinants and MI against dense
linear algebra, closed forms, sampling checks and the label/pointwise MI."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from mmmi_dsl.mi.gaussian import (
    Block,
    GaussianSystem,
    TooLargeError,
    binary_label_information,
)

# --------------------------------------------------------------------------- helpers


def ref_A(system: GaussianSystem, names) -> np.ndarray:
    """Dense A_S built straight from the Block fields (independent of the module)."""
    K = len(system.scalar_protos)
    offs, c0 = {}, K
    for p, m in system.vector_protos.items():
        offs[p] = c0
        c0 += m
    rows = []
    for n in names:
        blk = system.blocks[n]
        R = np.zeros((blk.size, c0))
        R[:, :K] = blk.loadings
        for p, c in blk.identity.items():
            R[:, offs[p] : offs[p] + blk.size] += c * np.eye(blk.size)
        for p, D in blk.dense.items():
            R[:, offs[p] : offs[p] + D.shape[1]] += D
        rows.append(R)
    return np.concatenate(rows, axis=0) if rows else np.zeros((0, c0))


def ref_spectrum(system, names) -> np.ndarray:
    """Eigenvalues of Σ_SS = A Aᵀ: squared singular values of A for up to 48 rows
    (accurate small eigenvalues), else eigvalsh of A Aᵀ (multi-threaded OpenBLAS SVD
    of these identity-structured matrices is pathologically slow on a loaded machine)."""
    if not names:
        return np.zeros(0)
    A = ref_A(system, names)
    if A.shape[0] > 48:
        return np.clip(np.linalg.eigvalsh(A @ A.T), 0.0, None)
    sv = np.linalg.svd(A, compute_uv=False)
    return sv * sv


GAP = (1e-13, 1e-6)  # eigenvalues relative to λmax in this band are "ambiguous"


def ref_pdet(lam: np.ndarray, lam_max: float):
    """(log pdet, rank, ambiguous) with zero threshold 1e-9·λmax."""
    rel = lam / lam_max if lam_max > 0 else np.zeros_like(lam)
    ambiguous = bool(np.any((rel > GAP[0]) & (rel < GAP[1])))
    nz = rel > 1e-9
    return float(np.sum(np.log(lam[nz]))), int(np.count_nonzero(nz)), ambiguous


def union(*sets):
    return tuple(dict.fromkeys(n for s in sets for n in s))


def ref_mi(system, A, B, C=()):
    """Dense reference: (value or inf, sum of |log pdet| terms) or None if ambiguous.

    I(A; B | C) is the MI of the residuals of A and B after linear regression on C
    (the conditional covariance S = Σ_XX − Σ_XC Σ_CC⁺ Σ_CX), with the unconditional
    pseudo-determinant / rank rule on S; valid when C is degenerate or determines
    part of A or B.
    """
    ABC = union(A, B, C)
    lam_max = float(ref_spectrum(system, ABC).max(initial=0.0))
    X = ref_A(system, union(A, B))
    S = X @ X.T
    if C:
        Cm = ref_A(system, tuple(C))
        w, v = np.linalg.eigh(Cm @ Cm.T)
        rel = w / lam_max if lam_max > 0 else np.zeros_like(w)
        if np.any((rel > GAP[0]) & (rel < GAP[1])):
            return None
        keep = rel > 1e-9
        S = S - (X @ Cm.T) @ ((v[:, keep] / w[keep]) @ v[:, keep].T) @ (Cm @ X.T)
    na = ref_A(system, tuple(A)).shape[0]
    out = []
    for M in (S[:na, :na], S[na:, na:], S):
        lam = np.clip(np.linalg.eigvalsh(0.5 * (M + M.T)), 0.0, None)
        v, r, amb = ref_pdet(lam, lam_max)
        if amb:
            return None
        out.append((v, r))
    (va, ra), (vb, rb), (vab, rab) = out
    scale = abs(va) + abs(vb) + abs(vab)
    if ra == 0 or rb == 0:
        return 0.0, scale
    if rab < ra + rb:
        return math.inf, scale
    return 0.5 * (va + vb - vab), scale


def blk(name, size, identity=None, loadings=None, K=1, dense=None):
    L = np.zeros((size, K)) if loadings is None else np.asarray(loadings, float).reshape(size, K)
    return Block(name, size, identity or {}, L, dense or {})


# ----------------------------------------------------------------- random systems


def _coef(rng):
    return float(rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 2.0))


@st.composite
def systems(draw, min_blocks=1, private_noise=False):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    K = draw(st.sampled_from([0, 1, 1, 2, 2, 3, 3]))
    sizes = draw(st.lists(st.integers(1, 12), min_size=1, max_size=2, unique=True))
    n_extra = draw(st.integers(0, 4 - len(sizes)))
    proto_sizes = [*sizes, *(draw(st.sampled_from([*sizes, 1])) for _ in range(n_extra))]
    vector = {f"p{j}": m for j, m in enumerate(proto_sizes)}
    blocks: dict[str, Block] = {}
    for b in range(draw(st.integers(min_blocks, 4))):
        size = draw(st.sampled_from([*sizes, 1]))
        same = [p for p, m in vector.items() if m == size]
        earlier = [x for x in blocks.values() if x.size == size]
        id_kind = draw(st.sampled_from(["none", "random", "random", "zeros", "copy"]))
        identity: dict[str, float] = {}
        if id_kind == "copy" and earlier:
            src = earlier[draw(st.integers(0, len(earlier) - 1))]
            f = _coef(rng)
            identity = {p: f * c for p, c in src.identity.items()}
        elif id_kind in ("random", "zeros", "copy"):
            for p in same:
                if draw(st.integers(0, 2)) > 0:
                    identity[p] = 0.0 if id_kind == "zeros" and draw(st.booleans()) else _coef(rng)
        ld_kind = draw(st.sampled_from(["zero", "random", "random", "zerocol", "rank1", "ones", "copy"]))
        if ld_kind == "zero" or K == 0:
            L = np.zeros((size, K))
        elif ld_kind == "random":
            L = rng.standard_normal((size, K))
        elif ld_kind == "zerocol":
            L = rng.standard_normal((size, K))
            L[:, rng.random(K) < 0.5] = 0.0
        elif ld_kind == "rank1":
            L = np.outer(rng.standard_normal(size), rng.standard_normal(K))
        elif ld_kind == "ones":
            L = np.outer(np.ones(size), rng.standard_normal(K))
        else:
            L = _coef(rng) * earlier[0].loadings if earlier else rng.standard_normal((size, K))
        if private_noise and draw(st.integers(0, 4)) > 0:  # mostly non-degenerate blocks
            vector[f"e{b}"] = size
            identity[f"e{b}"] = _coef(rng)
        dense = {}
        if draw(st.integers(0, 3)) == 0:
            p = draw(st.sampled_from(sorted(vector)))
            m = vector[p]
            if draw(st.booleans()):
                dense[p] = rng.standard_normal((size, m))
            else:
                dense[p] = np.outer(rng.standard_normal(size), rng.standard_normal(m))
        name = f"b{b}"
        blocks[name] = Block(name, size, identity, L, dense)
    scalar = [f"u{k}" for k in range(K)]
    return GaussianSystem(scalar, vector, blocks)


HYP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])


@HYP
@given(systems(), st.data())
def test_logdet_matches_dense_pseudo_determinant(system, data):
    names = sorted(system.blocks)
    S = data.draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    lam = ref_spectrum(system, S)
    v, r, amb = ref_pdet(lam, float(lam.max(initial=0.0)))
    assume(not amb)
    ld = system.logdet(S)
    assert ld.size == sum(system.blocks[n].size for n in S)
    assert ld.rank == r
    log_terms = float(np.sum(np.abs(np.log(lam[lam > 1e-9 * lam.max()]))))  # scale of the sum
    assert ld.value == pytest.approx(v, rel=1e-9, abs=1e-9 * max(1.0, log_terms))
    np.testing.assert_allclose(system.covariance(S), ref_A(system, S) @ ref_A(system, S).T, atol=1e-12)


@HYP
@given(systems(min_blocks=2), st.data())
def test_mi_matches_dense_formula(system, data):
    names = data.draw(st.permutations(sorted(system.blocks)))
    rest = data.draw(st.lists(st.sampled_from("ABCN"), min_size=len(names) - 2, max_size=len(names) - 2))
    roles = "AB" + "".join(rest)
    A = [n for n, r in zip(names, roles) if r == "A"]
    B = [n for n, r in zip(names, roles) if r == "B"]
    C = [n for n, r in zip(names, roles) if r == "C"]
    ref = ref_mi(system, A, B, C)
    assume(ref is not None)
    want, scale = ref
    got = system.mi(A, B, C)
    assert not math.isnan(got.nats)
    event(f"mi: {'inf' if math.isinf(want) else got.method}")
    if math.isinf(want):
        assert math.isinf(got.nats) and got.nats > 0 and got.reason
        return
    assert math.isfinite(got.nats), got.reason
    assert got.nats >= 0.0
    assert got.nats == pytest.approx(want, rel=1e-9, abs=1e-9 + 1e-12 * scale)
    if got.method == "independent":
        assert got.nats == 0.0 and abs(want) < 1e-9


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(systems(min_blocks=3), st.data())
def test_total_correlation_and_interaction_match_dense(system, data):
    names = sorted(system.blocks)
    roles = data.draw(st.permutations(names))
    A, B, C = [roles[0]], [roles[1]], list(roles[2:])
    # total correlation = Σ pdet parts − pdet union, checked via the chain rule on the dense side
    r1, r2 = ref_mi(system, A, B), ref_mi(system, union(A, B), C)
    assume(r1 is not None and r2 is not None)
    tc = system.total_correlation([A, B, C])
    want = r1[0] + r2[0]
    if math.isinf(want):
        assert math.isinf(tc.nats)
    else:
        assert tc.nats == pytest.approx(want, rel=1e-9, abs=1e-9 + 1e-12 * (r1[1] + r2[1]))
    r3 = ref_mi(system, A, B, C)
    assume(r3 is not None)
    if math.isinf(r1[0]) and math.isinf(r3[0]):
        with pytest.raises(ValueError):
            system.interaction_information(A, B, C)
        return
    ii = system.interaction_information(A, B, C)
    want = r1[0] - r3[0]
    if math.isinf(want):
        assert ii.nats == want
    else:
        assert ii.nats == pytest.approx(want, rel=1e-9, abs=1e-9 + 1e-12 * (r1[1] + r3[1]))


# ------------------------------------------------------------------- closed forms


def two_views(d, eta=1.0, rt=(0.3, 0.3), rh=(0.1, 0.2)):
    return GaussianSystem(
        ["u"],
        {"n1": d, "n2": d},
        {
            "theta": blk("theta", 1, loadings=[[eta]]),
            "z1": blk("z1", d, {"n1": rh[0]}, rt[0] * np.ones((d, 1))),
            "z2": blk("z2", d, {"n2": rh[1]}, rt[1] * np.ones((d, 1))),
        },
    )


def test_closed_forms_section5():
    d, r1, r2, h1, h2 = 3072, 0.3, 0.3, 0.1, 0.2
    system = two_views(d)
    formula = {
        ("theta", "z1"): -0.5 * math.log(1 - d * r1**2 / (h1**2 + d * r1**2)),
        ("theta", "z2"): -0.5 * math.log(1 - d * r2**2 / (h2**2 + d * r2**2)),
        ("z1", "z2"): -0.5
        * math.log(1 - d * d * r1**2 * r2**2 / ((h1**2 + d * r1**2) * (h2**2 + d * r2**2))),
    }
    published = {("theta", "z1"): 5.11367, ("theta", "z2"): 4.42058, ("z1", "z2"): 4.30901}
    for (a, b), want in formula.items():
        t0 = time.perf_counter()
        got = system.mi([a], [b])
        elapsed = time.perf_counter() - t0
        assert got.method == "structured" and got.reason is None
        assert got.nats == pytest.approx(want, rel=1e-9)
        assert abs(got.nats - published[(a, b)]) < 1e-5
        assert elapsed < 0.05, f"I({a};{b}) took {elapsed * 1e3:.1f} ms"  # ~1 ms measured


def test_general_bimodal_closed_form():
    # §5 general form: two causes, two noises shared across modalities, all-ones templates.
    d = 257
    eta = np.array([0.7, -0.4])
    rt1, rt2 = np.array([0.3, 0.2]), np.array([-0.1, 0.25])
    rh1, rh2 = np.array([0.5, 0.1]), np.array([0.2, 0.4])
    system = GaussianSystem(
        ["u1", "u2"],
        {"n1": d, "n2": d},
        {
            "theta": blk("theta", 1, loadings=eta[None, :], K=2),
            "z1": blk("z1", d, {"n1": rh1[0], "n2": rh1[1]}, np.outer(np.ones(d), rt1), K=2),
            "z2": blk("z2", d, {"n1": rh2[0], "n2": rh2[1]}, np.outer(np.ones(d), rt2), K=2),
        },
    )
    a, r_1, r_2 = eta @ eta, eta @ rt1, eta @ rt2
    o, q, p = rt1 @ rt1, rt2 @ rt2, rt1 @ rt2
    b, c, f = o + rh1 @ rh1, q + rh2 @ rh2, p + rh1 @ rh2
    i_t1 = -0.5 * math.log(1 - d * r_1**2 / (a * (b + (d - 1) * o)))
    i_t2 = -0.5 * math.log(1 - d * r_2**2 / (a * (c + (d - 1) * q)))
    B1, C1 = b + (d - 1) * o, c + (d - 1) * q
    i_12 = (d - 1) / 2 * math.log((b - o) * (c - q) / ((b - o) * (c - q) - (f - p) ** 2)) + 0.5 * math.log(
        B1 * C1 / (B1 * C1 - (f + (d - 1) * p) ** 2)
    )
    assert system.mi("theta", "z1").nats == pytest.approx(i_t1, rel=1e-9)
    assert system.mi("theta", "z2").nats == pytest.approx(i_t2, rel=1e-9)
    assert system.mi("z1", "z2").nats == pytest.approx(i_12, rel=1e-9)
    ld = system.logdet("z1")
    assert ld.value == pytest.approx((d - 1) * math.log(b - o) + math.log(b + (d - 1) * o), rel=1e-12)
    assert ld.rank == d


# ------------------------------------------------------------ zero / inf / degenerate


def test_exact_zero_for_independent_blocks():
    system = GaussianSystem(
        ["u", "v"],
        {"n1": 4, "n2": 4},
        {
            "a": blk("a", 4, {"n1": 0.5}, np.outer(np.ones(4), [1.0, 0.0]), K=2),
            "b": blk("b", 4, {"n2": 0.5}, np.outer(np.ones(4), [0.0, 2.0]), K=2),
            "c": blk("c", 1, {}, [[1.0, 1.0]], K=2),
            "zero": blk("zero", 3, {}, None, K=2),
        },
    )
    for a, b, c in [("a", "b", ()), ("a", "zero", ("b", "c")), ("zero", "c", ())]:
        r = system.mi(a, b, c)
        assert r.nats == 0.0 and r.method == "independent" and r.reason
    # conditioning on a common child creates dependence: not structurally zero
    r = system.mi("a", "b", "c")
    assert r.nats > 0.01 and r.method == "structured"
    assert system.total_correlation([["a"], ["b"]]).nats == 0.0
    assert system.pmi("a", "b", system.sample(5, np.random.default_rng(0))).tolist() == [0.0] * 5


def test_infinite_for_deterministic_relations():
    d = 5
    T = np.linspace(-1, 1, d)[:, None]
    system = GaussianSystem(
        ["u"],
        {"n": d, "e": 1},
        {
            "theta": blk("theta", 1, loadings=[[2.0]]),
            "z1": blk("z1", d, {}, T),  # no noise: z1 = ũ T, singular Σ (rank 1)
            "z2": blk("z2", d, {"n": 0.3}, 0.5 * np.ones((d, 1))),
            "z3": blk("z3", d, {"n": -0.6}, None),  # z3 = -2 (z2 - 0.5 ũ 1)
            "s2": blk("s2", 1, {"e": 0.3}, [[1.0]]),
            "s3": blk("s3", 1, {"e": -0.6}, [[2.0]]),  # s3 + 2 s2 = 4 ũ = 2 θ
        },
    )
    r = system.mi("z1", "theta")
    assert r.nats == math.inf and "deterministic" in r.reason
    # the components of z2, z3 orthogonal to 1 are exactly related
    assert system.mi("z2", "z3").nats == math.inf
    assert system.logdet(["z2", "z3"]).rank == d + 1
    assert math.isfinite(system.mi("s2", "s3").nats)  # only jointly with θ is it deterministic
    assert system.mi("s2", "s3", "theta").nats == math.inf
    assert system.mi(["s2", "theta"], "s3").nats == math.inf
    assert system.mi("s2", "s3", "z1").nats == math.inf  # z1 reveals ũ too
    assert system.total_correlation([["s2"], ["s3"], ["theta"]]).nats == math.inf
    assert system.interaction_information("s2", "s3", "theta").nats == -math.inf
    with pytest.raises(ValueError, match="both"):
        system.interaction_information("z1", "theta", "s2")
    # degenerate but finite: z1 carries ũ exactly; I(z1; z2) = I(ũ; z2) = I(θ; z2)
    r = system.mi("z1", "z2")
    assert math.isfinite(r.nats)
    assert r.nats == pytest.approx(system.mi("theta", "z2").nats, rel=1e-12)
    want, _ = ref_mi(system, ["z1"], ["z2"])
    assert r.nats == pytest.approx(want, rel=1e-10)
    ld = system.logdet("z1")
    assert (ld.rank, ld.size) == (1, d)
    assert ld.value == pytest.approx(math.log(float((T.T @ T)[0, 0])), rel=1e-12)
    # PMI of a degenerate block, on its support (issue 14): z1 and θ are both bijections of ũ
    smp = system.sample(10, np.random.default_rng(1))
    np.testing.assert_allclose(system.pmi("z1", "z2", smp), system.pmi("theta", "z2", smp), rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="infinite"):  # I(z1; θ) = inf: so is every PMI
        system.pmi("z1", "theta", smp)


def test_conditional_mi_against_dense_and_conditional_independence():
    d = 6
    rng = np.random.default_rng(3)
    system = GaussianSystem(
        ["u1", "u2"],
        {"n1": d, "n2": d, "n3": d},
        {
            "theta": blk("theta", 1, loadings=[[1.0, 0.5]], K=2),
            "z1": blk("z1", d, {"n1": 0.4, "n3": 0.2}, rng.standard_normal((d, 2)), K=2),
            "z2": blk("z2", d, {"n2": 0.3, "n3": -0.1}, rng.standard_normal((d, 2)), K=2),
            "z3": blk("z3", d, {"n3": 0.7}, rng.standard_normal((d, 2)), K=2),
        },
    )
    for A, B, C in [("z1", "z2", ["theta"]), ("theta", "z1", ["z2"]), ("z1", "z2", ["z3", "theta"])]:
        want, scale = ref_mi(system, [A], [B], C)
        got = system.mi(A, B, C)
        assert got.nats == pytest.approx(want, rel=1e-10, abs=1e-12 * scale)
    two = two_views(64)
    r = two.mi("z1", "z2", "theta")  # conditionally independent given ũ = θ: θ fixes ũ, decided structurally
    assert r.nats == 0.0 and r.method == "independent" and "fixes {u}" in r.reason
    with pytest.raises(ValueError):
        two.mi("z1", ["z1", "z2"])


# ------------------------------------------------------------------------- scale


def decay_system(d, N=10, alpha=1.2, beta=1.2, rt=0.3, rh=0.1, dense_noise=False):
    blocks = {"theta": blk("theta", 1, loadings=[[1.0]])}
    for i in range(1, N + 1):
        ident = {f"n{j}": alpha ** -abs(i - j) * rh for j in range(1, N + 1)}
        blocks[f"z{i}"] = blk(f"z{i}", d, ident, beta ** -(i - 1) * rt * np.ones((d, 1)))
    return GaussianSystem(["u"], {f"n{j}": d for j in range(1, N + 1)}, blocks)


def section4_logdet(system, S, d):
    """§4: log|Σ_SS| = d log|F_SS| + log|I_K + G_S| (independent evaluation)."""
    Rows = np.array([[system.blocks[s].identity.get(f"n{j}", 0.0) for j in range(1, 11)] for s in S])
    F = Rows @ Rows.T
    Finv = np.linalg.inv(F)
    L = [system.blocks[s].loadings for s in S]
    G = sum(Finv[i, j] * L[i].T @ L[j] for i in range(len(S)) for j in range(len(S)))
    return d * np.linalg.slogdet(F)[1] + np.linalg.slogdet(np.eye(1) + G)[1], G


def test_ten_modalities_at_scale_and_against_dense():
    d = 3072
    system = decay_system(d)
    t0 = time.perf_counter()
    res = {("z1", f"z{j}"): system.mi("z1", f"z{j}") for j in range(2, 11)}
    res.update({("theta", f"z{j}"): system.mi("theta", f"z{j}") for j in range(1, 11)})
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.5, f"19 MIs at d=3072 took {elapsed:.3f} s"
    for j in range(2, 11):
        S = ["z1", f"z{j}"]
        l1, _ = section4_logdet(system, ["z1"], d)
        lj, _ = section4_logdet(system, [f"z{j}"], d)
        l1j, _ = section4_logdet(system, S, d)
        want = 0.5 * (l1 + lj - l1j)
        assert res[("z1", f"z{j}")].nats == pytest.approx(want, rel=1e-9, abs=1e-10)
    for j in range(1, 11):
        _, G = section4_logdet(system, [f"z{j}"], d)
        eta = np.ones(1)
        want = -0.5 * math.log(1 - float(eta @ G @ np.linalg.solve(np.eye(1) + G, eta)) / float(eta @ eta))
        assert res[("theta", f"z{j}")].nats == pytest.approx(want, rel=1e-9)
    # information about θ decays with β; neighbours share more than distant modalities
    vals = [res[("z1", f"z{j}")].nats for j in range(2, 11)]
    assert all(x > y for x, y in zip(vals, vals[1:]))
    # same structure at d = 64 against dense eigenvalues, including conditional MI
    small = decay_system(64)
    cases = [("z1", "z2", ()), ("z1", "z10", ()), ("theta", "z5", ()), ("z1", "z3", ("z2",)),
             ("theta", "z1", ("z2", "z3"))]
    for A, B, C in cases:
        want, scale = ref_mi(small, [A], [B], list(C))
        # the reference's Schur complement (residuals on C) loses ~1e-9 relative to subtraction
        assert small.mi(A, B, C).nats == pytest.approx(want, rel=1e-8 if C else 1e-9, abs=1e-12 * scale)
    tiny = decay_system(8)
    everything = [f"z{i}" for i in range(1, 11)] + ["theta"]
    ld = tiny.logdet(everything)
    v, r, _ = ref_pdet(ref_spectrum(tiny, everything), 1.0)
    assert ld.rank == r == 81 and ld.value == pytest.approx(v, rel=1e-10)


def _well_conditioned(rng, n):
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return Q * rng.uniform(0.5, 2.0, n)


def test_dense_path_and_too_large():
    # §6.5 shape: X_i = T_i [Z_si; Z_c] + σ ε_i with dense T_i; without noise I(X1; X2) = inf.
    rng = np.random.default_rng(5)
    T1, T2 = _well_conditioned(rng, 20), _well_conditioned(rng, 20)
    maps1 = {"zs1": T1[:, :10], "zc": T1[:, 10:]}
    maps2 = {"zs2": T2[:, :10], "zc": T2[:, 10:]}
    system = GaussianSystem(
        [],
        {"zs1": 10, "zs2": 10, "zc": 10, "e1": 20, "e2": 20},
        {
            "x1": Block("x1", 20, {"e1": 0.1}, np.zeros((20, 0)), maps1),
            "x2": Block("x2", 20, {"e2": 0.1}, np.zeros((20, 0)), maps2),
            "x1_clean": Block("x1_clean", 20, {}, np.zeros((20, 0)), maps1),
            "x2_clean": Block("x2_clean", 20, {}, np.zeros((20, 0)), maps2),
        },
        dense_limit=60,
    )
    for A, B in [("x1", "x2"), ("x1_clean", "x2")]:
        r = system.mi(A, B)
        want, _ = ref_mi(system, [A], [B])
        assert r.method == "dense" and r.nats == pytest.approx(want, rel=1e-10)
    assert system.mi("x1_clean", "x2_clean").nats == math.inf
    want, _ = ref_mi(system, ["x1"], ["x2"], ["x1_clean"])
    assert system.mi("x1", "x2", "x1_clean").nats == pytest.approx(want, rel=1e-10)
    with pytest.raises(TooLargeError, match="dense_limit"):
        system.mi("x1", ["x2", "x1_clean", "x2_clean"])


def test_validation_errors():
    with pytest.raises(ValueError, match="identity"):
        GaussianSystem(["u"], {"n": 3}, {"z": blk("z", 4, {"n": 1.0})})
    with pytest.raises(ValueError, match="loadings"):
        GaussianSystem(["u", "v"], {}, {"z": blk("z", 2)})
    with pytest.raises(ValueError, match="shape"):
        Block("z", 3, {}, np.zeros((2, 1)))
    system = two_views(4)
    with pytest.raises(KeyError):
        system.mi("z1", "nope")
    with pytest.raises(ValueError, match="share"):
        system.mi(["z1", "z2"], ["z2"])


# --------------------------------------------------------------------- sampling


def plugin_mi(X: np.ndarray, da: int) -> float:
    S = np.cov(X, rowvar=False)
    ld = lambda M: np.linalg.slogdet(M)[1]  # noqa: E731
    return 0.5 * (ld(S[:da, :da]) + ld(S[da:, da:]) - ld(S))


def small_mixed_system(d=3):
    rng = np.random.default_rng(11)
    return GaussianSystem(
        ["u1", "u2"],
        {"n1": d, "n2": d, "s": 1},
        {
            "theta": blk("theta", 1, {"s": 0.3}, [[1.0, -0.5]], K=2),
            "z1": blk("z1", d, {"n1": 0.5, "n2": 0.3}, rng.standard_normal((d, 2)), K=2),
            "z2": blk("z2", d, {"n2": 0.6}, rng.standard_normal((d, 2)) * 0.5, K=2),
            "y": blk("y", 1, {}, [[0.2, 0.9]], K=2),
            "w": blk("w", 1, {"s": 0.6}, [[-0.4, 0.3]], K=2),  # F of (θ, w) has rank 1
        },
    )


def test_sample_covariance_and_plugin_mi_within_five_standard_errors():
    system = small_mixed_system()
    rng = np.random.default_rng(2024)
    n = 200_000
    smp = system.sample(n, rng)
    names = ["theta", "z1", "z2", "y"]
    X = np.concatenate([smp[v] for v in names], axis=1)
    np.testing.assert_allclose(np.cov(X, rowvar=False), system.covariance(names), atol=0.02)
    for A, B in [(["z1"], ["z2"]), (["theta"], ["z1", "z2"]), (["z1", "y"], ["theta"])]:
        XA = np.concatenate([smp[v] for v in A], axis=1)
        XB = np.concatenate([smp[v] for v in B], axis=1)
        XY = np.concatenate([XA, XB], axis=1)
        est = plugin_mi(XY, XA.shape[1])
        boot = []
        for _ in range(40):  # bootstrap standard error of the plug-in estimate
            idx = rng.integers(0, n, n)
            boot.append(plugin_mi(XY[idx], XA.shape[1]))
        se = float(np.std(boot, ddof=1))
        truth = system.mi(A, B).nats
        assert abs(est - truth) < 5 * se, (A, B, est, truth, se)
        assert se < 0.01


def gauss_logpdf(x: np.ndarray, Sigma: np.ndarray) -> np.ndarray:
    sign, ld = np.linalg.slogdet(Sigma)
    assert sign > 0
    y = np.linalg.solve(Sigma, x.T).T
    return -0.5 * np.sum(x * y, axis=1) - 0.5 * ld - 0.5 * Sigma.shape[0] * math.log(2 * math.pi)


def support_logpdf(x: np.ndarray, A: np.ndarray, lam_max: float) -> np.ndarray:
    """Log density of x = A s (s standard normal) on its support range(A Aᵀ): pseudo-determinant
    and pseudo-inverse, eigenvalues below 1e-9 λmax dropped."""
    lam, V = np.linalg.eigh(A @ A.T)
    keep = lam > 1e-9 * lam_max
    y = (x @ V[:, keep]) / np.sqrt(lam[keep])
    return -0.5 * np.sum(y * y, axis=1) - 0.5 * np.sum(np.log(lam[keep])) - 0.5 * keep.sum() * math.log(2 * math.pi)


@pytest.mark.parametrize(
    "system,A,B",
    [
        (small_mixed_system(), ["z1"], ["z2"]),
        (small_mixed_system(), ["theta", "y"], ["z1", "z2"]),  # scalar (zero-λ) blocks: Schur part
        (small_mixed_system(), ["theta"], ["y"]),
        (small_mixed_system(), ["theta", "w"], ["z1"]),  # rotated zero-λ direction
        (small_mixed_system(), ["theta"], ["w", "y"]),  # two zero-λ directions in the union
        (decay_system(40, N=4), ["z1", "theta"], ["z2", "z4"]),
    ],
)
def test_pmi_pointwise_against_dense_density_and_mean_is_mi(system, A, B):
    rng = np.random.default_rng(7)
    n = 20_000
    smp = system.sample(n, rng)
    got = system.pmi(A, B, smp)
    XA = np.concatenate([smp[v] for v in A], axis=1)
    XB = np.concatenate([smp[v] for v in B], axis=1)
    want = (
        gauss_logpdf(np.concatenate([XA, XB], axis=1), system.covariance(A + B))
        - gauss_logpdf(XA, system.covariance(A))
        - gauss_logpdf(XB, system.covariance(B))
    )
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-8)
    mi = system.mi(A, B).nats
    se = np.std(got, ddof=1) / math.sqrt(n)  # PMI draws are i.i.d.
    assert abs(got.mean() - mi) < 5 * se


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(systems(min_blocks=2, private_noise=True), st.data())
def test_pmi_matches_dense_log_densities_on_random_systems(system, data):
    names = data.draw(st.permutations(sorted(system.blocks)))
    k = data.draw(st.integers(1, len(names) - 1))
    A, B = list(names[:k]), list(names[k:])
    AB = A + B
    lam_max = float(ref_spectrum(system, AB).max(initial=0.0))
    dets = [ref_pdet(ref_spectrum(system, S), lam_max) for S in (A, B, AB)]
    assume(not any(amb for _, _, amb in dets))
    smp = system.sample(50, np.random.default_rng(data.draw(st.integers(0, 1000))))
    if system.mi(A, B).method == "independent":
        assert not system.pmi(A, B, smp).any()
        return
    dims = [sum(system.blocks[n].size for n in S) for S in (A, B, AB)]
    cat = lambda S: np.concatenate([smp[v] for v in S], axis=1)  # noqa: E731
    if any(r < dim for (_, r, _), dim in zip(dets, dims)):  # the densities on the supports (issue 14)
        if dets[2][1] < dets[0][1] + dets[1][1]:
            with pytest.raises(ValueError, match="infinite"):
                system.pmi(A, B, smp)
            event("pmi: degenerate, infinite")
            return
        event("pmi: degenerate")
        want = sum(sign * support_logpdf(cat(S), ref_A(system, S), lam_max) for sign, S in ((1, AB), (-1, A), (-1, B)))
        np.testing.assert_allclose(system.pmi(A, B, smp), want, rtol=1e-7, atol=1e-7 * (1 + np.abs(want).max()))
        return
    event(f"pmi: {'dense' if any(system.blocks[n].dense for n in AB) else 'structured'}")
    want = (
        gauss_logpdf(cat(AB), ref_A(system, AB) @ ref_A(system, AB).T)
        - gauss_logpdf(cat(A), ref_A(system, A) @ ref_A(system, A).T)
        - gauss_logpdf(cat(B), ref_A(system, B) @ ref_A(system, B).T)
    )
    got = system.pmi(A, B, smp)
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-7 * (1 + np.abs(want).max()))


def test_pmi_dense_path():
    rng = np.random.default_rng(8)
    D = rng.standard_normal((6, 4))
    system = GaussianSystem(
        ["u"],
        {"p": 4, "e1": 6, "e2": 3},
        {
            "x1": blk("x1", 6, {"e1": 0.5}, np.ones((6, 1)), dense={"p": D}),
            "x2": blk("x2", 3, {"e2": 0.5}, None, dense={"p": D[:3]}),
        },
    )
    smp = system.sample(50_000, rng)
    got = system.pmi("x1", "x2", smp)
    want = (
        gauss_logpdf(np.concatenate([smp["x1"], smp["x2"]], axis=1), system.covariance(["x1", "x2"]))
        - gauss_logpdf(smp["x1"], system.covariance(["x1"]))
        - gauss_logpdf(smp["x2"], system.covariance(["x2"]))
    )
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    assert abs(got.mean() - system.mi("x1", "x2").nats) < 5 * got.std() / math.sqrt(got.size)


# ---------------------------------------------------------------------- label MI


def _label_reference(I: float, tau: float) -> float:
    """h(Φ(-τ)) - E[h(Φ((ρz-τ)/c))] by scipy adaptive quadrature over the real line."""
    from scipy import integrate, special

    def hphi(v):
        p, q = special.ndtr(v), special.ndtr(-v)
        return -special.xlogy(p, p) - special.xlogy(q, q)

    c, rho = math.exp(-I), math.sqrt(-math.expm1(-2 * I))
    z0, w = tau / rho, c / rho
    f = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) * hphi((rho * z - tau) / c)  # noqa: E731
    pts = [p for p in sorted({z0 - 20 * w, z0, z0 + 20 * w, 0.0}) if -40 < p < 40]
    J = integrate.quad(f, -40, 40, points=pts, epsabs=1e-15, epsrel=1e-13, limit=2000)[0]
    return float(hphi(-tau) - J)


def test_binary_label_information_against_adaptive_quadrature():
    worst = 0.0
    for I in [1e-8, 1e-4, 0.01, 0.1, 0.5, 0.69, 0.7, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 16.0, 20.0]:
        for tau in [-5.0, -3.0, -1.0, 0.0, 0.3, 1.0, 2.5, 4.0, 5.0]:
            got = binary_label_information(I, tau)
            worst = max(worst, abs(got - _label_reference(I, tau)))
            assert 0.0 <= got <= min(I, binary_label_information(math.inf, tau)) + 1e-15
    assert worst < 1e-10
    assert binary_label_information(0.0, 1.0) == 0.0
    assert binary_label_information(math.inf, 0.0) == pytest.approx(math.log(2), rel=1e-15)


def test_label_mi_against_monte_carlo():
    system = small_mixed_system()
    rng = np.random.default_rng(99)
    n = 200_000
    smp = system.sample(n, rng)
    sd = math.sqrt(system.covariance(["theta"])[0, 0])
    from scipy import special

    def log_p_label(y, X_names, t):
        """log p(y | X) from the exact Gaussian conditional of θ given X."""
        if not X_names:
            p1 = special.ndtr(-t / sd)
            return np.where(y, np.log(p1), np.log1p(-p1))
        S = system.covariance(["theta", *X_names])
        beta = np.linalg.solve(S[1:, 1:], S[1:, 0])
        var_c = S[0, 0] - S[0, 1:] @ beta
        mu = np.concatenate([smp[v] for v in X_names], axis=1) @ beta
        v = (mu - t) / math.sqrt(var_c)
        return np.where(y, special.log_ndtr(v), special.log_ndtr(-v))

    cases = [(0.0, ["z1"], []), (0.8 * sd, ["z1", "z2"], []), (-1.5 * sd, ["z2"], ["y"]),
             (0.4 * sd, ["z1"], ["z2", "y"])]
    for t, X, C in cases:
        y = smp["theta"][:, 0] > t
        terms = log_p_label(y, X + C, t) - log_p_label(y, C, t)
        mc, se = terms.mean(), terms.std(ddof=1) / math.sqrt(n)
        got = system.label_mi("theta", t, X, C)
        assert got.reason is None and math.isfinite(got.nats)
        assert abs(got.nats - mc) < 5 * se, (t, X, C, got.nats, mc, se)
        assert got.nats <= system.mi("theta", X, C).nats + 1e-12  # data processing
    # y is a function of θ: given θ there is nothing left to learn about it
    assert system.label_mi("theta", 0.0, ["z1"], ["theta"]).nats == 0.0
    assert system.label_mi("theta", 0.0, ["theta"]).nats == pytest.approx(math.log(2), rel=1e-14)
    with pytest.raises(ValueError, match="size-1"):
        system.label_mi("z1", 0.0, ["z2"])
