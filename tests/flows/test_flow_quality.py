"""The measuring tools of learned flows (issue 15, item 6), on tiny sizes: the Fréchet distance
against closed forms, the independent classifier (deterministic, safetensors, no pickle), and the
whole report (benchmarks/flow_quality.py) on a tiny random UNet and a tiny classifier. These check
the machinery, not the quality."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys

import numpy as np
import pytest
import scipy.linalg
import torch

pytest.importorskip("torchdiffeq")
pytest.importorskip("safetensors")

from mmmi_dsl.builtins import weights
from mmmi_dsl.flows.classifier import (
    Classifier,
    load_classifier,
    predict,
    reference_data,
    reference_kind,
    save_classifier,
    train_classifier,
)
from mmmi_dsl.flows.cnf import net_from_config
from mmmi_dsl.flows.quality import Solver, assess, build, frechet_distance, frechet_of, latents, run_flow
from mmmi_dsl.flows.train import architecture, save_weights

from ..conftest import ROOT

TINY = {"channels": 8, "mults": [1, 2], "groups": 4, "heads": 2, "t_dim": 16, "t_freqs": 4}



def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- the Fréchet distance


def test_frechet_of_commuting_gaussians_is_the_closed_form():
    """Diagonal covariances: d^2 = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2."""
    a, b = np.array([1.0, 4.0, 9.0, 0.25]), np.array([4.0, 4.0, 1.0, 1.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 0.0, 3.0])
    expected = 1 + 4 + (1 - 2) ** 2 + 0 + (3 - 1) ** 2 + (0.5 - 1) ** 2
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    assert frechet_distance([0.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(9 + 1, rel=1e-12)  # 1-D


def test_frechet_of_non_commuting_gaussians_matches_sqrtm():
    """A rotated covariance (S1 S2 not symmetric) against the textbook tr((S1 S2)^1/2) with scipy's sqrtm,
    and the rotation case in closed form: S2 = R S1 R^T has the same spectrum, so with S1 = diag(a, b)
    and a 90-degree R, d^2 = 2 (sqrt(a) - sqrt(b))^2."""
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = m1 @ m1.T + 0.1 * np.eye(6), m2 @ m2.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    textbook = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(textbook, rel=1e-9)
    rot = np.array([[0.0, -1.0], [1.0, 0.0]])
    s = np.diag([4.0, 1.0])
    assert frechet_distance([0, 0], s, [0, 0], rot @ s @ rot.T) == pytest.approx(2 * (2 - 1) ** 2, rel=1e-12)


def test_frechet_is_zero_on_itself_symmetric_and_finite_when_rank_deficient():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(50, 8)), rng.normal(size=(40, 8)) + 0.5
    assert frechet_of(a, a) == pytest.approx(0.0, abs=1e-9)
    assert frechet_of(a, b) == pytest.approx(frechet_of(b, a), rel=1e-9)
    few = rng.normal(size=(5, 8))  # 5 samples of 8 features: a singular covariance
    assert np.isfinite(frechet_of(few, b)) and frechet_of(few, b) > 0


def test_frechet_of_samples_converges_to_the_known_distance():
    rng = np.random.default_rng(2)
    m = rng.normal(size=(3, 3))
    s2 = m @ m.T + np.eye(3)
    a = rng.normal(size=(200_000, 3))
    b = rng.multivariate_normal([1.0, -1.0, 0.5], s2, size=200_000)
    assert frechet_of(a, b) == pytest.approx(frechet_distance(np.zeros(3), np.eye(3), [1.0, -1.0, 0.5], s2),
                                             rel=0.02)


# ---------------------------------------------------------------- the classifier


@pytest.fixture(scope="module")
def digits_split():
    return reference_data("digits")


def _tiny_classifier(digits_split, seed=0):
    train, test = digits_split
    return train_classifier(train, test, channels=(4, 8), features=16, epochs=3, batch_size=64, lr=1e-2, seed=seed,
                            limit=600)


def test_classifier_training_is_deterministic_and_saved_without_pickle(tmp_path, digits_split):
    m1, rec1 = _tiny_classifier(digits_split)
    m2, rec2 = _tiny_classifier(digits_split)
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert rec1["test_accuracy"] == rec2["test_accuracy"] > 0.2  # 3 epochs of 600 digits: above chance (0.1)
    assert len(rec1["test_accuracy_per_class"]) == 10 and rec1["n_train"] == 600
    path = save_classifier(tmp_path / "c.safetensors", m1, rec1)
    assert path.read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle
    loaded, record = load_classifier(path)
    assert record == json.loads(json.dumps(rec1)) and reference_kind(record) == "digits"
    x = digits_split[1].x[:50]
    assert np.array_equal(predict(loaded, x)[0], predict(m1, x)[0])
    assert predict(loaded, x)[1].shape == (50, 16)
    with pytest.raises(ValueError, match="not a classifier"):
        load_classifier(weights.SHIPPED["digits"])


def test_classifier_takes_flat_or_image_batches_and_checks_its_depth():
    net = Classifier((1, 28, 28), (4, 8, 8), features=12)
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(net(x), net(x.reshape(3, 784))) and net.features(x).shape == (3, 12)
    with pytest.raises(ValueError, match="halvings"):
        Classifier((1, 8, 8), (4, 4, 4, 4))


def test_train_classifier_script_writes_the_record(tmp_path):
    script = _script("train_classifier")
    out = tmp_path / "d.safetensors"
    rec = script.main(["--data", "digits", "--epochs", "1", "--channels", "4", "--features", "8", "--limit", "200",
                       "--out", str(out)])
    _, saved = load_classifier(out)
    assert saved["reference"] == "digits" and saved["command"].endswith(f"--out {out}")
    assert saved["test_accuracy"] == rec["test_accuracy"] and saved["train_seconds"] >= 0


# ---------------------------------------------------------------- the report


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory, digits_split):
    """A tiny random 10-class UNet on 1x8x8 (every tensor random, so the field moves) and a tiny classifier."""
    where = tmp_path_factory.mktemp("quality")
    config = architecture("unet", 64, 10, (1, 8, 8), **TINY)
    torch.manual_seed(0)
    net = net_from_config(config)
    with torch.no_grad():
        for p in net.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.1)
    config["steps_done"] = 7
    save_weights(where / "u", {k: v.clone() for k, v in net.state_dict().items()}, config)
    model, record = _tiny_classifier(digits_split)
    save_classifier(where / "c.safetensors", model, record)
    return where / "u.safetensors", where / "c.safetensors"


def test_report_on_a_tiny_unet(tmp_path, tiny_files):
    unet, clf = tiny_files
    solvers = [Solver("rk4", 4), Solver("rk4", 8), Solver("dopri5", rtol=1e-4, atol=1e-5)]
    r = assess(unet, clf, classes=[0, 3], n=6, roundtrip_n=4, solvers=solvers, threads=[1], batch=4,
               throughput_batch=3)
    assert r.steps_done == 7 and r.arch == "unet" and r.class_names == ["0", "3"]
    assert len(r.consistency) == 2 and all(0 <= c <= 1 for c in r.consistency)
    assert len(r.real_accuracy) == 2 and r.frechet_n == 12
    assert r.frechet > 0 and r.frechet_floor >= 0
    rows = {t["solver"]: t for t in r.roundtrip}
    assert list(rows) == ["rk4, 4 steps", "rk4, 8 steps", "dopri5 (rtol 0.0001, atol 1e-05)"]
    default = rows["rk4, 4 steps"]
    assert default["forward_s_per_sample"] is None  # the generated samples were reused
    assert rows["rk4, 8 steps"]["nfe_forward"] == rows["rk4, 8 steps"]["nfe_inverse"] == 32
    assert default["n"] == 4 and 0 < default["mean"] <= default["max"] < 1e-2
    # the reused samples (the first 2 of the 6 generated per class, in batches of 4) give the round trip
    worst, nfe = 0.0, None
    for k in (0, 3):
        flow = build(unet, 64, k, solvers[0])
        x, _, nfe = run_flow(flow, latents(0, k, 6, 64), 4)
        zr, _, _ = run_flow(flow, x[:2], 4, inverse=True)
        worst = max(worst, float(np.abs(zr.astype(np.float64) - latents(0, k, 2, 64)).max()))
    assert default["max"] == worst and nfe == 16
    (t,) = r.throughput
    assert t["threads"] == 1 and t["batch"] == 3 and t["nfe"] == 16 and t["samples_per_s"] > 0
    assert 0 < t["fraction_of_floor"] < 1.5 and t["peak_rss_mib"] > 10
    assert r.peak_rss_mib > 10 and r.seconds["total"] > 0


def test_report_is_deterministic_and_checks_its_inputs(tiny_files):
    unet, clf = tiny_files
    kw = {"classes": [1], "n": 4, "roundtrip_n": 0, "threads": [], "solvers": [Solver("rk4", 2)]}
    a, b = assess(unet, clf, **kw), assess(unet, clf, **kw)
    assert (a.consistency, a.frechet) == (b.consistency, b.frechet) and not a.roundtrip and not a.throughput
    with pytest.raises(ValueError, match="class 10"):
        assess(unet, clf, **{**kw, "classes": [10]})
    with pytest.raises(ValueError, match=r"at least 0 \(got 0, 256, 256, 1, 0\)"):
        assess(unet, clf, **{**kw, "n": 0})
    with pytest.raises(ValueError, match="no classes"):
        assess(unet, clf, **{**kw, "classes": []})
    twice = assess(unet, clf, **{**kw, "classes": [1, 1]})  # a class named twice is measured once
    assert twice.classes == [1] and twice.consistency == a.consistency and twice.frechet == a.frechet
    # two worker processes (one thread each) make the same samples as this process on one thread (each
    # class's latents are seeded apart), on a graded grid too
    graded = {**kw, "classes": [1, 4], "solvers": [Solver("rk4", 3, grid_power=1.5)]}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = assess(unet, clf, **graded)
    finally:
        torch.set_num_threads(threads)
    two = assess(unet, clf, **graded, workers=2, cache=unet.parent / "cache")
    assert two.solver == "rk4, 3 steps, grid power 1.5"
    assert two.consistency == one.consistency and two.frechet == pytest.approx(one.frechet, rel=1e-9)
    # the cache keeps each class's samples: a rerun reads them and never runs the flow; other settings miss it
    assert len(list((unet.parent / "cache").glob("forward-*.npz"))) == 2
    import mmmi_dsl.flows.quality as quality

    def unused(*_a, **_k):
        raise AssertionError("the cached classes were run again")

    real, quality.run_flow = quality.run_flow, unused
    try:
        again = assess(unet, clf, **graded, cache=unet.parent / "cache")
    finally:
        quality.run_flow = real
    assert (again.consistency, again.frechet) == (two.consistency, two.frechet)
    assess(unet, clf, **{**graded, "guidance": 0.5}, cache=unet.parent / "cache")
    assert len(list((unet.parent / "cache").glob("forward-*.npz"))) == 4
    fashion_like = Classifier((1, 28, 28), (4,), features=4)
    bad = save_classifier(clf.with_name("f.safetensors"), fashion_like,
                          {"config": {"format": "mmmi_dsl.classifier/1", "shape": [1, 28, 28], "channels": [4],
                                      "features": 4, "n_classes": 10}, "data": "dataset-fashion-mnist train"})
    with pytest.raises(ValueError, match="784 values, the flow makes 64"):
        assess(unet, bad, **kw)


def test_a_class_is_made_in_cached_parts_with_the_whole_class_batches(tiny_files, monkeypatch):
    """Parts of PART_ROWS rows, in whole batches, give the whole class's samples bit for bit, and a rerun
    after an interruption makes only the parts not yet cached."""
    import mmmi_dsl.flows.quality as quality

    unet, clf = tiny_files
    kw = {"classes": [1, 4], "n": 5, "roundtrip_n": 0, "threads": [], "solvers": [Solver("rk4", 2)], "batch": 2}
    whole = assess(unet, clf, **kw)
    monkeypatch.setattr(quality, "PART_ROWS", 3)  # rounded down to one batch of 2
    cache = unet.parent / "parts"
    made = []
    real = quality.run_flow

    def counted(flow, x, batch, inverse=False):
        made.append(len(x))
        if len(made) == 4:
            raise KeyboardInterrupt  # interrupted in the fourth part
        return real(flow, x, batch, inverse)

    monkeypatch.setattr(quality, "run_flow", counted)
    with pytest.raises(KeyboardInterrupt):
        assess(unet, clf, **kw, cache=cache)
    assert made == [2, 2, 1, 2] and len(list(cache.glob("forward-*.npz"))) == 3
    made.clear()
    parts = assess(unet, clf, **kw, cache=cache)
    assert made == [2, 2, 1]  # the second class's three parts only
    assert (parts.consistency, parts.frechet) == (whole.consistency, whole.frechet)
    job = quality.Solve(str(unet), 64, 4, Solver("rk4", 2), 0.0, 0, 2, 2, start=3)
    np.testing.assert_array_equal(job.input(), quality.latents(0, 4, 5, 64)[3:])


def test_flow_quality_script_on_the_shipped_digits_flow(tmp_path, tiny_files, capsys):
    """The command on the shipped (MLP) digits weights by name: markdown on stdout, the same as JSON."""
    _, clf = tiny_files
    script = _script("flow_quality")
    out = tmp_path / "q.json"
    r = script.main(["digits", "--classifier", str(clf), "--classes", "3,8", "-n", "5", "--roundtrip-n", "2",
                     "--solvers", "rk4:8,euler:8", "--threads", "", "--json", str(out)])
    text = capsys.readouterr().out
    assert "| 3 | 3 |" in text and "Fréchet distance" in text and "| rk4, 8 steps | 2 |" in text
    assert "| euler, 8 steps |" in text and "Throughput" not in text
    saved = json.loads(out.read_text())
    assert saved["arch"] == "mlp" and saved["consistency"] == r.consistency and saved["n"] == 5
    assert [s.label for s in script.solvers("rk4:16,dopri5,dopri5:1e-5")] == \
        ["rk4, 16 steps", "dopri5 (rtol 1e-07, atol 1e-08)", "dopri5 (rtol 1e-05, atol 1e-06)"]


def test_flow_quality_solver_arguments():
    """``rk4:28:1.5`` is a graded grid, ``rk4:32`` a uniform one, ``default`` the flow's own solver."""
    from mmmi_dsl.builtins.flows import FASHION_SOLVER

    script = _script("flow_quality")
    assert script.solver("rk4:28:1.5") == Solver("rk4", 28, grid_power=1.5)
    assert script.solver("rk4:32") == Solver("rk4", 32) and script.solver("default") is None
    assert script.default_solver("fashion") == Solver("rk4", **FASHION_SOLVER)
    assert script.default_solver("digits") == script.default_solver("my.safetensors") == Solver("rk4", 32)
    with pytest.raises(argparse.ArgumentTypeError, match="GRID_POWER"):
        script.solver("rk4:28:fine")
    with pytest.raises(argparse.ArgumentTypeError, match="grid_power` must be in 0.1..10"):
        script.solver("rk4:28:20")
    with pytest.raises(argparse.ArgumentTypeError, match="same float32 number"):
        script.solver("rk4:28:6")


@pytest.mark.parametrize("args", [["-n", "0"], ["--batch", "0"], ["--workers", "0"], ["--roundtrip-n", "-1"],
                                  ["--threads", "1,0"], ["--gpu-batches", "256,-4"], ["--batch", "2.5"]])
def test_flow_quality_refuses_counts_out_of_range_where_they_enter(args, capsys):
    """A count below its least value is a usage error (exit 2) naming the flag, before anything runs."""
    with pytest.raises(SystemExit) as stop:
        _script("flow_quality").main(["digits", *args])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"argument {args[0]}" in err and "Traceback" not in err


# ---------------------------------------------------------------- on a device


def test_device_cpu_is_the_cpu_path_and_times_the_device_throughput(tiny_files):
    """``device="cpu"`` given explicitly is the default path (the same numbers); ``device_batches`` times
    the flow in this process at each batch size beside its network alone; ``on_part`` sees each part."""
    unet, clf = tiny_files
    kw = {"classes": [2, 5], "n": 3, "roundtrip_n": 2, "threads": [], "solvers": [Solver("rk4", 3, grid_power=1.5)],
          "batch": 2}
    plain = assess(unet, clf, **kw)
    parts = []
    r = assess(unet, clf, **kw, device="cpu", device_batches=[3, 5],
               on_part=lambda rep: parts.append((len(rep.consistency), len(rep.roundtrip), len(rep.device_throughput))))
    assert (r.consistency, r.frechet, r.frechet_floor) == (plain.consistency, plain.frechet, plain.frechet_floor)
    assert [t["max"] for t in r.roundtrip] == [t["max"] for t in plain.roundtrip]
    assert plain.device == r.device == "cpu" and not plain.device_throughput and r.peak_gpu_mib is None
    assert r.device_info["device"] == "cpu" and "name" not in r.device_info
    assert parts == [(2, 0, 0), (2, 1, 0), (2, 1, 1), (2, 1, 2), (2, 1, 2)]
    rows = r.device_throughput
    assert [t["batch"] for t in rows] == [3, 5] and all(t["nfe"] == 12 and t["device"] == "cpu" for t in rows)
    assert all(t["samples_per_s"] > 0 and 0 < t["fraction_of_floor"] < 1.5 for t in rows)
    assert all(t["peak_gpu_mib"] is None and t["gpu_mib_before"] is None for t in rows)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="workers > 1"):
            assess(unet, clf, **kw, device="cuda", workers=2)
    else:
        with pytest.raises(ValueError, match="no CUDA device"):
            assess(unet, clf, **kw, device="cuda")


def test_flow_quality_script_writes_its_json_after_each_part(tmp_path, tiny_files, monkeypatch):
    """A part that fails leaves the JSON of the parts before it."""
    import mmmi_dsl.flows.quality as quality

    unet, clf = tiny_files
    script = _script("flow_quality")
    out = tmp_path / "q.json"

    def broken(*_args, **_kw):
        raise RuntimeError("the round trip broke")

    monkeypatch.setattr(quality, "measure_roundtrip", broken)
    with pytest.raises(RuntimeError, match="broke"):
        script.main([str(unet), "--classifier", str(clf), "--classes", "1", "-n", "2", "--roundtrip-n", "2",
                     "--solvers", "rk4:2", "--threads", "", "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved["consistency"] and saved["roundtrip"] == [] and saved["device"] == "cpu"
    assert saved["device_throughput"] == [] and saved["peak_gpu_mib"] is None
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as stop:
            script.main([str(unet), "--classifier", str(clf), "--device", "cuda"])
        assert stop.value.code == 2


@pytest.mark.gpu
def test_the_report_on_cuda_matches_the_cpu(tiny_files):
    """The GPU runs the same latents through the same flow: the same labels and round trips up to
    float32 rounding (IEEE, no TF32), and its throughput with peak GPU memory at each batch size."""
    unet, clf = tiny_files
    kw = {"classes": [0, 7], "n": 20, "roundtrip_n": 10, "threads": [], "solvers": [Solver("rk4", 8, grid_power=1.5)],
          "batch": 8}
    cpu = assess(unet, clf, **kw)
    gpu = assess(unet, clf, **kw, device="cuda", device_batches=[256, 1024])
    assert gpu.device == "cuda" and gpu.device_info["float32"].startswith("ieee") and gpu.peak_gpu_mib > 0
    assert np.allclose(gpu.consistency, cpu.consistency, atol=0.051)  # a sample on a boundary may flip
    assert gpu.frechet == pytest.approx(cpu.frechet, rel=0.05, abs=1e-3)
    assert gpu.roundtrip[0]["max"] == pytest.approx(cpu.roundtrip[0]["max"], rel=0.2, abs=1e-6)
    flow_cpu, flow_gpu = build(unet, 64, 7, kw["solvers"][0]), build(unet, 64, 7, kw["solvers"][0], device="cuda")
    z = latents(0, 7, 64, 64)
    assert np.abs(run_flow(flow_gpu, z, 64)[0] - run_flow(flow_cpu, z, 64)[0]).max() < 1e-4
    rows = gpu.device_throughput
    assert [t["batch"] for t in rows] == [256, 1024] and all(t["peak_gpu_mib"] > t["gpu_mib_before"] for t in rows)
    # the floor synchronises after every evaluation and the solve does not, so it may pass 100 % a little
    assert all(t["device"].startswith("cuda") and 0 < t["fraction_of_floor"] < 3 for t in rows)


def test_solver_grid_script_on_the_digits_flow(tmp_path):
    """benchmarks/solver_grid.py: one row per class and grid; more steps on the same grid invert better."""
    rows = _script("solver_grid").main(["digits", "--classes", "3", "-n", "4", "--grids", "u4,u16,1.5x16",
                                        "--json", str(tmp_path / "g.json")])
    assert [(r["grid_power"], r["steps"]) for r in rows] == [(1.0, 4), (1.0, 16), (1.5, 16)]
    assert rows[1]["max"] < rows[0]["max"] and all(0 < r["mean"] <= r["max"] for r in rows)
    assert json.loads((tmp_path / "g.json").read_text()) == rows


@pytest.mark.skipif(not weights.SHIPPED["fashion"].is_file(), reason="the fashion weights are not installed")
def test_solver_grid_on_a_specs_own_latents_takes_the_tail_along_the_template(tmp_path):
    """``--spec``: the latents are the spec's (standardised as ``generate`` does), and the ones kept
    are those farthest along the leading eigenvector of their exact covariance, which for
    fashion_views' all-ones template is ones / 28: the same as projecting on it directly."""
    spec = str(ROOT / "specs" / "fashion_views.mmi")
    rows = _script("solver_grid").main(["--spec", spec, "--modality", "x1", "-n", "2", "--draws", "50",
                                        "--grids", "u1,u2", "--json", str(tmp_path / "g.json")])
    assert [(r["class"], r["steps"], r["n"]) for r in rows] == [(1, 1, 2), (1, 2, 2)]
    from mmmi_dsl.spec import spec_from_text

    model = spec_from_text((ROOT / "specs" / "fashion_views.mmi").read_text())
    sampler = model.sampler()  # generate's chunks (32 tuples each here)
    z = sampler.flow_inputs("x1", 0, 50).double()
    along = (z @ torch.full((784,), 1 / 28, dtype=torch.float64)).abs().sort(descending=True).values[:2]
    assert np.allclose(np.abs(rows[0]["along"]), along.numpy(), atol=2e-3), (rows[0]["along"], along)
    assert all(r["max"] == max(r["max_per_latent"]) for r in rows)
    assert json.loads((tmp_path / "g.json").read_text()) == rows
    for bad in (["fashion", "--spec", spec, "--modality", "x1"], ["--spec", spec], ["fashion", "--modality", "x1"]):
        with pytest.raises(SystemExit) as err:
            _script("solver_grid").main(bad)
        assert err.value.code == 2


def test_dataset_roundtrip_script_inverts_every_tuple_of_a_generated_dataset(tmp_path):
    """benchmarks/dataset_roundtrip.py: the latents it recomputes are the ones the images were drawn
    from (over two chunks and two shards), so the round trip is the flow's own (digits: ~1e-5), per
    tuple; a modality the dataset lacks is a usage error."""
    from mmmi_dsl.spec import spec_from_text

    spec = ROOT / "specs" / "digits_views.mmi"
    spec_from_text(spec.read_text(), file=str(spec)).generate(tmp_path / "d", 12, chunk_size=4, shard_size=8)
    report = _script("dataset_roundtrip").main([str(tmp_path / "d"), "x1", "--batch", "5",
                                                "--json", str(tmp_path / "r.json")])
    assert report["n"] == 12 and len(report["worst_rows"]) == 10
    assert 0 < report["max"] < 1e-3 and report["max"] == report["worst_rows"][0]["max"]
    assert json.loads((tmp_path / "r.json").read_text()) == report
    for bad in (["x9"], ["x1", "--batch", "0"]):
        with pytest.raises(SystemExit) as err:
            _script("dataset_roundtrip").main([str(tmp_path / "d"), *bad])
        assert err.value.code == 2


def test_the_cache_key_on_cuda_holds_the_tf32_switches(tiny_files):
    """TF32 convolutions change a CUDA flow's bits, so a cached part made under them is not reused in
    IEEE float32; the CPU key does not depend on the switches. (No GPU is needed to compute a key.)"""
    from mmmi_dsl.flows.quality import Solve

    unet, _ = tiny_files
    keys = {}
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        for tf32 in (False, True):
            torch.backends.cudnn.allow_tf32 = tf32
            for device in ("cpu", "cuda"):
                job = Solve(str(unet), 64, 0, Solver("rk4", 2), 0.0, 0, 2, 2, device=device)
                keys[tf32, device] = job.key(job.input())
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    assert keys[False, "cpu"] == keys[True, "cpu"] and keys[False, "cuda"] != keys[True, "cuda"]
