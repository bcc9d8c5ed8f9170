"""The quality the shipped fashion weights' JSON records is the quality measured: every figure in
``mmmi_dsl/weights/fashion.json``'s ``quality`` comes from the results files it names
(benchmarks/flow_quality.py), not typed by hand."""

import json
from glob import glob
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUALITY = json.loads((ROOT / "mmmi_dsl" / "weights" / "fashion.json").read_text())["quality"]
GUIDED = [key for key in QUALITY if key.startswith("guidance_")]


def results(names) -> list[dict]:
    """The results files an entry names: a path, a glob, or a list of paths (relative to the repository)."""
    paths = sorted({p for name in ([names] if isinstance(names, str) else names) for p in glob(str(ROOT / name))})
    assert paths, names
    return [json.loads(Path(p).read_text()) for p in paths]


def measured_consistency(runs: list[dict]) -> dict[str, float]:
    out = {}
    for run in runs:
        for name, value in zip(run["class_names"], run["consistency"]):
            assert name not in out, f"class {name} measured twice"
            out[name] = value
    return out


def test_the_unguided_record_is_its_results_file():
    (run,) = results(QUALITY["results"])
    assert {k: round(v, 3) for k, v in measured_consistency([run]).items()} == QUALITY["consistency"]
    assert run["n"] == QUALITY["n_per_class"] and run["frechet_n"] == QUALITY["frechet_n"]
    assert (round(run["frechet"], 2), round(run["frechet_floor"], 3)) == (QUALITY["frechet"], QUALITY["frechet_floor"])
    assert run["guidance"] == 0 and run["solver"] == QUALITY["solver"]


@pytest.mark.parametrize("key", GUIDED)
def test_each_guided_record_is_its_results_files(key):
    entry = QUALITY[key]
    runs = results(entry["results"])
    assert {k: round(v, 3) for k, v in measured_consistency(runs).items()} == entry["consistency"]
    assert {run["n"] for run in runs} == {entry["n_per_class"]}
    assert {run["guidance"] for run in runs} == {float(key.split("_")[1])}
    assert {run["solver"] for run in runs} == {entry["solver"]}
    frechet = {",".join(map(str, run["classes"])): {"floor": round(run["frechet_floor"], 3 if run["frechet_floor"] < 1
                                                                   else 2),
                                                    "n": run["frechet_n"], "value": round(run["frechet"], 2)}
               for run in runs}
    assert frechet == entry["frechet"]
