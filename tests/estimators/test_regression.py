"""``mmmic bench-regression``: θ regressed from a modality, its test RMSE beside the exact Bayes RMSE.

Small specs end to end through the CLI (a few hundred tuples); the Bayes RMSE is checked
against the closed form sd(θ) e^{−I} with I = ½ log(1 + d ρ²), and every learned RMSE
against it: no model beats it beyond its interval, and closed-form ridge on Gaussian
identity-flow data reaches it within its interval.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mmmi_dsl.regression import regress, rmse_interval

# theta = 2 u seen by one view of d = 4 components: I(theta; x1) = 1/2 log(1 + d rho^2), sd(theta) = 2.
TINY = """
model tiny
param rho = 0.5 in (0, 10)
dim d = 4
proto u : scalar
proto n1 : vector[d]
proto n2 : vector[d]
target theta = 2 * u
latent z1 = rho * u * ones(d) + n1
latent z2 = rho * u * ones(d) + n2
flow x1 = identity(z1) : vector[d]
flow x2 = asinh(z2) : vector[d]
report I(theta; x1)
"""

# The same cause drawn into an 8x8 image (identity flow), for the CNN.
IMAGE = """
model tinyimage
param rho = 0.3 in (0, 10)
dim img = 1x8x8
dim d = size(img)
proto u : scalar
proto n1 : vector[d]
target theta = u
latent z1 = rho * u * ones(d) + n1
flow x1 = identity(z1) : image[img]
"""


def _spec(tmp_path, text=TINY, name="tiny.mmi"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _run(mmmic, spec, out, *extra, n=300):
    return mmmic("bench-regression", spec, "--for", "rho", "--targets", "0.3,1.0", "-n", n, "-o", out,
                 "--no-progress", *extra)


@pytest.mark.parametrize("regressor", ["linear", "mlp"])
def test_end_to_end_on_small_data(tmp_path, mmmic, regressor):
    spec = _spec(tmp_path)
    out = tmp_path / regressor
    extra = ("--max-steps", "300") if regressor == "mlp" else ()
    r = _run(mmmic, spec, out, "--model", regressor, *extra)
    assert r.code == 0, r.stderr
    assert "Bayes RMSE" in r.stdout and f"{regressor} regression of theta from x1" in r.stdout
    for name in ("results.json", "results.md", "plot.png", "errors.png", "t00", "t01"):
        assert (out / name).exists(), name
    data = json.loads((out / "results.json").read_text())
    assert data["format"] == "mmmic-bench-regression/1" and data["key"]["regressor"] == regressor
    assert [p["target_nats"] for p in data["points"]] == pytest.approx([0.3, 1.0], abs=1e-9)
    for p in data["points"]:
        d, rho = 4, p["param"]
        assert 0.5 * math.log1p(d * rho ** 2) == pytest.approx(p["target_nats"], abs=1e-9)
        assert p["bayes_rmse"] == pytest.approx(2 * math.exp(-p["target_nats"]), rel=1e-9)  # sd(theta) e^-I
        assert p["sd"] == pytest.approx(2.0, rel=1e-12)
        lo, hi = p["rmse_ci"]
        assert lo < p["rmse"] < hi
        assert p["ratio"] == pytest.approx(p["rmse"] / p["bayes_rmse"])
        # no model beats the Bayes RMSE beyond its interval
        assert hi >= p["bayes_rmse"], p
        errors = np.load(out / "errors" / f"{p['dataset']}.npy")
        assert len(errors) == p["details"]["n_test"] == 60
        assert math.sqrt(np.mean(errors ** 2)) == pytest.approx(p["rmse"], rel=1e-12)
    # the RMSE falls as I rises (1.0 nats vs 0.3: Bayes 0.74 vs 1.48)
    assert data["points"][1]["rmse"] < data["points"][0]["rmse"]


def test_rerun_resumes_and_other_settings_are_refused(tmp_path, mmmic, monkeypatch):
    from mmmi_dsl import regression

    spec = _spec(tmp_path)
    out = tmp_path / "r"
    assert _run(mmmic, spec, out, "--model", "linear").code == 0
    before = json.loads((out / "results.json").read_text())["points"]
    with monkeypatch.context() as m:  # a finished point is not fit again
        m.setattr(regression, "regress", lambda *a, **k: pytest.fail("refit a finished point"))
        r = _run(mmmic, spec, out, "--model", "linear")
        assert r.code == 0, r.stderr
    assert json.loads((out / "results.json").read_text())["points"] == before
    (out / "errors" / "t00.npy").unlink()  # ... unless its errors are gone: fit again, to the same numbers
    assert _run(mmmic, spec, out, "--model", "linear").code == 0
    again = json.loads((out / "results.json").read_text())["points"]
    assert [p["rmse"] for p in again] == [p["rmse"] for p in before]
    assert (out / "errors" / "t00.npy").is_file()
    r = _run(mmmic, spec, out, "--model", "linear", n=200)
    assert r.code == 2 and "holds a different benchmark" in r.stderr
    r = _run(mmmic, spec, out, "--model", "linear", "--set", "d=5")
    assert r.code == 2 and "holds a different benchmark" in r.stderr


def test_cnn_on_a_tiny_image(tmp_path, mmmic):
    spec = _spec(tmp_path, IMAGE, "img.mmi")
    r = mmmic("bench-regression", spec, "--for", "rho", "--targets", "0.5", "-n", 200, "-o", tmp_path / "c",
              "--model", "cnn", "--max-steps", "60", "--no-progress")
    assert r.code == 0, r.stderr
    (p,) = json.loads((tmp_path / "c" / "results.json").read_text())["points"]
    assert p["bayes_rmse"] == pytest.approx(math.exp(-0.5), rel=1e-9)
    assert p["rmse_ci"][1] >= p["bayes_rmse"] and p["details"]["steps"] <= 60
    assert (tmp_path / "c" / "errors.png").is_file()


def test_linear_reaches_the_bayes_rmse_at_large_n(tmp_path, mmmic):
    """Ridge on 4 Gaussian columns is the Bayes predictor up to O(p / n_train) = 0.1 % here,
    well inside the interval (about ±3 % at 1,000 test tuples)."""
    spec = _spec(tmp_path)
    r = mmmic("bench-regression", spec, "--for", "rho", "--targets", "0.7", "-n", 5000, "-o", tmp_path / "big",
              "--model", "linear", "--no-progress")
    assert r.code == 0, r.stderr
    (p,) = json.loads((tmp_path / "big" / "results.json").read_text())["points"]
    lo, hi = p["rmse_ci"]
    assert lo <= p["bayes_rmse"] <= hi, p
    assert abs(p["ratio"] - 1) < 0.05


@pytest.mark.parametrize("args, message", [
    (["--model", "svm"], "--model 'svm': choose one of cnn, mlp, linear"),
    (["--model", "cnn"], "the cnn regressor needs image-shaped samples"),
    (["-n", "5"], "argument -n: must be at least 20, got 5"),
    (["--threads", "0"], "argument --threads: must be at least 1, got 0"),
    (["--max-steps", "0"], "argument --max-steps: must be at least 1, got 0"),
    (["--query", "I(x1; x2)"], "needs a target (the regressed θ) and a modality"),
    (["--query", "I(theta; x9)"], "`x9` is not a modality or target"),
    (["--for", "nope"], "nope"),
    (["--targets", "abc"], "--targets"),
    (["--device", "tpu"], "--device"),
])
def test_bad_flags_exit_2(tmp_path, mmmic, args, message):
    spec = _spec(tmp_path)
    base = {"--for": "rho", "--targets": "0.3", "-n": "100"}
    flags = dict(zip(args[::2], args[1::2]))
    argv = [x for k, v in {**base, **flags}.items() for x in (k, v)]
    r = mmmic("bench-regression", spec, *argv, "-o", tmp_path / "o", "--no-progress")
    assert r.code == 2, (r.code, r.stderr)
    assert message in r.stderr, r.stderr


def test_the_histograms_show_the_lowest_and_highest_i(tmp_path, mmmic):
    """Targets out of order: errors.png shows the datasets of lowest and highest I, each with its own errors."""
    from mmmi_dsl.regression import RegressionPoint, RegressionResults

    r = mmmic("bench-regression", _spec(tmp_path), "--for", "rho", "--targets", "0.6,0.2,1.2", "-n", 200,
              "-o", tmp_path / "h", "--model", "linear", "--no-progress")
    assert r.code == 0, r.stderr
    data = json.loads((tmp_path / "h" / "results.json").read_text())
    results = RegressionResults(data["key"], data["target"], data["modality"],
                                tuple(RegressionPoint.from_json(p) for p in data["points"]))
    assert [p.dataset for p in results.extremes()] == ["t01", "t02"]
    for p in results.extremes():
        assert math.sqrt(np.mean(results.errors(tmp_path / "h", p) ** 2)) == pytest.approx(p.rmse, rel=1e-12)
    assert [p.dataset for p in RegressionResults({}, "t", "x", results.points[:1]).extremes()] == ["t00"]


def test_regress_and_interval_on_plain_arrays():
    """The Python entry: the errors are in theta's units, the interval brackets the RMSE; a
    non-scalar target and an unknown regressor are refused."""
    from mmmi_dsl.errors import UsageError

    rng = np.random.default_rng(0)
    u = rng.normal(size=2000)
    x = 0.5 * u[:, None] + rng.normal(size=(2000, 3))
    fit = regress(x, 10 * u, regressor="linear")
    bayes = 10 * math.exp(-0.5 * math.log1p(3 * 0.25))
    rmse = math.sqrt(np.mean(fit.errors ** 2))
    lo, hi = rmse_interval(fit.errors)
    assert lo < rmse < hi and lo <= bayes <= hi
    with pytest.raises(UsageError, match="scalar"):
        regress(x, np.stack([u, u], 1))
    with pytest.raises(UsageError, match="choose one of"):
        regress(x, u, regressor="forest")
