"""CUDA paths (opt-in: ``pytest --rungpu``): the same code on the GPU keeps the same truths.

Each test compares the GPU against the CPU or against the exact MI; none of them can
pass without a CUDA device actually running the code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from mmmi_dsl import cli, load
from mmmi_dsl.backend import Sampler
from mmmi_dsl.estimators import estimate
from mmmi_dsl.lang.lower import resolve_query
from mmmi_dsl.mi.analysis import Analysis

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu
SPECS = Path(__file__).resolve().parents[2] / "specs"


def _shard_hashes(directory: Path) -> list[str]:
    manifest = json.loads((directory / "manifest.json").read_text())
    return [hashlib.sha256((directory / f).read_bytes()).hexdigest()
            for s in manifest["shards"] for _, f in sorted(s["files"].items())]


def test_cuda_generate_is_independent_of_batch_size(tmp_path):
    for batch in (256, 1000):
        assert cli.main(["generate", str(SPECS / "two_views.mmi"), "-o", str(tmp_path / f"b{batch}"), "-n", "3000",
                         "--set", "d=8", "--device", "cuda", "--batch-size", str(batch), "--chunk-size", "250",
                         "--no-progress"]) == 0
    assert _shard_hashes(tmp_path / "b256") == _shard_hashes(tmp_path / "b1000")
    manifest = json.loads((tmp_path / "b256" / "manifest.json").read_text())
    assert manifest["generator"]["device_type"] == "cuda"
    assert cli.main(["verify", str(tmp_path / "b256")]) == 0


def test_cuda_digits_flow_round_trips_and_keeps_mi():
    model = load(SPECS / "digits_views.mmi")
    sampler = Sampler(model, device="cuda", seed=3, save_latents=True)
    report = sampler.flow_roundtrip()
    assert all(r["roundtrip_max"] < 1e-2 and r["roundtrip_mean"] < 1e-3 for r in report.values()), report
    out = sampler.sample_range(0, 512)
    assert out["x1"].shape == (512, 1, 8, 8) and np.isfinite(out["x1"]).all()


def test_cuda_estimators_on_gaussian_data():
    model = load(SPECS / "two_views.mmi", {"d": "4"})
    out = Sampler(model, device="cuda", seed=5).sample_range(0, 10_000)
    exact = Analysis(model).evaluate(resolve_query(model, "I(x1; x2)")).nats
    ksg_gpu = estimate("ksg", out["x1"], out["x2"], device="cuda").nats
    assert abs(estimate("gaussian", out["x1"], out["x2"], device="cuda").nats - exact) < 0.05
    assert abs(ksg_gpu - exact) < 0.1
    for name in ("infonce", "smile"):
        est = estimate(name, out["x1"], out["x2"], device="cuda", max_steps=600).nats
        assert abs(est - exact) < 0.25, (name, est, exact)


def test_cuda_bench_estimators_end_to_end(tmp_path):
    code = cli.main(["bench-estimators", str(SPECS / "two_views.mmi"), "--for", "rho_t1", "--targets", "0.2,0.8",
                     "-n", "4000", "--set", "d=4", "-o", str(tmp_path / "b"), "-e", "gaussian", "-e", "ksg",
                     "--device", "cuda", "--no-progress"])
    assert code == 0
    summary = json.loads((tmp_path / "b" / "results.json").read_text())["summary"]
    assert all(s["rmse"] < 0.1 for s in summary), summary
