"""Hypothesis: random valid specs parse and lower to the model they were generated from.

A random model (params, dims, protos, a DAG of latents, a target, flows, reports) is
drawn as plain data, printed as .mmi text with random spacing, comments and order
of declarations (the language is order-free), then compiled; the IR must carry the
same structure and the same coefficient values.
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmmi_dsl import loads
from mmmi_dsl.ir import Model, evaluate, symbols


@st.composite
def models(draw):
    n_params = draw(st.integers(1, 4))
    params = {f"p{i}": draw(st.floats(0.05, 5, allow_nan=False).map(lambda x: round(x, 3)))
              for i in range(n_params)}
    d = draw(st.integers(1, 6))
    n_scalar = draw(st.integers(1, 3))
    n_vector = draw(st.integers(1, 3))
    scalars = [f"u{i}" for i in range(n_scalar)]
    vectors = [f"n{i}" for i in range(n_vector)]
    latents = []  # (name, [(coef_value, coef_text, symbols, op, source, template_text)])
    for i in range(draw(st.integers(1, 4))):
        terms = []
        for _ in range(draw(st.integers(1, 4))):
            num = draw(st.floats(0.1, 3, allow_nan=False).map(lambda x: round(x, 2)))
            p = draw(st.sampled_from(sorted(params)))
            form = draw(st.integers(0, 2))
            if form == 0:
                coef = (num, f"{num}", set())
            elif form == 1:
                coef = (params[p], p, {p})
            else:
                coef = (num * params[p], f"{num} * {p}", {p})
            kind = draw(st.integers(0, 2 if i else 1))
            if kind == 0:
                src = draw(st.sampled_from(scalars))
                k = draw(st.integers(1, d))
                tmpl = draw(st.sampled_from(["ones(d)", f"onehot(d, {k})"]))
                terms.append((*coef, "template", src, tmpl))
            elif kind == 1:
                terms.append((*coef, "identity", draw(st.sampled_from(vectors)), None))
            else:
                terms.append((*coef, "identity", f"z{draw(st.integers(0, i - 1))}", None))
        latents.append((f"z{i}", terms))
    target = [(draw(st.sampled_from(sorted(params))), s) for s in scalars]
    flows = draw(st.lists(st.sampled_from([z for z, _ in latents]), min_size=1, max_size=3, unique=True))
    return dict(params=params, d=d, scalars=scalars, vectors=vectors, latents=latents, target=target,
                flows=flows)


def render(m, draw_ws, order) -> str:
    sp = lambda: " " * draw_ws()  # noqa: E731
    stmts = [f"param{sp()} {p} ={sp()}{v}" for p, v in m["params"].items()]
    stmts.append(f"dim d = {m['d']}")
    stmts += [f"proto {u} : scalar" for u in m["scalars"]]
    stmts += [f"proto {n} :{sp()}vector[d]" for n in m["vectors"]]
    for z, terms in m["latents"]:
        parts = []
        for _, ctext, _, op, src, tmpl in terms:
            parts.append(f"{ctext} *{sp()}{src}" + (f" * {tmpl}" if tmpl else ""))
        stmts.append(f"latent {z} = ({sp()}" + "\n   + ".join(parts) + ")")
    stmts.append("target theta = " + " + ".join(f"{p} * {u}" for p, u in m["target"]))
    stmts += [f"flow x_{z} = identity({z})" for z in m["flows"]]
    stmts += [f"report I(theta; x_{z})" for z in m["flows"]]
    ordered = [stmts[i] for i in order(len(stmts))]
    return "model random\n# a comment\n" + "\n".join(s + (f"  # c{i}" if i % 3 == 0 else "")
                                                     for i, s in enumerate(ordered)) + "\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=models(), data=st.data())
def test_random_spec_lowers_to_its_model(m, data):
    ws = lambda: data.draw(st.integers(0, 3))  # noqa: E731
    order = lambda n: data.draw(st.permutations(range(n)))  # noqa: E731
    text = render(m, ws, order)
    model = loads(text, file="random.mmi")
    env = model.env()
    assert {k: p.value for k, p in model.params.items()} == m["params"]
    assert model.dims["d"].value == m["d"]
    assert {k: p.kind for k, p in model.protos.items()} == {
        **{u: "scalar" for u in m["scalars"]}, **{n: "vector" for n in m["vectors"]}}
    for z, terms in m["latents"]:
        v = model.variables[z]
        assert v.size == m["d"] and v.role == "latent"
        assert len(v.terms) == len(terms)
        for t, (value, _, syms, op, src, tmpl) in zip(v.terms, terms):
            assert (t.op, t.sources) == (op, (src,))
            assert math.isclose(evaluate(t.coef, env), value, rel_tol=1e-12)
            assert symbols(t.coef) == syms
            if tmpl:
                tm = model.templates[t.template]
                assert tm.kind == tmpl.split("(")[0] and tm.size == m["d"]
    theta = model.variables["theta"]
    assert theta.role == "target" and theta.size == 1
    assert [(t.coef.name, t.sources[0]) for t in theta.terms] == m["target"]
    assert sorted(model.flows) == sorted(f"x_{z}" for z in m["flows"])
    assert sorted(q.text for q in model.reports) == sorted(f"I(theta; x_{z})" for z in m["flows"])
    assert Model.model_validate_json(model.model_dump_json()) == model
