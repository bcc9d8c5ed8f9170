"""`verify` checks the MI of the files themselves, at any size (issue 14, item 7): the model is
rebuilt from the manifest, the flows inverted on a seeded subsample, and the information
tested through the model's canonical directions, with a bias-corrected estimate and its SE."""

from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest

from mmmi_dsl.dataset import verify
from mmmi_dsl.dataset.oracle import DIRECTION_SIGMAS, canonical, direction_test
from mmmi_dsl.dataset.stats import gaussian_mi

from ..conftest import ROOT

# Nonlinear flows on small blocks: no saved Gaussian array for x1, x2 (before: three "skip" lines).
SPEC = """model small
param rho = 0.8 in (0, 10)
proto u : scalar
proto n1 : vector[3]
proto n2 : vector[4]
target theta = u
latent z1 = rho * u * ones(3) + n1
latent z2 = 0.5 * u * ones(4) + 0.7 * n2
flow x1 = asinh(affine(z1, seed = 1)) : vector[3]
flow x2 = coupling(z2, layers = 2, hidden = 8) : vector[4]
report I(x1; x2)
report I(theta; x1)
report I(theta; x1, x2)
"""
OPTS = ["--chunk-size", "64", "--no-progress"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """`small.mmi` generated with n = 200: far below 100 (p + q) for every query."""
    root = tmp_path_factory.mktemp("small")
    spec = root / "small.mmi"
    spec.write_text(SPEC)
    from mmmi_dsl.cli import main
    assert main(["generate", str(spec), "-o", str(root / "d"), "-n", "200", *OPTS]) == 0
    return root / "d"


def test_verify_inverts_the_flows_of_a_small_dataset(small, mmmic):
    r = mmmic("verify", small)
    assert r.code == 0, r.stdout
    lines = r.stdout.splitlines()
    assert not [line for line in lines if line.startswith(("skip", "FAIL"))], lines
    assert any(line.startswith("ok: I(x1; x2): x1 inverted through affine -> asinh, x2 inverted through coupling, "
                               "on 200 of 200 tuples (seeded); 1 canonical pair(s)") for line in lines), lines
    assert any(line.startswith("ok: I(theta; x1, x2): theta read, x1 inverted") for line in lines), lines
    report = verify(small)
    checks = [f.mi for f in report.findings if f.mi is not None]
    assert len(checks) == 3 and all(c.method == "directions" and c.n == 200 for c in checks)
    for c in checks:
        assert abs(c.diff) <= DIRECTION_SIGMAS * c.se + 1e-3 * (1 + c.exact) and c.se > 0
        assert re.search(r"= [0-9.]+ \+- [0-9.]+ nats vs exact [0-9.]+", c.describe())


def test_the_recovered_sampler_draws_the_datasets_own_latents(small):
    """verify's sampler is built with the manifest's seed and chunk (64 here, not the default 1,024):
    its ``flow_inputs`` are the latents the files were drawn from, so the inverted files equal them."""
    from mmmi_dsl.dataset.format import read_manifest
    from mmmi_dsl.dataset.oracle import Recovery

    manifest = read_manifest(small / "manifest.json")
    sampler = Recovery(small, manifest).sampler()
    assert (sampler.chunk_size, sampler.seed) == (manifest["chunk_size"], manifest["seed"]) == (64, 0)
    files = sorted(manifest["shards"], key=lambda s: s["index"])
    x1 = np.concatenate([np.load(small / s["files"]["x1"]) for s in files])
    assert np.allclose(sampler.invert("x1", x1), sampler.flow_inputs("x1", 0, 200).numpy(), atol=1e-5)


def test_verify_inverts_at_most_the_subsample_asked_for(small, mmmic):
    """`--subsample M` (for learned image flows: an ODE solve per tuple): M seeded tuples of 200."""
    r = mmmic("verify", small, "--subsample", 50)
    assert r.code == 0, r.stdout
    assert "on 50 of 200 tuples (seeded)" in r.stdout
    assert all(c.n == 50 for c in (f.mi for f in verify(small, subsample=50).findings) if c is not None)
    assert mmmic("verify", small, "--subsample", 5).code == 2
    with pytest.raises(ValueError, match="subsample"):
        verify(small, subsample=0)


def test_verify_fails_data_that_do_not_carry_the_recorded_information(small, tmp_path):
    """The manifest claims rho = 0.3 (with its exact values); the files were drawn at 0.8."""
    import mmmi_dsl
    out = tmp_path / "d"
    shutil.copytree(small, out)
    m = json.loads((out / "manifest.json").read_text())
    spec = mmmi_dsl.loads(SPEC, rho=0.3)
    m["params"]["rho"] = 0.3
    for entry in m["mi"]:
        entry["nats"] = spec.mi(entry["query"], "nats")
    (out / "manifest.json").write_text(json.dumps(m))
    report = verify(out)
    assert not report.ok
    failed = [line for line in report.lines if line.startswith("FAIL")]
    assert any(line.startswith("FAIL: I(theta; x1): theta read, x1 inverted") for line in failed), report.lines


def test_verify_fails_a_recorded_value_the_spec_does_not_give(small, tmp_path):
    out = tmp_path / "d"
    shutil.copytree(small, out)
    m = json.loads((out / "manifest.json").read_text())
    m["mi"][1]["nats"] += 0.01
    (out / "manifest.json").write_text(json.dumps(m))
    report = verify(out)
    assert not report.ok
    assert any(line.startswith("FAIL: I(theta; x1): the manifest records") and "its spec gives" in line
               for line in report.lines), report.lines


def test_a_lossy_export_without_latents_is_skipped_with_the_reason(tmp_path, mmmic):
    spec = tmp_path / "small.mmi"
    spec.write_text(SPEC)
    assert mmmic("generate", spec, "-o", tmp_path / "q", "-n", 100, "--uint8=-3,3", *OPTS).code == 0
    r = mmmic("verify", tmp_path / "q")
    assert r.code == 0
    assert "no file holds `x1`'s Gaussian values (its files are a lossy 8-bit export" in r.stdout, r.stdout


def test_the_readme_main_job_verifies_its_three_queries_at_small_n(tmp_path, mmmic):
    """`mmmic generate specs/digits_views.mmi ... && mmmic verify ...` (the README), at n = 300.
    Before: `skip: I(x1; x2): no saved Gaussian array` for all three."""
    out = tmp_path / "digits_views"
    assert mmmic("generate", ROOT / "specs" / "digits_views.mmi", "-o", out, "-n", 300, "--no-progress").code == 0
    r = mmmic("verify", out)
    assert r.code == 0, r.stdout
    for query in ("I(x1; x2)", "I(theta; x1)", "I(theta; x2)"):
        assert any(line.startswith(f"ok: {query}: ") and "inverted through digits" in line
                   for line in r.stdout.splitlines()), r.stdout
    assert "skip" not in r.stdout


# ----------------------------------------------------------------- the statistic


def test_canonical_directions_carry_the_exact_mi():
    rng = np.random.default_rng(3)
    p, q = 5, 7
    g = rng.standard_normal((p + q, p + q + 2))
    cov = g @ g.T
    rho, a, b = canonical(cov, p)
    assert len(rho) == p
    assert -0.5 * np.sum(np.log1p(-rho ** 2)) == pytest.approx(gaussian_mi(cov, p), rel=1e-10)
    np.testing.assert_allclose(a.T @ cov[:p, :p] @ a, np.eye(p), atol=1e-10)
    np.testing.assert_allclose(a.T @ cov[:p, p:] @ b, np.diag(rho), atol=1e-10)


def test_a_rank_deficient_block_is_handled_on_its_support():
    """z1 = u ones(2) (singular), z2 = u ones(2) + n: I = 1/2 log 3."""
    cov = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 2, 1], [1, 1, 1, 2]], dtype=float)
    rho, a, b = canonical(cov, 2)
    assert len(rho) == 1 and -0.5 * math.log1p(-rho[0] ** 2) == pytest.approx(0.5 * math.log(3))


@pytest.mark.parametrize("rho, m", [(0.1, 50), (0.3, 40), (0.9, 200), (0.99, 1000)])
def test_estimate_is_unbiased_and_its_standard_error_calibrated(rho, m):
    """Over 4,000 simulated data sets: mean z-score ~ 0, its spread ~ 1."""
    rng = np.random.default_rng(int(rho * 100) + m)
    cov = np.array([[1.0, rho], [rho, 1.0]])
    exact = -0.5 * math.log1p(-rho ** 2)
    directions = canonical(cov, 1)
    z = []
    for _ in range(4000):
        x = rng.multivariate_normal([0, 0], cov, size=m)
        t = direction_test(x[:, :1], x[:, 1:], *directions)
        z.append((t.plugin - t.bias - exact) / t.se)
    z = np.array(z)
    assert abs(z.mean()) < 0.08, z.mean()
    assert 0.85 < z.std() < 1.2, z.std()
    # Where rho sqrt(m) < 1 the estimate is chi-square-like (skewed): 0.6% beyond 4 SE at rho = 0.1, m = 50.
    assert np.mean(np.abs(z) > DIRECTION_SIGMAS) < (0.01 if rho * math.sqrt(m) < 1 else 0.002)
