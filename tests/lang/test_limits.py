"""Resource limits: what would not fit is refused at check time with the memory it needs;
the symbolic engine has a time budget and says when it gives up (docs/reliability.md)."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from mmmi_dsl import load, loads
from mmmi_dsl.errors import SpecError
from mmmi_dsl.lang import check as check_mod
from mmmi_dsl.lang.lower import limits as lower_limits
from mmmi_dsl.mi.analysis import Analysis

ROOT = Path(__file__).resolve().parents[2]
DECAY = ROOT / "specs" / "decay.mmi"
TWO_VIEWS = ROOT / "specs" / "two_views.mmi"



def spec_error(text: str) -> str:
    with pytest.raises(SpecError) as info:
        loads(text, file="limits.mmi")
    return info.value.render()


GIB = re.compile(r"(\d+\.\d) GiB")
HAS = re.compile(r"this machine has (\d+\.\d) GiB")


# ---------------------------------------------------------------- sizes refused at check time

def test_a_dim_of_a_billion(tmp_path, mmmic):
    spec = tmp_path / "big.mmi"
    spec.write_text("dim d = 1000000000\nproto u : scalar\nproto n : vector[d]\nlatent z = u * ones(d) + n\n")
    code, _, err = mmmic("check", spec)
    assert code == 1
    assert "big.mmi:1:9" in err and "E0215" in err
    assert "7.5 GiB" in err  # 1e9 float64
    assert float(HAS.search(err).group(1)) == pytest.approx(check_mod.physical_memory() / 2**30, abs=0.05)


def test_a_vector_type_of_a_billion():
    err = spec_error("proto n : vector[1000000000]\n")
    assert "limits.mmi:1:18" in err and "7.5 GiB" in err


def test_a_dim_of_a_billion_from_the_command_line(mmmic):
    code, _, err = mmmic("check", TWO_VIEWS, "--set", "d=1000000000")
    assert code == 2 and "7.5 GiB" in err


def test_a_family_of_a_million():
    err = spec_error("dim d = 8\nproto n[1..1000000] : vector[d]\n")
    assert "E0215" in err and "1,000,000 members" in err and "limits.mmi:2:" in err


def test_a_family_that_fits_the_name_limit_but_not_memory(monkeypatch):
    """80,000 blocks of 3,072 values: 5.5 GiB of loadings; refused against a 4 GiB machine."""
    monkeypatch.setattr(check_mod, "physical_memory", lambda: 4 * 2**30)
    err = spec_error("dim d = 3072\nproto u : scalar\nproto n[1..40000] : vector[d]\n"
                     "for i in 1..40000: latent z[i] = u * ones(d) + n[i]\n")
    need = float(GIB.search(err).group(1))
    assert "needs at least" in err and "this machine has 4.0 GiB" in err
    assert need == pytest.approx((24 * (80_000 * 3072 + 1) + 3072 * 8) / 2**30, abs=0.05)


def test_too_many_scalar_causes():
    """K scalar protos make every block (size, K): 99,990 scalars need 237 GiB, refused with the cause."""
    err = spec_error("for i in 1..99990: proto q[i] : scalar\nproto n : vector[3072]\n"
                     "latent z = q[1] * ones(3072) + n\n")
    assert "needs at least" in err and "99,990 loadings" in err


def test_a_dense_matrix_too_large():
    err = spec_error("proto n : vector[100000]\nmatrix M = uniform(100000, 100000, seed = 1)\nlatent z = M @ n\n")
    assert "limits.mmi:2:12" in err and "74.5 GiB" in err and "this machine has" in err


def test_memory_estimate_bounds_what_the_engine_allocates():
    """The estimate is at least the loadings and dense maps the engine really holds."""
    for name, sets in [("two_views", {"d": "500"}), ("decay", {"N": "6", "d": "300"}), ("disentangled", {}),
                       ("ablation", {"img": "1x12x12", "row1": "4", "col1": "4", "row2": "9", "col2": "9"})]:
        model = load(ROOT / "specs" / f"{name}.mmi", sets)
        engine = Analysis(model)
        held = sum(f.loadings.nbytes + sum(d.nbytes for d in f.dense.values()) for f in engine._forms.values())
        held += sum(b.loadings.nbytes + sum(d.nbytes for d in b.dense.values())
                    for b in engine.system.blocks.values())
        estimate = check_mod.analysis_memory(model)[0]
        assert held <= estimate <= 20 * held + 2**20, name


def test_memory_limit_follows_ulimit(monkeypatch):
    import resource
    monkeypatch.setattr(resource, "getrlimit", lambda which: (2**30, resource.RLIM_INFINITY))
    assert check_mod.physical_memory() == 2**30


def test_running_out_of_memory_anyway_is_a_clear_error(monkeypatch, mmmic):
    def boom(self, *a, **k):
        raise MemoryError
    monkeypatch.setattr(Analysis, "__init__", boom)
    code, _, err = mmmic("mi", TWO_VIEWS)
    assert code == 1 and "ran out of memory" in err


def test_too_many_terms(monkeypatch):
    """decay at N = 400 has 160,000 terms (limit 100,000); with a limit of 1,000, N = 40 shows it fast."""
    monkeypatch.setattr(lower_limits, "MAX_TERMS", 1000)
    with pytest.raises(SpecError) as info:
        load(DECAY, {"N": "40"})
    err = info.value.render()
    assert "more than 1,000 terms" in err and "decay.mmi:21:70" in err
    load(DECAY, {"N": "31"})  # 961 terms


def test_too_much_expansion_work(monkeypatch):
    monkeypatch.setattr(lower_limits, "MAX_WORK", 10_000)
    err = spec_error("for i in 1..1000: proto q[i" + " + i - i" * 10 + "] : scalar\n")
    assert "more than 10,000 expression nodes" in err


# ---------------------------------------------------------------- the symbolic engine's time budget

def test_formula_gives_up_with_a_message(mmmic):
    t = time.perf_counter()
    code, out, err = mmmic("formula", DECAY, "--set", "N=20", "--timeout", "1")
    assert code == 1
    assert time.perf_counter() - t < 30
    assert "E0215" in err and "gave up on I(x[1]; x[2]) after 1 s" in err and "decay.mmi:24:" in err
    assert "--timeout" in err and "mmmic mi" in err


def test_formula_timeout_is_validated(mmmic):
    code, _, err = mmmic("formula", TWO_VIEWS, "--timeout", "-1")
    assert code == 2


def test_formula_without_a_limit(mmmic):
    code, out, _ = mmmic("formula", TWO_VIEWS, "--timeout", "0", "--format", "text")
    assert code == 0 and out.count("I(") == 3


def test_bundle_budget_interrupts_a_long_derivation(monkeypatch, tmp_path):
    """compile's formulas.tex: the budget now stops a derivation in progress, not only between queries."""
    from mmmi_dsl import report as output
    monkeypatch.setattr(output, "BUNDLE_FORMULA_SECONDS", 0.5)
    model = load(DECAY, {"N": "20"})
    t = time.perf_counter()
    output.write_bundle(model, tmp_path)
    assert time.perf_counter() - t < 30
    tex = (tmp_path / "formulas.tex").read_text()
    assert "budget for formulas ran out" in tex and "I(x[1]; x[2])" in tex


def test_time_budget_restores_an_outer_timer():
    from mmmi_dsl.mi.symbolic import GaveUp, time_budget
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 5.0)
        with pytest.raises(GaveUp):
            with time_budget(0.05):
                while True:
                    np.sqrt(2.0)
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 3.0 < left <= 5.0  # the outer timer runs on
        with time_budget(10.0):  # longer than the outer one: the outer stays in charge
            assert signal.getitimer(signal.ITIMER_REAL)[0] <= 5.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert not fired


def test_sympy_recursion_is_a_clear_error(tmp_path, mmmic):
    spec = tmp_path / "tower.mmi"
    spec.write_text("param a = 1.0001\nproto u : scalar\nproto n : vector[2]\nlatent z = "
                    + "^".join(["a"] * 95) + " * u * ones(2) + n\nreport I(u; z)\n")
    code, _, err = mmmic("formula", spec)
    assert code == 1 and "nested too deeply for sympy" in err and "tower.mmi:5:" in err
    assert mmmic("mi", spec)[0] == 0  # the numeric engine answers
