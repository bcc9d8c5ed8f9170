"""The check pass alone (mmmi_dsl.lang.check): cycles, sizes, targets, queries and memory limits.

Models come from lowering valid text; where lowering would already refuse a mistake, the
lowered IR is edited (``model_copy``) so that the check pass is what must find it.
"""

from __future__ import annotations

import pytest

from mmmi_dsl import ir
from mmmi_dsl.errors import SpecError
from mmmi_dsl.lang import check as check_mod
from mmmi_dsl.lang.check import analysis_memory, check, gib, postorder, variable_order
from mmmi_dsl.lang.lower import lower
from mmmi_dsl.lang.parse import parse_text

PRELUDE = "proto u : scalar\nproto n[1..3] : vector[4]\n"  # the bad statements start on line 3


def low(text: str) -> ir.Model:
    return lower(parse_text(text, "f.mmi"))


def problems(model: ir.Model) -> list[tuple[str, int, int, str]]:
    with pytest.raises(SpecError) as info:
        check(model)
    return [(d.code, d.span.line if d.span else 0, d.span.column if d.span else 0, d.message)
            for d in info.value.diagnostics]


def test_a_good_model_comes_back_unchanged():
    m = low(PRELUDE + "latent z = u * ones(4) + n[1]\ntarget t = u\nflow x = identity(z)\nreport I(t; x)\n")
    assert check(m) is m


# ---------------------------------------------------------------- cycles

def test_a_latent_that_uses_itself():
    assert problems(low(PRELUDE + "latent a = a + n[1]\n")) == [
        ("E0205", 3, 8, "the causal graph has a cycle: a -> a")]


def test_a_cycle_is_printed_in_order_at_its_first_latent():
    ((code, line, col, message),) = problems(low(
        PRELUDE + "latent a = b + n[1]\nlatent b = c + n[2]\nlatent c = a + n[3]\n"))
    assert (code, line, col) == ("E0205", 3, 8) and message.endswith("a -> b -> c -> a")


def test_every_cycle_is_reported_once():
    found = problems(low(PRELUDE + "latent a = b + n[1]\nlatent b = a + n[2]\n"
                                   "latent c = d + n[3]\nlatent d = c + n[1]\n"))
    assert [(code, line, message.split(": ")[1]) for code, line, _, message in found] == [
        ("E0205", 3, "a -> b -> a"), ("E0205", 5, "c -> d -> c")]


def test_problems_are_collected_across_rules():
    found = problems(low(PRELUDE + "latent a = b + n[1]\nlatent b = a + n[2]\ntarget t = n[3]\n"))
    assert [(code, line) for code, line, *_ in found] == [("E0205", 3), ("E0204", 5)]


def test_postorder_visits_children_first_and_reports_back_edges():
    graph = {"a": ["b", "c"], "b": ["c"], "c": [], "d": ["a"]}
    assert postorder(["a", "d"], graph.__getitem__) == ["c", "b", "a", "d"]
    cycles = []
    looped = {"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": []}
    order = postorder(["a"], looped.__getitem__, on_cycle=lambda path, node: cycles.append((list(path), node)))
    assert cycles == [(["a", "b", "c"], "a")] and order == ["d", "c", "b", "a"]


def test_postorder_of_a_long_chain_needs_no_recursion():
    n = 50_000
    order = postorder(["0"], lambda k: [str(int(k) + 1)] if int(k) < n else [])
    assert order[0] == str(n) and order[-1] == "0" and len(order) == n + 1


def test_variable_order_puts_sources_first_and_follows_roots():
    m = low(PRELUDE + "latent v = z + w + n[3]\nlatent w = z + n[2]\nlatent z = u * ones(4) + n[1]\n"
                      "latent other = n[1]\n")
    order = variable_order(m)
    assert order.index("z") < order.index("w") < order.index("v") and set(order) == {"v", "w", "z", "other"}
    assert variable_order(m, ["w"]) == ["z", "w"]


# ---------------------------------------------------------------- sizes and targets

def test_a_vector_target_is_refused():
    assert problems(low(PRELUDE + "target t = n[1]\n")) == [("E0204", 3, 8, "target `t` is not scalar (size 4)")]


def test_a_label_of_a_vector_is_a_size_mismatch():
    ((code, line, col, message),) = problems(low(PRELUDE + "latent z = n[1]\nlabel y = z > 0\n"))
    assert (code, line, col) == ("E0203", 4, 11) and message == "`z` has size 4 but `y` has size 1"


def resized(model: ir.Model, table: str, name: str, **update) -> ir.Model:
    """The model with one entry of a table changed (as if lowering had let a mismatch through)."""
    entries = dict(getattr(model, table))
    entries[name] = entries[name].model_copy(update=update)
    return model.model_copy(update={table: entries})


def test_identity_term_sizes():
    m = low(PRELUDE + "latent z = n[1]\n")
    assert problems(resized(m, "protos", "n[1]", size=5)) == [
        ("E0203", 3, 12, "`n[1]` has size 5 but `z` has size 4")]


def test_template_term_sizes():
    m = low(PRELUDE + "latent z = u * ones(4)\n")
    ((code, _, _, message),) = problems(resized(m, "templates", "ones(4)", size=3))
    assert code == "E0203" and message == "template `ones(4)` has 3 entries but `z` has size 4"


def test_dot_term_sizes():
    m = low(PRELUDE + "target t = dot(ones(4), n[1])\n")
    ((code, _, _, message),) = problems(resized(m, "templates", "ones(4)", size=2))
    assert code == "E0203" and "dot(): template `ones(4)` has 2 entries but `n[1]` has size 4" in message


def test_matrix_term_shapes():
    m = low(PRELUDE + "matrix M = uniform(4, 8, seed = 1)\nlatent y = M @ concat(n[1], n[2])\n")
    assert check(m) is m
    ((code, _, _, message),) = problems(resized(m, "matrices", "M", rows=3))
    assert code == "E0203" and message == "matrix `M` is 3x8 but maps size 8 to size 4"


# ---------------------------------------------------------------- queries

QUERIES = PRELUDE + ("target t = u\nlatent z = u * ones(4) + n[1]\nflow x = identity(z)\n"
                     "label y = t > 0\nlabel y2 = t > 1\n")  # reports start on line 8


@pytest.mark.parametrize("report,message", [
    ("TC(y; x; z)", "label `y` can only appear as I(label; X | C)"),
    ("I(x; z | y)", "label `y` can only appear as I(label; X | C)"),
    ("I(y, z; x)", "label `y` must be alone on its side of I(...)"),
    ("I(y; y2)", "I(label; label) between two labels is not supported"),
])
def test_labels_in_queries(report, message):
    assert problems(low(QUERIES + f"report {report}\n")) == [("E0211", 8, 8, message)]


def test_a_label_alone_on_one_side_is_fine():
    m = low(QUERIES + "report I(y; x)\nreport I(x; y | z)\n")
    assert check(m) is m


def test_solve_and_sweep_queries_are_checked_too():
    m = low("param s = 1 in (0, 2)\n" + QUERIES.replace("target t = u", "target t = s * u")
            + "sweep s in linspace(0.5, 1, 2): report TC(y; x; z)\n")
    assert [code for code, *_ in problems(m)] == ["E0211"]


# ---------------------------------------------------------------- memory

def test_analysis_memory_counts_loadings_templates_and_matrices():
    m = low(PRELUDE + "latent z = u * ones(4) + n[1]\n")
    need, what, span = analysis_memory(m)
    # blocks u (1), n[1..3] (4 each), z (4): 17 values, one scalar proto: 24 bytes each; ones(4): 32 bytes
    assert need == 24 * 17 + 8 * 4
    assert "5 variables with 17 values" in what and "largest is `n[1]`" in what and span.line == 2
    with_matrix = low(PRELUDE + "matrix M = uniform(4, 8, seed = 1)\nlatent y = M @ concat(n[1], n[2])\n")
    assert analysis_memory(with_matrix)[0] == 24 * 17 + 8 * 32 + 16 * 32  # the matrix, and its dense map


def test_a_model_larger_than_memory_is_refused(monkeypatch):
    monkeypatch.setattr(check_mod, "physical_memory", lambda: 2**20)
    ((code, line, _, message),) = problems(low("proto u : scalar\nproto n : vector[100000]\n"))
    assert code == "E0215" and line == 2
    # 24 x 100,001 bytes
    assert message == "the exact-MI engine needs at least 2 MiB for this model; this machine has 1 MiB"


def test_unknown_memory_checks_nothing(monkeypatch):
    monkeypatch.setattr(check_mod, "physical_memory", lambda: 0)
    m = low("proto u : scalar\nproto n : vector[100000]\n")
    assert check(m) is m


def test_physical_memory_is_positive_here():
    assert check_mod.physical_memory() > 2**20


@pytest.mark.parametrize("nbytes,text", [(3 * 2**20, "3 MiB"), (1.5 * 2**30, "1.5 GiB"), (2**30, "1.0 GiB"),
                                         (512 * 2**10, "0 MiB")])
def test_gib(nbytes, text):
    assert gib(nbytes) == text
