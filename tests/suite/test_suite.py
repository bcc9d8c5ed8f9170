"""`mmmic suite run` end to end: a user's plug-in, a class, a command, failures, timeouts, resuming,
conditional MI by the chain rule, and the outputs (JSON rows, CSV, markdown, plot)."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from mmmi_dsl.dataset import load_arrays

from .toy_estimator import gaussian_mi

HERE = Path(__file__).resolve().parent
MULTINORMAL = 9  # multinormal-dense-{2,3,5,25,50}-..., multinormal-sparse-{2,3,5,25}-...


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def mypkg(tmp_path, monkeypatch) -> Path:
    """A user's package `mypkg` in the working directory, as `--estimator mypkg:plugin` finds it."""
    (tmp_path / "mypkg").mkdir()
    shutil.copyfile(HERE / "toy_estimator.py", tmp_path / "mypkg" / "__init__.py")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "mypkg", raising=False)
    return tmp_path


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_a_plugin_runs_on_the_multinormal_tasks(mmmic, mypkg, cache):
    out = mypkg / "res"
    r = mmmic("suite", "run", "--estimator", "mypkg:plugin", "--tasks", "multinormal-*", "-n", 2000, "-o", out,
              "--seeds", "0", "--cache", cache, "--no-progress")
    assert r.code == 0, r.stderr
    res = _results(out)
    assert res["suite"] == "mmmic-suite/1" and res["seeds"] == [0] and res["package_version"]
    assert res["estimator"] == {"kind": "python", "label": "mypkg:plugin", "options": {}}
    rows = res["rows"]
    assert len(rows) == MULTINORMAL and all(r["task"].startswith("multinormal-") for r in rows)
    for row in rows:
        assert row["failure"] is None and row["n"] == 2000 and row["seconds"] >= 0
        assert row["error"] == pytest.approx(row["estimate_nats"] - row["exact_nats"], abs=1e-12)
        directory = cache / row["dataset"]
        x, y = (np.asarray(load_arrays(directory, v)) for v in ("x", "y"))
        assert row["estimate_nats"] == pytest.approx(gaussian_mi(x, y), rel=1e-9)  # the plug-in read these files
        p, q = (int(s) for s in row["dims"].split(" x "))
        assert (p, q) == (x.shape[1], y.shape[1])
        # Gaussian data: the bias-corrected plug-in is within ~4 SE (SE <= 0.03 at n = 2000, p + q <= 10)
        if p + q <= 10:
            assert abs(row["error"]) < 0.12, row
    exact = {r["task"]: r["exact_nats"] for r in rows}  # BMI's MIs
    assert exact["multinormal-dense-2-2-0.5"] == pytest.approx(0.29389333245, abs=1e-10)
    assert exact["multinormal-sparse-25-25-2-2.0"] == pytest.approx(1.02165124753, abs=1e-10)
    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [t["task"] for t in table] == [r["task"] for r in rows]
    summary = {(g["family"], g["dims"]): g for g in csv.DictReader(open(out / "summary.csv"))}
    assert summary[("bmi-multinormal-dense", "50 x 50")]["tasks"] == "1"
    assert summary[("all", "all")]["tasks"] == str(MULTINORMAL)
    md = (out / "results.md").read_text()
    assert "| bmi-multinormal-sparse | 25 x 25 |" in md and "mypkg:plugin" in md
    assert (out / "plot.png").stat().st_size > 5000

    # a rerun resumes: nothing to do, the rows unchanged
    again = mmmic("suite", "run", "--estimator", "mypkg:plugin", "--tasks", "multinormal-*", "-n", 2000, "-o", out,
                  "--seeds", "0", "--cache", cache, "--no-progress")
    assert again.code == 0 and "[1/" not in again.stdout
    assert _results(out)["rows"] == rows
    # another estimator in the same DIR is refused
    other = mmmic("suite", "run", "-e", "gaussian", "--tasks", "multinormal-*", "-n", 2000, "-o", out,
                  "--seeds", "0", "--cache", cache)
    assert other.code == 2 and "holds results of another run" in other.stderr


def test_a_class_with_options_and_a_command(mmmic, mypkg, cache):
    out = mypkg / "cls"
    r = mmmic("suite", "run", "-e", "mypkg:Toy", "--option", "bias=false", "--tasks", "multinormal-dense-2-*",
              "-n", 2000, "--seeds", "0", "-o", out, "--cache", cache, "--no-progress")
    assert r.code == 0, r.stderr
    (row,) = _results(out)["rows"]
    x, y = (np.asarray(load_arrays(cache / row["dataset"], v)) for v in ("x", "y"))
    assert row["options"] == {"bias": False}
    assert row["estimate_nats"] == pytest.approx(gaussian_mi(x, y, bias=False), rel=1e-9)

    cmd = f"{sys.executable} {HERE / 'toy_estimator.py'} {{x}} {{y}}"
    out = mypkg / "cmd"
    r = mmmic("suite", "run", "--estimator-cmd", cmd, "--tasks", "multinormal-dense-2-*", "-n", 2000,
              "--seeds", "0", "-o", out, "--cache", cache, "--no-progress")
    assert r.code == 0, r.stderr
    (crow,) = _results(out)["rows"]
    assert _results(out)["estimator"]["kind"] == "command"
    assert crow["estimate_nats"] == pytest.approx(gaussian_mi(x, y), rel=1e-9)  # the same files went to the command


def test_failures_are_rows_not_crashes(mmmic, mypkg, cache):
    cases = [(["-e", "mypkg:broken"], "RuntimeError: this estimator always fails"),
             (["-e", "mypkg:slow", "--timeout", "1"], "timeout: the estimator ran past 1 s"),
             (["--estimator-cmd", f"{sys.executable} {HERE / 'toy_estimator.py'} {{x}} {{y}} --fail"],
              "exited with 1: failing on purpose")]
    for i, (flags, message) in enumerate(cases):
        out = mypkg / f"fail{i}"
        r = mmmic("suite", "run", *flags, "--tasks", "multinormal-dense-2-*,multinormal-dense-3-*", "-n", 2000,
                  "--seeds", "0", "-o", out, "--cache", cache, "--no-progress")
        assert r.code == 1, r.stderr
        rows = _results(out)["rows"]
        assert len(rows) == 2 and all(message in row["failure"] and row["estimate_nats"] is None for row in rows)
        assert "| 2 |" in (out / "results.md").read_text()  # two failed in the summary


def test_bad_flags_are_usage_errors(mmmic, mypkg, cache):
    base = ["--tasks", "multinormal-dense-2-*", "-o", mypkg / "bad", "--cache", cache]
    for flags, message in [(["-e", "nosuchmodule:f"], "cannot import"),
                           (["-e", "mypkg:nothing"], "has no 'nothing'"),
                           (["-e", "gsusian"], "not a built-in estimator"),
                           (["-e", "ksg", "--option", "nope=1"], "unknown option nope"),
                           (["--estimator-cmd", "python est.py"], "{x} and {y}"),
                           (["-e", "gaussian", "--tasks", "nosuch*"], "matches no task"),
                           (["-e", "gaussian", "--seeds", "a"], "--seeds"),
                           (["-e", "gaussian", "-n", "5"], "argument -n: must be at least 20, got 5")]:
        r = mmmic("suite", "run", *base, *flags)
        assert r.code == 2 and message in r.stderr, (flags, r.stderr)


def test_conditional_mi_by_the_chain_rule(mmmic, tmp_path, cache):
    out = tmp_path / "cmi"
    r = mmmic("suite", "run", "-e", "gaussian", "--tasks", "decay16-x1-x3-given-x2", "-n", 4000, "--seeds", "0",
              "-o", out, "--cache", cache, "--no-progress")
    assert r.code == 0, r.stderr
    (row,) = _results(out)["rows"]
    assert row["dims"] == "16 x 16 | 16" and row["family"] == "conditional"
    joint, marginal = row["parts"]
    assert joint["query"] == "I(x[1]; x[3], x[2])" and marginal["query"] == "I(x[1]; x[2])"
    assert row["estimate_nats"] == pytest.approx(joint["estimate_nats"] - marginal["estimate_nats"], abs=1e-12)
    # exact 0.0871; each part's SE is about 0.02 at n = 4000, and they share the data (the difference's SE is smaller)
    assert abs(row["error"]) < 0.1, row


def test_generate_caches_resumes_and_verifies(mmmic, tmp_path):
    cache = tmp_path / "cache"
    args = ["suite", "generate", "--tasks", "multinormal-dense-2-*", "-n", 400, "--seeds", "0,1", "--cache", cache,
            "--no-progress"]
    first = mmmic(*args)
    assert first.code == 0, first.stderr
    assert first.stdout.count("generated in") == 2 and "2 dataset(s) ready" in first.stdout
    dirs = sorted(p for p in cache.iterdir())
    assert len(dirs) == 2 and all((d / "suite-verified.json").is_file() for d in dirs)
    stamp = json.loads((dirs[0] / "suite-verified.json").read_text())
    assert any(line.startswith("ok: I(x; y)") for line in stamp["findings"])  # the data met the exact MI
    again = mmmic(*args)
    assert again.code == 0 and again.stdout.count("cached") == 2
    shard = next(dirs[0].rglob("*.npy"))  # a flipped byte is caught before use
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    broken = mmmic(*args)
    assert broken.code == 1 and "failed verification" in broken.stdout and "sha256" in broken.stdout
