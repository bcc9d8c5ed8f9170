"""croissant.json: written by generate, merge and export, validated offline by mlcroissant."""

from __future__ import annotations

import copy
import hashlib
import json
import socket
from pathlib import Path

import pytest

from mmmi_dsl.dataset.croissant import CROISSANT

from ..conftest import ROOT
from .test_disk_dataset import fake_dataset

mlc = pytest.importorskip("mlcroissant")
SPEC = ROOT / "specs" / "two_views.mmi"
ARGS = ["--set", "d=4", "--shard-size", "128", "--chunk-size", "128", "--no-progress", "--pmi", "x1;x2"]


@pytest.fixture
def no_network(monkeypatch):
    """Validation must not need the network: any connection attempt fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("mlcroissant tried to use the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def validate(doc):
    """mlcroissant's validation: raises mlcroissant.ValidationError on any error; the warnings it gave."""
    return mlc.Dataset(jsonld=doc).metadata.ctx.issues.warnings


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    from mmmi_dsl.cli import main

    out = tmp_path_factory.mktemp("gen") / "tv"
    assert main(["generate", str(SPEC), "-o", str(out), "-n", "300", *ARGS]) == 0
    return out


def test_generate_writes_a_croissant_that_validates(generated, no_network):
    path = generated / CROISSANT
    warnings = validate(str(path))
    assert all("recommended" in w for w in warnings), warnings  # only license, version, datePublished
    doc = json.loads(path.read_text())
    manifest = json.loads((generated / "manifest.json").read_text())
    objects = {o["@id"]: o for o in doc["distribution"] if o["@type"] == "cr:FileObject"}
    files = {"manifest.json"} | {rel for s in manifest["shards"] for rel in s["files"].values()}
    assert set(objects) == files and len(files) == 1 + 3 * 4
    for rel, o in objects.items():  # every file with its real sha256
        assert o["sha256"] == hashlib.sha256((generated / rel).read_bytes()).hexdigest(), rel
    fields = {f["name"]: f for rs in doc["recordSet"] for f in rs["field"]}
    assert fields["x1"]["arrayShape"] == "4" and fields["x1"]["isArray"] is True
    assert "arrayShape" not in fields["theta"] and fields["pmi:x1;x2"]["dataType"] == "sc:Float"
    assert fields["x1"]["description"].startswith("modality") and fields["theta"]["description"].startswith("target")
    measured = {v["name"]: v["value"] for v in doc["variableMeasured"]}
    assert measured == {e["query"]: e["nats"] for e in manifest["mi"]}  # the exact values, unrounded
    assert doc["mmmi:spec"] == SPEC.read_text() == manifest["spec"]
    assert doc["mmmi:specSha256"] == manifest["spec_sha256"]
    round_trip = mlc.Dataset(jsonld=str(path)).metadata.to_json()
    assert round_trip["urn:mmmic:spec"] == manifest["spec"]  # kept by mlcroissant as a dataset property


def test_the_validator_catches_a_broken_document(generated, no_network):
    doc = json.loads((generated / CROISSANT).read_text())
    no_hash = copy.deepcopy(doc)
    del next(o for o in no_hash["distribution"] if o["@type"] == "cr:FileObject")["sha256"]
    with pytest.raises(mlc.ValidationError, match="sha256"):
        validate(no_hash)
    bad_shape = copy.deepcopy(doc)
    bad_shape["recordSet"][0]["field"][0]["arrayShape"] = "4,x"
    with pytest.raises(mlc.ValidationError, match="array_shape"):
        validate(bad_shape)


def test_a_rerun_rewrites_nothing(generated, mmmic):
    before = {p: p.read_bytes() for p in generated.rglob("*") if p.is_file()}
    r = mmmic("generate", SPEC, "-o", generated, "-n", "300", *ARGS)
    assert r.code == 0 and "nothing to do" in r.stdout
    assert {p: p.read_bytes() for p in generated.rglob("*") if p.is_file()} == before


def test_merge_writes_the_croissant_of_the_parts(tmp_path, mmmic, no_network):
    for i in range(2):
        assert mmmic("generate", SPEC, "-o", tmp_path / f"job{i}", "-n", "300", *ARGS, "--shard", f"{i}/2").code == 0
        assert not (tmp_path / f"job{i}" / CROISSANT).exists()  # a part has none
    assert mmmic("merge", tmp_path / "job0", tmp_path / "job1", "-o", tmp_path / "all").code == 0
    doc = json.loads((tmp_path / "all" / CROISSANT).read_text())
    validate(doc)
    ids = {o["@id"] for o in doc["distribution"]}
    assert "../job1/shard-00001/x1.npy" in ids and "shard-00000/x1.npy" not in ids
    includes = next(o for o in doc["distribution"] if o["@id"] == "files/x1")["includes"]
    assert includes == ["../job0/shard-*/x1.npy", "../job1/shard-*/x1.npy"]


def test_export_adds_one_to_an_old_dataset_and_changes_nothing_else(tmp_path, mmmic, no_network):
    old = fake_dataset(tmp_path / "old")  # written through write_dataset: no croissant.json, as before
    assert not (old / CROISSANT).exists()
    before = {p.relative_to(old): p.read_bytes() for p in old.rglob("*") if p.is_file()}
    r = mmmic("export", old, "--to", "parquet", tmp_path / "pq")
    assert r.code == 0 and "added" in r.stderr
    after = {p.relative_to(old): p.read_bytes() for p in old.rglob("*") if p.is_file()}
    assert after.pop(Path(CROISSANT))
    assert after == before  # byte-identical
    validate(str(old / CROISSANT))
    exported = json.loads((tmp_path / "pq" / CROISSANT).read_text())
    validate(exported)
    parquet = [o for o in exported["distribution"] if o.get("encodingFormat") == "application/x-parquet"
               and o["@type"] == "cr:FileObject"]
    assert len(parquet) == 3 and all(
        o["sha256"] == hashlib.sha256((tmp_path / "pq" / o["@id"]).read_bytes()).hexdigest() for o in parquet)
    for to in ("webdataset", "hf"):
        assert mmmic("export", old, "--to", to, tmp_path / to).code == 0
        validate(str(tmp_path / to / CROISSANT))
