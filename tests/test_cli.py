"""The CLI contract: exit codes (0 ok, 1 spec error, 2 usage), stderr format, --set."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from .conftest import ROOT

TWO_VIEWS = str(ROOT / "specs" / "two_views.mmi")


def test_check_all_specs_exit_0(mmmic):
    specs = sorted(str(p) for p in (ROOT / "specs").glob("*.mmi"))
    r = mmmic("check", *specs, subprocess=True)  # the real entry point, `python -m mmmi_dsl`
    assert r.code == 0, r.stderr
    assert r.stdout.count("ok ") == len(specs)


def test_spec_error_exit_1_with_position_and_caret(tmp_path, mmmic):
    bad = tmp_path / "bad.mmi"
    bad.write_text("model m\nproto u : scalar\nlatent z = u * u\n")
    r = mmmic("check", str(bad))
    assert r.code == 1
    assert "error[E0201]" in r.stderr and f"--> {bad}:3:12" in r.stderr
    assert "3 | latent z = u * u" in r.stderr and "^^^^^" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_check_reports_every_bad_spec_and_still_checks_good_ones(tmp_path, mmmic):
    bad = tmp_path / "bad.mmi"
    bad.write_text("model m\nproto u : scalr\n")
    r = mmmic("check", str(bad), TWO_VIEWS)
    assert r.code == 1
    assert "unknown type `scalr`" in r.stderr and "did you mean `scalar`?" in r.stderr
    assert "ok " in r.stdout


@pytest.mark.parametrize("args", [[], ["check"], ["nope"], ["compile"], ["check", TWO_VIEWS, "--bogus"]])
def test_usage_errors_exit_2(args, mmmic):
    r = mmmic(*args)
    assert r.code == 2
    assert "Traceback" not in r.stderr


def test_set_unknown_name_exit_2_lists_known(mmmic):
    r = mmmic("check", TWO_VIEWS, "--set", "rho=1")
    assert r.code == 2
    assert "unknown name rho" in r.stderr and "d, eta, rho_h1, rho_h2, rho_t1, rho_t2" in r.stderr


def test_set_malformed_exit_2(mmmic):
    assert mmmic("check", TWO_VIEWS, "--set", "d").code == 2


def test_set_overrides_dim_and_param(tmp_path, mmmic):
    r = mmmic("compile", TWO_VIEWS, "--set", "d=64", "--set", "rho_t1=0.5")
    assert r.code == 0
    ir = json.loads(r.stdout)
    assert ir["dims"]["d"]["value"] == 64
    assert ir["params"]["rho_t1"]["value"] == 0.5
    assert ir["protos"]["n1"]["size"] == 64


def test_missing_spec_file_exit_1(tmp_path, mmmic):
    r = mmmic("check", str(tmp_path / "absent.mmi"))
    assert r.code == 1 and "error[E0002]" in r.stderr and "Traceback" not in r.stderr


def test_non_utf8_spec_exit_1(tmp_path, mmmic):
    bad = tmp_path / "latin.mmi"
    bad.write_bytes(b"model m\n# caf\xe9\n")
    r = mmmic("check", str(bad))
    assert r.code == 1 and "not valid UTF-8" in r.stderr and f"{bad}:2:" in r.stderr


def test_compile_output_dir(tmp_path, mmmic):
    r = mmmic("compile", TWO_VIEWS, "-o", str(tmp_path / "bundle"))
    assert r.code == 0, r.stderr
    assert json.loads((tmp_path / "bundle" / "ir.json").read_text())["name"] == "two_views"


def test_paths_resolve_relative_to_the_spec_not_the_cwd(tmp_path, mmmic):
    r = mmmic("check", ROOT / "specs" / "telescopes.mmi", subprocess=True, cwd=tmp_path)
    assert r.code == 0, r.stderr


def test_mi_json_contract(mmmic):
    r = mmmic("mi", TWO_VIEWS, "--json")
    assert r.code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["model"] == "two_views"
    assert data["params"] == {"eta": 1.0, "rho_t1": 0.3, "rho_t2": 0.3, "rho_h1": 0.1, "rho_h2": 0.2}
    got = {x["query"]: x for x in data["results"]}
    assert list(got) == ["I(theta; x1)", "I(theta; x2)", "I(x1; x2)"]
    assert got["I(theta; x1)"]["nats"] == pytest.approx(5.11367, abs=1e-5)
    assert got["I(x1; x2)"]["bits"] == pytest.approx(4.30901 / 0.6931471805599453, abs=1e-5)


def test_mi_query_text_as_given_and_inf(tmp_path, mmmic):
    spec = tmp_path / "det.mmi"
    spec.write_text("proto u : scalar\ndim d = 3\nlatent z = u * ones(d)\ntarget t = u\nflow x = identity(z)\n")
    r = mmmic("mi", str(spec), "--json", "--query", "I(t;x)", "--query", "I(t; x | t)")
    assert r.code == 0, r.stderr
    res = json.loads(r.stdout)["results"]
    assert res[0]["query"] == "I(t;x)" and res[0]["nats"] == "inf" and res[0]["bits"] == "inf"
    assert "deterministic" in res[0]["reason"]
    assert res[1]["nats"] == 0.0


def test_mi_table_and_default_queries(tmp_path, mmmic):
    spec = tmp_path / "noreports.mmi"
    spec.write_text((ROOT / "specs" / "two_views.mmi").read_text().split("report")[0])
    r = mmmic("mi", str(spec), "--set", "d=8")
    assert r.code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(l.startswith("I(theta; x1)") for l in lines) and any(l.startswith("I(x1; x2)") for l in lines)


def test_mi_bad_query_is_an_error_with_caret(mmmic):
    r = mmmic("mi", TWO_VIEWS, "--query", "I(theta; x3)")
    assert r.code == 1
    assert "--> --query:1:10" in r.stderr and "1 | I(theta; x3)" in r.stderr and "did you mean" in r.stderr


def test_compile_bundle_has_mi_json(tmp_path, mmmic):
    assert mmmic("compile", TWO_VIEWS, "-o", str(tmp_path)).code == 0
    data = json.loads((tmp_path / "mi.json").read_text())
    assert [x["query"] for x in data["results"]] == ["I(theta; x1)", "I(theta; x2)", "I(x1; x2)"]


@pytest.mark.parametrize("spec", sorted((ROOT / "specs").glob("*.mmi")), ids=lambda p: p.stem)
def test_mi_on_every_spec_is_finite_or_justified(spec, mmmic):
    r = mmmic("mi", spec, "--json")
    assert r.code == 0
    for res in json.loads(r.stdout)["results"]:
        assert res["nats"] == "inf" and res.get("reason") or isinstance(res["nats"], float)


def test_formula_latex_text_and_sympy(tmp_path, mmmic):
    r = mmmic("formula", TWO_VIEWS, "--query", "I(theta; x1)")
    assert r.code == 0 and r.stdout.startswith("\\begin{equation}") and "\\rho_{t1}" in r.stdout
    r = mmmic("formula", TWO_VIEWS, "--query", "I(theta; x1)", "--format", "text")
    assert r.stdout.strip() == "I(theta; x1) = log((d*rho_t1**2 + rho_h1**2)/rho_h1**2)/2"
    r = mmmic("formula", TWO_VIEWS, "--query", "I(theta; x1)", "--format", "sympy", "--numeric", "d")
    import sympy
    expr = sympy.sympify(r.stdout.strip())
    assert {s.name for s in expr.free_symbols} == {"rho_t1", "rho_h1"}


def test_formula_outside_the_structure_is_exit_1(mmmic):
    r = mmmic("formula", str(ROOT / "specs" / "disentangled.mmi"))
    assert r.code == 1 and "no closed form" in r.stderr and "Traceback" not in r.stderr


def test_compile_bundle_has_formulas_tex(tmp_path, mmmic):
    assert mmmic("compile", TWO_VIEWS, "-o", str(tmp_path)).code == 0
    tex = (tmp_path / "formulas.tex").read_text()
    assert tex.count("\\begin{equation}") == 3


def test_check_flows_reports_round_trip(tmp_path, mmmic):
    spec = tmp_path / "spiral.mmi"
    spec.write_text((ROOT / "specs" / "two_views.mmi").read_text().replace(
        "identity(z2)", "spiral(z2, speed = 0.01, seed = 1)"))
    r = mmmic("check", "--flows", str(spec), "--set", "d=8")
    assert r.code == 0, r.stderr
    assert "flow x2 = spiral: round trip max" in r.stdout


def test_preview_draws_image_modalities(tmp_path, mmmic):
    out = tmp_path / "d"
    assert mmmic("generate", str(ROOT / "specs" / "telescopes.mmi"), "-o", str(out), "-n", "16",
                 "--no-progress").code == 0
    r = mmmic("preview", str(out), "-o", str(tmp_path / "grid.png"), "--rows", "4")
    assert r.code == 0 and "4 tuples of x1, x2" in r.stdout, r.stderr
    from PIL import Image
    small = Image.open(tmp_path / "grid.png").size
    assert mmmic("preview", str(out), "-o", str(tmp_path / "big.png"), "--rows", "4", "--scale", "2").code == 0
    big = Image.open(tmp_path / "big.png").size
    assert big[0] > 1.6 * small[0] and big[1] > 1.6 * small[1]  # --scale: panels twice the size
    assert small[1] > small[0]  # 4 rows, 2 columns


def test_preview_titles_classes_and_labels_rows_with_theta(tmp_path):
    from mmmi_dsl.dataset.preview import flow_titles

    text = (ROOT / "specs" / "digits_views.mmi").read_text()
    titles = flow_titles(text)
    assert titles and all("(digits, class " in v for v in titles.values()), titles


def test_preview_draws_vector_modalities_as_line_plots(tmp_path, mmmic):
    out = tmp_path / "d"
    assert mmmic("generate", TWO_VIEWS, "-o", str(out), "-n", "16", "--set", "d=4", "--no-progress").code == 0
    r = mmmic("preview", str(out), "-o", str(tmp_path / "g.png"))
    assert r.code == 0 and (tmp_path / "g.png").stat().st_size > 1000, r.stderr
    assert mmmic("preview", str(out), "-o", str(tmp_path / "g.png"), "--scale", "0").code == 2


def test_train_flow_on_an_npz_then_missing_data(tmp_path, mmmic):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "toy.npz", x=rng.standard_normal((100, 4)), y=rng.integers(0, 2, 100))
    r = mmmic("train-flow", "--data", str(tmp_path / "toy.npz"), "--out", str(tmp_path / "toy"), "--steps", "20",
              "--hidden", "16", "--no-progress")
    assert r.code == 0, r.stderr
    config = json.loads((tmp_path / "toy.json").read_text())
    assert config["command"].startswith("mmmic train-flow ") and (tmp_path / "toy.safetensors").is_file()
    r = mmmic("train-flow", "--data", str(tmp_path / "absent.npy"), "--out", str(tmp_path / "x"))
    assert r.code == 1 and "cannot read training data" in r.stderr and "Traceback" not in r.stderr


def test_compile_formulas_are_bounded_for_large_models(tmp_path, mmmic):
    """formulas.tex never holds compile up: a large model gets a note instead of a derivation."""
    assert mmmic("compile", str(ROOT / "specs" / "decay.mmi"), "--set", "N=100", "-o", str(tmp_path)).code == 0
    tex = (tmp_path / "formulas.tex").read_text()
    assert "skipped" in tex and "mmmic formula" in tex
    assert (tmp_path / "mi.json").is_file()


def test_closed_pipe_is_not_an_error():
    """`mmmic compile SPEC | head -1` prints one line and exits 0 (no 'Broken pipe' on stderr)."""
    proc = subprocess.run(f"set -o pipefail; {sys.executable} -m mmmi_dsl compile specs/decay.mmi | head -1",
                          check=False, shell=True, executable="/bin/bash", cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "{"
    assert proc.stderr == ""


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_estimate_device_cuda_without_cuda_is_a_usage_error(tmp_path, mmmic):
    out = tmp_path / "d"
    assert mmmic("generate", "specs/two_views.mmi", "--set", "d=4", "-n", "200", "-o", str(out), "--no-progress").code == 0
    r = mmmic("estimate", out, "-q", "I(x1; x2)", "-e", "gaussian", "--device", "cuda")
    assert r.code == 2
    err = r.stderr
    assert "--device 'cuda': CUDA is not available" in err
