"""The frozen suite definition: valid, ids stable and unique, every shipped task's exact MI equal to the
frozen value, missing specs and moved truths refused by name, task selection by globs."""

from __future__ import annotations

import json

import pytest

from mmmi_dsl.errors import UsageError
from mmmi_dsl.suite import SuiteError, Task, available, load_suite, require_available, resolve, select
from mmmi_dsl.suite.definition import Suite

from ..conftest import ROOT

# the shipped specs of BMI's tasks are all in the suite under BMI's ids
BMI_TASKS = {p.stem for p in (ROOT / "specs" / "bmi").glob("*.mmi")}
# specs written on other branches: a task may wait for them, no other may be missing
PENDING = {"fashion_views.mmi", "fashion_decay.mmi"}


def test_the_suite_file_is_valid_and_its_ids_are_stable():
    suite = load_suite("mmmic-suite/1")
    assert suite.format == "mmmic-suite/1" and suite.seeds == (0, 1, 2) and suite.n == 5000
    ids = [t.id for t in suite.tasks]
    assert len(ids) == len(set(ids)) == 83
    assert BMI_TASKS <= set(ids)
    for t in suite.tasks:
        if t.id in BMI_TASKS:
            assert t.spec == f"bmi/{t.id}.mmi" and t.family.startswith("bmi-")
    families = {t.family for t in suite.tasks}
    assert {"images-views", "images-decay", "vectors-decay", "conditional", "labels", "paper"} <= families
    assert sum(1 for t in suite.tasks if "|" in (t.query or "")) == 5


def test_every_shipped_task_has_its_frozen_exact_mi():
    suite = load_suite()
    missing = {t.spec for t in suite.tasks if not available(t)}
    assert missing <= PENDING, f"specs the suite names are missing: {missing - PENDING}"
    for t in suite.tasks:
        if available(t):
            r = resolve(t)  # raises if the spec's exact MI moved by more than 1e-9 (1 + |MI|)
            assert r.exact_nats == pytest.approx(t.exact_nats, rel=1e-9, abs=1e-12)
            assert r.dims.count("x") == 1


def test_a_missing_spec_and_a_moved_truth_are_refused():
    ghost = Task(id="ghost", family="x", spec="bmi/no-such-task.mmi", exact_nats=1.0)
    with pytest.raises(SuiteError, match=r"(?s)ghost \(bmi/no-such-task.mmi\).*does not ship them"):
        require_available([ghost])
    moved = Task(id="moved", family="x", spec="bmi/1v1-normal-0.75.mmi", exact_nats=0.4134)
    with pytest.raises(SuiteError, match="now gives I\\(x; y\\) = 0.413339.*froze 0.4134"):
        resolve(moved)


def test_bad_definitions_are_refused():
    base = {"format": "mmmic-suite/1", "description": "", "n": 100, "seeds": [0]}
    task = {"id": "a", "family": "f", "spec": "two_views.mmi", "exact_nats": 1.0}
    for change, message in [({"tasks": [task, task]}, "appears twice"),
                            ({"tasks": [{**task, "spec": "bmi/../../x.mmi"}]}, "inside the shipped specs"),
                            ({"tasks": [{**task, "extra": 1}]}, "Extra inputs"),
                            ({"format": "mmmic-suite/2"}, "format")]:
        with pytest.raises(ValueError, match=message):
            Suite.model_validate({**base, "tasks": [task], **change})


def test_task_selection_by_globs():
    suite = load_suite()
    assert [t.id for t in select(suite, "multinormal-dense-2-*, paper-0.0[12]")] == [
        "multinormal-dense-2-2-0.5", "paper-0.01", "paper-0.02"]
    assert len(select(suite, None)) == 83
    with pytest.raises(UsageError, match="matches no task"):
        select(suite, "nothing-*")


def test_suite_list(mmmic):
    r = mmmic("suite", "list", "--tasks", "digits_views-*", "--json")
    assert r.code == 0, r.stderr
    rows = json.loads(r.stdout)["tasks"]
    assert [x["id"] for x in rows] == ["digits_views-0.25", "digits_views-0.5", "digits_views-1.0",
                                       "digits_views-2.0", "digits_views-theta-x1"]
    assert rows[2]["set"] == {"rho_t1": 0.4552, "rho_t2": 0.4552} and rows[2]["exact_nats"] == pytest.approx(1.0,
                                                                                                              abs=1e-4)
    table = mmmic("suite", "list").stdout
    assert "1v1-normal-0.75" in table and "paper-0.10" in table


def test_bmi_tasks_keep_bmis_ids_and_mi():
    bmi = {t["id"]: t for t in json.loads((ROOT / "tests/fixtures/bmi/tasks.json").read_text())["tasks"]}
    suite = load_suite()
    for t in suite.tasks:
        if t.family.startswith("bmi-"):
            assert t.id in bmi, t.id
            # BMI computes some MIs in float32 (1v1-additive-0.1 is 5e-8 off its closed form)
            assert t.exact_nats == pytest.approx(bmi[t.id]["mi"], rel=1e-6), t.id
