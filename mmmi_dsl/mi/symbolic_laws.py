"""Closed forms (sympy) for queries over one Student-t group or a pair of uniform sums (mi/laws.py).

- One Student group: the Gaussian formula of the dispersion plus
  ``Σ ± φ(r)``, ``φ(k) = −lnΓ((ν+k)/2) + (ν+k)/2 · ψ((ν+k)/2)``, the ranks r being the (symbolic)
  sizes of the sets AC, BC, ABC, C (TC: each group, the union and k − 1 empty sets). A set whose
  covariance is rank-deficient at the current values is refused: its rank is not its size.
- ``I(a; b)`` of a uniform pair: ``Piecewise((log(s/n) + n/(2 s), s >= n), (s/(2 n), True))`` with
  s and n the half-widths of the signal and the noise terms.

Every other query with a non-Gaussian variable is refused; ``mmmic mi`` computes it.
"""

from __future__ import annotations

import sympy as sp

from mmmi_dsl import ir
from mmmi_dsl.lang.laws import GAUSSIAN, UNIFORM, laws


def student_phi(nu: sp.Expr, k: sp.Expr) -> sp.Expr:
    h = (nu + k) / 2
    return -sp.loggamma(h) + h * sp.digamma(h)


class LawFormulas:
    """What a query with laws adds to (or puts in place of) its Gaussian formula."""

    def __init__(self, model: ir.Model, deriver, unsupported, to_sympy):
        self.model, self.d, self.unsupported = model, deriver, unsupported
        self.expr = lambda e: to_sympy(e, deriver.symbols)
        self.law = laws(model)
        self._analysis = None

    def law_of_query(self, blocks: list[str]):
        kinds = {self.law.get(b, GAUSSIAN) for b in blocks}
        return kinds.pop() if len(kinds) == 1 else None

    def ranks_match(self, q: ir.Query, sets: list[list[str]]) -> None:
        """Refuse when a set's numeric rank is not its size (the symbolic ranks are sizes)."""
        from mmmi_dsl.mi.analysis import Analysis

        if self._analysis is None:
            self._analysis = Analysis(self.model)
        system = self._analysis.system
        every = sorted({b for s in sets for b in s})
        atol = system.tolerance(every)
        for s in sets:
            if s and system.logdet(s, atol).rank != sum(self.model.size_of(b) for b in s):
                raise self.unsupported(q, f"the covariance of {', '.join(s)} is rank-deficient: its Student-t term "
                                          "counts its rank, not its size")

    def size(self, names: list[str]) -> sp.Expr:
        return sum((self.d.form(n).size_symbol for n in names), sp.Integer(0))

    def student(self, q: ir.Query, group: int, plus: list[list[str]], minus: list[list[str]]) -> sp.Expr:
        self.ranks_match(q, plus + minus)
        nu = self.expr(self.model.students[group].df)
        return (sum((student_phi(nu, self.size(s)) for s in plus), sp.Integer(0))
                - sum((student_phi(nu, self.size(s)) for s in minus), sp.Integer(0)))

    def uniform_pair(self, q: ir.Query, a: str, b: str) -> sp.Expr:
        rows = []
        for name in (a, b):
            f = self.d.form(name)
            if f.identity or f.size != 1:
                raise self.unsupported(q, f"`{name}` is not a scalar sum of uniform proto-latents")
            row = {self.d.K[k]: col[""] for k, col in f.loadings.items() if col.get("", 0) != 0}
            if any(p not in self.model.uniform for p in row):
                raise self.unsupported(q, f"`{name}` adds Gaussian noise to uniform noise")
            rows.append(row)
        protos = sorted(set(rows[0]) | set(rows[1]))
        pure = next((i for i in (0, 1) if len(rows[i]) == 1), None)
        if len(protos) != 2 or pure is None or len(rows[1 - pure]) != 2:
            raise self.unsupported(q, "the closed form covers c·U1 against c1·U1 + c2·U2 only")
        signal_proto = next(iter(rows[pure]))
        noise_proto = next(p for p in protos if p != signal_proto)
        mixed = rows[1 - pure]

        def half(p):
            law = self.model.uniform[p]
            return (self.expr(law.high) - self.expr(law.low)) / 2
        s = sp.Abs(mixed[signal_proto]) * half(signal_proto)
        n = sp.Abs(mixed[noise_proto]) * half(noise_proto)
        return sp.Piecewise((sp.log(s / n) + n / (2 * s), s >= n), (s / (2 * n), True))

    def formula(self, q: ir.Query, block, gaussian) -> sp.Expr:
        """The query's closed form; ``gaussian()`` derives its Gaussian formula (refused outside the cases above)."""
        groups = [list(dict.fromkeys(block(n) for n in g)) for g in q.groups]
        given = list(dict.fromkeys(block(n) for n in q.given))
        law = self.law_of_query([b for g in groups for b in g] + given)
        if law == GAUSSIAN:
            return gaussian()
        if law is None:
            raise self.unsupported(q, "it mixes variables of different laws (mmmic mi adds independent parts up)")
        if law == UNIFORM:
            if q.kind != "I" or given or any(len(g) != 1 for g in groups):
                raise self.unsupported(q, "with uniform noise only I(a; b) of two scalars has a closed form")
            return self.uniform_pair(q, groups[0][0], groups[1][0])
        if q.kind == "I":
            a, b, c = [x for x in groups[0] if x not in given], [x for x in groups[1] if x not in given], given
            return gaussian() + self.student(q, law, [a + c, b + c], [a + b + c, c])
        if q.kind == "TC":
            return gaussian() + self.student(q, law, groups, [[x for g in groups for x in g]] + [[]] *
                                           (len(groups) - 1))
        a, b, c = groups
        return gaussian() + self.student(q, law, [a, b], [a + b, []]) - self.student(
            q, law, [a + c, b + c], [a + b + c, c])
