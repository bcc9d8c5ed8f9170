"""The files a spec reads (templates, matrices, weights) are kept with its dataset (dataset/spec_files.py)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mmmi_dsl import loads
from mmmi_dsl.dataset.spec_files import spec_files
from mmmi_dsl.files import sha256_file

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "mmmi_dsl" / "weights" / "digits.safetensors"

SPEC = """param a = 0.7
proto u : scalar
proto n : vector[3]
proto m : vector[2]
template T = npy("{template}")
matrix M = npy("mats/m.npy")
latent z = a * u * T + n
latent w = M @ n + m
target theta = u
flow x = identity(z)
flow y = identity(w)
report I(theta; x)
"""


def project(tmp_path: Path, template: str = "data/t.npy") -> Path:
    """A spec folder whose spec reads a template and a matrix in subfolders."""
    spec_dir = tmp_path / "spec"
    (spec_dir / "mats").mkdir(parents=True)
    if not template.startswith("/"):
        (spec_dir / template).parent.mkdir(parents=True, exist_ok=True)
        np.save(spec_dir / template, np.array([1.0, 2.0, 0.5]))
    np.save(spec_dir / "mats" / "m.npy", np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.25]]))
    (spec_dir / "s.mmi").write_text(SPEC.format(template=template))
    return spec_dir / "s.mmi"


def mi_json(r) -> list:
    assert r.code == 0, r.stderr
    return [(q["query"], q["nats"]) for q in json.loads(r.stdout)["results"]]


def test_generate_copies_the_files_its_spec_reads_and_the_dataset_answers_anywhere(tmp_path, mmmic, monkeypatch):
    spec = project(tmp_path)
    out = tmp_path / "ds"
    assert mmmic("generate", spec, "-o", out, "-n", "200", "--no-progress").code == 0
    for name in ("data/t.npy", "mats/m.npy"):
        assert (out / name).read_bytes() == (spec.parent / name).read_bytes()
    recorded = json.loads((out / "manifest.json").read_text())["fingerprint"]["files"]
    assert recorded == {name: sha256_file(spec.parent / name) for name in ("data/t.npy", "mats/m.npy")}
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(out, moved)
    monkeypatch.chdir(tmp_path / "elsewhere")
    want = mi_json(mmmic("mi", spec, "-q", "I(x; u)", "-q", "I(y; theta)", "--json"))
    assert mi_json(mmmic("mi", "moved", "-q", "I(x; u)", "-q", "I(y; theta)", "--json")) == want
    r = mmmic("verify", "moved")
    assert r.code == 0 and "ok: the spec's 2 data files (data/t.npy, mats/m.npy): sha256 as recorded" in r.stdout


@pytest.mark.parametrize("damage, message", [
    ("change", '"data/t.npy": sha256 differs from the manifest'),
    ("delete", '"data/t.npy": missing, or reached through a symbolic link'),
    ("link", '"data/t.npy": missing, or reached through a symbolic link'),
    ("folder link", '"data/t.npy": missing, or reached through a symbolic link'),
])
def test_verify_checks_the_copies(tmp_path, mmmic, damage, message):
    spec = project(tmp_path)
    out = tmp_path / "ds"
    assert mmmic("generate", spec, "-o", out, "-n", "20", "--no-progress").code == 0
    copy = out / "data" / "t.npy"
    copy.unlink()
    if damage == "change":
        np.save(copy, np.array([1.0, 2.0, 0.6]))
    elif damage == "link":
        copy.symlink_to(spec.parent / "data" / "t.npy")  # the same bytes, but not a file of the dataset
    elif damage == "folder link":
        copy.parent.rmdir()
        copy.parent.symlink_to(spec.parent / "data", target_is_directory=True)
    r = mmmic("verify", out)
    assert r.code == 1 and f"FAIL: {message}" in r.stdout, r.stdout


def test_a_resume_with_a_changed_file_is_refused(tmp_path, mmmic):
    spec = project(tmp_path)
    out = tmp_path / "ds"
    assert mmmic("generate", spec, "-o", out, "-n", "20", "--no-progress").code == 0
    np.save(spec.parent / "data" / "t.npy", np.array([1.0, 2.0, 0.6]))
    r = mmmic("generate", spec, "-o", out, "-n", "20", "--no-progress")
    assert r.code == 1 and "fingerprint.files.data/t.npy is" in r.stderr, r.stderr
    old = json.loads((out / "manifest.json").read_text())
    del old["fingerprint"]["files"]  # a dataset of an mmmic that did not record them
    (out / "manifest.json").write_text(json.dumps(old))
    np.save(spec.parent / "data" / "t.npy", np.array([1.0, 2.0, 0.5]))
    r = mmmic("generate", spec, "-o", out, "-n", "20", "--no-progress")
    assert r.code == 1 and "written before mmmic recorded the SHA-256 of the files its spec reads" in r.stderr


def test_a_planted_link_in_the_output_is_refused_and_not_followed(tmp_path, mmmic):
    spec = project(tmp_path)
    out, outside = tmp_path / "ds", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / "data").symlink_to(outside, target_is_directory=True)
    r = mmmic("generate", spec, "-o", out, "-n", "20", "--no-progress")
    assert r.code == 1 and "is a symbolic link" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert list(outside.iterdir()) == []


def test_a_file_named_like_the_datasets_own_is_refused_before_anything_is_written(tmp_path, mmmic):
    spec = project(tmp_path, template="shard-x/t.npy")
    out = tmp_path / "ds"
    r = mmmic("generate", spec, "-o", out, "-n", "20", "--no-progress")
    assert r.code == 1 and "`shard-x/t.npy`, a name the dataset uses for its own files" in r.stderr, r.stderr
    assert not out.exists()


def test_a_file_outside_the_spec_folder_is_recorded_not_copied(tmp_path, mmmic):
    outside = tmp_path / "shared" / "t.npy"
    outside.parent.mkdir()
    np.save(outside, np.array([1.0, 2.0, 0.5]))
    spec = project(tmp_path, template=str(outside))
    out = tmp_path / "ds"
    assert mmmic("generate", spec, "-o", out, "-n", "200", "--no-progress", "--allow-paths").code == 0
    assert json.loads((out / "manifest.json").read_text())["fingerprint"]["files"][str(outside)] == sha256_file(outside)
    assert sorted(p.name for p in out.iterdir()) == ["croissant.json", "manifest.json", "mats", "shard-00000"]
    r = mmmic("verify", out)
    assert r.code == 0 and "the spec's 1 data file (mats/m.npy): sha256 as recorded" in r.stdout, r.stdout


def split_run(tmp_path: Path, mmmic) -> tuple[Path, list[Path]]:
    """The spec of :func:`project` generated as two jobs into two folders: (spec, [folder, folder])."""
    spec = project(tmp_path)
    parts = [tmp_path / "p0", tmp_path / "p1"]
    for i, part in enumerate(parts):
        r = mmmic("generate", spec, "-o", part, "-n", "40", "--shard-size", "8", "--shard", f"{i}/2", "--no-progress")
        assert r.code == 0, r.stderr
    return spec, parts


def test_merge_into_another_folder_copies_them(tmp_path, mmmic):
    spec, parts = split_run(tmp_path, mmmic)
    merged = tmp_path / "merged"
    assert mmmic("merge", *parts, "-o", merged).code == 0
    assert (merged / "data" / "t.npy").read_bytes() == (spec.parent / "data" / "t.npy").read_bytes()
    r = mmmic("verify", merged)
    assert r.code == 0 and "the spec's 2 data files" in r.stdout, r.stdout


def test_weights_and_a_covariance_are_named_as_the_spec_names_them_whatever_the_base(tmp_path, monkeypatch):
    """Lowering records every file it reads under the name the spec gives it, so a spec loaded from a
    string against another folder (``loads(text, base_dir=...)``) names them the same."""
    (tmp_path / "sp" / "w").mkdir(parents=True)
    shutil.copy(DIGITS, tmp_path / "sp" / "w" / "d.safetensors")
    np.save(tmp_path / "sp" / "cov.npy", np.eye(64) * 2.0)
    text = ('latent z : vector[64] ~ gaussian(cov = npy("cov.npy"))\n'
            'flow x = cnf(z, weights = "w/./d.safetensors", class = 3) : image[1x8x8]\n')
    monkeypatch.chdir(tmp_path)
    model = loads(text, base_dir=Path("sp"))
    assert spec_files(model) == {"cov.npy": Path("sp") / "cov.npy",
                                 "w/./d.safetensors": Path("sp") / "w" / "d.safetensors"}


def test_a_covariance_file_is_copied_and_a_dotted_name_lands_where_the_recorded_spec_reads_it(tmp_path, mmmic):
    spec_dir = tmp_path / "spec"
    (spec_dir / "data").mkdir(parents=True)
    np.save(spec_dir / "data" / "cov.npy", np.array([[1.0, 0.6], [0.6, 1.0]]))
    (spec_dir / "s.mmi").write_text('latent a, b ~ gaussian(cov = npy("data/../data/cov.npy"))\n'
                                    "flow x = identity(a)\nflow y = identity(b)\nreport I(x; y)\n")
    out = tmp_path / "ds"
    assert mmmic("generate", spec_dir / "s.mmi", "-o", out, "-n", "200", "--no-progress").code == 0
    assert (out / "data" / "cov.npy").read_bytes() == (spec_dir / "data" / "cov.npy").read_bytes()
    r = mmmic("verify", out)
    assert r.code == 0 and "(data/../data/cov.npy): sha256 as recorded" in r.stdout, r.stdout
    assert mmmic("mi", out, "-q", "I(x; y)").code == 0


def hostile(out: Path, files: dict) -> None:
    m = json.loads((out / "manifest.json").read_text())
    m["fingerprint"]["files"] = files
    (out / "manifest.json").write_text(json.dumps(m))


def test_verify_of_a_hostile_file_table_reports_and_reads_nothing_outside(tmp_path, mmmic):
    spec = project(tmp_path)
    out = tmp_path / "ds"
    assert mmmic("generate", spec, "-o", out, "-n", "20", "--no-progress").code == 0
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("k")
    (out / "sec").symlink_to(secret, target_is_directory=True)
    for files in ({"sec/key": sha256_file(secret / "key")}, {"a\x00b": "0" * 64}, {"x" * 300: "0" * 64}, [1, 2],
                  {"data/t.npy": 3}):
        hostile(out, files)
        r = mmmic("verify", out)
        assert r.code == 1 and "FAIL" in r.stdout and "Traceback" not in r.stderr, (files, r.stdout, r.stderr)
    hostile(out, {"../../etc/passwd": "0" * 64, "/etc/passwd": "0" * 64})  # read where they are: not checked here
    assert mmmic("verify", out).code == 0


def test_merge_copies_nothing_through_a_link_nor_a_changed_copy(tmp_path, mmmic):
    spec, parts = split_run(tmp_path, mmmic)
    for part in parts:
        np.save(part / "data" / "t.npy", np.array([9.0, 9.0, 9.0]))
    merged = tmp_path / "merged"
    r = mmmic("merge", *parts, "-o", merged)
    assert r.code == 1 and "changed while the dataset was written" in r.stderr and "Traceback" not in r.stderr
    assert not (merged / "manifest.json").exists() and not (merged / "data" / "t.npy").exists()
    for part in parts:
        (part / "data" / "t.npy").unlink()
        (part / "data" / "t.npy").symlink_to(spec.parent / "data" / "t.npy")
    assert mmmic("merge", *parts, "-o", merged).code == 0
    assert not (merged / "data" / "t.npy").exists()  # not taken through the link: verify names it
    r = mmmic("verify", merged)
    assert r.code == 1 and 'FAIL: "data/t.npy": missing, or reached through a symbolic link' in r.stdout


def test_a_dataset_generated_from_a_dataset_keeps_its_spec_and_files(tmp_path, mmmic):
    """`mmmic generate DIR1 -o DIR2` draws from the spec DIR1 records (at its values); DIR2 records that spec's
    text and name (before: an empty text and the name `manifest.json)`, so DIR2 could not be read back)."""
    spec = project(tmp_path)
    first, second = tmp_path / "first", tmp_path / "second"
    assert mmmic("generate", spec, "-o", first, "-n", "20", "--set", "a=0.9", "--no-progress").code == 0
    assert mmmic("generate", first, "-o", second, "-n", "200", "--seed", "3", "--no-progress").code == 0
    a, b = (json.loads((d / "manifest.json").read_text()) for d in (first, second))
    assert (b["spec"], b["spec_file"], b["spec_sha256"], b["params"]) == (a["spec"], "s.mmi", a["spec_sha256"],
                                                                          {"a": 0.9})
    assert b["fingerprint"]["files"] == a["fingerprint"]["files"]
    assert mmmic("verify", second).code == 0
    want = mi_json(mmmic("mi", spec, "--set", "a=0.9", "-q", "I(x; u)", "--json"))
    assert mi_json(mmmic("mi", second, "-q", "I(x; u)", "--json")) == want
