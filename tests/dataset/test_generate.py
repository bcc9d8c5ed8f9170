"""`mmmic generate / verify / merge` with the real sampler: determinism, kill-and-resume, corruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mmmi_dsl.cli import main
from mmmi_dsl.dataset import load_arrays

from ..conftest import ROOT

SPEC = str(ROOT / "specs" / "two_views.mmi")
BASE = ["--set", "d=16", "--chunk-size", "256", "--shard-size", "1024", "--no-progress"]


def generate(out, n, *extra):
    assert main(["generate", SPEC, "-o", str(out), "-n", str(n), *BASE, *extra]) == 0


def digests(out) -> dict:
    m = json.loads((out / "manifest.json").read_text())
    return {(s["index"], k): v for s in m["shards"] for k, v in s["sha256"].items()}


def test_batch_size_and_job_split_never_change_a_byte(tmp_path):
    generate(tmp_path / "a", 5000, "--batch-size", "256")
    generate(tmp_path / "b", 5000, "--batch-size", "1024")
    split = tmp_path / "c"
    for i in range(3):
        generate(split, 5000, "--batch-size", "512", "--shard", f"{i}/3")
    assert main(["merge", str(split)]) == 0
    assert digests(tmp_path / "a") == digests(tmp_path / "b") == digests(split)
    assert main(["verify", str(split)]) == 0


def test_slurm_environment_splits_the_work(tmp_path, monkeypatch):
    for i in range(2):
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(i))
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
        generate(tmp_path / "s", 3000)
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    monkeypatch.delenv("SLURM_ARRAY_TASK_COUNT")
    assert main(["merge", str(tmp_path / "s")]) == 0
    generate(tmp_path / "one", 3000)
    assert digests(tmp_path / "s") == digests(tmp_path / "one")


def test_sigkill_then_resume_is_byte_identical(tmp_path):
    full = tmp_path / "full"
    n = 120_000
    args = ["--set", "d=64", "--chunk-size", "512", "--shard-size", "8192", "--no-progress"]
    assert main(["generate", SPEC, "-o", str(full), "-n", str(n), *args]) == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "mmmi_dsl", "generate", SPEC, "-o", str(killed), "-n", str(n),
                             *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    manifest = killed / "manifest.json"
    while time.time() < deadline:  # wait until at least two shards are recorded, then kill mid-run
        try:
            if len(json.loads(manifest.read_text())["shards"]) >= 2:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    recorded = len(json.loads(manifest.read_text())["shards"])
    if recorded == 15:
        pytest.skip("the run finished before it could be killed")
    r = subprocess.run([sys.executable, "-m", "mmmi_dsl", "verify", str(killed)], capture_output=True, text=True)
    assert r.returncode == 1 and "incomplete" in r.stdout.lower()
    assert main(["generate", SPEC, "-o", str(killed), "-n", str(n), *args, "--resume"]) == 0
    assert digests(killed) == digests(full)
    assert not list(killed.rglob("*.tmp"))


def test_verify_catches_a_flipped_byte_and_truncation(tmp_path, capsys):
    out = tmp_path / "d"
    generate(out, 3000)
    f = out / "shard-00001" / "x1.npy"
    data = bytearray(f.read_bytes())
    data[-5] ^= 0xFF
    f.write_bytes(bytes(data))
    assert main(["verify", str(out)]) == 1
    assert "x1" in capsys.readouterr().out
    g = out / "shard-00002" / "x2.npy"
    g.write_bytes(g.read_bytes()[:-100])
    assert main(["verify", str(out)]) == 1


def test_mismatching_run_is_refused_then_overwritten(tmp_path, capsys):
    out = tmp_path / "d"
    generate(out, 2000)
    assert main(["generate", SPEC, "-o", str(out), "-n", "2000", *BASE, "--seed", "1"]) == 1
    assert "seed" in capsys.readouterr().err
    generate(out, 2000, "--seed", "1", "--overwrite")
    assert json.loads((out / "manifest.json").read_text())["seed"] == 1


def test_dataset_is_loadable_with_numpy_and_has_manifest_fields(tmp_path):
    out = tmp_path / "d"
    generate(out, 2500, "--save-latents", "--pmi", "x1;x2")
    m = json.loads((out / "manifest.json").read_text())
    for key in ("format", "n", "seed", "spec", "spec_sha256", "params", "variables", "mi", "shards"):
        assert key in m
    assert m["format"] == "mmmi-dataset/1" and m["n"] == 2500 and m["complete"]
    assert set(m["variables"]) == {"x1", "x2", "theta", "z1", "z2", "pmi:x1;x2"}
    first = m["shards"][0]
    x1 = np.load(out / first["files"]["x1"], allow_pickle=False)
    assert x1.shape == (1024, 16) and x1.dtype == np.float32
    assert load_arrays(out, "pmi:x1;x2").shape == (2500,)
    assert np.array_equal(load_arrays(out, "x1"), load_arrays(out, "z1"))  # identity flow
    assert m["flows"]["x1"]["roundtrip_max"] == 0.0


def test_generate_usage_errors(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mmmi_dsl", "generate", SPEC, "-o", str(tmp_path), "-n", "10",
                        "--pmi", "x1"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "mmmi_dsl", "generate", SPEC, "-o", str(tmp_path), "-n", "10",
                        "--shard", "3/2"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    for flag, name in (("--shard-size", "shard size"), ("--batch-size", "batch size")):  # 0 was taken as "default"
        out = tmp_path / f"zero{flag}"
        r = subprocess.run([sys.executable, "-m", "mmmi_dsl", "generate", SPEC, "-o", str(out), "-n", "10",
                            flag, "0"], capture_output=True, text=True)
        assert r.returncode == 2 and f"{name} must be at least 1, got 0" in r.stderr, r.stderr
        assert not out.exists()


def test_uint8_export_is_opt_in_and_marks_an_upper_bound(tmp_path):
    out = tmp_path / "q"
    generate(out, 1500, "--uint8=-3,3", "--save-latents")
    m = json.loads((out / "manifest.json").read_text())
    assert m["mi_is_upper_bound"] is True and m["variables"]["x1"]["dtype"] == "uint8"
    x1, z1 = load_arrays(out, "x1"), load_arrays(out, "z1")
    assert x1.dtype == np.uint8
    want = np.round(np.clip((z1 + 3) / 6, 0, 1) * 255).astype(np.uint8)  # fixed range, per sample
    assert np.array_equal(x1, want)
    assert m["gaussian_arrays"]["x1"] == "z1"  # verify checks the latents, not the quantised data
    assert main(["verify", str(out)]) == 0
    plain = tmp_path / "p"
    generate(plain, 100)
    assert json.loads((plain / "manifest.json").read_text())["mi_is_upper_bound"] is False


def test_specs_given_as_strings_do_not_resume_each_other(tmp_path):
    """Without a file the manifest has no spec text; its spec_sha256 is then the IR's, so two string specs
    that differ only in a coefficient are two datasets (before: both hashed the empty text and the second
    run resumed the first's shards)."""
    from mmmi_dsl import loads
    from mmmi_dsl.dataset.format import DatasetError
    from mmmi_dsl.dataset.generate import generate_dataset

    text = ("proto u : scalar\nproto n : vector[2]\nlatent z = {a} * u * ones(2) + n\ntarget t = u\n"
            "flow x = identity(z)\n")
    first = generate_dataset(loads(text.format(a=0.5)), tmp_path / "d", 16, progress=False)
    other = generate_dataset(loads(text.format(a=0.9)), tmp_path / "other", 16, progress=False)
    assert first["spec"] == "" and first["spec_sha256"] != other["spec_sha256"]
    with pytest.raises(DatasetError, match="spec_sha256 is"):
        generate_dataset(loads(text.format(a=0.9)), tmp_path / "d", 16, progress=False)
    assert generate_dataset(loads(text.format(a=0.5)), tmp_path / "d", 16, progress=False)["complete"]
