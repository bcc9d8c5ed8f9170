"""Safe loading: pickles are refused unread, files outside the spec's directory need
--allow-paths, no YAML or pickle is ever loaded unsafely, and malformed JSON inputs
(manifests, CNF configs) are clear data errors, never tracebacks."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from mmmi_dsl import SpecError, load, loads
from mmmi_dsl.cli import build_parser, main

from .conftest import ROOT

DIGITS = ROOT / "mmmi_dsl" / "weights" / "digits.safetensors"


class Payload:
    """Unpickling this object creates ``path`` (the stand-in for arbitrary code)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def spec_with(directory: Path, line: str, latent_size: int = 4) -> Path:
    """A spec in ``directory`` whose template/matrix/flow line is ``line``."""
    text = (f"proto u : scalar\nproto e : vector[{latent_size}]\ndim d = {latent_size}\n{line}\n"
            "latent z = u * ones(d) + e\nflow x = identity(z)\n")
    if "weights" in line:
        text = text.replace("flow x = identity(z)\n", "")
    path = directory / "spec.mmi"
    path.write_text(text)
    return path



# ----------------------------------------------------------------- pickles are never run


def write_pickles(directory: Path, marker: Path) -> dict[str, Path]:
    """Files whose loading with pickle would create ``marker``."""
    import torch

    payload = {"w": Payload(marker)}
    files = {}
    for name in ("evil.pt", "evil.pkl", "evil.safetensors", "evil.npy", "evil.png"):
        files[name] = directory / name
        files[name].write_bytes(pickle.dumps(payload))
    files["torch_zip.safetensors"] = directory / "torch_zip.safetensors"
    torch.save(payload, files["torch_zip.safetensors"])  # torch's zip checkpoint, renamed
    files["object.npy"] = directory / "object.npy"
    np.save(files["object.npy"], np.array([Payload(marker)], dtype=object), allow_pickle=True)
    return files


@pytest.mark.parametrize("line, file, message", [
    ('flow x = cnf(z, weights = "{f}", class = 0) : image[1x8x8]', "evil.pt", "is a pickled checkpoint (.pt)"),
    ('flow x = cnf(z, weights = "{f}", class = 0) : image[1x8x8]', "evil.pkl", "is a pickled checkpoint"),
    ('flow x = cnf(z, weights = "{f}", class = 0) : image[1x8x8]', "evil.safetensors", "is not a safetensors"),
    ('flow x = cnf(z, weights = "{f}", class = 0) : image[1x8x8]', "torch_zip.safetensors", "not a safetensors"),
    ('template T : vector[d] = npy("{f}")', "evil.npy", "is not a readable .npy array"),
    ('template T : vector[d] = npy("{f}")', "object.npy", "is not a readable .npy array"),
    ('template T : vector[d] = image("{f}")', "evil.png", "cannot read image"),
    ('matrix M = npy("{f}")', "object.npy", "is not a 2-D .npy array"),
])
@pytest.mark.parametrize("command", ["check", "mi", "generate"])
def test_a_pickle_is_refused_without_running_it(tmp_path, line, file, message, command, mmmic):
    marker = tmp_path / "pwned"
    files = write_pickles(tmp_path, marker)
    size = 64 if "cnf" in line else 4
    spec = spec_with(tmp_path, line.format(f=files[file].name), size)
    extra = ["-o", tmp_path / "out", "-n", "8", "--no-progress"] if command == "generate" else []
    if command == "check":
        extra = ["--flows"]
    r = mmmic(command, spec, *extra)
    code, err = r.code, r.output
    assert code == 1 and "error[E0208]" in err and message in err, err
    assert f"{spec}:4:" in err and "^" in err, err  # the position of the file name
    assert not marker.exists(), "the pickle was executed"
    assert not (tmp_path / "out").exists()


def test_numpy_and_realize_refuse_object_arrays_even_when_lowering_is_skipped(tmp_path):
    """templates.load_npy reads with allow_pickle=False: the second line of defence."""
    from mmmi_dsl.builtins.templates import load_npy as _load_npy

    marker = tmp_path / "pwned"
    path = write_pickles(tmp_path, marker)["object.npy"]

    class Node:
        span = None
        args = {"file": "object.npy"}

    Node.path = str(path)
    with pytest.raises(SpecError, match="pickled objects are refused"):
        _load_npy(Node())
    assert not marker.exists()


# ----------------------------------------------------------------- paths stay inside the spec's directory


def outside_files(tmp_path: Path) -> Path:
    """A directory outside the spec's, holding a valid template, matrix and weights."""
    out = tmp_path / "elsewhere"
    out.mkdir()
    np.save(out / "t.npy", np.arange(4.0))
    np.save(out / "m.npy", np.eye(4))
    shutil.copy(DIGITS, out / "w.safetensors")
    return out


@pytest.mark.parametrize("kind", ["template", "matrix", "weights"])
@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_a_path_outside_the_spec_needs_allow_paths(tmp_path, kind, how, mmmic):
    elsewhere = outside_files(tmp_path)
    specdir = tmp_path / "project" / "specs"
    specdir.mkdir(parents=True)
    target = {"template": "t.npy", "matrix": "m.npy", "weights": "w.safetensors"}[kind]
    if how == "dotdot":
        given = f"../../elsewhere/{target}"
    elif how == "absolute":
        given = str(elsewhere / target)
    else:
        (specdir / "link").symlink_to(elsewhere, target_is_directory=True)
        given = f"link/{target}"
    line = {"template": f'template T : vector[d] = npy("{given}")',
            "matrix": f'matrix M = npy("{given}")',
            "weights": f'flow x = cnf(z, weights = "{given}", class = 0) : image[1x8x8]'}[kind]
    spec = spec_with(specdir, line, 64 if kind == "weights" else 4)
    r = mmmic("check", spec)
    code, err = r.code, r.output
    column = line.index('"') + 1
    assert code == 1 and f"error[E0216]: file `{given[:60]}" in err and "is outside the spec's directory" in err, err
    assert f"--> {spec}:4:{column}" in err, err
    assert re.search(rf"\n4 \| {re.escape(line)}\n +\| {' ' * (column - 1)}\^+ resolves to ", err), err
    assert f"help: pass --allow-paths to allow files outside {specdir.resolve()}" in err, err
    with pytest.raises(SpecError, match="E0216"):
        load(spec)
    r = mmmic("check", spec, "--allow-paths")
    code, err = r.code, r.output
    assert code == 0, err
    assert load(spec, allow_paths=True).name == "spec"


def test_dotdot_to_etc_passwd_is_refused_before_the_file_is_read(tmp_path, mmmic):
    spec = spec_with(tmp_path, 'template T : vector[d] = npy("../../../../../../../../etc/passwd")')
    r = mmmic("check", spec)
    code, err = r.code, r.output
    assert code == 1 and "E0216" in err and "resolves to /etc/passwd" in err and "E0208" not in err, err
    r = mmmic("check", spec, "--allow-paths")  # allowed: then it is just not an .npy array
    code, err = r.code, r.output
    assert code == 1 and "E0216" not in err and "is not a readable .npy array" in err, err


def test_paths_inside_resolve_relative_to_the_spec_not_the_cwd(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "t.npy", np.arange(1.0, 5.0))
    spec = spec_with(tmp_path, 'template T : vector[d] = npy("data/../data/t.npy")')
    monkeypatch.chdir(ROOT)
    model = load(spec)
    assert model.templates["T"].path == str(tmp_path / "data" / "../data/t.npy")
    text = spec.read_text()
    with pytest.raises(SpecError, match="E0216"):  # text specs resolve against base_dir (default: the cwd)
        loads(text.replace("data/../data/t.npy", str(tmp_path / "data" / "t.npy")))
    assert loads(text, base_dir=tmp_path).templates["T"].size == 4
    assert loads(text.replace("data/../", str(tmp_path) + "/"), allow_paths=True).templates["T"].size == 4


def test_every_command_that_reads_a_spec_takes_allow_paths():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # noqa: SLF001
    reading = set()
    for name, p in sub.choices.items():
        options = {o for a in p._actions for o in a.option_strings}  # noqa: SLF001
        if "--set" in options:
            reading.add(name)
            assert "--allow-paths" in options, name
    assert {"check", "compile", "mi", "formula", "solve", "sweep", "generate"} <= reading


# ----------------------------------------------------------------- YAML, pickle and JSON readers


UNSAFE = re.compile(r"yaml\.(load|unsafe_load|full_load)\s*\(|yaml\.(Unsafe|Full)?Loader\b|pickle\.loads?\s*\("
                    r"|torch\.load\s*\((?![^)]*weights_only\s*=\s*True)|allow_pickle\s*=\s*True"
                    r"|(?<![.\w])(eval|exec)\s*\(|marshal\.loads?\s*\(")


def test_the_package_has_no_unsafe_loader():
    """No module reads YAML unsafely, unpickles, torch.loads without weights_only=True (only
    convert-weights reads a torch checkpoint at all), or evals: a new one fails here."""
    modules = sorted((ROOT / "mmmi_dsl").rglob("*.py"))  # subpackages too (lang/, flows/, dataset/, ...)
    assert len(modules) > 20, modules
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in modules
            for i, line in enumerate(p.read_text().splitlines(), 1) if UNSAFE.search(line)]
    assert not hits, hits
    readers = [p for p in modules if re.search(r"^\s*(import yaml|from yaml import)", p.read_text(), re.M)]
    assert readers, "the suite file is YAML: its reader must be found here"
    assert all("yaml.safe_load" in r.read_text() for r in readers), readers


def test_a_malicious_yaml_tag_is_refused_by_safe_load(tmp_path):
    """What any YAML reader here must use: safe_load refuses python/object tags unrun."""
    yaml = pytest.importorskip("yaml")
    marker = tmp_path / "pwned"
    doc = f"!!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load(doc)
    assert not marker.exists()


def _dataset(tmp_path) -> Path:
    out = tmp_path / "ds"
    assert main(["generate", str(ROOT / "specs" / "two_views.mmi"), "-o", str(out), "-n", "600", "--set", "d=4",
                 "--shard-size", "256", "--chunk-size", "128", "--no-progress"]) == 0
    return out


def _edit(key, value):
    def edit(m):
        m[key] = value
        return m
    return edit


def _edit_shard(key, value):
    def edit(m):
        m["shards"][1][key] = value
        return m
    return edit


BAD_MANIFESTS = {
    "n is a string": (_edit("n", "600"), '`n` is "600", expected an integer >= 1'),
    "seed is true": (_edit("seed", True), "`seed` is true, expected an integer"),
    "shards is an object": (_edit("shards", {}), "`shards` is {}, expected a list"),
    "complete is a string": (_edit("complete", "yes"), '`complete` is "yes", expected true or false'),
    "variables is a list": (_edit("variables", []), "`variables` is [], expected an object"),
    "object dtype": (lambda m: {**m, "variables": {**m["variables"], "x1": {"shape": [4], "dtype": "O"}}},
                     "object arrays are not allowed"),
    "mi entries": (_edit("mi", [7]), "`mi[0]` is 7"),
    "shard index": (_edit_shard("index", "1"), '`shards[1].index` is "1", expected an integer >= 0'),
    "shard bytes": (_edit_shard("bytes", {"x1": "9", "x2": 1, "theta": 1}), "`shards[1].bytes` is"),
    "shard sha256 keys": (_edit_shard("sha256", {}), "`shards[1].sha256` names other variables"),
    "not an object": (lambda m: [m], "not a JSON object"),
    "missing keys": (lambda m: {"format": m["format"]}, "missing n, seed"),
}


@pytest.mark.parametrize("case", list(BAD_MANIFESTS) + ["invalid JSON", "deeply nested"])
def test_a_manifest_with_wrong_types_is_a_clear_data_error(tmp_path, case, mmmic):
    out = _dataset(tmp_path)
    path = out / "manifest.json"
    if case == "invalid JSON":
        path.write_text(path.read_text()[:-20])
        message = "cannot read"
    elif case == "deeply nested":
        path.write_text("[" * 100_000 + "]" * 100_000)
        message = "cannot read"
    else:
        edit, message = BAD_MANIFESTS[case]
        path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    r = mmmic("verify", out)
    code, text = r.code, r.output
    assert code == 1 and "FAIL:" in text and message in text, text
    for argv in (["estimate", out, "-q", "I(x1; x2)", "-e", "gaussian"], ["preview", out, "-o", tmp_path / "p.png"],
                 ["generate", ROOT / "specs" / "two_views.mmi", "-o", out, "-n", "600", "--set", "d=4",
                  "--shard-size", "256", "--chunk-size", "128", "--no-progress"]):
        r = mmmic(*argv)
        code, text = r.code, r.output
        assert code == 1 and text.startswith("error: ") and message in text, (argv[0], text)


def test_a_part_manifest_with_wrong_types_is_refused_by_merge(tmp_path, mmmic):
    out = tmp_path / "split"
    for i in range(2):
        assert main(["generate", str(ROOT / "specs" / "two_views.mmi"), "-o", str(out), "-n", "600", "--set",
                     "d=4", "--shard-size", "256", "--chunk-size", "128", "--no-progress", "--shard", f"{i}/2"]) == 0
    part = out / "manifest.part-1-of-2.json"
    part.write_text(json.dumps(_edit("shard_size", 0)(json.loads(part.read_text()))))
    r = mmmic("merge", out)
    code, text = r.code, r.output
    assert code == 1 and "`shard_size` is 0, expected an integer >= 1" in text, text


@pytest.mark.parametrize("config, message", [
    ("[1, 2]", "config that is not a JSON object"),
    ('{"format": "mmmi_dsl.cnf/1", "dim": "sixty-four"}', "config `dim` must be an integer"),
    ("{not json", "has a config that is not JSON"),
])
@pytest.mark.parametrize("flows", [False, True])
def test_a_cnf_config_with_wrong_types_is_a_clear_error(tmp_path, config, message, flows, mmmic):
    """Refused when the spec is checked (plain `check` too): no network is ever built from it."""
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(DIGITS)), str(tmp_path / "w.safetensors"), metadata={"mmmi_config": config})
    spec = spec_with(tmp_path, 'flow x = cnf(z, weights = "w.safetensors", class = 0) : image[1x8x8]', 64)
    r = mmmic("check", *(["--flows"] if flows else []), spec)
    code, text = r.code, r.output
    assert code == 1 and "error[E0208]" in text and message in text, text
    assert f"{spec}:4:27" in text, text  # at the weights' file name


@pytest.mark.parametrize("key, value", [("hidden", 200_000), ("n_classes", 10**10), ("depth", 10**7),
                                        ("hidden", 512), ("n_classes", 12), ("dim", 32)])
def test_a_cnf_config_that_lies_about_its_tensors_is_refused_before_any_network_is_built(
        tmp_path, monkeypatch, key, value, mmmic):
    """A config whose sizes are out of bounds or disagree with the tensors' shapes is refused from the
    safetensors header alone: torch never allocates the network it describes."""
    from safetensors.torch import load_file, save_file

    import mmmi_dsl.flows.cnf as cnf_module

    config = json.loads((DIGITS.with_suffix(".json")).read_text())
    config[key] = value
    save_file(load_file(str(DIGITS)), str(tmp_path / "w.safetensors"), metadata={"mmmi_config": json.dumps(config)})
    built = []
    monkeypatch.setattr(cnf_module, "net_from_config", lambda c: built.append(c))
    spec = spec_with(tmp_path, 'flow x = cnf(z, weights = "w.safetensors", class = 0) : image[1x8x8]', 64)
    r = mmmic("check", spec)
    code, text = r.code, r.output
    assert code == 1 and "error[E0208]" in text, text
    assert ("must be an integer in" in text) or ("do not fit the architecture of its config" in text), text
    with pytest.raises(ValueError, match="must be an integer in|do not fit the architecture"):
        cnf_module.CNF(64, weights=str(tmp_path / "w.safetensors"))
    assert not built


def test_cnf_weights_that_do_not_fit_their_config_are_a_clear_error(tmp_path, mmmic):
    from safetensors.torch import load_file, save_file

    state = load_file(str(DIGITS))
    state.pop(next(iter(state)))
    config = json.loads((DIGITS.with_suffix(".json")).read_text())
    save_file(state, str(tmp_path / "w.safetensors"), metadata={"mmmi_config": json.dumps(config)})
    spec = spec_with(tmp_path, 'flow x = cnf(z, weights = "w.safetensors", class = 0) : image[1x8x8]', 64)
    r = mmmic("check", spec)
    code, text = r.code, r.output
    assert code == 1 and "do not fit the architecture of its config" in text, text


def test_marker_helper_really_runs_when_unpickled(tmp_path):
    """The payload is live: loading it with pickle does create the marker (so the tests above can fail)."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(Payload(marker))).close()
    assert marker.exists()
    os.remove(marker)


# ---------------------------------------------------------------- file contents read at check (issue 14, 12-13)


@pytest.mark.parametrize("array, message", [
    (np.array(["a", "b", "c", "d"]), "holds <U1 values"),
    (np.array([1 + 2j, 0, 0, 1]), "holds complex128 values"),
    (np.array(["2020-01-01"] * 4, dtype="datetime64[D]"), "holds datetime64[D] values"),
    (np.array([1.0, np.nan, 0, 1]), "has non-finite entries"),
    (np.array([1.0, np.inf, 0, 1]), "has non-finite entries"),
])
@pytest.mark.parametrize("kind", ["template", "matrix"])
def test_npy_files_of_other_than_real_numbers_are_refused_at_check(tmp_path, mmmic, array, message, kind):
    np.save(tmp_path / "t.npy", array.reshape(2, 2) if kind == "matrix" else array)
    line = 'template T : vector[d] = npy("t.npy")' if kind == "template" else 'matrix M = npy("t.npy")'
    spec = spec_with(tmp_path, line, 4)
    r = mmmic("check", spec)
    assert r.code == 1 and "error[E0208]" in r.stderr and message in r.stderr, r.stderr
    assert f"{spec}:4:" in r.stderr


def test_a_truncated_npy_file_is_refused_at_check(tmp_path, mmmic):
    np.save(tmp_path / "t.npy", np.arange(1000.0))
    data = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[:-100])
    spec = spec_with(tmp_path, 'template T : vector[d] = npy("t.npy")', 1000)
    r = mmmic("check", spec)
    assert r.code == 1 and "error[E0208]" in r.stderr and "cannot be read" in r.stderr, r.stderr


def test_integer_and_bool_npy_files_are_real_numbers(tmp_path, mmmic):
    np.save(tmp_path / "t.npy", np.array([1, 0, 2, 3], dtype=np.int16))
    assert mmmic("check", spec_with(tmp_path, 'template T : vector[d] = npy("t.npy")', 4)).code == 0


@pytest.mark.parametrize("content, message", [
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n", "is not a PNG or JPEG file"),
    (b"GIF89a" + bytes(40), "is not a PNG or JPEG file"),
    (b"\x89PNG\r\n\x1a\n" + bytes(20), "cannot be decoded as PNG"),
])
def test_image_templates_open_only_png_and_jpeg_by_their_bytes(tmp_path, mmmic, monkeypatch, content, message):
    """An EPS file named .png was handed to Ghostscript: now nothing but Pillow's PNG and JPEG decoders runs."""
    from PIL import Image

    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda fp, mode="r", formats=None: opened.append(formats) or
                        real_open(fp, mode, formats))
    (tmp_path / "t.png").write_bytes(content)
    spec = spec_with(tmp_path, 'template T : vector[d] = image("t.png", mode = "L")', 64)
    r = mmmic("check", spec)
    assert r.code == 1 and "error[E0208]" in r.stderr and message in r.stderr, r.stderr
    assert all(f in (["PNG"], ["JPEG"]) for f in opened), opened


def test_a_truncated_png_is_refused_at_check(tmp_path, mmmic):
    from PIL import Image

    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    r = mmmic("check", spec_with(tmp_path, 'template T : vector[d] = image("t.png", mode = "L")', 64))
    assert r.code == 1 and "cannot be decoded as PNG" in r.stderr, r.stderr
