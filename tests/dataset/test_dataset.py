"""The on-disk dataset layer: determinism across batch sizes and job splits, kill and
resume (SIGKILL in a subprocess), verify's file and MI checks, identity refusal, job
splits from the environment, the disk-space guard and the plug-in bias formula."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import signal
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

from mmmi_dsl.dataset import (
    DatasetError,
    gaussian_mi,
    load_arrays,
    merge,
    plugin_bias,
    shard_from_env,
    verify,
    write_dataset,
)
from mmmi_dsl.dataset.format import manifest_paths, read_manifest, resume_flags
from mmmi_dsl.errors import UsageError

from ..conftest import ROOT
from ..fake_sampler import FINGERPRINT, FakeSampler, metadata

N, SEED, SHARD, BATCH = 2400, 7, 500, 128  # 5 shards, the last one of 400 samples


def write(out: Path, *, batch_size: int = BATCH, seed: int = SEED, **kw) -> dict:
    return write_dataset(out, FakeSampler(seed), N, seed=seed, shard_size=SHARD, batch_size=batch_size,
                         metadata=kw.pop("meta", metadata()), fingerprint=FINGERPRINT, progress=False, **kw)


def shard_files(manifest: dict) -> list[tuple]:
    """What must be byte-identical between runs: every shard's files and hashes."""
    return [(s["index"], s["start"], s["n"], tuple(sorted(s["sha256"].items())), tuple(sorted(s["bytes"].items())))
            for s in manifest["shards"]]


def disk_bytes(root: Path, manifest: dict) -> dict[tuple[int, str], bytes]:
    return {(s["index"], v): (root / rel).read_bytes() for s in manifest["shards"] for v, rel in s["files"].items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict]:
    """An uninterrupted, unsplit run."""
    out = tmp_path_factory.mktemp("reference")
    return out, write(out)


# ----------------------------------------------------------------- determinism


def test_reference_is_complete_and_holds_the_samples(reference):
    out, manifest = reference
    assert manifest["complete"] and [s["index"] for s in manifest["shards"]] == list(range(5))
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["shards"][0]["files"]["x[1]"] == "shard-00000/x_1_.npy"
    want = FakeSampler(SEED).sample_range(0, N)
    for name, (shape, dtype) in FakeSampler.variables.items():
        got = load_arrays(out, name)
        assert got.shape == (N, *shape) and got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, want[name])
    last = np.load(out / "shard-00004" / "y.npy", allow_pickle=False)
    np.testing.assert_array_equal(last, want["y"][2000:])


@pytest.mark.parametrize("batch_size", [7, 64, 10_000])
def test_batch_size_never_changes_a_byte(reference, tmp_path, batch_size):
    out, manifest = reference
    other = write(tmp_path, batch_size=batch_size)
    assert shard_files(other) == shard_files(manifest)
    assert disk_bytes(tmp_path, other) == disk_bytes(out, manifest)


def test_job_split_in_one_directory_then_merge(reference, tmp_path):
    parts = [write(tmp_path, job=(i, 3)) for i in (2, 0, 1)]
    assert [s["index"] for s in parts[0]["shards"]] == [2] and all(p["complete"] for p in parts)
    assert not (tmp_path / "manifest.json").exists()
    assert verify(tmp_path).incomplete  # parts, not merged yet
    merged = merge([tmp_path])
    assert merged["complete"] and shard_files(merged) == shard_files(reference[1])
    assert disk_bytes(tmp_path, merged) == disk_bytes(*reference)
    assert verify(tmp_path).ok


def test_job_split_in_separate_directories_then_merge(reference, tmp_path):
    dirs = [tmp_path / f"job{i}" for i in range(3)]
    for i, d in enumerate(dirs):
        write(d, job=(i, 3))
    merged = merge(dirs)  # into job0/
    assert merged["complete"] and shard_files(merged) == shard_files(reference[1])
    assert merged["shards"][1]["files"]["y"] == "../job1/shard-00001/y.npy"
    assert verify(dirs[0]).ok
    np.testing.assert_array_equal(load_arrays(dirs[0], "x[1]"), load_arrays(reference[0], "x[1]"))


def test_merge_reports_a_missing_part_and_refuses_mixed_runs(tmp_path):
    write(tmp_path / "a", job=(0, 2))
    assert not merge([tmp_path / "a"])["complete"]
    report = verify(tmp_path / "a")
    assert report.incomplete and not report.ok and any("missing 1, 3" in line for line in report.lines)
    write(tmp_path / "b", job=(1, 2), seed=SEED + 1)
    with pytest.raises(DatasetError, match="different runs: seed is 8 there, 7 here"):
        merge([tmp_path / "a", tmp_path / "b"])


# ----------------------------------------------------------------- kill and resume


def run_and_kill(out: Path, *options: str) -> subprocess.CompletedProcess:
    """Run tests/fake_sampler.py as a script that SIGKILLs itself at the chosen moment."""
    cmd = [sys.executable, str(ROOT / "tests" / "fake_sampler.py"), str(out), str(N), str(SEED), str(SHARD),
           str(BATCH), *options]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("options, shards_recorded, temp_files", [
    # mid-shard: one batch of shard 2 sits in the temp files
    (["--die-at-sample", str(2 * SHARD + BATCH)], 2, True),
    # between shards: shard 2's files are renamed into place but not yet in the manifest
    # (manifest writes: 1 initial, then one per shard; the 4th would record shard 2)
    (["--die-at-manifest", "4"], 2, False),
])
def test_killed_run_is_incomplete_then_resumes_byte_identical(reference, tmp_path, options, shards_recorded,
                                                              temp_files):
    proc = run_and_kill(tmp_path, *options)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    killed = json.loads((tmp_path / "manifest.json").read_text())
    assert len(killed["shards"]) == shards_recorded and not killed["complete"]
    assert bool(list(tmp_path.glob("shard-00002/.*.tmp"))) == temp_files
    assert (tmp_path / "shard-00002" / "y.npy").exists() == (not temp_files)
    report = verify(tmp_path)
    assert report.incomplete and not report.ok
    assert any("2 of 5 shards written (missing 2-4)" in line for line in report.lines), report.lines

    resumed = write(tmp_path)
    assert shard_files(resumed) == shard_files(reference[1])
    assert disk_bytes(tmp_path, resumed) == disk_bytes(*reference)
    assert not list(tmp_path.rglob("*.tmp"))
    assert verify(tmp_path).ok


def test_resume_skips_recorded_shards_and_redoes_a_truncated_one(reference, tmp_path):
    write(tmp_path)
    shard0 = tmp_path / "shard-00000" / "y.npy"
    before = (tmp_path / "shard-00001" / "y.npy").stat().st_mtime_ns
    shard0.write_bytes(shard0.read_bytes()[:-8])
    write(tmp_path)
    assert (tmp_path / "shard-00001" / "y.npy").stat().st_mtime_ns == before
    assert disk_bytes(tmp_path, reference[1]) == disk_bytes(*reference)


def test_another_runs_directory_is_refused_with_the_field_then_overwritten(reference, tmp_path):
    write(tmp_path)
    with pytest.raises(DatasetError, match="seed is 7 there, 8 here; choose another directory"):
        write(tmp_path, seed=SEED + 1)
    meta = metadata()
    meta["params"] = {**meta["params"], "sigma_x": 0.4}
    with pytest.raises(DatasetError, match=r"params\.sigma_x is 0.5 there, 0.4 here; choose another directory"):
        write(tmp_path, meta=meta)
    old = read_manifest(manifest_paths(tmp_path)[0])
    # the defaults moved (fashion's chunk and shard in session 9): the flags that continue the old run
    both = f"--chunk-size {old['chunk_size']} --shard-size {old['shard_size']}"
    # both, even where one differs: the default shard size follows the chunk size
    for moved in ({"chunk_size": 32, "shard_size": 288}, {"chunk_size": 32}, {"shard_size": 288}):
        assert resume_flags(old, {**old, **moved}) == both
    for other in ({"spec_sha256": "0" * 64}, {"n": 2 * N}, {"seed": SEED + 1}):  # another dataset, not a resume
        assert resume_flags(old, {**old, "chunk_size": 32, **other}) is None
    assert resume_flags(old, old) is None
    (tmp_path / "keep.txt").write_text("not the dataset's")
    manifest = write(tmp_path, seed=SEED + 1, overwrite=True)
    assert manifest["seed"] == SEED + 1 and verify(tmp_path).ok
    assert (tmp_path / "keep.txt").exists()
    assert disk_bytes(tmp_path, manifest) != disk_bytes(*reference)


def test_refuses_to_start_without_disk_space(reference, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    need = sum(b for s in reference[1]["shards"] for b in s["bytes"].values())
    with pytest.raises(DatasetError, match=rf"{need} bytes\) still to write, .* \(1000 bytes\) free"):
        write(tmp_path / "new")
    assert not (tmp_path / "new").exists()


# ----------------------------------------------------------------- verify


def damage_truncate(path: Path, manifest: dict) -> None:
    path.write_bytes(path.read_bytes()[:-10])


def damage_flip(path: Path, manifest: dict) -> None:
    data = bytearray(path.read_bytes())
    data[200] ^= 0x01
    path.write_bytes(bytes(data))


def damage_delete(path: Path, manifest: dict) -> None:
    path.unlink()


def damage_reshape(path: Path, manifest: dict) -> None:
    """A (500, 16) array instead of (500, 1, 4, 4), with the manifest's hash and size updated."""
    np.save(path, np.load(path).reshape(500, 16))
    shard = manifest["shards"][0]
    shard["sha256"]["x[1]"] = hashlib.sha256(path.read_bytes()).hexdigest()
    shard["bytes"]["x[1]"] = path.stat().st_size


@pytest.mark.parametrize("damage, message", [
    (damage_truncate, "size 32118 bytes, the manifest says 32128"),
    (damage_flip, "sha256 differs"),
    (damage_delete, "missing"),
    (damage_reshape, r"header says float32\[500, 16\], expected float32\[500, 1, 4, 4\]"),
])
def test_verify_names_a_damaged_file(reference, tmp_path, damage, message):
    out = tmp_path / "d"
    shutil.copytree(reference[0], out)
    manifest = json.loads((out / "manifest.json").read_text())
    damage(out / "shard-00000" / "x_1_.npy", manifest)
    (out / "manifest.json").write_text(json.dumps(manifest))
    report = verify(out)
    assert not report.ok and not report.incomplete
    bad = [line for line in report.lines if line.startswith("FAIL")]
    assert len(bad) == 1 and "shard-00000/x_1_.npy" in bad[0] and re.search(message, bad[0]), bad


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["shards"].pop(3), "says complete but shards 3 are missing"),
    (lambda m: m["shards"].append(dict(m["shards"][1])), "shard 1 is listed 2 times"),
    (lambda m: m["shards"][4].update(n=399), r"shard 4 covers samples \[2000, 2399\), expected \[2000, 2400\]"),
])
def test_verify_checks_the_shard_listing(reference, tmp_path, edit, message):
    out = tmp_path / "d"
    shutil.copytree(reference[0], out)
    manifest = json.loads((out / "manifest.json").read_text())
    edit(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest))
    report = verify(out)
    assert not report.ok and not report.incomplete
    assert any(re.search(message, line) for line in report.lines if line.startswith("FAIL")), report.lines


def test_verify_checks_mi_against_the_data_and_catches_a_wrong_exact_value(reference, tmp_path):
    report = verify(reference[0])
    assert report.ok, report.lines
    checked = [line for line in report.lines if line.startswith("ok: I(x; y)")]
    assert len(checked) == 1
    assert any(line.startswith("skip: I(x; y | label)") for line in report.lines)
    assert any(line.startswith("skip: I(label; y): no saved Gaussian array") for line in report.lines)

    write(tmp_path, meta=metadata(mi_offset=0.2))
    report = verify(tmp_path)
    assert not report.ok and not report.incomplete
    assert any(line.startswith("FAIL: I(x; y)") for line in report.lines), report.lines


def test_verify_skips_the_plugin_check_when_n_is_too_small(tmp_path):
    write_dataset(tmp_path, FakeSampler(1), 1000, seed=1, shard_size=400, batch_size=100, metadata=metadata(0.2),
                  fingerprint=FINGERPRINT, progress=False)
    report = verify(tmp_path)
    assert report.ok and any("p + q = 18 dimensions for 1000 samples" in line for line in report.lines)


def test_plugin_bias_formula_matches_simulation():
    """Mean of the plug-in over 4000 Gaussian data sets of n = 40 minus the exact MI."""
    p, q, n, reps, rho = 3, 2, 40, 4000, 0.6
    cov = np.eye(p + q)
    cov[0, p] = cov[p, 0] = rho  # one canonical correlation
    exact = -0.5 * math.log(1 - rho**2)
    assert gaussian_mi(cov, p) == pytest.approx(exact)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((reps, n, p + q)) @ np.linalg.cholesky(cov).T
    x -= x.mean(axis=1, keepdims=True)
    s = x.transpose(0, 2, 1) @ x
    plug = 0.5 * (np.linalg.slogdet(s[:, :p, :p])[1] + np.linalg.slogdet(s[:, p:, p:])[1] - np.linalg.slogdet(s)[1])
    excess, se = plug.mean() - exact, plug.std() / math.sqrt(reps)
    bias = plugin_bias(p, q, n)
    assert abs(excess - bias) < 4 * se
    assert abs(excess - p * q / (2 * n)) > 4 * se  # the first-order pq/(2n) is visibly off at n = 40
    assert plugin_bias(p, q, 10**6) == pytest.approx(p * q / (2 * 10**6), rel=1e-4)


def test_digamma_differences_match_scipy():
    special = pytest.importorskip("scipy.special")
    for p, q, n in [(1, 1, 3), (16, 2, 2400), (7, 5, 25), (200, 300, 10**5)]:
        j = np.arange(1, q + 1)
        want = 0.5 * np.sum(special.digamma((n - j) / 2) - special.digamma((n - p - j) / 2))
        assert plugin_bias(p, q, n) == pytest.approx(want, rel=1e-10, abs=1e-14)


# ----------------------------------------------------------------- job splits from the environment

ENV = ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP",
       "RANK", "WORLD_SIZE"]


@pytest.fixture
def env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("setting, want", [
    ({}, (0, 1)),
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}, (3, 4)),
    ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "5"}, (2, 4)),
    ({"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1",
      "SLURM_ARRAY_TASK_STEP": "4"}, (2, 3)),
    ({"RANK": "1", "WORLD_SIZE": "2"}, (1, 2)),
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2", "RANK": "0", "WORLD_SIZE": "8"}, (1, 2)),
])
def test_shard_from_env(env, setting, want):
    for name, value in setting.items():
        env.setenv(name, value)
    assert shard_from_env(None) == want
    assert shard_from_env("2/5") == (2, 5)  # the argument wins


@pytest.mark.parametrize("arg, setting, message", [
    ("5/5", {}, "need K >= 1 and 0 <= I < K"),
    ("1", {}, "expected I/K"),
    ("a/b", {}, "expected I/K"),
    (None, {"SLURM_ARRAY_TASK_ID": "2"}, "SLURM_ARRAY_TASK_COUNT is not set"),
    (None, {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"}, "SLURM_ARRAY_TASK_ID='x' is not an integer"),
    (None, {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_STEP": "3"},
     "not min 0 \\+ a multiple of step 3"),
    (None, {"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "2"}, "job 9 of 2 is not a split"),
    (None, {"RANK": "0"}, "WORLD_SIZE is not set"),
])
def test_shard_from_env_rejects_bad_values(env, arg, setting, message):
    for name, value in setting.items():
        env.setenv(name, value)
    with pytest.raises(UsageError, match=message):
        shard_from_env(arg)
