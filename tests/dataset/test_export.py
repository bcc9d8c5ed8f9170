"""mmmic export: Parquet, hf and WebDataset, each read back with its own library; the card; bad input."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

from mmmi_dsl.dataset import load_arrays
from mmmi_dsl.dataset.export import quantize

from .test_disk_dataset import fake_dataset

datasets = pytest.importorskip("datasets")
wds = pytest.importorskip("webdataset")
ROLES = {"roles": {"x[1]": "modality", "y": "modality", "label": "label"}, "flows": {"x[1]": {}, "y": {}}}
SPLITS = {"train": 240, "validation": 30, "test": 30}


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network, no cache outside tmp_path: everything is read from local files."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return fake_dataset(tmp_path_factory.mktemp("fake") / "d", **ROLES)


def arrays(data):
    return {v: load_arrays(data, v) for v in ("x[1]", "y", "label")}


def check_rows(rows: dict, data, png=None):
    ref = arrays(data)
    k = np.asarray(rows["sample_index"])
    assert np.array_equal(np.asarray(rows["y"], dtype=np.float32), ref["y"][k])
    assert np.array_equal(np.asarray(rows["label"]), ref["label"][k])
    if png is None:
        x = np.asarray(rows["x[1]"], dtype=np.float32)
        assert x.shape == (len(k), 1, 4, 4) and np.array_equal(x, ref["x[1]"][k])
    else:
        got = np.stack([np.asarray(im) for im in rows["x[1]"]])
        assert np.array_equal(got, quantize(ref["x[1]"][k], *png)[:, 0])


def test_parquet_loads_with_datasets(data, tmp_path, mmmic):
    out = tmp_path / "pq"
    r = mmmic("export", data, "--to", "parquet", out, "--rows-per-file", "100")
    assert r.code == 0, r.stderr
    names = sorted(p.name for p in (out / "data").iterdir())
    assert names == ["test-00000-of-00001.parquet", "train-00000-of-00003.parquet", "train-00001-of-00003.parquet",
                     "train-00002-of-00003.parquet", "validation-00000-of-00001.parquet"]
    files = {s: sorted(str(p) for p in (out / "data").glob(f"{s}-*.parquet")) for s in SPLITS}
    dd = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "cache"))
    assert {s: len(dd[s]) for s in dd} == SPLITS
    f = dd["train"].features
    assert isinstance(f["x[1]"], datasets.Array3D) and f["x[1]"].shape == (1, 4, 4)
    assert f["y"].length == 2 and f["label"].dtype == "int64" and f["sample_index"].dtype == "int64"
    for s in SPLITS:
        rows = dd[s].with_format("numpy")[:]
        check_rows(rows, data)
        assert set(np.asarray(rows["sample_index"]) % 10) == {"train": set(range(8)), "validation": {8},
                                                              "test": {9}}[s]
    same = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache2"))  # through the card's configs
    assert {s: len(same[s]) for s in same} == SPLITS
    card = (out / "README.md").read_text()
    mi = json.loads((data / "manifest.json").read_text())["mi"]
    assert f"| `I(x; y)` | {mi[0]['nats']!r} | {mi[0]['bits']!r} |" in card  # every digit of the exact value
    assert "mmmic export" in card and "## Spec" in card and "model fake" in card


def test_parquet_with_png_images(data, tmp_path, mmmic):
    out = tmp_path / "png"
    assert mmmic("export", data, "--to", "parquet", out, "--images", "png").code == 2  # float data: a range
    r = mmmic("export", data, "--to", "parquet", out, "--images", "png", "--png-range=-2,2")
    assert r.code == 0, r.stderr
    dd = datasets.load_dataset("parquet", data_files={"test": str(out / "data/test-*.parquet")},
                               cache_dir=str(tmp_path / "cache"))
    assert isinstance(dd["test"].features["x[1]"], datasets.Image)
    check_rows(dd["test"][:], data, png=(-2.0, 2.0))
    assert "at most" in (out / "README.md").read_text()


def test_hf_loads_from_disk(data, tmp_path, mmmic):
    out = tmp_path / "hf"
    assert mmmic("export", data, "--to", "hf", out).code == 0
    dd = datasets.load_from_disk(str(out))
    assert {s: len(dd[s]) for s in dd} == SPLITS
    for s in SPLITS:
        check_rows(dd[s].with_format("numpy")[:], data)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".hf.export-")]  # the temp folder is gone


def test_webdataset_reads_the_tar_shards(data, tmp_path, mmmic):
    out = tmp_path / "wds"
    assert mmmic("export", data, "--to", "webdataset", out, "--rows-per-file", "128").code == 0
    urls = sorted(str(p) for p in out.glob("train-*.tar"))
    assert [Path(u).name for u in urls] == ["train-00000-of-00002.tar", "train-00001-of-00002.tar"]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode())
    assert len(samples) == 240
    s = samples[0]
    assert set(s) >= {"__key__", "x_1_.npy", "y.npy", "json"} and s["__key__"] == "000000000"
    rows = {"sample_index": [t["json"]["index"] for t in samples], "y": [t["y.npy"] for t in samples],
            "label": [t["json"]["label"] for t in samples], "x[1]": [t["x_1_.npy"] for t in samples]}
    check_rows(rows, data)
    assert {t["json"]["split"] for t in samples} == {"train"}
    with tarfile.open(urls[0]) as tar:  # one key per sample: its members share it
        keys = {m.name.split(".", 1)[0] for m in tar.getmembers()}
    assert len(keys) == 128
    png = tmp_path / "wds-png"
    assert mmmic("export", data, "--to", "webdataset", png, "--images", "png", "--png-range=-2,2").code == 0
    t = next(iter(wds.WebDataset(str(png / "test-00000-of-00001.tar"), shardshuffle=False).decode("l8")))
    check_rows({"sample_index": [t["json"]["index"]], "y": [t["y.npy"]], "label": [t["json"]["label"]],
                "x[1]": [np.asarray(t["x_1_.png"])]}, data, png=(-2.0, 2.0))


def test_export_never_writes_into_a_folder_with_files(data, tmp_path, mmmic):
    out = tmp_path / "full"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    r = mmmic("export", data, "--to", "parquet", out)
    assert r.code == 1 and "is not empty" in r.stderr
    planted = tmp_path / "planted"
    planted.mkdir()
    os.symlink(tmp_path / "elsewhere", planted / "data")  # a dangling link where data/ would go
    assert mmmic("export", data, "--to", "parquet", planted).code == 1
    assert not (tmp_path / "elsewhere").exists() and (out / "keep.txt").read_text() == "mine"
    target = tmp_path / "real"
    target.mkdir()
    os.symlink(target, tmp_path / "named-link")  # OUT itself may be a link: the user named it
    assert mmmic("export", data, "--to", "webdataset", tmp_path / "named-link").code == 0
    assert (target / "croissant.json").is_file()


def test_bad_input_exits_1_or_2(data, tmp_path, mmmic):
    r = mmmic("export", tmp_path / "nothing", "--to", "hf", tmp_path / "o1")
    assert r.code == 1 and "no dataset here" in r.stderr
    r = mmmic("export", data, "--to", "csv", tmp_path / "o2")
    assert r.code == 2
    r = mmmic("export", data, "--to", "parquet", tmp_path / "o3", "--rows-per-file", "0")
    assert r.code == 2 and "--rows-per-file" in r.stderr
    assert "--rows-per-file must be at least 1, got 0" in r.stderr and "Traceback" not in r.stderr  # export()'s check
    r = mmmic("export", data, "--to", "parquet", tmp_path / "o4", "--png-range", "0,1")
    assert r.code == 2 and "--images png" in r.stderr
    r = mmmic("export", data, "--to", "parquet", tmp_path / "o5", "--images", "png", "--png-range", "1,0")
    assert r.code == 2 and "LO < HI" in r.stderr
    r = mmmic("export", data, "--to", "parquet", data)
    assert r.code == 1
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 6))


def test_png_of_8_bit_data_is_exact():
    from PIL import Image

    from mmmi_dsl.dataset.export import png_bytes

    x = np.random.default_rng(0).integers(0, 256, (3, 5, 7), dtype=np.uint8)
    back = np.asarray(Image.open(io.BytesIO(png_bytes(x, None))))
    assert back.shape == (5, 7, 3) and np.array_equal(np.moveaxis(back, -1, 0), x)
