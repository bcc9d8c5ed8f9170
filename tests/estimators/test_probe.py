"""mmmic bench-probe end to end on small generated datasets: logistic and ridge probes beside the exact
Bayes accuracy and R² limit, which no probe may beat beyond its confidence interval."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mmmi_dsl.probe import wilson_interval

from ..conftest import ROOT

TINY = """
model tiny
param r = 0.8 in (0, 1)
proto u : scalar
proto e : vector[4]
target theta = u
template w = random(4, 3)
latent z = r * u * w + sqrt(1 - r^2) * e
flow x = identity(z) : vector[4]
label y = theta > 0.2
"""


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from mmmi_dsl import load

    out = tmp_path_factory.mktemp("tiny") / "data"
    path = out.parent / "tiny.mmi"
    path.write_text(TINY)
    load(path).generate(out, n=3000, seed=1)
    return out


def test_probe_on_a_tiny_spec(mmmic, tiny_dir, tmp_path):
    code, out, err = mmmic("bench-probe", str(tiny_dir), "--labels", "y", "-o", str(tmp_path / "p"))
    assert code == 0, err
    report = json.loads((tmp_path / "p/probe.json").read_text())
    acc, r2 = report["probes"]
    assert (acc["kind"], acc["variable"], acc["modality"]) == ("accuracy", "y", "x")
    assert (r2["kind"], r2["variable"]) == ("r2", "theta")
    for row in (acc, r2):
        assert row["ci95"][0] <= row["exact"], row  # no probe beats the exact limit beyond its interval
        assert row["n_train"] == 2400 and row["n_test"] == 600
    # a linear probe is the Bayes rule here (everything is linear-Gaussian): it reaches the limit within noise
    assert acc["ci95"][0] - 0.03 <= acc["exact"] <= acc["ci95"][1] + 0.03
    from mmmi_dsl import loads
    from mmmi_dsl.builtins.realize import template_vector

    model = loads(TINY)
    s2 = 0.64 * float(np.sum(template_vector(model.templates["w"], model) ** 2))
    assert r2["exact"] == pytest.approx(s2 / (0.36 + s2), rel=1e-12)  # 1 - e^{-2I}, I = log(1 + r²|w|²/(1-r²))/2
    assert abs(r2["score"] - r2["exact"]) < 0.05
    assert "ACC(y \\| x)" in (tmp_path / "p/probe.md").read_text()


def test_probe_on_embeddings(mmmic, tiny_dir, tmp_path, monkeypatch):
    from mmmi_dsl.dataset import load_arrays

    x = np.asarray(load_arrays(tiny_dir, "x"))
    np.save(tmp_path / "emb.npy", x[:, :1])  # one coordinate: less than the whole modality
    code, out, err = mmmic("bench-probe", str(tiny_dir), "--labels", "y", "--features", str(tmp_path / "emb.npy"),
                           "-m", "x", "-o", str(tmp_path / "a"))
    assert code == 0, err
    acc = json.loads((tmp_path / "a/probe.json").read_text())["probes"][0]
    assert acc["ci95"][0] <= acc["exact"] and acc["score"] < acc["exact"]
    (tmp_path / "my_embed.py").write_text("def first_two(x):\n    return x[:, :2] * 3.0\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = mmmic("bench-probe", str(tiny_dir), "--labels", "y", "--features", "my_embed:first_two",
                           "-o", str(tmp_path / "b"))
    assert code == 0, err
    assert json.loads((tmp_path / "b/probe.json").read_text())["features"] == "my_embed:first_two"


@pytest.mark.parametrize("args, message", [
    (["--labels", "nope"], "`nope` is not a label"),
    (["--labels", "y", "--target", "x"], "`x` is not a target"),
    (["--labels", "y", "--features", "emb.npy"], "one --modality NAME"),
    (["--labels", "y", "--features", "no_such_module_xyz:f"], "cannot import"),
    (["--labels", "y", "--features", "nonsense"], "expected raw, FILE.npy or module:function"),
])
def test_probe_usage_errors(mmmic, tiny_dir, args, message):
    code, out, err = mmmic("bench-probe", str(tiny_dir), *args)
    assert code == 2 and message in err, err


def test_probe_on_disentangled(mmmic, tmp_path):
    """specs/disentangled.mmi at small sizes: every label from every modality, within its Bayes limit."""
    out = tmp_path / "dis"
    code, _, err = mmmic("generate", str(ROOT / "specs/disentangled.mmi"), "-n", "2000", "-o", str(out),
                         "--set", "k=4", "--no-progress")
    assert code == 0, err
    code, text, err = mmmic("bench-probe", str(out), "--labels", "y_c,y_s1,y_s2")
    assert code == 0, err
    rows = json.loads((out / "probe.json").read_text())["probes"]
    assert len(rows) == 6
    for row in rows:
        assert row["ci95"][0] <= row["exact"], row
    # x2 does not see z_s1: its Bayes accuracy for y_s1 is exactly 1/2, and the probe is at chance
    chance = next(r for r in rows if (r["variable"], r["modality"]) == ("y_s1", "x2"))
    assert chance["exact"] == 0.5 and chance["ci95"][0] <= 0.5 <= chance["ci95"][1] + 0.02


def test_wilson_interval():
    lo, hi = wilson_interval(80, 100)
    # the Wilson score interval of 80/100: centre (k + z²/2)/(n + z²), z = 1.95996
    z = 1.959963984540054
    centre = (80 + z * z / 2) / (100 + z * z)
    half = z / (100 + z * z) * math.sqrt(80 * 20 / 100 + z * z / 4)
    assert (lo, hi) == pytest.approx((centre - half, centre + half), rel=1e-9)


def test_a_folder_without_a_manifest_is_named_as_such(mmmic, tmp_path):
    r = mmmic("bench-probe", tmp_path, "--labels", "y")
    assert r.code == 1 and "no dataset here (no manifest.json)" in r.stderr and "Traceback" not in r.stderr


def test_a_features_function_that_raises_is_a_usage_error_not_a_crash(tiny_dir):
    """The user's `--features module:function` raising: a UsageError naming it (exit 2), never exit 3."""
    from mmmi_dsl.errors import UsageError
    from mmmi_dsl.probe import run_probes

    def broken(name, x):
        raise RuntimeError("boom")

    with pytest.raises(UsageError, match="raised RuntimeError on `x`: boom"):
        run_probes(tiny_dir, ["y"], modalities=["x"], features="mod:broken", embed=broken)


@pytest.mark.parametrize("source, name, message", [
    ("def f(:\n", "badsyntax_mod:f", "raised SyntaxError"),
    ("raise RuntimeError('at import')\n", "raising_mod:f", "raised RuntimeError: at import"),
    (None, ".relative:f", "raised TypeError")])
def test_a_features_module_that_fails_to_import_is_a_usage_error(mmmic, tiny_dir, tmp_path, monkeypatch,
                                                                 source, name, message):
    """A user's module with a syntax error, one that raises on import, or a relative name: exit 2, no traceback."""
    if source is not None:
        (tmp_path / f"{name.split(':')[0]}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    r = mmmic("bench-probe", tiny_dir, "--labels", "y", "--features", name)
    assert r.code == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
