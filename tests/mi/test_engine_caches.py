"""The engine's memoised per-term work (issue 20): coefficients by node, loadings skipped when a
source has none, group eigendecompositions by member tuple. None may change a result."""

from __future__ import annotations

import numpy as np
import pytest

from mmmi_dsl import load, loads
from mmmi_dsl.errors import SpecError
from mmmi_dsl.mi.analysis import Analysis
from tests.dense_reference import dense_mi

from ..conftest import ROOT


def test_decay_at_n_12_matches_the_dense_reference_with_shared_coefficient_nodes():
    """decay.mmi's 156 noise terms share a dozen coefficient nodes: the memo is hit, the MI stays right."""
    model = load(ROOT / "specs" / "decay.mmi", {"N": "12", "d": "3"})
    engine = Analysis(model)
    got = [r.nats for r in engine.evaluate_all(model.reports)]
    assert len(engine._coefs) < 30  # one value per distinct node, not per term
    for q, value in zip(model.reports, got):
        a, b = ([model.flows[n].latent if n in model.flows else n for n in g] for g in q.groups)
        assert value == pytest.approx(dense_mi(model, a, b), rel=1e-9)  # dense: slogdet round-off


def test_a_bad_coefficient_shared_by_several_terms_raises_every_time():
    """Only good values are memoised: the second Analysis (and term) sees the error too."""
    text = ("param a = -1\nproto u : scalar\nproto n[1..2] : vector[3]\n"
            "for i in 1..2: latent z[i] = sqrt(a) * n[i] + u * ones(3)\nreport I(z[1]; z[2])\n")
    model = loads(text, file="bad.mmi")
    for _ in range(2):
        with pytest.raises(SpecError) as info:
            Analysis(model)
        assert info.value.diagnostics[0].code == "E0212"


def test_group_eigendecompositions_are_cached_read_only_and_equal_a_fresh_one():
    text = ("proto u : scalar\nproto n[1..3] : vector[4]\nproto m : vector[4]\n"
            "latent a = n[1] + 2 * n[2] + u * ones(4)\nlatent b = 3 * n[2] - n[3]\nlatent c = m + n[1]\n"
            "report I(a; b)\n")
    model = loads(text, file="groups.mmi")
    bs = Analysis(model).system._set
    for members in (("a", "b"), ("a", "c"), ("b", "c", "a")):  # different protos: the general path
        lam, V = bs.group_eig(members)
        assert bs.group_eig(list(members))[0] is lam and not lam.flags.writeable and not V.flags.writeable
        protos = sorted({p for m in members for p in bs.blocks[m].identity})
        R = np.array([[bs.blocks[m].identity.get(p, 0.0) for p in protos] for m in members])
        np.testing.assert_allclose(V @ np.diag(lam) @ V.T, R @ R.T, atol=1e-12)


def test_decay_at_n_40_family_terms_match_the_dense_reference():
    """At N = 40 each sum is one family term (vectorised coefficients, members straight into the
    form); the MI still equals the plain dense covariance's."""
    model = load(ROOT / "specs" / "decay.mmi", {"N": "40", "d": "3"})
    assert all(t.index is not None for t in model.variables["z[1]"].terms[1:])
    got = [r.nats for r in Analysis(model).evaluate_all(model.reports)]
    for q, value in list(zip(model.reports, got))[::7]:
        a, b = ([model.flows[n].latent if n in model.flows else n for n in g] for g in q.groups)
        assert value == pytest.approx(dense_mi(model, a, b), rel=1e-9)  # dense: slogdet round-off


def random_blockset(seed: int, K: int):
    """Blocks of sizes 2 and 3 over K scalar protos and a few vector protos; some blocks lack noise."""
    from mmmi_dsl.mi.blocks import Block, BlockSet
    rng = np.random.default_rng(seed)
    scalar = [f"u{k}" for k in range(K)]
    vector = {"p": 2, "q": 2, "r": 3, "s": 3}
    blocks = {}
    for i in range(6):
        size = 2 if i % 2 else 3
        protos = [p for p, m in vector.items() if m == size and rng.random() < 0.7]
        identity = {p: float(rng.normal() * 10.0 ** rng.integers(-3, 3)) for p in protos}
        loadings = rng.normal(size=(size, K)) * (rng.random() < 0.8)
        blocks[f"b{i}"] = Block(f"b{i}", size, identity, loadings)
    return BlockSet(scalar, vector, blocks)


@pytest.mark.parametrize("seed", range(30))
def test_the_one_cause_logdet_is_the_matrix_one_at_k_1(seed):
    """K = 1 takes float arithmetic instead of 1×1 matrices: the same value and rank."""
    from itertools import combinations

    from mmmi_dsl.mi.logdet import matrix_logdet, one_cause_logdet, structured_logdet, tolerance
    bs = random_blockset(seed, 1)
    names = list(bs.blocks)
    for r in (1, 2, 3):
        for subset in combinations(names, r):
            atol = tolerance(bs, names)
            a = one_cause_logdet(bs, subset, atol, bs.size(subset))
            b = matrix_logdet(bs, subset, atol, bs.size(subset))
            assert a.rank == b.rank, subset
            assert a.value == pytest.approx(b.value, rel=1e-12, abs=1e-12), subset
            assert structured_logdet(bs, subset, atol, bs.size(subset)) == a


PREFETCH_SPECS = ["decay.mmi", "digits_decay.mmi", "paper_benchmark.mmi", "disentangled.mmi", "two_views.mmi",
                  "ablation.mmi", "telescopes.mmi"]


@pytest.mark.parametrize("name", PREFETCH_SPECS)
def test_prepared_queries_answer_bit_for_bit_as_one_by_one(name):
    """Analysis.prepare (stacked SVDs, Grams in the queries' order) changes no bit of any answer, and
    it really fills the caches the queries then read (issue 20: a family shares its decompositions)."""
    from mmmi_dsl.mi.analysis import default_queries

    model = load(ROOT / "specs" / name)
    queries = default_queries(model)
    alone = [Analysis(model).evaluate(q) for q in queries]  # a fresh engine per query: nothing shared
    engine = Analysis(model)
    engine.prepare(queries)
    cached = len(engine.system._set._eig_gram_cache)
    together = [engine.evaluate(q) for q in queries]
    assert [(r.query, r.nats, r.reason) for r in together] == [(r.query, r.nats, r.reason) for r in alone]
    assert len(engine.system._set._eig_gram_cache) == cached  # the queries found everything prepared
    if name == "decay.mmi":
        assert cached == 2 * len(model.modalities)  # {theta}, each {zj}, each {z1, zj}: one decomposition each


def test_prepare_stacks_the_svds_of_a_family(monkeypatch):
    """At N = 40 the 39 pairs {z1, zj} and the 40 singletons are two stacked SVDs, not 79."""
    from mmmi_dsl.mi.analysis import default_queries

    model = load(ROOT / "specs" / "decay.mmi", {"N": "40", "d": "8"})
    engine = Analysis(model)
    calls = []
    svd = np.linalg.svd
    monkeypatch.setattr(np.linalg, "svd", lambda a, *args, **kw: calls.append(np.shape(a)) or svd(a, *args, **kw))
    engine.prepare(default_queries(model))
    assert sorted(calls) == [(39, 2, 40), (40, 1, 40)]


def test_prepare_leaves_irregular_and_dense_groups_to_the_queries(monkeypatch):
    """Groups whose members mix different protos are decomposed one by one (stacking their rows would
    mix coefficients of different protos into one matrix), sets with a dense map are skipped; only the
    same-shape groups of one proto each are stacked. Every answer is a fresh engine's."""
    text = ("proto u : scalar\nproto n[1..3] : vector[4]\nproto m : vector[4]\n"
            "matrix M = orthogonal(4, seed = 1)\n"
            "for i in 1..3: latent a[i] = n[i] + u * ones(4)\nlatent c = m + M @ n[1]\n"
            "report I(a[1]; a[2])\nreport I(a[1]; a[3])\nreport I(a[2]; a[3])\nreport I(a[2]; c)\n"
            "report I(a[2]; a[3] | a[1])\n")
    model = loads(text, file="irregular.mmi")
    want = [Analysis(model).evaluate(q).nats for q in model.reports]
    engine = Analysis(model)
    calls = []
    svd = np.linalg.svd
    monkeypatch.setattr(np.linalg, "svd", lambda a, *args, **kw: calls.append(np.shape(a)) or svd(a, *args, **kw))
    engine.prepare(model.reports)
    # the three singletons {a[i]} (protos n[i]) in one stack; the pairs and the triple alone (2 or 3 protos)
    assert calls[0] == (3, 1, 1) and all(len(c) == 2 for c in calls[1:]) and (3, 3) in calls
    assert [engine.evaluate(q).nats for q in model.reports] == want


def test_an_error_while_preparing_is_left_to_the_queries(monkeypatch):
    """prepare never raises for what a query would report itself (here: any ValueError of the batch)."""
    from mmmi_dsl.mi import blocks

    model = load(ROOT / "specs" / "two_views.mmi")

    def broken(self, name_sets):
        raise np.linalg.LinAlgError("SVD did not converge")

    monkeypatch.setattr(blocks.BlockSet, "prefetch", broken)
    engine = Analysis(model)
    engine.prepare(model.reports)
    assert [engine.evaluate(q).nats for q in model.reports] == [Analysis(model).evaluate(q).nats
                                                               for q in model.reports]
