"""Exact information of queries over Student-t groups and uniform proto-latents (docs/language.md).

A query's blocks split into *components*: blocks linked by a shared proto-latent or by one
Student group's shared scale. Independent components add up,
``I(A1 A2; B1 B2 | C1 C2) = I(A1; B1 | C1) + I(A2; B2 | C2)``, so each is answered alone, and
must have one law:

- Gaussian: the Gaussian engine, as without laws;
- one Student group, ``X = G / sqrt(W / nu)``: the Gaussian MI of G plus a term in nu and the
  ranks r of the supports (:func:`student_correction`). With ``h(S) = ½ lpdet Σ_S + h0(r_S)``
  for a multivariate t on its support (Arellano-Valle, Contreras-Reyes and Genton 2013, eq. 7),
  ``I(A; B | C) = I_G(A; B | C) + φ(r_AC) + φ(r_BC) − φ(r_ABC) − φ(r_C)``,
  ``φ(k) = −lnΓ((nu+k)/2) + (nu+k)/2 · ψ((nu+k)/2)`` (the parts of h0 linear in k cancel), and
  ``TC = TC_G + Σ φ(r_i) − φ(r_∪) − (k − 1) φ(0)``. Unconditionally this is BMI's
  ``I_G + c(nu, m, n)`` with m, n the ranks: a rank-deficient side counts by its support;
  an identically zero side gives 0; a linear relation between the sides gives inf, as for G;
- uniform: ``I(a; b)`` of two scalars where one is ``c U1`` and the other ``c1 U1 + c2 U2``
  (U1, U2 uniform protos): with half-widths ``s`` of the signal ``c1 U1`` and ``n`` of the
  noise ``c2 U2``, ``I = log(s / n) + n / (2 s)`` if ``s ≥ n``, else ``s / (2 n)`` (the entropy
  of a trapezoid; BMI's ``1v1-additive-eps`` is s = 1/2, n = eps). ``I(a; b) = inf`` when b is a
  multiple of a. Anything else with uniform protos is refused.

A component mixing laws (a Gaussian latent sharing a proto with a Student member, a uniform
plus a Gaussian noise) has no closed form: E0220 names the two blocks and why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from mmmi_dsl import ir
from mmmi_dsl.errors import Diagnostic, SpecError
from mmmi_dsl.lang.laws import GAUSSIAN, NO_CLOSED_FORM, UNIFORM, describe_law, laws
from mmmi_dsl.mi.information import interaction_from_terms
from mmmi_dsl.mi.values import MIValue

if TYPE_CHECKING:
    import mpmath

__all__ = ["LawEngine", "student_correction", "student_phi", "uniform_additive_mi"]


def student_phi(nu: float, k: int) -> mpmath.mpf:
    """``φ(k) = −lnΓ((nu+k)/2) + (nu+k)/2 · ψ((nu+k)/2)`` to 40 digits beyond nu's size (the terms cancel)."""
    import mpmath  # here, not at the top: only Student-t models need it (26 ms of every start)

    with mpmath.workdps(40 + int(max(0.0, math.log10(max(nu, 1.0))))):
        h = (mpmath.mpf(nu) + k) / 2
        return -mpmath.loggamma(h) + h * mpmath.digamma(h)


def student_correction(nu: float, plus: Sequence[int], minus: Sequence[int]) -> float:
    """``Σ φ(r) over plus − Σ φ(r) over minus`` (nats): the Student-t term of an MI built from entropies."""
    import mpmath

    with mpmath.workdps(40 + int(max(0.0, math.log10(max(nu, 1.0))))):
        total = mpmath.fsum(student_phi(nu, r) for r in plus) - mpmath.fsum(student_phi(nu, r) for r in minus)
        return float(total)


def uniform_additive_mi(signal: float, noise: float) -> float:
    """``I(U_s; U_s + U_n)`` for independent uniforms of half-widths ``signal`` and ``noise`` (nats)."""
    s, n = abs(signal), abs(noise)
    return math.log(s / n) + n / (2 * s) if s >= n else s / (2 * n)


class LawEngine:
    """Answers queries of a model with laws, on top of an :class:`~mmmi_dsl.mi.analysis.Analysis`."""

    def __init__(self, analysis):
        self.analysis = analysis
        self.model: ir.Model = analysis.model
        self.law = laws(self.model)
        self.system = analysis.system

    # ----------------------------------------------------------- laws of blocks

    def law_of(self, block: str):
        return self.law.get(block, GAUSSIAN)  # label scores: labels of non-Gaussian variables are refused

    def involves_laws(self, q: ir.Query) -> bool:
        """True when some block of the query is not Gaussian (else the Gaussian engine answers it alone)."""
        return any(self.law_of(self.analysis.block_of(n)) != GAUSSIAN for g in (*q.groups, q.given) for n in g)

    def refuse(self, q: ir.Query, why: str, hint: str) -> SpecError:
        return SpecError([Diagnostic(NO_CLOSED_FORM, f"{q.text} has no exact answer: {why}", q.span, "", hint)])

    def df(self, group: int) -> float:
        g = self.model.students[group]
        nu = self.analysis.coef(g.df, g.span)
        if not nu > 0:
            raise SpecError([Diagnostic("E0207", f"a Student-t needs positive degrees of freedom, got {nu:g}",
                                        g.span, "", "student(nu) with nu > 0")])
        return nu

    def half_width(self, proto: str) -> float:
        law = self.model.uniform[proto]
        lo, hi = self.analysis.coef(law.low, law.span), self.analysis.coef(law.high, law.span)
        if not lo < hi:
            raise SpecError([Diagnostic("E0207", f"uniform[{lo:g}, {hi:g}] of `{proto}` is empty at these "
                                        "parameter values", law.span, "", "keep lo < hi")])
        return (hi - lo) / 2

    def components(self, q: ir.Query, blocks: list[str]) -> list[list[str]]:
        """The query's blocks grouped by shared proto-latents and Student groups; E0220 if one mixes laws."""
        parent = {b: b for b in blocks}

        def find(b):
            while parent[b] != b:
                parent[b] = parent[parent[b]]
                b = parent[b]
            return b

        owner: dict[object, str] = {}
        why: dict[str, tuple[str, str]] = {}
        for b in blocks:
            law = self.law_of(b)
            keys = [("proto", p) for p in self.system.dependencies(b)]
            if law not in (GAUSSIAN, UNIFORM):
                keys.append(("group", law))
            for key in keys:
                if key in owner:
                    ra, rb = find(owner[key]), find(b)
                    if ra != rb:
                        parent[ra] = rb
                    if self.law_of(owner[key]) != law and b not in why:
                        why[b] = (owner[key], f"proto-latent `{key[1]}`" if key[0] == "proto" else "")
                else:
                    owner[key] = b
        comps: dict[str, list[str]] = {}
        for b in blocks:
            comps.setdefault(find(b), []).append(b)
        for comp in comps.values():
            kinds = {self.law_of(b) for b in comp}
            if len(kinds) > 1:
                b = next(x for x in comp if x in why)
                other, link = why[b]
                raise self.refuse(q, f"`{other}` is {describe_law(self.model, self.law_of(other))} and `{b}` is "
                                  f"{describe_law(self.model, self.law_of(b))}, and they share {link}",
                                  "the joint law of such a pair has no closed form: ask about each side separately,"
                                  " or build every variable of the query from one law")
        return list(comps.values())

    # ----------------------------------------------------------- queries

    def evaluate(self, q: ir.Query) -> MIValue:
        a = self.analysis
        if any(n in self.model.labels for g in (*q.groups, q.given) for n in g):
            raise self.refuse(q, "the information of a label with non-Gaussian variables has no closed form",
                              "ask about the label and Gaussian variables only")
        groups = [_unique(a.block_of(n) for n in g) for g in q.groups]
        given = _unique(a.block_of(n) for n in q.given)
        if q.kind == "I":
            return self.mi(q, groups[0], groups[1], given)
        if q.kind == "TC":
            return self.total_correlation(q, groups)
        # II: the engine's one combination (an exact zero here has carried no reason so far)
        return interaction_from_terms(self.mi(q, groups[0], groups[1], []),
                                      self.mi(q, groups[0], groups[1], groups[2]), zero_reason=None)

    def mi(self, q: ir.Query, a_blocks: list[str], b_blocks: list[str], c_blocks: list[str]) -> MIValue:
        """``I(A; B | C)``: the sum over independent components (module docstring)."""
        c = list(c_blocks)
        a = [x for x in a_blocks if x not in c]
        b = [x for x in b_blocks if x not in c]
        shared = sorted(set(a) & set(b))
        if shared:
            return MIValue(math.inf, f"`{shared[0]}` is on both sides", "identical")
        parts: list[MIValue] = []
        gauss: tuple[list, list, list] = ([], [], [])
        for comp in self.components(q, a + b + c):
            ca, cb, cc = ([x for x in side if x in comp] for side in (a, b, c))
            law = self.law_of(comp[0])
            if law == GAUSSIAN:
                for acc, part in zip(gauss, (ca, cb, cc)):
                    acc.extend(part)
            elif not ca or not cb:
                continue  # independent of the other side: adds 0
            elif law == UNIFORM:
                parts.append(self.uniform_mi(q, ca, cb, cc))
            else:
                parts.append(self.student_mi(law, ca, cb, cc))
        if gauss[0] and gauss[1]:
            parts.append(self.system.mi(*gauss))
        return _sum(parts)

    def student_mi(self, group: int, a: list[str], b: list[str], c: list[str]) -> MIValue:
        nu = self.df(group)
        base = self.system.mi(a, b, c)
        if math.isinf(base.nats):
            return base
        atol = self.system.tolerance(a + b + c)

        def rank(names):
            return self.system.logdet(names, atol).rank if names else 0
        delta = student_correction(nu, [rank(a + c), rank(b + c)], [rank(a + b + c), rank(c)])
        return MIValue(base.nats + max(delta, 0.0), None, "student")

    def total_correlation(self, q: ir.Query, groups: list[list[str]]) -> MIValue:
        parts: list[MIValue] = []
        gauss: list[list[str]] = [[] for _ in groups]
        for comp in self.components(q, [x for g in groups for x in g]):
            sub = [[x for x in g if x in comp] for g in groups]
            present = [g for g in sub if g]
            law = self.law_of(comp[0])
            if law == GAUSSIAN:
                for acc, part in zip(gauss, sub):
                    acc.extend(part)
            elif len(present) < 2:
                continue
            elif law == UNIFORM:
                if len(present) > 2:
                    raise self.refuse(q, "the total correlation of more than two uniform sums has no closed form "
                                      "here", "ask for I(a; b) of two of them")
                parts.append(self.uniform_mi(q, present[0], present[1], []))
            else:
                nu = self.df(law)
                everything = [x for g in present for x in g]
                base = self.system.total_correlation(present)
                if math.isinf(base.nats):
                    parts.append(base)
                    continue
                atol = self.system.tolerance(everything)
                ranks = [self.system.logdet(g, atol).rank for g in present]
                whole = self.system.logdet(everything, atol).rank
                delta = student_correction(nu, ranks, [whole] + [0] * (len(present) - 1))
                parts.append(MIValue(base.nats + max(delta, 0.0), None, "student"))
        present = [g for g in gauss if g]
        if len(present) >= 2:
            parts.append(self.system.total_correlation(present))
        return _sum(parts)

    def uniform_mi(self, q: ir.Query, a: list[str], b: list[str], c: list[str]) -> MIValue:
        """``I(a; b)`` of two scalar sums of at most two uniform protos (module docstring); else E0220."""
        hint = ("exact only for I(a; b) of two scalars, one c·U1 and the other c1·U1 + c2·U2 "
                "(uniform protos U1, U2), with no conditioning")
        if c or len(a) != 1 or len(b) != 1:
            raise self.refuse(q, "with uniform proto-latents only I(a; b) of two scalars is exact", hint)
        rows = []
        for name in (a[0], b[0]):
            f = self.analysis.form(name)
            if f.size != 1 or f.identity or f.dense:
                raise self.refuse(q, f"`{name}` is not a scalar sum of uniform proto-latents", hint)
            row = {p: float(f.loadings[0, k]) for k, p in enumerate(self.analysis.scalar_protos)
                   if f.loadings[0, k] != 0.0}
            gaussian = [p for p in row if p not in self.model.uniform]
            if gaussian:
                raise self.refuse(q, f"`{name}` adds Gaussian `{gaussian[0]}` to uniform noise: no closed form", hint)
            rows.append(row)
        protos = sorted(set(rows[0]) | set(rows[1]))
        if len(protos) > 2:
            raise self.refuse(q, f"{len(protos)} uniform proto-latents are summed; the closed form covers two", hint)
        ra, rb = ([r.get(p, 0.0) for p in protos] for r in rows)
        if len(protos) == 1 or abs(ra[0] * rb[1] - ra[1] * rb[0]) <= 1e-12 * max(map(abs, ra + rb)) ** 2:
            return MIValue(math.inf, f"`{b[0]}` is a multiple of `{a[0]}`: a deterministic linear relation",
                           "uniform")
        pure, mixed = (ra, rb) if 0.0 in ra else (rb, ra) if 0.0 in rb else (None, None)
        if pure is None:
            raise self.refuse(q, "both sides mix the same two uniform proto-latents", hint)
        k = 0 if pure[0] != 0.0 else 1  # the signal U_k is what the pure side measures
        signal = mixed[k] * self.half_width(protos[k])
        noise = mixed[1 - k] * self.half_width(protos[1 - k])
        return MIValue(uniform_additive_mi(signal, noise), None, "uniform")


    # ----------------------------------------------------------- pointwise MI

    def pmi(self, a: list[str], b: list[str], samples: dict[str, np.ndarray]) -> np.ndarray:
        """(n,) pointwise MI of blocks of one Student group, from their (block-scaled) samples.

        Note:
            With multivariate t densities on the supports (ranks m, n, m + n; ``q_S = x_Sᵀ Σ_S⁺ x_S``),
            ``PMI = I_G-constant + lnΓ((ν+m+n)/2) + lnΓ(ν/2) − lnΓ((ν+m)/2) − lnΓ((ν+n)/2)
            − (ν+m+n)/2 log(1 + q_AB/ν) + (ν+m)/2 log(1 + q_A/ν) + (ν+n)/2 log(1 + q_B/ν)``,
            where the constant is ``½(lpdet Σ_A + lpdet Σ_B − lpdet Σ_AB)``. Dense: sizes up to the
            engine's dense limit. Its mean over the model's samples is the MI.
        """
        names = a + b
        group = self.law_of(names[0])
        if group in (GAUSSIAN, UNIFORM) or any(self.law_of(x) != group for x in names):
            raise SpecError([Diagnostic(NO_CLOSED_FORM, f"the PMI of {', '.join(a)} and {', '.join(b)} has no "
                                        "closed form here: it is exact for variables of one Student group only",
                                        None, "", "ask for the PMI of Gaussian variables, or of one group's")])
        nu = self.df(group)
        atol = self.system.tolerance(names)
        parts = []
        for S in (a, b, names):
            cov = self.system.covariance(S)
            w, v = np.linalg.eigh(cov)
            keep = w > atol.total
            x = np.concatenate([np.asarray(samples[s], dtype=np.float64).reshape(len(samples[s]), -1) for s in S],
                               axis=1)
            y = (x @ v[:, keep]) / np.sqrt(w[keep])
            parts.append((float(np.sum(np.log(w[keep]))), int(keep.sum()), np.sum(y * y, axis=1)))
        (la, m, qa), (lb, n, qb), (lab, r, qab) = parts
        if r < m + n:
            raise ValueError(f"the PMI of {', '.join(a)} and {', '.join(b)} is infinite: a deterministic linear "
                             f"relation between them (rank {r} < {m} + {n})")
        import mpmath

        const = 0.5 * (la + lb - lab) + float(mpmath.loggamma((nu + m + n) / 2) + mpmath.loggamma(nu / 2)
                                               - mpmath.loggamma((nu + m) / 2) - mpmath.loggamma((nu + n) / 2))
        return (const - (nu + m + n) / 2 * np.log1p(qab / nu) + (nu + m) / 2 * np.log1p(qa / nu)
                + (nu + n) / 2 * np.log1p(qb / nu))


def _sum(parts: list[MIValue]) -> MIValue:
    if not parts:
        return MIValue(0.0, "the two sides are independent", "independent")
    inf = next((p for p in parts if math.isinf(p.nats)), None)
    if inf is not None:
        return inf
    method = next((m for m in ("student", "uniform", "dense", "structured") if any(p.method == m for p in parts)),
                  "independent")
    return MIValue(float(np.sum([p.nats for p in parts])), None, method)


def _unique(names) -> list[str]:
    return list(dict.fromkeys(names))
