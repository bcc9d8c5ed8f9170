"""Evaluate a fixed list of exact queries and print them as JSON (run in a subprocess).

tests/test_blas_kernels.py runs this under several ``OPENBLAS_CORETYPE`` values: every
example spec's default queries, the conditional ones of the tests, and the reproducers
of issue 14 (a conditioning set that jointly determines part of B; II at -inf).
Prints ``{key: [nats or "inf"/"-inf", method]}``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The issue's spec (truth item 2): x1, x2 jointly fix u1, u2, n4, n6; I = ½ ln 3.45 with w, 0 without.
JOINT = """proto u1 : scalar
proto u2 : scalar
proto n4 : vector[4]
proto n5 : vector[5]
proto n6 : vector[6]
proto w : scalar
matrix M = uniform(6, 4, seed = SEED)
latent h = u1 * ones(4) + u2 * onehot(4, 1) + 0.5 * n4
latent z1 = u2 * random(6, 1) + u1 * onehot(6, 1) + n6
latent z2 = n6 + M @ h
latent z3 = u2 * ones(5) W3 + n5
latent z4 = u1 * ones(6) + n6 W4
flow x1 = identity(z1) : vector[6]
flow x2 = identity(z2) : vector[6]
flow x3 = identity(z3) : vector[5]
flow x4 = identity(z4) : vector[6]
report I(x3; x4 | x1, x2)
"""

#: Truth item 3: I(x1; x2) = 0.143841, I(x1; x2 | x3) = inf, so II = -inf.
EXPLAINING_AWAY = """proto u : scalar
proto e1 : scalar
proto e2 : scalar
latent z1 = u + e1
latent z2 = u + e2
latent z3 = e1 - e2
flow x1 = identity(z1) : vector[1]
flow x2 = identity(z2) : vector[1]
flow x3 = identity(z3) : vector[1]
report I(x1; x2)
report I(x1; x2 | x3)
report II(x1; x2; x3)
"""

#: Conditional queries of the tests, by spec (on top of each spec's defaults).
EXTRA = {"two_views": ["I(x1; x2 | theta)", "I(theta; x1 | x2)"],
         "decay": ["I(x[1]; x[3] | x[2])", "I(theta; x[1] | x[2], x[3])"],
         "disentangled": ["I(x1; x2 | z_c)", "I(z_c; x1 | x2)", "I(x1; x2 | z_s1)"]}


def joint(seed: int, with_w: bool) -> str:
    """The issue's spec with matrix seed ``seed``, with or without the two ``w`` terms."""
    return (JOINT.replace("SEED", str(seed)).replace("W3", "+ 0.7 * w * ones(5)" if with_w else "")
            .replace("W4", "+ 0.3 * w * onehot(6, 2)" if with_w else ""))


def cases():
    """(key, model, queries) for every case."""
    from mmmi_dsl import load, loads
    from mmmi_dsl.lang.lower import resolve_query
    from mmmi_dsl.mi.analysis import default_queries

    for path in sorted((ROOT / "specs").glob("*.mmi")):
        model = load(path)
        queries = default_queries(model) + [resolve_query(model, q) for q in EXTRA.get(path.stem, [])]
        yield path.stem, model, queries
    for seed in range(50):
        for with_w in (True, False):
            model = loads(joint(seed, with_w), file="joint.mmi")
            yield f"joint seed {seed}{' w' if with_w else ''}", model, list(model.reports)
    model = loads(EXPLAINING_AWAY, file="ii.mmi")
    yield "explaining away", model, list(model.reports)


def main() -> None:
    from mmmi_dsl.mi.analysis import Analysis

    out = {}
    for key, model, queries in cases():
        engine = Analysis(model)
        for q in queries:
            r = engine.evaluate(q)
            nats = ("inf" if r.nats > 0 else "-inf") if math.isinf(r.nats) else r.nats
            out[f"{key}: {q.text}"] = [nats, r.reason]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
