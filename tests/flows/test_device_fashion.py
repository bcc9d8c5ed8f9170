"""benchmarks/device_fashion.py, the one prepared session of a lent GPU: its training arguments are
runs/fashion/run.sh's, the checkpoint comes back in parts that join to the same bytes, each phase
is stopped at its budget (its grace clipped to the plan's) and a failed one does not stop the next,
a signal ends every phase's process group, only the intended files stay in OUT; the whole plan at
tiny size on the CPU (slow), and the GPU against the CPU (gpu)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import ROOT
from .test_flow_quality import _script

RUN_FILES = {"--checkpoint-dir": 1, "--checkpoint-every": 1, "--sample-every": 1, "--out": 1, "--resume": 0}


@pytest.fixture(scope="module")
def driver():
    return _script("device_fashion")


def test_training_arguments_are_run_sh_s(driver):
    """The checkpoint refuses another schedule or architecture: the device resumes with run.sh's arguments."""
    words = shlex.split((ROOT / "runs" / "fashion" / "run.sh").read_text().replace("\\\n", " "), comments=True)
    words = words[words.index("mmmi_dsl.train") + 1:words.index(">>")]
    kept, i = [], 0
    while i < len(words):
        if words[i] in RUN_FILES:
            i += 1 + RUN_FILES[words[i]]
            continue
        kept.append(words[i])
        i += 1
    assert tuple(kept) == driver.TRAIN_ARGS


def test_the_checkpoint_travels_in_parts_that_join(tmp_path, driver):
    data = os.urandom(2 * 1000 + 17)
    (tmp_path / "checkpoint.safetensors").write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    parts = driver.split_file(tmp_path / "checkpoint.safetensors", out, part_bytes=1000)
    assert [p.name for p in parts] == [f"checkpoint.safetensors.part-a{c}" for c in "abc"]
    assert [p.stat().st_size for p in parts] == [1000, 1000, 17]
    joined = subprocess.run(f"cat {out}/checkpoint.safetensors.part-*", shell=True, capture_output=True,
                            check=True).stdout
    assert joined == data
    assert driver.PART_BYTES < 16 * 2**20 and 17_069_588 // driver.PART_BYTES + 1 == 2  # today's checkpoint: 2 parts


def test_checkpoint_state_reads_the_header_only(driver):
    from safetensors import safe_open

    path = ROOT / "runs" / "fashion" / "checkpoint.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["mmmi_checkpoint"])
    state = driver.checkpoint_state(path)
    assert state["step"] == meta["step"] > 0 and state["loss_avg"] == meta["loss_avg"]
    assert driver.checkpoint_state(ROOT / "absent.safetensors") is None


def test_a_phase_is_stopped_at_its_budget_and_killed_after_its_grace(driver):
    env = dict(os.environ)
    ok = driver.run_phase("ok", [sys.executable, "-c", "pass"], 30, env)
    failed = driver.run_phase("failed", [sys.executable, "-c", "raise SystemExit(3)"], 30, env)
    polite = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(30)"
    stopped = driver.run_phase("stopped", [sys.executable, "-c", polite], 1, env)
    deaf = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(30)"
    killed = driver.run_phase("killed", [sys.executable, "-c", deaf], 1, env, stop_grace=1)
    missing = driver.run_phase("missing", [str(ROOT / "no-such-python")], 30, env)
    assert (ok["status"], ok["rc"]) == ("ok", 0) and (failed["status"], failed["rc"]) == ("failed", 3)
    assert (stopped["status"], stopped["rc"]) == ("stopped", 0) and stopped["seconds"] < 10
    assert killed["status"] == "killed" and killed["rc"] == -9 and killed["seconds"] < 10
    assert missing["status"] == "failed" and missing["rc"] is None


def test_a_failed_phase_does_not_stop_the_next_and_the_summary_keeps_each(tmp_path, driver, capsys):
    """With a Python that fails every phase, each is still run and recorded, in the plan's order (agree
    before quality); the plan's budget skips the ones it has no time for; the exit status says
    something failed; temporary and stray files are deleted from OUT."""
    args = ["--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--python", "/bin/false",
            "--checkpoint", str(tmp_path / "none.safetensors")]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".quality.json.x1y2.tmp").write_text("{")  # a quality JSON killed mid-write
    (tmp_path / "out" / "stray.txt").write_text("")
    (tmp_path / "out" / "checkpoint.safetensors.part-aa").write_text("")  # a split cut short, say
    assert driver.main(args) == 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert {k: v["status"] for k, v in summary["phases"].items()} == \
        {"env": "failed", "train": "failed", "quality": "failed", "agree": "failed"}
    printed = capsys.readouterr().out
    assert [printed.index(f"== {name} (") for name in ("env", "train", "agree", "quality")] == \
        sorted(printed.index(f"== {name} (") for name in ("env", "train", "agree", "quality"))
    assert summary["phases"]["quality"]["weights"] == "fashion"  # no new weights: the shipped ones
    assert summary["phases"]["quality"]["solvers"] == driver.DEFAULT_SOLVERS  # its own solver once
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["summary.json"]
    assert set(summary["dropped"]) == {".quality.json.x1y2.tmp", "stray.txt", "checkpoint.safetensors.part-aa"}
    assert "checkpoint" not in summary and "starts from step 0" in printed
    assert driver.main([*args, "--phases", "env,agree", "--total-seconds", "16"]) == 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [v["status"] for v in summary["phases"].values()] == ["skipped", "skipped"]
    with pytest.raises(SystemExit):
        driver.main([*args, "--phases", "env,gpu"])


def test_each_phase_s_limit_and_grace_fit_in_what_is_left(tmp_path, driver):
    plan = driver.Plan(driver.parser().parse_args(["--out", str(tmp_path)]))
    plan.deadline = time.monotonic() + driver.RESERVE_S + 100
    for seconds, grace, most in ((240, 120, 75), (None, 30, 75), (10, 30, 10), (50, 5, 50)):
        limit, g = plan.budget(seconds, grace)
        assert limit + g <= 100 and g <= grace and limit <= (seconds or 100), (seconds, grace, limit, g)
        assert abs(limit - most) < 1 and limit > 0
    plan.deadline = time.monotonic() + driver.RESERVE_S + 2
    assert plan.budget(240, 120)[0] < 5  # skipped


def test_out_keeps_the_intended_files_and_drops_the_least_needed(driver):
    mib = 2**20
    intended = {"log": 1, "summary.json": 1, "checkpoint.safetensors.part-aa": 15 * mib,
                "checkpoint.safetensors.part-ab": 2 * mib, "fashion.json": 1, "quality.json": 1,
                "fashion.safetensors": 5 * mib, "samples-0036000.png": 1}
    kept, dropped = driver.keep_files({**intended, "samples-0034000.png": 1, ".quality.json.ab.tmp": 1,
                                       "summary.json.tmp": 1})
    assert sorted(kept) == sorted(intended)
    assert dict(dropped).keys() == {"samples-0034000.png", ".quality.json.ab.tmp", "summary.json.tmp"}
    assert dict(dropped)[".quality.json.ab.tmp"] == "temporary"
    three = {**intended, "checkpoint.safetensors.part-ac": 1}  # nine files: the grid goes first
    kept, dropped = driver.keep_files(three)
    assert len(kept) == 8 and [n for n, _ in dropped] == ["samples-0036000.png"]
    kept, dropped = driver.keep_files({**three, "fashion.safetensors": 17 * mib})  # over 16 MiB
    assert "fashion.safetensors" not in kept and "samples-0036000.png" in kept and len(kept) == 8
    parts = {f"checkpoint.safetensors.part-a{c}": mib for c in "abcdefg"}  # too many parts: none, not some
    kept, _ = driver.keep_files({**intended, **{k: v for k, v in intended.items() if "part" not in k}, **parts})
    assert not any("part" in n for n in kept) and "fashion.safetensors" in kept


def test_the_shipped_solver_is_measured_once_and_first(driver):
    from mmmi_dsl.builtins.flows import FASHION_SOLVER
    from mmmi_dsl.flows.quality import Solver

    from .test_flow_quality import _script

    assert _script("flow_quality").solver(driver.SHIPPED_SOLVER) == Solver("rk4", **FASHION_SOLVER)
    assert driver.quality_solvers(driver.DEFAULT_SOLVERS, False) == driver.DEFAULT_SOLVERS
    assert driver.quality_solvers("rk4:40:1.5, default,rk4:40:1.5", False) == "rk4:48:1.25,rk4:40:1.5"
    assert driver.quality_solvers("rk4:40:1.5,rk4:40:1.25,rk4:40:1.5", True) == "rk4:40:1.5,rk4:40:1.25"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_a_signal_to_the_wrapper_ends_every_phase_and_their_children(tmp_path):
    """SIGTERM to device_fashion.sh (the device tool's timeout): the driver ends the running phase's
    process group, a grandchild included, records the interruption, and exits 143; the phase ran in
    its own process group but in the wrapper's session (the tool's end-of-call cleanup reaches it)."""
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/bash\nsleep 300 &\necho $$ $! > {tmp_path}/pids\nwait\n")
    fake.chmod(0o755)
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "SITE": str(tmp_path / "site")}
    proc = subprocess.Popen(["bash", str(ROOT / "benchmarks" / "device_fashion.sh"), "--python", str(fake),
                             "--phases", "env,agree", "--work", str(tmp_path / "work")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(200):
            if (tmp_path / "pids").is_file() and len((tmp_path / "pids").read_text().split()) == 2:
                break
            time.sleep(0.05)
        phase, grandchild = (int(v) for v in (tmp_path / "pids").read_text().split())
        assert os.getsid(phase) == os.getsid(proc.pid) and os.getpgid(phase) == phase != os.getpgid(proc.pid)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not _alive(phase) and not _alive(grandchild)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] == "SIGTERM" and summary["phases"]["env"]["status"] == "interrupted"
    assert "agree" not in summary["phases"]
    log = (out / "log").read_text()
    assert "SIGTERM: the running phase was ended; stopping here" in log and "== done:" in log


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="needs dataset-fashion-mnist")
def test_the_whole_plan_at_tiny_size_on_the_cpu(tmp_path):
    """The shell wrapper and every phase on a copy of the committed checkpoint: a few CPU steps, the
    quality of 2 samples of 2 classes, the agreement on 2 latents; 8 files come back; the parts join
    to the checkpoint the training wrote; runs/fashion is not touched."""
    source = ROOT / "runs" / "fashion" / "checkpoint.safetensors"
    before = source.read_bytes()
    copy = tmp_path / "copy" / "checkpoint.safetensors"
    copy.parent.mkdir()
    copy.write_bytes(before)
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "SITE": str(tmp_path / "site")}
    cmd = ["bash", str(ROOT / "benchmarks" / "device_fashion.sh"), "--device", "cpu", "--train-seconds", "20",
           "--checkpoint-every", "1", "--sample-every", "1", "-n", "2", "--roundtrip-n", "2", "--classes", "0,1",
           "--solvers", "rk4:28:1.5", "--agree-n", "2", "--work", str(work), "--checkpoint", str(copy),
           "--data", "/usr/share/datasets/fashion-mnist"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert all(p["status"] == "ok" for p in summary["phases"].values()), summary["phases"]
    train = summary["phases"]["train"]
    assert train["step_after"] > train["step_before"] and summary["checkpoint"]["step"] == train["step_after"]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all((out / f).stat().st_size < 16 * 2**20 for f in files)
    assert {"log", "summary.json", "quality.json", "fashion.safetensors", "fashion.json"} <= set(files)
    joined = b"".join((out / p).read_bytes() for p in summary["checkpoint"]["parts"])
    assert joined == (work / "checkpoint.safetensors").read_bytes()
    quality = json.loads((out / "quality.json").read_text())
    assert quality["steps_done"] == train["step_after"] and quality["roundtrip"][0]["max"] < 1e-3
    agree = summary["phases"]["agree"]
    assert agree["max_abs_x_difference"] == 0.0 and agree["roundtrip_max_cpu"] < 1e-3
    assert "== done:" in (out / "log").read_text() and source.read_bytes() == before


@pytest.mark.gpu
def test_the_shipped_fashion_flow_agrees_on_the_gpu_and_the_cpu(driver):
    """The same latents through the shipped fashion flow: images within float32 rounding (IEEE, no TF32)
    of the CPU's, both round trips within the 1e-3 target."""
    r = driver.agree("cuda", 8, 7, os.cpu_count() or 1)
    assert r["max_abs_x_difference"] < 1e-3 * max(1.0, r["max_abs_x"]), r
    assert r["roundtrip_max_cpu"] < 1e-3 and r["roundtrip_max_device"] < 1e-3, r
