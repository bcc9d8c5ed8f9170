"""Output directories (issue 14, items 14 and 15): planted links are never followed, one writer
at a time (an advisory lock naming its holder), a dead writer's temp files are cleaned, a
finished run reruns as "complete, nothing to do" even on a full disk, and a resume says that
it did not rehash the shards it kept."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmmi_dsl.dataset import DatasetError, merge, write_dataset, writer
from mmmi_dsl.dataset.safety import WriterLock

from ..conftest import ROOT
from ..fake_sampler import FINGERPRINT, FakeSampler, metadata

SPEC = str(ROOT / "specs" / "two_views.mmi")
OPTS = ["--set", "d=16", "--chunk-size", "256", "--shard-size", "512", "--batch-size", "256", "--no-progress"]


def write(out: Path, **kw) -> dict:
    return write_dataset(out, FakeSampler(7), 1200, seed=7, shard_size=500, batch_size=100, metadata=metadata(),
                         fingerprint=FINGERPRINT, progress=False, **kw)


def files(folder: Path) -> dict[str, bytes]:
    """Every file in ``folder`` (hidden ones too): name -> bytes."""
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """Another directory holding a file, and a temp-looking file, that a run must never touch."""
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "victim.npy").write_bytes(b"precious")
    (other / ".y.npy.tmp").write_bytes(b"also precious")
    return other


# ----------------------------------------------------------------- planted links (item 14)


def test_a_shard_folder_that_is_a_link_is_refused(tmp_path, elsewhere):
    """Before: x_1_.npy, y.npy and label.npy were written into `elsewhere`, and its .y.npy.tmp deleted."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "shard-00000").symlink_to(elsewhere, target_is_directory=True)
    before = files(elsewhere)
    with pytest.raises(DatasetError, match=r"shard-00000 is a symbolic link \(to .*elsewhere\); refusing"):
        write(out)
    assert files(elsewhere) == before


def test_a_shard_folder_link_is_refused_by_the_cli(tmp_path, elsewhere, mmmic):
    out = tmp_path / "out"
    out.mkdir()
    (out / "shard-00000").symlink_to(elsewhere, target_is_directory=True)
    before = files(elsewhere)
    r = mmmic("generate", SPEC, "-o", out, "-n", 1000, *OPTS)
    assert r.code == 1 and f"error: {out / 'shard-00000'} is a symbolic link" in r.stderr, r.stderr
    assert "never follows links inside an output directory" in r.stderr
    assert files(elsewhere) == before


def test_a_link_in_place_of_the_manifest_is_refused(tmp_path, elsewhere):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").symlink_to(elsewhere / "victim.npy")
    before = files(elsewhere)
    for overwrite in (False, True):
        with pytest.raises(DatasetError, match=r"manifest.json is a symbolic link"):
            write(out, overwrite=overwrite)
    assert files(elsewhere) == before and (out / "manifest.json").is_symlink()


def test_a_link_in_place_of_a_shard_file_is_refused_and_never_kept(tmp_path, elsewhere):
    """A finished run whose x_1_.npy is swapped for a link to a file of the same size: the
    resume must not keep it as data (nor write through it)."""
    out = tmp_path / "out"
    write(out)
    shard_file = out / "shard-00001" / "x_1_.npy"
    decoy = elsewhere / "decoy.npy"
    decoy.write_bytes(shard_file.read_bytes())
    shard_file.unlink()
    shard_file.symlink_to(decoy)
    before = files(elsewhere)
    with pytest.raises(DatasetError, match=r"shard-00001/x_1_.npy is a symbolic link"):
        write(out)
    assert files(elsewhere) == before


def test_links_in_place_of_temp_files_are_removed_not_followed(tmp_path, elsewhere):
    out = tmp_path / "out"
    (out / "shard-00000").mkdir(parents=True)
    (out / "shard-00000" / ".x_1_.npy.tmp").symlink_to(elsewhere / "victim.npy")
    (out / ".manifest.json.abc123.tmp").symlink_to(elsewhere / ".y.npy.tmp")
    before = files(elsewhere)
    assert write(out)["complete"]
    assert files(elsewhere) == before
    assert not list(out.rglob("*.tmp"))


def test_a_temp_file_planted_as_a_link_while_writing_is_never_opened_through(tmp_path, elsewhere):
    """The temp file is created with O_CREAT | O_EXCL | O_NOFOLLOW: a link there is an error."""
    target = tmp_path / "x.npy"
    (tmp_path / ".x.npy.tmp").symlink_to(elsewhere / "victim.npy")
    with pytest.raises(DatasetError, match=r"\.x\.npy\.tmp is a symbolic link"):
        writer._NpyWriter(target, (3, 2), "float32")
    assert (elsewhere / "victim.npy").read_bytes() == b"precious"


def test_the_output_directory_itself_may_be_a_link(tmp_path):
    """The user named it: a link given as the output is followed (documented)."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "out").symlink_to(real, target_is_directory=True)
    assert write(tmp_path / "out")["complete"]
    assert (real / "manifest.json").is_file()


# ----------------------------------------------------------------- one writer at a time (item 15)

HOLDER = r'''
import sys, time
from pathlib import Path
from mmmi_dsl.dataset.safety import WriterLock
lock = WriterLock(Path(sys.argv[1]), sys.argv[2], command="mmmic generate spec.mmi -o somewhere").acquire()
print("held", flush=True)
time.sleep(60)
'''


@pytest.fixture
def holder(tmp_path):
    """A child process holding the lock of ``tmp_path/out``'s manifest.json."""
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), "manifest.json"], stdout=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield out, proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_a_second_generate_exits_1_naming_the_holder(holder, mmmic):
    out, pid = holder
    r = mmmic("generate", SPEC, "-o", out, "-n", 1000, *OPTS)
    assert r.code == 1, r.stderr
    assert f"is being written by another mmmic run (pid {pid} on " in r.stderr, r.stderr
    assert "`mmmic generate spec.mmi -o somewhere`, since 20" in r.stderr, r.stderr
    assert not (out / "manifest.json").exists() and not list(out.glob("shard-*"))


def test_a_merge_exits_1_naming_the_holder(holder, tmp_path, mmmic):
    out, pid = holder
    for i in range(2):
        write(out, job=(i, 2))
    r = mmmic("merge", out)
    assert r.code == 1 and f"(pid {pid} on " in r.stderr, r.stderr
    assert not (out / "manifest.json").exists()


def test_jobs_of_a_split_lock_their_own_part_only(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with WriterLock(out, "manifest.part-0-of-2.json"):
        assert write(out, job=(1, 2))["complete"]  # another job's lock does not block it
        with pytest.raises(DatasetError, match="being written by another mmmic run"):
            write(out, job=(0, 2))
    assert write(out, job=(0, 2))["complete"]
    assert not list(out.glob(".*.lock")), "the lock file outlives the run"


def test_three_concurrent_writers_never_corrupt_the_dataset(tmp_path):
    """Before: one of three died with "No such file or directory: D/manifest.json"."""
    out = tmp_path / "d"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    args = [sys.executable, "-m", "mmmi_dsl", "generate", SPEC, "-o", str(out), "-n", "60000", *OPTS]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(3)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    for code, _out, err in results:
        assert code in (0, 1) and "Traceback" not in err, err
        assert code == 0 or "is being written by another mmmic run (pid" in err, err
    assert any(code == 0 for code, *_ in results)
    from mmmi_dsl.cli import main
    assert main(["verify", str(out)]) == 0


def test_a_killed_merge_leaves_a_temp_file_that_the_next_merge_removes(tmp_path):
    out = tmp_path / "out"
    for i in range(2):
        write(out, job=(i, 2))
    stale = out / ".manifest.json.k1ll3d.tmp"
    stale.write_text('{"half": ')
    assert merge([out])["complete"]
    assert not stale.exists() and not list(out.glob(".*.lock"))


# ----------------------------------------------------------------- reruns and resumes (item 15)


def test_a_rerun_of_a_finished_dataset_on_a_full_disk_exits_0(tmp_path, mmmic, monkeypatch):
    """Before: exit 1, "disk full while writing .../manifest.json ... rerun the same command"."""
    out = tmp_path / "d"
    assert mmmic("generate", SPEC, "-o", out, "-n", 1200, *OPTS).code == 0
    manifest = (out / "manifest.json").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(writer, "write_atomic", full)
    monkeypatch.setattr(writer, "open", full, raising=False)
    r = mmmic("generate", SPEC, "-o", out, "-n", 1200, *OPTS)
    assert r.code == 0, r.stderr
    assert f"{out}: complete, nothing to do (1,200 tuples in 3 shard(s) already written" in r.stdout, r.stdout
    assert f"run `mmmic verify {out}`" in r.stdout
    assert (out / "manifest.json").read_bytes() == manifest


def test_a_resume_says_it_did_not_rehash_the_shards_it_kept(tmp_path, mmmic):
    out = tmp_path / "d"
    assert mmmic("generate", SPEC, "-o", out, "-n", 1200, *OPTS).code == 0
    for f in (out / "shard-00001").iterdir():
        f.unlink()
    r = mmmic("generate", SPEC, "-o", out, "-n", 1200, *OPTS)
    assert r.code == 0, r.stderr
    assert "resumed: kept 2 shard(s) already on disk, checked by size only, not rehashed" in r.stdout, r.stdout
    assert f"run `mmmic verify {out}` to check their sha256" in r.stdout
    assert json.loads((out / "manifest.json").read_text())["complete"]
