"""The CLI contract: exit codes (0 ok, 1 spec error, 2 usage), stderr format, --set."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ..conftest import ROOT

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
    assert mmmic("generate", "specs/two_views.mmi", "--set", "d=4", "-n", "200", "-o", str(out),
                 "--no-progress").code == 0
    r = mmmic("estimate", out, "-q", "I(x1; x2)", "-e", "gaussian", "--device", "cuda")
    assert r.code == 2
    err = r.stderr
    assert "--device 'cuda': CUDA is not available" in err


# ----------------------------------------------------------------- issue 14 items 8 and 9

@pytest.fixture(scope="module")
def tv_dataset(tmp_path_factory):
    """two_views at d = 4, 64 samples: a dataset to ask questions about."""
    from mmmi_dsl.cli import main

    out = tmp_path_factory.mktemp("q") / "tv"
    assert main(["generate", TWO_VIEWS, "-o", str(out), "-n", "64", "--set", "d=4", "--set", "rho_t1=0.5",
                 "--no-progress"]) == 0
    return out


def mi_json_of(r) -> dict:
    assert r.code == 0, r.stderr
    return {x["query"]: x["nats"] for x in json.loads(r.stdout)["results"]}


def test_mi_on_a_dataset_answers_any_query_at_its_recorded_values(tv_dataset, mmmic):
    """Before: `mi DIR` was E0002 (a folder), `mi DIR/manifest.json` 20 syntax errors."""
    queries = ["I(theta; x1, x2)", "I(x1; x2 | theta)", "TC(x1; x2; theta)", "II(theta; x1; x2)"]
    flags = [a for q in queries for a in ("-q", q)]
    want = mi_json_of(mmmic("mi", TWO_VIEWS, "--set", "d=4", "--set", "rho_t1=0.5", "--json", *flags))
    assert mi_json_of(mmmic("mi", tv_dataset, "--json", *flags)) == want
    assert mi_json_of(mmmic("mi", tv_dataset / "manifest.json", "--json", *flags)) == want
    assert want["I(x1; x2 | theta)"] == 0 and want["I(theta; x1, x2)"] > 1
    manifest = json.loads((tv_dataset / "manifest.json").read_text())
    r = mmmic("mi", tv_dataset)  # no query: the recorded reports, with the recorded values
    assert r.code == 0 and r.stderr == "" and r.stdout.startswith("# model two_views:")
    for entry in manifest["mi"]:
        assert any(line.startswith(entry["query"]) and f"{entry['nats']:.6f}" in line for line in r.stdout.splitlines())
    r = mmmic("formula", tv_dataset, "-q", "I(theta; x1)", "--format", "text", "--numeric", "all")
    assert r.code == 0 and r.stdout.startswith("I(theta; x1) = ")


def test_mi_on_a_dataset_refuses_set_and_a_bad_manifest(tv_dataset, tmp_path, mmmic):
    r = mmmic("mi", tv_dataset, "--set", "d=8")
    assert r.code == 2 and "--set does not apply to a dataset" in r.stderr
    assert mmmic("mi", tmp_path).code == 1  # a folder without a manifest: a data error, named
    for change, message in [({"spec": ""}, "records no spec text"),
                            ({"spec_sha256": "0" * 64}, "does not match its `spec_sha256`"),
                            ({"params": {"rho_t1": "x"}}, "not a finite number"),
                            ({"params": {"nope": 1.0}}, "a parameter `nope`")]:
        copy = tmp_path / "m.json"
        manifest = json.loads((tv_dataset / "manifest.json").read_text())
        copy.write_text(json.dumps({**manifest, **change}))
        r = mmmic("mi", copy)
        assert r.code == 1 and message in r.stderr, (change, r.stderr)


def test_mi_on_a_dataset_reads_the_spec_files_from_the_dataset_directory(tmp_path, mmmic):
    """The spec's relative paths resolve against the dataset directory (not the cwd, not the
    spec's folder, which the manifest does not record; generate copies them there,
    tests/dataset/test_spec_files.py); a missing file is E0208 at its line."""
    spec_dir = tmp_path / "spec"
    (spec_dir / "data").mkdir(parents=True)
    np.save(spec_dir / "data" / "t.npy", np.array([1.0, 2.0, 0.5]))
    (spec_dir / "tpl.mmi").write_text("param a = 0.7\nproto u : scalar\nproto n : vector[3]\n"
                                      "template T = npy(\"data/t.npy\")\nlatent z = a * u * T + n\n"
                                      "target theta = u\nflow x = identity(z)\nreport I(theta; x)\n")
    out = tmp_path / "ds"
    assert mmmic("generate", spec_dir / "tpl.mmi", "-o", out, "-n", "16", "--set", "a=0.9", "--no-progress").code == 0
    shutil.rmtree(out / "data")  # the copy generate kept
    r = mmmic("mi", out, "-q", "I(x; u)")
    assert r.code == 1 and r.stdout == ""
    assert "error[E0208]: file `data/t.npy` not found" in r.stderr
    assert f"--> tpl.mmi (in {out / 'manifest.json'}):4:18" in r.stderr
    assert "4 | template T = npy(\"data/t.npy\")" in r.stderr and f"looked for {out / 'data' / 't.npy'}" in r.stderr
    assert "relative to the dataset directory" in r.stderr and "beside the original tpl.mmi" in r.stderr
    (out / "data").mkdir()
    (out / "data" / "t.npy").write_bytes((spec_dir / "data" / "t.npy").read_bytes())
    want = mi_json_of(mmmic("mi", spec_dir / "tpl.mmi", "--set", "a=0.9", "-q", "I(x; u)", "--json"))
    r = mmmic("mi", out, "-q", "I(x; u)", "--json")
    assert mi_json_of(r) == want and r.stderr == ""
    np.save(out / "data" / "t.npy", np.array([1.0, 2.0, 0.6]))  # not the file it was generated with
    r = mmmic("mi", out)
    assert r.code == 0 and "warning: " in r.stderr and "records I(theta; x) = " in r.stderr


def test_mi_answers_every_query_it_can_and_reports_the_others(mmmic):
    """Before: the first bad query stopped the run and hid the answers to the others."""
    r = mmmic("mi", TWO_VIEWS, "--set", "d=4", "-q", "I(theta; x1)", "-q", "I(theta; x9)",
              "-q", "II(x1; x1; x2)", "-q", "I(x1; x2)")
    assert r.code == 1
    lines = r.stdout.splitlines()
    assert [line.split()[0] for line in lines[3:]] == ["I(theta;", "I(x1;"] and len(lines) == 5
    assert "error[E0101]: unknown name `x9`" in r.stderr and "1 | I(theta; x9)" in r.stderr
    assert "error[E0211]: II(...) needs disjoint groups" in r.stderr and "1 | II(x1; x1; x2)" in r.stderr
    r = mmmic("mi", TWO_VIEWS, "--set", "d=4", "-q", "I(theta; x1)", "-q", "I(theta; x9)", "--json")
    data = json.loads(r.stdout)
    assert r.code == 1 and [x["query"] for x in data["results"]] == ["I(theta; x1)"]
    assert data["errors"] == [{"code": "E0101", "message": "unknown name `x9`", "at": "--query:1:10"}]


def test_formula_prints_every_closed_form_it_has_and_why_the_others_have_none(tmp_path, mmmic):
    spec = tmp_path / "mixed.mmi"
    spec.write_text("proto u : scalar\nproto n : vector[2]\nproto m : vector[2]\nmatrix M = uniform(2, 2, seed = 1)\n"
                    "latent z1 = u * ones(2) + n\nlatent z2 = M @ z1 + m\ntarget theta = u\n"
                    "flow x1 = identity(z1)\nflow x2 = identity(z2)\n"
                    "report I(x1; x2)\nreport I(theta; x1)\n")
    r = mmmic("formula", spec, "--format", "text")
    assert r.code == 1 and r.stdout.strip() == "I(theta; x1) = log(3)/2"
    assert "error[E0211]: no closed form for I(x1; x2)" in r.stderr and "10 | report I(x1; x2)" in r.stderr
    r = mmmic("formula", spec, "--format", "text", "-q", "I(theta; x1, x9)", "-q", "I(theta; x1)")
    assert r.code == 1 and r.stdout.strip() == "I(theta; x1) = log(3)/2"
    assert "unknown name `x9`" in r.stderr and "1 | I(theta; x1, x9)" in r.stderr


@pytest.mark.parametrize("query, message", [
    ("TC(x1; x1, x2)", "`x1` is in groups 1 and 2"),
    ("TC(x1; x2; x1)", "`x1` is in groups 1 and 3"),
    ("TC(x1; z1)", "`x1` (group 1) and `z1` (group 2) are one variable"),
    ("II(x1; x1; x2)", "`x1` is in groups 1 and 2"),
    ("II(x1; x2; x1, theta)", "`x1` is in groups 1 and 3"),
])
def test_tc_and_ii_on_groups_that_share_a_variable_are_a_clear_error(query, message, mmmic):
    """Before: E0211 from the engine with the hint for inf - inf ("ask for the two MI terms
    separately"), for TC too; now refused at check, naming the shared variable."""
    r = mmmic("mi", TWO_VIEWS, "--set", "d=4", "-q", query)
    assert r.code == 1 and r.stdout == ""
    assert f"error[E0211]: {query[:2]}(...) needs disjoint groups: {message}" in r.stderr
    assert "--> --query:1:1" in r.stderr and f"1 | {query}" in r.stderr and "= help: " in r.stderr


def test_a_report_of_tc_on_shared_groups_fails_check_at_its_line(tmp_path, mmmic):
    spec = tmp_path / "tc.mmi"
    spec.write_text((ROOT / "specs" / "two_views.mmi").read_text() + "report TC(x1; x1, theta)\n")
    r = mmmic("check", spec)
    assert r.code == 1 and "needs disjoint groups" in r.stderr and "report TC(x1; x1, theta)" in r.stderr


def test_tc_and_ii_match_their_definitions_on_the_exact_gaussian(mmmic):
    """TC = sum_i H(G_i) - H(G_1..G_k) and II = I(A; B) - I(A; B | C), from the covariance by slogdet."""
    t1, t2, h1, h2, d = 0.3, 0.3, 0.1, 0.2, 3
    # the joint covariance of (theta, z1, z2) of two_views: theta = u, z_i = t_i u 1 + h_i n_i
    load = np.concatenate([[1.0], np.full(d, t1), np.full(d, t2)])
    cov = np.outer(load, load) + np.diag(np.concatenate([[0.0], np.full(d, h1 ** 2), np.full(d, h2 ** 2)]))
    idx = {"theta": [0], "x1": list(range(1, 1 + d)), "x2": list(range(1 + d, 1 + 2 * d))}

    def h(*names):  # entropy up to the constants that cancel: 1/2 log det
        sel = [i for n in names for i in idx[n]]
        return 0.5 * np.linalg.slogdet(cov[np.ix_(sel, sel)])[1]

    def mi(a, b, c=()):
        return h(*a, *c) + h(*b, *c) - h(*a, *b, *c) - (h(*c) if c else 0.0)

    want = {"TC(x1; x2; theta)": h("x1") + h("x2") + h("theta") - h("x1", "x2", "theta"),
            "TC(x1, theta; x2)": h("x1", "theta") + h("x2") - h("x1", "x2", "theta"),
            "II(theta; x1; x2)": mi(["theta"], ["x1"]) - mi(["theta"], ["x1"], ["x2"]),
            "II(x1; x2; theta)": mi(["x1"], ["x2"]) - mi(["x1"], ["x2"], ["theta"])}
    got = mi_json_of(mmmic("mi", TWO_VIEWS, "--set", f"d={d}", "--json", *[a for q in want for a in ("-q", q)]))
    assert got == pytest.approx(want, rel=1e-10)
    assert got["TC(x1, theta; x2)"] == pytest.approx(mi(["x1", "theta"], ["x2"]), rel=1e-10)  # TC of two = I


def test_only_the_console_process_freezes_the_collector(monkeypatch, capsys):
    """The console script (no argv) skips pydantic's plugin scan and moves the spec's IR and, at the end,
    everything alive out of the cyclic collector (the final collection cost 85-390 ms at decay N = 300);
    main([...]) in a test's or a user's process never does, as frozen cycles would never be freed there."""
    import gc

    from mmmi_dsl.cli import main

    calls = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setenv("PYDANTIC_DISABLE_PLUGINS", "")  # restored to what it was after the test
    monkeypatch.delenv("PYDANTIC_DISABLE_PLUGINS")
    assert main(["mi", str(ROOT / "specs/two_views.mmi")]) == 0
    assert calls == [] and "PYDANTIC_DISABLE_PLUGINS" not in os.environ
    monkeypatch.setattr(sys, "argv", ["mmmic", "mi", str(ROOT / "specs/two_views.mmi")])
    assert main() == 0
    assert calls == ["freeze", "freeze"]  # after loading the spec, and at the end
    assert os.environ["PYDANTIC_DISABLE_PLUGINS"] == "__all__"  # no scan of every package's metadata
    assert "I(theta; x1)" in capsys.readouterr().out
    monkeypatch.setenv("PYDANTIC_DISABLE_PLUGINS", "")  # the user's own value is kept
    assert main() == 0 and os.environ["PYDANTIC_DISABLE_PLUGINS"] == ""


def test_users_commands_get_their_own_pydantic_plugin_setting(monkeypatch):
    """The console process turns pydantic's plugins off for itself only: a command the user gave (suite
    --estimator-cmd, the BMI adapter) runs with the environment as the user set it."""
    from mmmi_dsl import process

    monkeypatch.setattr(process, "_set_by_mmmic", False)
    monkeypatch.setenv(process.PLUGINS_VARIABLE, "")
    monkeypatch.delenv(process.PLUGINS_VARIABLE)
    process.skip_pydantic_plugins()
    assert os.environ[process.PLUGINS_VARIABLE] == "__all__"
    assert process.PLUGINS_VARIABLE not in process.user_environment()
    monkeypatch.setattr(process, "_set_by_mmmic", False)
    monkeypatch.setenv(process.PLUGINS_VARIABLE, "logfire")  # the user's choice is theirs, here and there
    process.skip_pydantic_plugins()
    assert os.environ[process.PLUGINS_VARIABLE] == "logfire"
    assert process.user_environment()[process.PLUGINS_VARIABLE] == "logfire"


def _minor_faults_of_reused_blocks(keep: bool) -> int:
    """Minor page faults of a fresh process that, 100 times, allocates three 9.6 MB blocks and frees
    them (a UNet pass's pattern: more alive at once than twice the largest block freed so far), with
    or without keep_freed_memory."""
    code = ("import resource, sys, numpy as np\nfrom mmmi_dsl import process\n"
            f"if {keep} and not process.keep_freed_memory():\n    sys.exit(3)\n"
            "start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "for _ in range(100):\n    a, b, c = (np.ones(2_400_000, np.float32) for _ in range(3)); del a, b, c\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    if out.returncode == 3:
        pytest.skip("this allocator takes no such thresholds (not 64-bit glibc)")
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")
def test_the_console_keeps_freed_memory_for_reuse_on_glibc():
    """Freed blocks of a few MB are reused from the heap, not unmapped and faulted in again each time:
    100 rounds of three blocks cost ~140,000 minor faults by default and ~1,300 after it."""
    default, kept = _minor_faults_of_reused_blocks(False), _minor_faults_of_reused_blocks(True)
    assert kept * 20 < default, (kept, default)
