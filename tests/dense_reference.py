"""An independent, deliberately naive reference: dense A from the IR, Σ = A Aᵀ, slogdet.

Shares nothing with mmmi_dsl.mi.analysis / mmmi_dsl.mi.gaussian except the template and
matrix values (data, from mmmi_dsl.builtins.realize). Only for small sizes.
"""

from __future__ import annotations

import math

import numpy as np

from mmmi_dsl import ir
from mmmi_dsl.builtins.realize import matrix_array, template_vector
from mmmi_dsl.lang.coef import unrolled


def dense_rows(model: ir.Model) -> tuple[dict[str, np.ndarray], int]:
    """A_v (size_v, P) for every proto and variable; P = total proto dimension."""
    cols, start = {}, 0
    for p in model.protos.values():
        cols[p.name] = (start, p.size)
        start += p.size
    P = start
    env = model.env()
    rows: dict[str, np.ndarray] = {}
    for name, (s, k) in cols.items():
        a = np.zeros((k, P))
        a[:, s:s + k] = np.eye(k)
        rows[name] = a

    def get(name: str) -> np.ndarray:
        if name in rows:
            return rows[name]
        v = model.variables[name]
        a = np.zeros((v.size, P))
        for t in unrolled(v.terms):  # family terms: their members
            c = ir.evaluate(t.coef, env)
            if t.op == "identity":
                a += c * get(t.sources[0])
            elif t.op == "template":
                a += c * np.outer(template_vector(model.templates[t.template], model), get(t.sources[0])[0])
            elif t.op == "dot":
                a += c * template_vector(model.templates[t.template], model)[None, :] @ get(t.sources[0])
            else:
                a += c * matrix_array(model.matrices[t.matrix]) @ np.vstack([get(s) for s in t.sources])
        rows[name] = a
        return a

    for name in model.variables:
        get(name)
    for lab in model.labels.values():
        a = np.zeros((1, P))
        for t in unrolled(lab.terms):
            c = ir.evaluate(t.coef, env)
            if t.op == "identity":
                a += c * get(t.sources[0])
            elif t.op == "dot":
                a += c * template_vector(model.templates[t.template], model)[None, :] @ get(t.sources[0])
        rows[f"score of {lab.name}"] = a
    for f in model.flows.values():
        rows[f.name] = get(f.latent)
    return rows, P


def _pdet(cov: np.ndarray, tol: float) -> tuple[float, int]:
    if cov.size == 0:
        return 0.0, 0
    w = np.linalg.eigvalsh(cov)
    keep = w > tol
    return float(np.sum(np.log(w[keep]))), int(keep.sum())


def dense_mi(model: ir.Model, a: list[str], b: list[str], c: list[str] = ()) -> float:
    """I(A; B | C) in nats by dense pseudo-determinants and the rank rule."""
    rows, _ = dense_rows(model)
    A = lambda names: np.vstack([rows[n] for n in names]) if names else np.zeros((0, 1))  # noqa: E731
    allrows = A(list(a) + list(b) + list(c))
    scale = max(1.0, float(np.max(np.sum(allrows ** 2, axis=1))) * allrows.shape[0])
    tol = 1e-10 * scale

    # I(A; B | C) = I of the residuals after regressing A and B on C (valid with degenerate C)
    x = A(list(a) + list(b))
    cm = A(list(c)) if len(c) else np.zeros((0, x.shape[1]))
    sxx, sxc, scc = x @ x.T, x @ cm.T, cm @ cm.T
    if len(c):
        w, v = np.linalg.eigh(scc)
        keep = w > tol
        sxx = sxx - sxc @ ((v[:, keep] / w[keep]) @ v[:, keep].T) @ sxc.T
    na = sum(rows[n].shape[0] for n in a)
    (la, ra), (lb, rb), (lab, rab) = _pdet(sxx[:na, :na], tol), _pdet(sxx[na:, na:], tol), _pdet(sxx, tol)
    if ra == 0 or rb == 0:
        return 0.0
    if rab < ra + rb:
        return math.inf
    return 0.5 * (la + lb - lab)
