"""Faults during `mmmic generate`: SIGKILL at chosen and at random moments, a full disk,
a file size limit, and the up-front disk-space refusal.

After every fault `mmmic verify` must pass (the run had finished) or exit 1 saying the
dataset is incomplete (never "ok" for a partial dataset), and `generate --resume` must
end with a directory byte-identical, file for file, to an uninterrupted run's.

The faults are injected from outside the product: a child `python -c` wraps a function
of `mmmi_dsl.dataset.writer` so that its k-th call SIGKILLs the process (docs/reliability.md).
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import pytest

from mmmi_dsl import dataset
from mmmi_dsl.cli import main
from mmmi_dsl.dataset import writer

from ..conftest import ROOT

SPEC = str(ROOT / "specs" / "two_views.mmi")
N = 3000  # 6 shards of 512 (the last of 440), 2 batches of 256 per shard, 3 variables (theta, x1, x2)
OPTS = ["--set", "d=16", "--chunk-size", "256", "--shard-size", "512", "--batch-size", "256", "--no-progress"]
N_RANDOM = 40_000  # 79 shards: a longer run for kills at random moments

# The child: wrap one function of mmmi_dsl.dataset.writer so that its k-th call kills the process.
CHILD = r'''
import os, signal, sys, tempfile
from mmmi_dsl import cli
from mmmi_dsl.dataset import writer
point, k, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
calls = [0]

def kth():
    calls[0] += 1
    return calls[0] == k

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if point == "append":  # inside a shard write: right after the k-th batch of a file reached its temp file
    real_append = writer._NpyWriter.append
    def append(self, rows):
        data = real_append(self, rows)
        if kth():
            self.file.flush()
            die()
        return data
    writer._NpyWriter.append = append
elif point == "rename":  # right after the k-th shard file was renamed into place (its shard half renamed)
    real_replace = os.replace
    def replace(src, dst):
        real_replace(src, dst)
        if str(dst).endswith(".npy") and kth():
            die()
    os.replace = replace
elif point == "shard":  # between shards: the k-th shard is about to start, the previous one is recorded
    real_shard = writer._write_shard
    def write_shard(*args, **kwargs):
        if kth():
            die()
        return real_shard(*args, **kwargs)
    writer._write_shard = write_shard
elif point in ("manifest", "manifest_done"):
    real_atomic = writer.write_atomic
    def write_atomic(path, data):
        if point == "manifest" and kth():  # during the k-th manifest update: half of it in the temp file
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.write(fd, data.encode()[: len(data) // 2])
            os.fsync(fd)
            die()
        real_atomic(path, data)
        if point == "manifest_done" and kth():  # right after the k-th manifest update
            die()
    writer.write_atomic = write_atomic
sys.exit(cli.main(argv))
'''


def generate_args(out: Path, n: int = N) -> list[str]:
    return ["generate", SPEC, "-o", str(out), "-n", str(n), *OPTS]


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too): relative path -> sha256."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, str]:
    """The file tree of an uninterrupted run."""
    out = tmp_path_factory.mktemp("reference")
    assert main(generate_args(out)) == 0
    return tree(out)


@pytest.fixture(scope="module")
def reference_long(tmp_path_factory) -> tuple[dict[str, str], float]:
    """The file tree of an uninterrupted N_RANDOM run, and how long its writing took (s)."""
    out = tmp_path_factory.mktemp("reference_long")
    main(generate_args(out / "warm", 512))  # imports and first-call costs out of the timing
    start = time.perf_counter()
    assert main(generate_args(out / "run", N_RANDOM)) == 0
    return tree(out / "run"), time.perf_counter() - start


def verify_says(out: Path, capsys) -> str:
    """`mmmic verify OUT`: "complete" (exit 0) or "incomplete" (exit 1, no FAIL line); anything else fails."""
    capsys.readouterr()
    code = main(["verify", str(out)])
    text = capsys.readouterr().out
    if code == 0:
        assert text.startswith("ok:") and "FAIL" not in text and "incomplete" not in text, text
        manifest = dataset.read_manifest(out / dataset.MANIFEST)
        assert manifest["complete"] and sum(s["n"] for s in manifest["shards"]) == manifest["n"], text
        return "complete"
    assert code == 1 and "incomplete:" in text and "FAIL" not in text, text
    return "incomplete"


def resume_and_compare(out: Path, want: dict[str, str], n: int = N) -> None:
    """`generate --resume` ends byte-identical to the uninterrupted run, with no temp file left."""
    assert main([*generate_args(out, n), "--resume"]) == 0
    got = tree(out)
    assert not [p for p in got if p.endswith(".tmp")]
    assert got == want, sorted(set(got.items()) ^ set(want.items()))[:6]


def kill_at(out: Path, point: str, k: int) -> None:
    proc = subprocess.run([sys.executable, "-c", CHILD, point, str(k), *generate_args(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def recorded(out: Path) -> list[int]:
    return [s["index"] for s in dataset.read_manifest(out / dataset.MANIFEST)["shards"]]


# ----------------------------------------------------------------- SIGKILL at chosen points


@pytest.mark.parametrize("point, k, shards, state", [
    # 2nd batch-file of shard 1 half way: shard 0 recorded, shard 1 only as temp files
    ("append", 8, [0], "shard-00001 temp files"),
    # shard 1's first file renamed into place, the other two still temp, none recorded
    ("rename", 4, [0], "shard-00001 half renamed"),
    # shards 0, 1 recorded; shard 2 not begun
    ("shard", 3, [0, 1], "between shards"),
    # the manifest update recording shard 2: shard 2's files are in place, the new manifest half written
    ("manifest", 4, [0, 1], "manifest temp file"),
    # the very first manifest write: nothing recorded, only a half manifest temp file
    ("manifest", 1, None, "no manifest yet"),
    # right after the last manifest update: the run was done
    ("manifest_done", 7, [0, 1, 2, 3, 4, 5], "complete"),
])
def test_sigkill_at_a_chosen_point_then_resume(reference, tmp_path, capsys, point, k, shards, state):
    out = tmp_path / "run"
    kill_at(out, point, k)
    leftovers = sorted(p.relative_to(out).as_posix() for p in out.rglob(".*.tmp"))
    if shards is None:
        assert not (out / "manifest.json").exists() and leftovers and leftovers[0].startswith(".manifest.json.")
    else:
        assert recorded(out) == shards
    if state == "shard-00001 temp files":
        assert leftovers == ["shard-00001/.theta.npy.tmp", "shard-00001/.x1.npy.tmp", "shard-00001/.x2.npy.tmp"]
        assert not list((out / "shard-00001").glob("*.npy"))  # nothing there looks finished
    elif state == "shard-00001 half renamed":
        assert len(leftovers) == 2 and all(x.startswith("shard-00001/.") for x in leftovers), leftovers
        assert len(list((out / "shard-00001").glob("*.npy"))) == 1
    elif state == "manifest temp file":
        assert len(leftovers) == 1 and leftovers[0].startswith(".manifest.json.")
    assert verify_says(out, capsys) == ("complete" if state == "complete" else "incomplete")
    resume_and_compare(out, reference)
    assert verify_says(out, capsys) == "complete"


# ----------------------------------------------------------------- SIGKILL at random moments


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_at_a_random_moment_then_resume(reference_long, tmp_path, capsys, seed):
    want, seconds = reference_long
    out = tmp_path / "run"
    delay = random.Random(seed).uniform(0, 1.2 * seconds)
    proc = subprocess.Popen([sys.executable, "-m", "mmmi_dsl", *generate_args(out, N_RANDOM)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / "manifest.json").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.002)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode in (0, -signal.SIGKILL)
    verify_says(out, capsys)
    resume_and_compare(out, want, N_RANDOM)


# ----------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB tmpfs (needs root or CAP_SYS_ADMIN; skipped otherwise)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if not sys.platform.startswith("linux") or shutil.which("mount") is None:
        pytest.skip("needs Linux mount")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?); the injected ENOSPC test covers the logic")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk`` (another program filling it): a file written until ENOSPC."""
    filler = disk / "filler.bin"
    with open(filler, "wb", buffering=0) as f:
        block = b"\0" * 4096
        try:
            while True:
                f.write(block)
        except OSError as err:
            assert err.errno == errno.ENOSPC
    return filler


@pytest.mark.parametrize("when", ["inside a shard write", "during the manifest update"])
def test_disk_fills_up_during_the_run_then_resume(reference, small_disk, capsys, monkeypatch, when):
    out = small_disk / "run"
    real = writer._write_shard
    calls = []

    def write_shard(*args, **kwargs):  # the 3rd shard: someone else fills the disk before or after it
        calls.append(1)
        if len(calls) == 3 and when == "inside a shard write":
            fill(small_disk)
        entry = real(*args, **kwargs)
        if len(calls) == 3 and when == "during the manifest update":
            fill(small_disk)
        return entry

    monkeypatch.setattr(writer, "_write_shard", write_shard)
    capsys.readouterr()
    assert main(generate_args(out)) == 1
    err = capsys.readouterr().err
    named = out / ("shard-00002" if when == "inside a shard write" else "manifest.json")
    assert err.startswith(f"error: disk full while writing {named}") and "Traceback" not in err, err
    assert "2 of 6 shards are complete and recorded" in err and "rerun the same command" in err, err
    assert recorded(out) == [0, 1]
    assert not list(out.rglob("*.tmp")), "temp files of the failed write were left"
    if when == "inside a shard write":
        assert not list((out / "shard-00002").glob("*.npy")), "a partial file looks finished"
    assert verify_says(out, capsys) == "incomplete"
    monkeypatch.undo()
    (small_disk / "filler.bin").unlink()
    resume_and_compare(out, reference)


def test_injected_enospc_inside_a_shard_write_then_resume(reference, tmp_path, capsys, monkeypatch):
    """Without a mount: the 24th write to a shard file fails with ENOSPC (shard 2, mid-way)."""
    out = tmp_path / "run"
    calls = []

    class Full:
        """A file whose writes fail once the disk is "full"."""

        def __init__(self, f):
            self.f = f

        def write(self, data):
            calls.append(1)
            if len(calls) >= 24:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr(writer, "open", lambda *a, **kw: Full(open(*a, **kw)), raising=False)
    capsys.readouterr()
    assert main(generate_args(out)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: disk full while writing {out / 'shard-00002'}/") and "Traceback" not in err, err
    assert "2 of 6 shards" in err, err
    assert not list(out.rglob("*.tmp")) and not list((out / "shard-00002").glob("*"))
    monkeypatch.undo()
    assert verify_says(out, capsys) == "incomplete"
    resume_and_compare(out, reference)


def test_file_size_limit_is_reported_then_resume(reference, tmp_path, capsys):
    """RLIMIT_FSIZE below one shard file: `write` fails with EFBIG (Python ignores SIGXFSZ)."""
    out = tmp_path / "run"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    proc = subprocess.run([sys.executable, "-m", "mmmi_dsl", *generate_args(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, preexec_fn=limit)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: file size limit reached (ulimit -f) while writing"), proc.stderr
    assert "0 of 6 shards" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(out.rglob("*.tmp")) and not list(out.rglob("*.npy"))
    assert verify_says(out, capsys) == "incomplete"
    resume_and_compare(out, reference)


# ----------------------------------------------------------------- refusing to start


def test_refuses_to_start_when_the_disk_is_too_small(tmp_path, capsys, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 50_000, 50_000))
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(generate_args(out)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: not enough disk space in {out}: "), err
    assert "still to write, 48.8 KiB (50000 bytes) free" in err and "= help: free some space" in err, err
    assert "Traceback" not in err
    assert not out.exists(), "it wrote before refusing"


def test_refuses_to_start_on_a_real_small_disk(small_disk, capsys):
    out = small_disk / "run"
    capsys.readouterr()
    assert main(generate_args(out, 20_000)) == 1  # ~2.7 MB on a 1 MiB disk
    err = capsys.readouterr().err
    assert "not enough disk space" in err and "(1048576 bytes) free" in err, err
    assert not out.exists()
