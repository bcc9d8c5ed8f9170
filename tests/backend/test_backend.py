"""The torch sampler: exact covariance, determinism, standardisation, flows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmmi_dsl import load, loads
from mmmi_dsl.backend import Sampler, TupleStream, chunk_seed
from mmmi_dsl.errors import SpecError, UsageError
from mmmi_dsl.flows import REGISTRY
from mmmi_dsl.lang.lower import resolve_query
from mmmi_dsl.mi.analysis import Analysis

from ..conftest import ROOT

SPECS = ROOT / "specs"


def plugin_mi(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    cov = np.cov(np.hstack([a, b]), rowvar=False)
    k = a.shape[1]
    ld = lambda m: np.linalg.slogdet(np.atleast_2d(m))[1]  # noqa: E731
    return 0.5 * (ld(cov[:k, :k]) + ld(cov[k:, k:]) - ld(cov))


def plugin_check(a, b, exact, batches=20):
    """|plug-in - exact| within 5 batch-means standard errors plus the plug-in bias."""
    est = plugin_mi(a, b)
    parts = [plugin_mi(a[i::batches], b[i::batches]) for i in range(batches)]
    se = np.std(parts, ddof=1) / math.sqrt(batches)
    p, q = a.reshape(len(a), -1).shape[1], b.reshape(len(b), -1).shape[1]
    bias = p * q / (2 * len(a))
    assert abs(est - bias - exact) < 5 * se + 1e-3, (est, exact, se)


@pytest.mark.parametrize("spec,sets", [("two_views", {"d": "4"}), ("disentangled", {"k": "3"}),
                                       ("decay", {"d": "3", "N": "4"}), ("ablation", {"img": "1x6x6",
                                       "row1": "2", "col1": "2", "row2": "5", "col2": "5"})])
def test_generated_latents_have_the_exact_covariance(spec, sets):
    model = load(SPECS / f"{spec}.mmi", sets)
    s = Sampler(model, dtype=torch.float64, save_latents=True, seed=11)
    out = s.sample_range(0, 60_000)
    names = s.saved_latents
    x = np.hstack([out[v].reshape(len(out[v]), -1) for v in names])
    exact = s.analysis.covariance(names)
    emp = np.cov(x, rowvar=False)
    # entrywise standard error of a sample covariance: sqrt((s_ii s_jj + s_ij^2) / n)
    d = np.sqrt(np.diag(exact))
    se = np.sqrt((np.outer(d, d) ** 2 + exact ** 2) / len(x))
    assert np.all(np.abs(emp - exact) < 6 * se + 1e-12)


def test_plugin_mi_of_generated_data_matches_exact():
    model = load(SPECS / "two_views.mmi", {"d": "3", "rho_t1": "0.5", "rho_t2": "0.4", "rho_h1": "1",
                                            "rho_h2": "1.2"})
    out = Sampler(model, seed=5).sample_range(0, 100_000)
    exact = {r.query: r.nats for r in Analysis(model).evaluate_all(model.reports)}
    plugin_check(out["x1"], out["x2"], exact["I(x1; x2)"])
    plugin_check(out["theta"], out["x1"], exact["I(theta; x1)"])


@pytest.mark.parametrize("how", ["scale", "whiten"])
def test_standardisation_keeps_mi(how):
    model = load(SPECS / "two_views.mmi", {"d": "3", "rho_t1": "0.5", "rho_t2": "0.4", "rho_h1": "1",
                                            "rho_h2": "1.2"})
    out = Sampler(model, standardize=how, seed=7).sample_range(0, 100_000)
    exact = Analysis(model).evaluate(resolve_query(model, "I(x1; x2)")).nats
    plugin_check(out["x1"], out["x2"], exact)
    if how == "whiten":
        cov = np.cov(out["x1"], rowvar=False)
        assert np.allclose(cov, np.eye(3), atol=0.02)
    else:
        assert np.allclose(np.var(out["x1"], axis=0), 1, atol=0.02)


def test_whiten_with_dense_maps():
    model = load(SPECS / "disentangled.mmi", {"k": "3"})
    out = Sampler(model, standardize="whiten", seed=2, dtype=torch.float64).sample_range(0, 50_000)
    assert np.allclose(np.cov(out["x1"], rowvar=False), np.eye(6), atol=0.05)


def test_whiten_refuses_a_noiseless_latent():
    model = loads("proto u : scalar\ndim d = 3\nlatent z = u * ones(d)\nflow x = identity(z)\n")
    with pytest.raises(SpecError, match="no noise"):
        Sampler(model, standardize="whiten")


@pytest.mark.parametrize("batch", [1, 7, 100, 1000])
def test_batch_size_never_changes_a_byte(batch):
    model = load(SPECS / "decay.mmi", {"d": "5", "N": "3"})
    s = Sampler(model, seed=1, chunk_size=64, save_latents=True)
    whole = s.sample_range(0, 500)
    parts = [s.sample_range(i, min(500, i + batch)) for i in range(0, 500, batch)]
    for k in whole:
        assert np.concatenate([p[k] for p in parts]).tobytes() == whole[k].tobytes()


@pytest.mark.parametrize("how,d", [("scale", 3), ("whiten", 40)])
def test_flow_inputs_are_the_rows_a_modality_was_drawn_from_across_chunks(how, d):
    """``flow_inputs(name, a, b)`` draws samples a..b-1 chunk by chunk as ``sample_range`` does: with
    identity flows they are the data themselves, bit for bit, over three chunks, from mid-chunk and to
    a chunk's end (whitening standardises whole chunks, as the sampler does: a matrix product's bits
    depend on its rows)."""
    model = load(SPECS / "two_views.mmi", {"d": str(d)})
    s = Sampler(model, standardize=how, chunk_size=16, seed=5)
    for a, b in ((5, 40), (16, 48), (0, 3)):
        out = s.sample_range(a, b)
        for name in model.flows:
            assert torch.equal(s.flow_inputs(name, a, b), torch.from_numpy(out[name]).reshape(b - a, -1)), (a, b)
    assert s.flow_inputs("x1", 7, 7).shape == s.flow_inputs("x1", 16, 16).shape == (0, d)
    with pytest.raises(ValueError):
        s.flow_inputs("x1", 9, 8)


@pytest.mark.parametrize("bad", [0, -4, 2.5])
def test_a_chunk_size_below_one_is_a_usage_error_not_the_default(bad):
    """``chunk_size=0`` once fell through to the default chunk (``0 or default``); it is refused."""
    with pytest.raises(UsageError, match="chunk size"):
        Sampler(load(SPECS / "two_views.mmi", {"d": "3"}), chunk_size=bad)


def test_seed_changes_data_and_chunk_seeds_differ():
    model = load(SPECS / "two_views.mmi", {"d": "4"})
    a = Sampler(model, seed=1).sample_range(0, 10)["x1"]
    b = Sampler(model, seed=2).sample_range(0, 10)["x1"]
    assert not np.array_equal(a, b)
    assert len({chunk_seed(s, c) for s in range(5) for c in range(100)}) == 500


def test_labels_and_pmi_columns():
    model = load(SPECS / "disentangled.mmi", {"k": "3"})
    s = Sampler(model, seed=3, pmi=[("x1", "x2")])
    out = s.sample_range(0, 40_000)
    assert out["y_c"].dtype == np.uint8 and set(np.unique(out["y_c"])) == {0, 1}
    assert abs(out["y_c"].mean() - 0.5) < 0.02
    exact = Analysis(model).evaluate(resolve_query(model, "I(x1; x2)")).nats
    col = out["pmi:x1;x2"]
    assert abs(col.mean() - exact) < 5 * col.std() / math.sqrt(len(col))


def test_tuple_stream_yields_the_same_tuples():
    model = load(SPECS / "two_views.mmi", {"d": "4"})
    s = Sampler(model, seed=9, chunk_size=16)
    stream = list(TupleStream(s, n=40))
    ref = s.sample_range(0, 40)
    assert len(stream) == 40
    assert np.array_equal(np.stack([t["x1"].numpy() for t in stream]), ref["x1"])


ANALYTIC = {"identity": {}, "affine": {"seed": 3}, "asinh": {}, "sinh": {}, "half_cube": {}, "normal_cdf": {},
            "spiral": {"speed": 0.3, "seed": 1}, "coupling": {"layers": 3, "seed": 2}, "wiggly": {},
            "bimodal": {"weight": 0.3, "mean1": 0, "mean2": 5}}
# injective, one-to-one only on part of R (their round trips: tests/flows/test_bmi_flows.py)
INJECTIVE = {"swissroll"}
# float32 round-trip tolerance per flow (float64 is checked to 1e-9)
F32_TOL = {"spiral": 1e-3, "normal_cdf": 1e-3, "sinh": 1e-4}


def test_every_registered_flow_is_tested():
    assert set(REGISTRY) - {"cnf", "digits", "fashion"} == set(ANALYTIC) | INJECTIVE  # learned: tests/flows/test_cnf.py


@pytest.mark.parametrize("name", sorted(ANALYTIC))
def test_flow_round_trip(name):
    torch.manual_seed(0)
    f = REGISTRY[name](6, **ANALYTIC[name])
    z = torch.randn(500, 6, dtype=torch.float64).clamp(-3, 3)
    x = f(z)
    assert torch.allclose(f.inverse(x), z, atol=1e-9)
    z32 = z.float()
    assert (f.inverse(f(z32)) - z32).abs().max() < F32_TOL.get(name, 1e-5)
    if name not in ("identity",):
        assert not torch.allclose(x, z)  # it does something


@pytest.mark.parametrize("chain", ["spiral(coupling(z2, layers = 3, seed = 5), speed = 0.2, seed = 1)",
                                   "asinh(affine(z2, seed = 2))", "half_cube(z2)"])
def test_nonlinear_flows_keep_mi_on_inverse_mapped_data(chain):
    """Data through a nonlinear flow, mapped back by its inverse, have the exact MI (plug-in)."""
    text = (SPECS / "two_views.mmi").read_text().replace("identity(z2)", chain)
    model = loads(text, {"d": "3", "rho_t1": "0.5", "rho_t2": "0.4", "rho_h1": "1", "rho_h2": "1.2"})
    s = Sampler(model, seed=4, dtype=torch.float64)
    out = s.sample_tensors(0, 100_000)
    flow = s.flows["x2"]
    z2 = flow.inverse(out["x2"]).numpy()
    exact = Analysis(model).evaluate(resolve_query(model, "I(x1; x2)")).nats
    plugin_check(out["x1"].numpy(), z2, exact)
    report = s.flow_roundtrip()
    assert report["x2"]["roundtrip_max"] < 1e-9 and report["x2"]["chain"].count("->") == chain.count("(") - 1


def test_affine_flow_keeps_mi():
    text = (SPECS / "two_views.mmi").read_text().replace("identity(z2)", "affine(z2, seed = 4, scale = 3)")
    model = loads(text, {"d": "3", "rho_t1": "0.5", "rho_t2": "0.4", "rho_h1": "1", "rho_h2": "1.2"})
    out = Sampler(model, seed=4).sample_range(0, 100_000)
    exact = Analysis(model).evaluate(resolve_query(model, "I(x1; x2)")).nats
    plugin_check(out["x1"], out["x2"], exact)


def test_a_flow_that_cannot_be_built_is_refused_when_the_spec_is_checked():
    """coupling needs two coordinates: plain loading (no torch, no flow built) refuses it at the flow."""
    text = (SPECS / "two_views.mmi").read_text().replace("identity(z2)", "coupling(z2, layers = 2)")
    with pytest.raises(SpecError, match="coupling needs a latent of size 2 or more, got 1") as err:
        loads(text, {"d": "1"})
    assert err.value.diagnostics[0].code == "E0203"
    assert err.value.diagnostics[0].span.line == text.splitlines().index(
        next(ln for ln in text.splitlines() if "coupling(" in ln)) + 1


def test_a_flow_built_from_ir_that_skipped_the_checks_is_still_a_spec_error():
    model = loads((SPECS / "two_views.mmi").read_text(), {"d": "1"})
    bad = model.flows["x2"].model_copy(update={"steps": (model.flows["x2"].steps[0].model_copy(
        update={"name": "coupling", "args": {"layers": 2}}),)})
    model = model.model_copy(update={"flows": {**model.flows, "x2": bad}})
    with pytest.raises(SpecError, match="cannot be built"):
        Sampler(model)


def test_cuda_absent_is_a_usage_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(UsageError, match="CUDA is not available"):
        Sampler(load(SPECS / "two_views.mmi", {"d": "4"}), device="cuda")


@pytest.mark.gpu
def test_cuda_matches_cpu_statistics():
    model = load(SPECS / "two_views.mmi", {"d": "4"})
    gpu = Sampler(model, device="cuda", seed=1).sample_range(0, 50_000)
    again = Sampler(model, device="cuda", seed=1).sample_range(0, 50_000)
    assert np.array_equal(gpu["x1"], again["x1"])
    exact = Analysis(model).evaluate(resolve_query(model, "I(x1; x2)")).nats
    plugin_check(gpu["x1"], gpu["x2"], exact)


def test_flow_plugins_from_entry_points(monkeypatch):
    from importlib.metadata import EntryPoint

    import mmmi_dsl.builtins as b
    eps = [EntryPoint("doubling", "tests.plugin_flow:Doubling", b.FLOW_ENTRY_POINT_GROUP),
           EntryPoint("broken", "tests.plugin_flow:Nope", b.FLOW_ENTRY_POINT_GROUP)]
    monkeypatch.setattr("importlib.metadata.entry_points",
                        lambda group=None: [e for e in eps if e.group == group])
    text = (SPECS / "two_views.mmi").read_text().replace("identity(z2)", "doubling(z2, factor = 3)")
    model = loads(text, {"d": "4"})
    s = Sampler(model, seed=1, save_latents=True)
    out = s.sample_range(0, 10)
    assert np.allclose(out["x2"], 3 * out["z2"])
    with pytest.raises(SpecError, match="cannot be loaded"):
        Sampler(loads(text.replace("doubling(z2, factor = 3)", "broken(z2)"), {"d": "4"}))
    with pytest.raises(SpecError, match="unknown flow `dubling`"):
        loads(text.replace("doubling(z2", "dubling(z2"), {"d": "4"})


# ---------------------------------------------------------------- flows that saturate (issue 14, item 4)

SATURATING = {
    "normal_cdf": "proto u : scalar\nproto e : scalar\nlatent z1 = 3 * u + e\nlatent z2 = u + e\n"
                  "flow x1 = normal_cdf(z1)\nflow x2 = identity(z2)\ntarget t = u\nreport I(x1; x2)\n",
    "sinh": "proto u : scalar\nproto e : scalar\nlatent z1 = 40 * u + e\nflow x1 = sinh(z1)\ntarget t = u\n"
            "report I(t; x1)\n",
}


@pytest.mark.parametrize("flow", sorted(SATURATING))
def test_a_flow_that_cannot_invert_its_data_is_refused_before_writing(flow, tmp_path, mmmic):
    """normal_cdf of a wide latent rounds to 1.0; sinh(40 u) overflows float32: generate exited 3
    ("not JSON compliant: inf") and check --flows said ok with "round trip max inf"."""
    spec = tmp_path / "s.mmi"
    spec.write_text(SATURATING[flow])
    r = mmmic("generate", spec, "-o", tmp_path / "out", "-n", "500", "--no-progress", "--standardize", "none")
    assert r.code == 1 and "error[E0210]" in r.stderr and "cannot be inverted on the data it will see" in r.stderr
    assert "round trip |f^-1(f(z)) - z| max inf" in r.stderr and f"{spec}:" in r.stderr and "--standardize scale" \
        in r.stderr, r.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.parametrize("flow", sorted(SATURATING))
def test_standardize_auto_scales_before_bounded_and_fast_growing_flows(flow, tmp_path, mmmic):
    spec = tmp_path / "s.mmi"
    spec.write_text(SATURATING[flow])
    r = mmmic("check", "--flows", spec)
    assert r.code == 0, r.stderr
    assert mmmic("generate", spec, "-o", tmp_path / "out", "-n", "500", "--no-progress").code == 0
    assert mmmic("verify", tmp_path / "out").code == 0


def test_check_flows_refuses_a_saturating_flow_under_explicit_standardize(tmp_path):
    from mmmi_dsl.backend import auto_standardize

    model = loads(SATURATING["normal_cdf"])
    assert auto_standardize(model.flows["x1"]) == "scale" and auto_standardize(model.flows["x2"]) == "none"
    problems = Sampler(model, standardize="none").flow_problems()
    assert [d.code for d in problems] == ["E0210"] and "x1" in problems[0].message
    assert Sampler(model, standardize="scale").flow_problems() == []


def test_radius_standardisation_is_one_scale_per_modality_and_keeps_the_layout():
    """radius: z / sqrt(tr Σ / d), so E||z||² = d and the template's spatial pattern keeps its shape."""
    text = ("dim d = 16\nproto u : scalar\nproto n : vector[d]\ntemplate T = onehot(d, 3)\n"
            "latent z = 5 * u * T + 0.5 * n\nflow x = identity(z)\ntarget t = u\n")
    model = loads(text)
    s = Sampler(model, standardize="radius", save_latents=True, dtype=torch.float64)
    out = s.sample_range(0, 20_000)
    z, x = out["z"], out["x"]
    ratio = x / z
    assert np.allclose(ratio, ratio[0, 0])  # one scale for every component and sample
    assert np.mean(np.sum(x ** 2, axis=1)) == pytest.approx(16, rel=0.03)
    assert abs(np.corrcoef(x[:, 2], out["t"])[0, 1]) > 0.99  # the cause still sits at entry 3
    assert Sampler(model, standardize="scale").flow_problems() == []


def test_auto_standardize_ignores_a_plugin_standardize_attribute_it_does_not_know():
    """A plugin flow whose `standardize` is a method or an unknown word asks for nothing (was a ValueError, exit 3)."""
    from types import SimpleNamespace

    from mmmi_dsl.backend import auto_standardize

    model = loads("proto u : vector[2]\nlatent z = u\nflow x = identity(z)\n")
    flow = model.flows["x"]
    for odd in (lambda: "whiten", "sideways", "auto"):
        assert auto_standardize(flow, SimpleNamespace(steps=[SimpleNamespace(standardize=odd)])) == "none"
    assert auto_standardize(flow, SimpleNamespace(steps=[SimpleNamespace(standardize="radius")])) == "radius"
