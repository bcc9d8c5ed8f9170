"""Exact MI, checked three ways at small d: against an independent dense reference
(random specs from hypothesis), against the closed forms of science.md §5, and
against the Gaussian plug-in estimate on 200,000 samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmmi_dsl import load, loads
from mmmi_dsl.lang.lower import resolve_query
from mmmi_dsl.mi.analysis import Analysis, default_queries

from ..conftest import ROOT
from ..dense_reference import dense_mi, dense_rows

SPECS = ROOT / "specs"


# ------------------------------------------------------------------ random specs


@st.composite
def random_specs(draw):
    """Small specs with every kind of term: templates, latents of latents, dot, matrices."""
    d = draw(st.integers(1, 6))
    n_s = draw(st.integers(1, 3))
    lines = [f"dim d = {d}", "param a = 0.7", "param b = 1.3"]
    lines += [f"proto u{k} : scalar" for k in range(n_s)]
    n_v = draw(st.integers(1, 3))
    lines += [f"proto n{j} : vector[d]" for j in range(n_v)]
    lines += ["proto w : vector[2]"]
    coef = st.sampled_from(["a", "b", "0.5", "-1.2", "2 * a", "a / b", "0"])
    tmpl = st.sampled_from(["ones(d)", "random(d, 3)", "random(d, 4)", "onehot(d, 1)", "normalize(random(d, 5))"])
    latents = []
    for i in range(draw(st.integers(1, 4))):
        terms = []
        for _ in range(draw(st.integers(1, 4))):
            kind = draw(st.integers(0, 4 if latents else 2))
            c = draw(coef)
            if kind == 0:
                terms.append(f"{c} * u{draw(st.integers(0, n_s - 1))} * {draw(tmpl)}")
            elif kind in (1, 2):
                terms.append(f"{c} * n{draw(st.integers(0, n_v - 1))}")
            elif kind == 3:
                terms.append(f"{c} * z{draw(st.integers(0, len(latents) - 1))}")
            else:
                src = f"z{draw(st.integers(0, len(latents) - 1))}"
                seed = draw(st.integers(0, 9))
                terms.append(f"{c} * uniform(d, d + 2, seed = {seed}) @ concat({src}, w)".replace(
                    f"uniform(d, d + 2, seed = {seed})", f"M{seed}"))
                lines.append(f"matrix M{seed} = uniform(d, d + 2, seed = {seed})")
        latents.append(f"z{i}")
        lines.append(f"latent z{i} = " + " + ".join(terms))
    lines.append("target theta = " + " + ".join(f"{draw(coef)} * u{k}" for k in range(n_s)))
    if draw(st.booleans()):
        lines.append(f"target phi = a * dot(random(d, 7), z{draw(st.integers(0, len(latents) - 1))}) + u0")
    lines += [f"flow x{i} = identity(z{i})" for i in range(len(latents))]
    return "\n".join(dict.fromkeys(lines)) + "\n", len(latents)


def _close(x: float, y: float) -> bool:
    """1e-9 relative; near 0, 1e-8 absolute (the round-off of dense log-determinants: an exact
    0 came out as 1.3e-9 on the dense path, dim d = 1 with a dot() target)."""
    if math.isinf(x) or math.isinf(y):
        return x == y
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-8)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=random_specs(), data=st.data())
def test_engine_matches_dense_reference(spec, data):
    text, n = spec
    model = loads(text, file="random.mmi")
    engine = Analysis(model)
    names = [f"x{i}" for i in range(n)] + [t for t in model.targets] + ["u0", "n0"]
    a = data.draw(st.sampled_from(names))
    b = data.draw(st.sampled_from([x for x in names if x != a]))
    rest = [x for x in names if x not in (a, b)]
    c = data.draw(st.lists(st.sampled_from(rest), max_size=2, unique=True)) if rest else []
    query = f"I({a}; {b}" + (f" | {', '.join(c)}" if c else "") + ")"
    got = engine.evaluate(resolve_query(model, query)).nats
    blocks = lambda xs: [model.flows[x].latent if x in model.flows else x for x in xs]  # noqa: E731
    want = dense_mi(model, blocks([a]), blocks([b]), blocks(c))
    assert _close(got, want), f"{query}: engine {got} vs dense {want}\n{text}"


@pytest.mark.parametrize("spec,sets", [
    ("two_views", {"d": "12"}), ("decay", {"d": "8", "N": "5"}),
    ("ablation", {"img": "1x12x12", "row1": "4", "col1": "4", "row2": "9", "col2": "9"}),
    ("disentangled", {"k": "6"})])
def test_specs_match_dense_reference(spec, sets):
    model = load(SPECS / f"{spec}.mmi", sets)
    engine = Analysis(model)
    for q in default_queries(model):
        if any(n in model.labels for g in q.groups for n in g):
            continue
        got = engine.evaluate(q).nats
        blocks = lambda xs: [model.flows[x].latent if x in model.flows else x for x in xs]  # noqa: E731
        want = dense_mi(model, blocks(q.groups[0]), blocks(q.groups[1]), blocks(q.given))
        assert math.isclose(got, want, rel_tol=1e-8, abs_tol=1e-9), (q.text, got, want)


# ------------------------------------------------------------------ closed forms


def test_two_views_closed_forms_at_d_3072():
    model = load(SPECS / "two_views.mmi")
    got = {r.query: r.nats for r in Analysis(model).evaluate_all(model.reports)}
    assert got["I(theta; x1)"] == pytest.approx(5.11367, abs=5e-6)
    assert got["I(theta; x2)"] == pytest.approx(4.42058, abs=5e-6)
    assert got["I(x1; x2)"] == pytest.approx(4.30901, abs=5e-6)
    d, rt1, rt2, rh1, rh2 = 3072, 0.3, 0.3, 0.1, 0.2
    assert got["I(theta; x1)"] == pytest.approx(-0.5 * math.log1p(-d * rt1**2 / (rh1**2 + d * rt1**2)), rel=1e-9)
    pair = -0.5 * math.log1p(-d**2 * rt1**2 * rt2**2 / ((rh1**2 + d * rt1**2) * (rh2**2 + d * rt2**2)))
    assert got["I(x1; x2)"] == pytest.approx(pair, rel=1e-9)


@given(rt1=st.floats(0.01, 2), rt2=st.floats(0.01, 2), rh1=st.floats(0.05, 2), rh2=st.floats(0.05, 2),
       d=st.integers(1, 5000))
@settings(max_examples=40, deadline=None)
def test_two_views_closed_form_anywhere(rt1, rt2, rh1, rh2, d):
    model = load(SPECS / "two_views.mmi", {"d": str(d), "rho_t1": repr(rt1), "rho_t2": repr(rt2),
                                           "rho_h1": repr(rh1), "rho_h2": repr(rh2)})
    got = {r.query: r.nats for r in Analysis(model).evaluate_all(model.reports)}
    want = -0.5 * math.log1p(-d * rt1**2 / (rh1**2 + d * rt1**2))
    assert got["I(theta; x1)"] == pytest.approx(want, rel=1e-9)
    pair = -0.5 * math.log1p(-d**2 * rt1**2 * rt2**2 / ((rh1**2 + d * rt1**2) * (rh2**2 + d * rt2**2)))
    assert got["I(x1; x2)"] == pytest.approx(pair, rel=1e-9)


@given(log_rt=st.floats(-2, 0.9), log_rh=st.floats(-9, 0), d=st.integers(1, 5000))
@settings(max_examples=40, deadline=None)
def test_strong_cause_on_weak_noise_is_finite_and_exact(log_rt, log_rh, d):
    """Signal-to-noise ratios d rt^2 / rh^2 up to 3e23: the shared cause's variance does
    not swamp the noise's (each is thresholded against its own scale, mi/logdet.py Note)."""
    rt, rh = 10.0 ** log_rt, 10.0 ** log_rh
    model = load(SPECS / "two_views.mmi", {"d": str(d), "rho_t1": repr(rt), "rho_t2": repr(rt),
                                           "rho_h1": repr(rh), "rho_h2": "1"})
    got = {r.query: r.nats for r in Analysis(model).evaluate_all(model.reports)}
    assert got["I(theta; x1)"] == pytest.approx(0.5 * math.log1p(d * rt**2 / rh**2), rel=1e-9)
    a1, a2 = rh**2 + d * rt**2, 1 + d * rt**2
    pair = 0.5 * (math.log(a1) + math.log(a2) - math.log(rh**2 + d * rt**2 * (1 + rh**2)))
    assert got["I(x1; x2)"] == pytest.approx(pair, rel=1e-9)


@pytest.mark.parametrize("beta", [0.25, 0.3, 0.316, 0.33, 0.5, 1.2])
def test_decay_at_small_beta_matches_its_closed_form(beta):
    """decay.mmi, d = 3072: x[10] carries theta with coefficient beta^-9 (5e4 at 0.3)
    on noise of variance ~2. The engine once read inf (and I(x[1]; x[10]) = 3.4 instead
    of 712) because the noise fell under a threshold relative to the cause."""
    model = load(SPECS / "decay.mmi").with_params({"beta": beta})
    engine = Analysis(model)
    for j in (1, 5, 10):
        noise = sum(1.2 ** (-2 * abs(j - k)) for k in range(1, 11))
        want = 0.5 * math.log1p(3072 * beta ** (-2 * (j - 1)) / noise)
        assert engine.evaluate(resolve_query(model, f"I(theta; x[{j}])")).nats == pytest.approx(want, rel=1e-10)
    pair = engine.evaluate(resolve_query(model, "I(x[1]; x[10])")).nats
    assert 709.0 < pair < 712.3  # between I(x[1]; x[10] | theta) = 709.008 and the beta -> 0 limit


def test_causes_of_very_different_strength_match_the_closed_forms():
    """ablation.mmi with rho1 up to 1e15 next to rho2 = 1: the causes' Gram H has entries
    1e30 next to 1 and I(theta; x1) mixes them (theta = u1 + u2). Forming I + ΠHΠ once
    rounded 1 + 1e18 to 1e18 (not positive definite); the engine works in range(Π)."""
    from mmmi_dsl.mi import symbolic

    text = (SPECS / "ablation.mmi").read_text().replace("param rho1 = 2 in (0, 100)", "param rho1 = 2 in (0, 1e20)")
    base = loads(text)
    formulas = [symbolic.derive(base, q, numeric={"templates"}) for q in base.reports]
    for rho1 in (2.0, 1e4, 2.0 ** 31, 1e12, 1e15):
        model = base.with_params({"rho1": rho1})
        got = Analysis(model).evaluate_all(model.reports)
        for f, r in zip(formulas, got):
            assert r.nats == pytest.approx(symbolic.evaluate_formula(f, model), rel=1e-10), (rho1, r.query)


def test_general_bimodal_closed_form_with_two_causes():
    """science.md §5 with K = 2 causes and correlated noises (all-ones templates)."""
    text = """
param e1 = 0.8
param e2 = -0.4
dim d = 50
proto u1 : scalar
proto u2 : scalar
proto m1 : vector[d]
proto m2 : vector[d]
target theta = e1 * u1 + e2 * u2
latent z1 = 0.3 * u1 * ones(d) + 0.2 * u2 * ones(d) + 0.5 * m1 + 0.1 * m2
latent z2 = -0.1 * u1 * ones(d) + 0.4 * u2 * ones(d) + 0.3 * m1 + 0.6 * m2
flow x1 = identity(z1)
flow x2 = identity(z2)
"""
    model = loads(text)
    e = np.array([0.8, -0.4]); t1 = np.array([0.3, 0.2]); t2 = np.array([-0.1, 0.4])
    h1 = np.array([0.5, 0.1]); h2 = np.array([0.3, 0.6]); d = 50
    a = e @ e; r1 = e @ t1; o = t1 @ t1; q = t2 @ t2; p = t1 @ t2
    b = o + h1 @ h1; c = q + h2 @ h2; f = p + h1 @ h2
    want_t1 = -0.5 * math.log(1 - d * r1**2 / (a * (b + (d - 1) * o)))
    want_12 = ((d - 1) / 2 * math.log((b - o) * (c - q) / ((b - o) * (c - q) - (f - p) ** 2))
               + 0.5 * math.log((b + (d - 1) * o) * (c + (d - 1) * q)
                                / ((b + (d - 1) * o) * (c + (d - 1) * q) - (f + (d - 1) * p) ** 2)))
    engine = Analysis(model)
    assert engine.evaluate(resolve_query(model, "I(theta; x1)")).nats == pytest.approx(want_t1, rel=1e-9)
    assert engine.evaluate(resolve_query(model, "I(x1; x2)")).nats == pytest.approx(want_12, rel=1e-9)


# ------------------------------------------------------------------ zeros and infinities


def test_exact_zero_for_independent_variables():
    model = load(SPECS / "telescopes.mmi")
    r = Analysis(model).evaluate(resolve_query(model, "I(u_atm; x2)"))
    assert r.nats == 0.0


def test_conditional_independence_is_zero_not_roundoff():
    model = load(SPECS / "disentangled.mmi")
    r = Analysis(model).evaluate(resolve_query(model, "I(x1; x2 | z_c)"))
    assert r.nats == 0.0


def test_noiseless_shared_factor_is_infinite_with_reason():
    text = """
dim d = 4
proto u : scalar
proto n : vector[d]
latent z1 = u * ones(d)
latent z2 = u * ones(d) + n
target theta = u
flow x1 = identity(z1)
flow x2 = identity(z2)
"""
    model = loads(text)
    engine = Analysis(model)
    r = engine.evaluate(resolve_query(model, "I(theta; x1)"))
    assert math.isinf(r.nats) and r.reason
    # degenerate but finite: x1 is rank one, yet shares only u with x2
    r2 = engine.evaluate(resolve_query(model, "I(x1; x2)")).nats
    assert math.isfinite(r2) and r2 == pytest.approx(dense_mi(model, ["z1"], ["z2"]), rel=1e-9)


def test_modality_and_its_latent_are_infinitely_informative():
    model = load(SPECS / "two_views.mmi", {"d": "3"})
    r = Analysis(model).evaluate(resolve_query(model, "I(x1; z1)"))
    assert math.isinf(r.nats)


def test_disentangled_without_noise_is_infinite():
    model = load(SPECS / "disentangled.mmi", {"sigma": "1e-300"})
    r = Analysis(model).evaluate(resolve_query(model, "I(x1; x2)"))
    assert math.isinf(r.nats) or r.nats > 50


# ------------------------------------------------------------------ samples


def test_plugin_mi_of_200k_samples_agrees_within_error():
    """The Gaussian plug-in MI of sampled latents (dense reference sampler) agrees within 5 s.e."""
    model = load(SPECS / "two_views.mmi", {"d": "3", "rho_t1": "0.5", "rho_t2": "0.4",
                                            "rho_h1": "1", "rho_h2": "1.2"})
    exact = {r.query: r.nats for r in Analysis(model).evaluate_all(model.reports)}
    rows, P = dense_rows(model)
    rng = np.random.default_rng(0)
    n = 200_000
    u = rng.standard_normal((n, P))
    x1, x2, th = u @ rows["z1"].T, u @ rows["z2"].T, u @ rows["theta"].T

    def plugin(a, b):
        cov = np.cov(np.hstack([a, b]), rowvar=False)
        ka = a.shape[1]
        return 0.5 * (np.linalg.slogdet(cov[:ka, :ka])[1] + np.linalg.slogdet(cov[ka:, ka:])[1]
                      - np.linalg.slogdet(cov)[1])

    # standard error by batch means over 20 batches
    for key, (a, b) in {"I(theta; x1)": (th, x1), "I(x1; x2)": (x1, x2)}.items():
        est = plugin(a, b)
        batches = [plugin(a[i::20], b[i::20]) for i in range(20)]
        se = np.std(batches, ddof=1) / math.sqrt(20)
        assert abs(est - exact[key]) < 5 * se + 1e-3, (key, est, exact[key], se)


# ------------------------------------------------------------------ labels and PMI


def test_label_mi_matches_monte_carlo():
    model = load(SPECS / "disentangled.mmi", {"k": "4"})
    engine = Analysis(model)
    exact = engine.evaluate(resolve_query(model, "I(y_c; z_c)")).nats
    # y_c is a threshold of a function of z_c: I = H(y) = log 2 (threshold 0, symmetric)
    assert exact == pytest.approx(math.log(2), rel=1e-9)
    r = engine.evaluate(resolve_query(model, "I(y_c; x1)")).nats
    assert 0 < r < math.log(2)


def test_pmi_mean_is_mi():
    model = load(SPECS / "two_views.mmi", {"d": "5"})
    engine = Analysis(model)
    rng = np.random.default_rng(1)
    samples = engine.system.sample(100_000, rng)
    pmi = engine.system.pmi(["z1"], ["z2"], samples)
    exact = engine.evaluate(resolve_query(model, "I(x1; x2)")).nats
    assert pmi.shape == (100_000,)
    assert abs(pmi.mean() - exact) < 5 * pmi.std() / math.sqrt(len(pmi))


@pytest.mark.parametrize("rho1, ok", [(2.0, True), (100.0, True), (1e6, False), (1e12, False)])
def test_pmi_of_causes_far_apart_is_exact_or_refused(rho1, ok):
    """ablation (8x8) with rho1 next to rho2 = 1: the PMI's Woodbury terms grow like rho1^2
    and cancel; beyond double precision it is E0212, never a wrong column (rho1 = 1e12
    once gave PMI means of 2e8 nats)."""
    from mmmi_dsl.errors import SpecError

    text = ((SPECS / "ablation.mmi").read_text().replace("param rho1 = 2 in (0, 100)", "param rho1 = 2 in (0, 1e20)")
            .replace("dim img = 3x32x32", "dim img = 1x8x8").replace("= 22", "= 6").replace("= 10", "= 3"))
    model = loads(text).with_params({"rho1": rho1})
    engine = Analysis(model)
    exact = engine.evaluate(resolve_query(model, "I(x1; x2)")).nats
    normalized = engine.system.sample(20_000, np.random.default_rng(0))  # blocks at unit scale
    samples = {k: v / engine.block_scale[k] for k, v in normalized.items() if k in engine.block_scale}
    if not ok:
        with pytest.raises(SpecError, match="cannot be computed in double precision"):
            engine.pmi(["x1"], ["x2"], samples)
        return
    pmi = engine.pmi(["x1"], ["x2"], samples)
    assert abs(pmi.mean() - exact) < 5 * pmi.std() / math.sqrt(len(pmi))


@pytest.mark.parametrize("scale", ["1e-300", "1e-100", "1e-5", "1", "1e5", "1e100"])
def test_mi_is_invariant_to_the_scale_of_a_block(scale):
    """theta = eta1 * u_mass: any nonzero eta1 gives I(u_mass; x1) (a block on any scale)."""
    model = load(SPECS / "telescopes.mmi", {"eta1": scale})
    engine = Analysis(model)
    want = engine.evaluate(resolve_query(model, "I(u_mass; x1)")).nats
    assert engine.evaluate(resolve_query(model, "I(theta; x1)")).nats == pytest.approx(want, rel=1e-9)


def test_overflowing_coefficients_are_a_spec_error():
    from mmmi_dsl.errors import SpecError
    with pytest.raises(SpecError, match="overflow"):
        Analysis(load(SPECS / "telescopes.mmi", {"eta1": "1e308", "eta2": "1e308"}))


NEAR_DETERMINISTIC = """dim d = 1
param a = 0.7
proto u0 : scalar
proto u1 : scalar
proto u2 : scalar
proto n0 : vector[d]
latent z0 = a * u0 * ones(d) + a * n0 + a * u1 * ones(d)
latent z1 = a * z0 + a * u0 * ones(d)
target theta = a * u0 + a * u1 + a * u2
target phi = a * dot(random(d, 7), z1) + u0
flow x0 = identity(z0)
flow x1 = identity(z1)
"""


def test_a_near_deterministic_conditional_mi_to_1e_13():
    """I(phi; u0 | theta, n0): given theta and n0, phi = c1 u0 + c2 u1 with (u0, u1) of covariance
    [[2, -1], [-1, 2]] / 3, so I = -1/2 log(1 - rho^2) with 1 - rho^2 = 1.3e-7; the value is mpmath's
    at 50 digits. The log-determinants lost 2.1e-9 relative here (eps e^(2I) to cancellation); above
    NEAR_DETERMINISTIC_NATS the engine takes the principal angles of the residuals instead."""
    model = loads(NEAR_DETERMINISTIC)
    got = Analysis(model).evaluate(resolve_query(model, "I(phi; u0 | theta, n0)"))
    dense = dense_mi(model, ["phi"], ["u0"], ["theta", "n0"])
    exact = 7.9152957867204200601530990661534126544824103659615
    assert dense == pytest.approx(exact, rel=1e-10)  # the naive reference is right to 3.6e-11 here
    assert got.nats == pytest.approx(exact, rel=1e-13)


@pytest.mark.parametrize("a, b, exact", [  # mpmath at 40 digits: Σ = A Aᵀ of the dense A, Cholesky
    ("x1", "x2", 111.23879765372153984), ("z_c", "x1", 143.83947365618342017)])
def test_large_mi_of_disentangled_to_1e_15(a, b, exact):
    """Large MIs, each from many moderate canonical correlations: the residuals' angles are right to
    ~1e-16 where the log-determinants were 1.5e-14 and 2.7e-13 off."""
    model = load(SPECS / "disentangled.mmi")
    got = Analysis(model).evaluate(resolve_query(model, f"I({a}; {b})")).nats
    assert got == pytest.approx(exact, rel=1e-15)


WEAK_NOISE_FREE = """model t
proto z1 : scalar
proto z2 : scalar
proto e : vector[2]
proto f : scalar
latent a = z1 * onehot(2, 1) + 1e-7 * z2 * onehot(2, 2) + 1e-10 * e
latent b = 0.1 * z1 + z2 + 1e-3 * f
"""


def test_a_weak_noise_free_direction_keeps_the_log_determinants():
    """I(a; b) = 6.566 nats comes mostly from a 1e-7 direction with 1e-10 noise. The residuals'
    single threshold drops that direction (their angles give 0.005 nats), so above 4 nats the angles
    are used only when their ranks are the ones the log-determinants decided; here they are not.
    Reference: mpmath at 40 digits (Σ = A Aᵀ of the dense A, Cholesky)."""
    model = loads(WEAK_NOISE_FREE)
    got = Analysis(model).evaluate(resolve_query(model, "I(a; b)")).nats
    assert got == pytest.approx(6.5661575991778207399, rel=1e-5)  # extreme conditioning: 2e-6 off


def test_large_spread_mis_skip_the_costly_angles_and_stay_exact(monkeypatch):
    """decay at N = 10, d = 256: every I(x[1]; x[j]) is above 4 nats (up to 479), spread over 256
    directions, not near a deterministic relation. Its residuals' angles would need SVDs of 512 x 2,561
    (350 ms a query, 1,400 times the structured one) and agree with the log-determinants to 2e-15, so
    beyond RESIDUAL_WORK they are not taken; the values match the dense reference."""
    from mmmi_dsl.mi import information

    def refuse(*args, **kwargs):
        raise AssertionError("the principal angles were computed")

    monkeypatch.setattr(information, "residual_angles", refuse)
    model = load(SPECS / "decay.mmi", {"N": "10", "d": "256"})
    engine = Analysis(model)
    for q in model.reports[:4]:
        a, b = ([model.flows[n].latent if n in model.flows else n for n in g] for g in q.groups)
        got = engine.evaluate(q).nats
        assert got > information.NEAR_DETERMINISTIC_NATS or "theta" in q.text
        assert got == pytest.approx(dense_mi(model, a, b), rel=1e-11)  # dense slogdet at 512 rows: ~1e-13


def test_a_near_deterministic_dense_query_still_takes_the_angles():
    """Two 200-pixel views of one cause under 1e-4 noise mixed by an orthogonal matrix (the dense path):
    I = 1/2 log((d + s^2)^2 / (s^2 (2 d + s^2))) = 11.5129 nats, concentrated in one direction. The dense
    log-determinants lose eps e^(2I) (they gave 11.512897, 2.5e-6 off); the work budget of the angles
    applies only after structured log-determinants, so this one is recomputed from them."""
    text = ("proto u : scalar\nproto n1 : vector[200]\nproto n2 : vector[200]\nmatrix M = orthogonal(200, seed = 1)\n"
            "latent a = u * ones(200) + 0.0001 * (M @ n1)\nlatent b = u * ones(200) + 0.0001 * (M @ n2)\n")
    model = loads(text, file="t.mmi")
    d, s2 = 200.0, 1e-8
    exact = 0.5 * (2 * math.log(d + s2) - math.log(s2) - math.log(2 * d + s2))
    got = Analysis(model).evaluate(resolve_query(model, "I(a; b)")).nats
    assert got == pytest.approx(exact, rel=1e-12)
