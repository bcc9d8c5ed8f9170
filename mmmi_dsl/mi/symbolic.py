"""Closed-form MI with sympy, by the same structure as the numeric engine.

For a set S of blocks, vector blocks of (symbolic) size d_g with identity-scaled
noise coefficients R_g (F_g = R_g R_gᵀ) and template loadings U_i, and scalar
blocks with loadings E on the K scalar causes,

    log|Σ_SS| = Σ_g d_g log|F_g| + log|I_K + G| + log|E (I_K + G)^-1 Eᵀ|,
    G = Σ_g Σ_{i,j∈g} (F_g^-1)_ij U_iᵀ U_j   (K x K),

(Kronecker product, matrix determinant lemma, Schur complement on the scalars).
Only K x K and n_g x n_g symbolic matrices appear; d enters as a symbol. Template
inner products ⟨T_a, T_b⟩ are symbols (``ip_a_b``, ``nsq_a`` for ‖T_a‖²), or
numbers on request, and known ones are exact: ⟨1_d, 1_d⟩ = d, ⟨e_k, e_l⟩ = δ_kl,
⟨1_d, e_k⟩ = 1, ‖normalize(T)‖² = 1.

    I(A; B | C) = ½ [log|Σ_AC| + log|Σ_BC| − log|Σ_ABC| − log|Σ_C|]

The result is grouped as Σ_c (c/2) log(R_c) with each R_c a cancelled rational
function. Specs outside this structure (matrices, dot(), labels, degenerate F)
get a clear error: their numbers come from the numeric engine only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import sympy as sp

from mmmi_dsl import ir
from mmmi_dsl.deadline import deadline
from mmmi_dsl.errors import Diagnostic, SpecError
from mmmi_dsl.lang.check import variable_order
from mmmi_dsl.lang.coef import unrolled
from mmmi_dsl.mi.symbolic_laws import LawFormulas

__all__ = ["Derivation", "Deriver", "Formula", "GaveUp", "derive", "derive_all", "derive_each", "evaluate_formula",
           "time_budget", "to_sympy"]


class GaveUp(BaseException):
    """The symbolic engine ran past its time budget (a BaseException: sympy's ``except Exception`` can't eat it)."""

    def __init__(self, seconds: float):
        super().__init__(f"gave up after {seconds:g} s")
        self.seconds = seconds


def time_budget(seconds: float | None):
    """Raise :class:`GaveUp` inside the block once ``seconds`` have passed (``None`` or 0: no limit);
    see :func:`mmmi_dsl.deadline.deadline` (sympy is interrupted wherever it is)."""
    return deadline(seconds, lambda: GaveUp(seconds))


class Unsupported(SpecError):
    """The query is outside what the symbolic engine derives (exit code 1)."""


def _unsupported(q: ir.Query | None, why: str) -> Unsupported:
    return Unsupported([Diagnostic("E0211", f"no closed form for {q.text if q else 'this query'}: {why}",
                                   q.span if q else None, "",
                                   "mmmic mi computes its exact value numerically")])


# ---------------------------------------------------------------- symbols


def to_sympy(expr: ir.Expr, symbols: dict[str, sp.Expr]) -> sp.Expr:
    """An IR coefficient as a sympy expression (names looked up in ``symbols``)."""
    if isinstance(expr, ir.Num):
        v = expr.value
        return sp.Integer(int(v)) if v.is_integer() and abs(v) < 2**53 else sp.Float(v)
    if isinstance(expr, ir.Sym):
        return symbols[expr.name]
    if isinstance(expr, ir.Neg):
        return -to_sympy(expr.operand, symbols)
    if isinstance(expr, ir.BinOp):
        a, b = to_sympy(expr.left, symbols), to_sympy(expr.right, symbols)
        return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b,
                "^": lambda: a ** b}[expr.op]()
    fn = {"sqrt": sp.sqrt, "exp": sp.exp, "log": sp.log, "abs": sp.Abs, "sin": sp.sin, "cos": sp.cos,
          "tanh": sp.tanh, "min": sp.Min, "max": sp.Max}[expr.name]
    return fn(*(to_sympy(a, symbols) for a in expr.args))


@dataclass
class _SymForm:
    """A block's symbolic linear form: identity noise coefficients and loadings.

    ``loadings[k]`` is a dict template-name -> coefficient for a vector block (the
    column of scalar cause k is Σ coef * T), or {"": coef} for a scalar block.
    """

    size: int
    size_symbol: sp.Expr
    identity: dict[str, sp.Expr] = field(default_factory=dict)
    loadings: dict[int, dict[str, sp.Expr]] = field(default_factory=dict)


class Deriver:
    def __init__(self, model: ir.Model, numeric: set[str]):
        self.model = model
        self.numeric = set(numeric)
        all_numeric = "all" in self.numeric
        self.symbols: dict[str, sp.Expr] = {}
        for d in model.dims.values():
            self.symbols[d.name] = (sp.Integer(d.value) if all_numeric or d.name in self.numeric
                                    else sp.Symbol(d.name, positive=True, integer=True))
        for p in model.params.values():
            if p.derived is None:
                self.symbols[p.name] = (sp.nsimplify(p.value, rational=False) if all_numeric or p.name in self.numeric
                                        else sp.Symbol(p.name, real=True))
        pending = [p for p in model.params.values() if p.derived is not None]
        while pending:  # derived parameters become their expressions (unless asked for as numbers)
            if not any(ir.symbols(p.derived) <= self.symbols.keys() for p in pending):
                raise ValueError(f"derived parameters depend on each other: {', '.join(p.name for p in pending)}")
            for p in list(pending):
                if ir.symbols(p.derived) <= self.symbols.keys():
                    self.symbols[p.name] = (sp.Float(p.value) if all_numeric or p.name in self.numeric
                                            else to_sympy(p.derived, self.symbols))
                    pending.remove(p)
        self.K = [p.name for p in model.protos.values() if p.kind == "scalar"]
        self.k_index = {n: i for i, n in enumerate(self.K)}
        self.forms: dict[str, _SymForm] = {}
        self._ip_cache: dict[tuple[str, str], sp.Expr] = {}
        self._ld_cache: dict[frozenset, list[tuple[sp.Expr, sp.Expr]]] = {}
        self.ip_latex: dict[sp.Symbol, str] = {}
        self.ip_templates: dict[str, tuple[str, str]] = {}
        self.query: ir.Query | None = None

    # ----------------------------------------------------------- forms

    def form(self, name: str) -> _SymForm:
        hit = self.forms.get(name)
        if hit is not None:
            return hit
        if name in self.model.variables:  # sources first, so that _form never recurses deeply
            for dep in variable_order(self.model, [name])[:-1]:
                if dep not in self.forms:
                    self._form(dep)
        return self._form(name)

    def _form(self, name: str) -> _SymForm:
        m = self.model
        if name in m.protos:
            p = m.protos[name]
            f = _SymForm(p.size, to_sympy(p.size_expr, self.symbols))
            if p.kind == "scalar":
                f.loadings[self.k_index[name]] = {"": sp.Integer(1)}
            else:
                f.identity[name] = sp.Integer(1)
        else:
            v = m.variables[name]
            size_symbol = self._size_symbol(v)
            f = _SymForm(v.size, size_symbol)
            for t in unrolled(v.terms):
                c = to_sympy(t.coef, self.symbols)
                if t.op == "identity":
                    src = self.form(t.sources[0])
                    for p, a in src.identity.items():
                        f.identity[p] = f.identity.get(p, 0) + c * a
                    for k, col in src.loadings.items():
                        dst = f.loadings.setdefault(k, {})
                        for tn, a in col.items():
                            dst[tn] = dst.get(tn, 0) + c * a
                elif t.op == "template":
                    src = self.form(t.sources[0])
                    if src.identity:
                        raise _unsupported(self.query, f"`{t.sources[0]}` spread by a template has vector noise")
                    for k, col in src.loadings.items():
                        dst = f.loadings.setdefault(k, {})
                        dst[t.template] = dst.get(t.template, 0) + c * col[""]
                else:
                    raise _unsupported(self.query, f"`{name}` uses {'M @ ...' if t.op == 'matrix' else 'dot()'}, "
                                                   "a general linear map")
        self.forms[name] = f
        return f

    def _size_symbol(self, v: ir.Variable) -> sp.Expr:
        if v.size == 1:
            return sp.Integer(1)
        for t in unrolled(v.terms):
            if t.op == "identity" and t.sources[0] in self.model.protos:
                return to_sympy(self.model.protos[t.sources[0]].size_expr, self.symbols)
            if t.op == "template":
                return to_sympy(self.model.templates[t.template].size_expr, self.symbols)
            if t.op == "identity" and t.sources[0] in self.model.variables:
                return self.form(t.sources[0]).size_symbol  # computed before (sources first)
        return sp.Integer(v.size)

    # ----------------------------------------------------------- template inner products

    def ip(self, a: str, b: str) -> sp.Expr:
        """⟨T_a, T_b⟩: exact for ones/onehot/normalize, else a symbol or a number."""
        key = (min(a, b), max(a, b))
        if key in self._ip_cache:
            return self._ip_cache[key]
        value = self._ip(*key)
        self._ip_cache[key] = value
        return value

    def _ip(self, a: str, b: str) -> sp.Expr:
        ta, tb = self.model.templates[a], self.model.templates[b]
        if a == b and ta.kind == "normalize":
            return sp.Integer(1)  # unit norm; its inner products with others stay abstract
        kinds = {ta.kind, tb.kind}
        if kinds <= {"ones", "onehot"}:
            if ta.kind == tb.kind == "ones":
                return to_sympy(ta.size_expr, self.symbols)
            if ta.kind == tb.kind == "onehot":
                return sp.Integer(int(ta.args["index"] == tb.args["index"]))
            return sp.Integer(1)
        if "all" in self.numeric or "templates" in self.numeric or a in self.numeric or b in self.numeric:
            from mmmi_dsl.builtins.realize import template_vector
            cache: dict = {}
            va, vb = template_vector(ta, self.model, cache), template_vector(tb, self.model, cache)
            return sp.Float(float(va @ vb))
        name = f"ip_{_ident(a)}_{_ident(b)}" if a != b else f"nsq_{_ident(a)}"
        sym = sp.Symbol(name, positive=(a == b), real=True)
        self.ip_latex[sym] = (rf"\lVert {_tex_name(a)} \rVert^2" if a == b
                              else rf"\langle {_tex_name(a)}, {_tex_name(b)} \rangle")
        self.ip_templates[name] = (a, b)
        return sym

    # ----------------------------------------------------------- log-determinants

    def logdet_terms(self, names: list[str]) -> list[tuple[sp.Expr, sp.Expr]]:
        """log|Σ_SS| as (coefficient, argument) pairs: Σ coefficient * log(argument) (cached per set)."""
        if not names:
            return []
        key = frozenset(names)
        if key not in self._ld_cache:
            self._ld_cache[key] = self._logdet_terms(sorted(names))
        return self._ld_cache[key]

    def _logdet_terms(self, names: list[str]) -> list[tuple[sp.Expr, sp.Expr]]:
        forms = {n: self.form(n) for n in names}
        vectors = [n for n in names if forms[n].identity]
        scalars = [n for n in names if not forms[n].identity]
        for n in scalars:
            if forms[n].size != 1:
                raise _unsupported(self.query, f"`{n}` is a vector without noise (a degenerate covariance)")
        K = len(self.K)
        terms: list[tuple[sp.Expr, sp.Expr]] = []
        G = sp.zeros(K, K)
        groups: dict[sp.Expr, list[str]] = {}
        for n in vectors:
            groups.setdefault(forms[n].size_symbol, []).append(n)
        for dsym, members in groups.items():
            protos = sorted({p for n in members for p in forms[n].identity})
            R = sp.Matrix([[forms[n].identity.get(p, 0) for p in protos] for n in members])
            F = R * R.T
            det = sp.cancel(F.det())
            if det == 0:
                raise _unsupported(self.query, "two blocks share their noise exactly (a singular F)")
            terms.append((dsym, det))
            Finv = F.adjugate() / det
            for i, a in enumerate(members):
                for j, b in enumerate(members):
                    if Finv[i, j] != 0:
                        G += Finv[i, j] * self._utu(forms[a], forms[b])
        if vectors:
            IG = sp.eye(K) + G
            terms.append((sp.Integer(1), IG.det()))
        if scalars:
            E = sp.Matrix([[forms[n].loadings.get(k, {}).get("", 0) for k in range(K)] for n in scalars])
            S = E * (sp.eye(K) + G).inv() * E.T if vectors else E * E.T
            terms.append((sp.Integer(1), S.det()))
        return terms

    def _utu(self, fa: _SymForm, fb: _SymForm) -> sp.Matrix:
        """U_aᵀ U_b (K x K): entry (k, l) = Σ coef coef ⟨T, T'⟩."""
        K = len(self.K)
        out = sp.zeros(K, K)
        for k, col_a in fa.loadings.items():
            for l, col_b in fb.loadings.items():
                out[k, l] = sum(ca * cb * self.ip(ta, tb) for ta, ca in col_a.items() for tb, cb in col_b.items())
        return out


def _ident(template: str) -> str:
    """A template's name as part of a Python identifier: ``blob(3x32x32, 10, 10, 3)`` -> ``blob_3x32x32_10_10_3``."""
    import re
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_]", "_", template)).strip("_")


def _tex_name(name: str) -> str:
    if "(" in name:
        return r"\mathrm{" + name.replace("_", r"\_") + "}"
    head, _, tail = name.partition("_")
    return f"{head}_{{{tail}}}" if tail else name


@dataclass(frozen=True)
class Formula:
    """A derived closed form: ``expr`` in nats (or bits), with LaTeX names for inner products."""

    query: ir.Query
    expr: sp.Expr
    symbol_latex: dict
    templates: dict  # inner-product symbol name -> (template a, template b)

    def latex(self) -> str:
        lhs = _query_latex(self.query)
        return sp.latex(self.expr, symbol_names=self.symbol_latex, ln_notation=True) if not lhs else \
            f"{lhs} = {sp.latex(self.expr, symbol_names=self.symbol_latex, ln_notation=True)}"

    def text(self) -> str:
        return f"{self.query.text} = {sp.sstr(self.expr)}"

    def sympy(self) -> str:
        return sp.sstr(self.expr)


def _query_latex(q: ir.Query) -> str:
    def names(g):
        return ", ".join(_var_latex(n) for n in g)
    body = "; ".join(names(g) for g in q.groups)
    if q.given:
        body += r" \mid " + names(q.given)
    op = {"I": "I"}.get(q.kind, rf"\mathrm{{{q.kind}}}")
    return rf"{op}({body})"


def _var_latex(name: str) -> str:
    greek = {"theta", "eta", "rho", "alpha", "beta", "sigma", "phi", "psi", "mu", "nu", "tau", "xi"}
    base, _, idx = name.partition("[")
    idx = idx.rstrip("]")
    head, _, sub = base.partition("_")
    tex = ("\\" + head) if head in greek else head
    subs = [s for s in (sub, idx) if s]
    if not subs and head[-1:].isdigit() and not head.isdigit():
        stem = head.rstrip("0123456789")
        tex, subs = (("\\" + stem) if stem in greek else stem), [head[len(stem):]]
    return tex + (f"_{{{','.join(subs)}}}" if subs else "")


def _combine(parts: list[tuple[sp.Expr, sp.Expr]]) -> sp.Expr:
    """½ Σ sign·c·log(arg), grouped by coefficient into Σ (c/2) log(cancelled ratio)."""
    by_coef: dict[sp.Expr, sp.Expr] = {}
    for c, arg in parts:
        sign = 1 if c.could_extract_minus_sign() is False else -1
        key = -c if sign < 0 else c
        by_coef[key] = by_coef.get(key, sp.Integer(1)) * arg ** sign
    out = sp.Integer(0)
    for c, ratio in by_coef.items():
        r = sp.cancel(sp.together(ratio))
        if sp.count_ops(r) <= FACTOR_MAX_OPS:  # factoring is for readability; it is slow on big polynomials
            r = sp.factor(r)
        if r != 1:
            out += c / 2 * sp.log(r)
    return out


#: Ratios with more operations than this are cancelled but not factored.
FACTOR_MAX_OPS = 120


def derive_all(model: ir.Model, queries, numeric: set[str] | frozenset[str] = frozenset()) -> list[Formula]:
    """Closed forms of several queries, sharing symbols and log-determinants."""
    deriver = Deriver(model, set(numeric))
    return [derive(model, q, numeric, deriver=deriver) for q in queries]


def derive(model: ir.Model, query: ir.Query, numeric: set[str] | frozenset[str] = frozenset(),
           unit: str | None = None, deriver: "Deriver | None" = None) -> Formula:
    """The closed form of ``query`` (nats, or bits when the query's unit is bits).

    Args:
        numeric: names of params, dims or templates to replace by their values
            (``templates`` for every template inner product, ``all`` for everything).

    Raises:
        SpecError: outside the symbolic engine's structure (matrices, dot, labels).
    """
    d = deriver or Deriver(model, set(numeric))
    d.query = query
    m = model
    if query.kind in ir.LIMIT_KINDS:
        return _limit_formula(query, d)
    if any(n in m.labels for g in (*query.groups, query.given) for n in g):
        raise _unsupported(query, "labels need quadrature")

    def block(n: str) -> str:
        return m.flows[n].latent if n in m.flows else n

    def uniq(xs) -> list[str]:
        return list(dict.fromkeys(block(x) for x in xs))

    def ld(names) -> list[tuple[sp.Expr, sp.Expr]]:
        return d.logdet_terms(uniq(names))

    def neg(ts):
        return [(-c, a) for c, a in ts]

    def mi_parts(a, b, c) -> list[tuple[sp.Expr, sp.Expr]]:
        a = [x for x in uniq(a) if x not in uniq(c)]
        b = [x for x in uniq(b) if x not in uniq(c)]
        if set(a) & set(b):
            raise _unsupported(query, "a variable is on both sides (the MI is infinite)")
        return ld(a + list(c)) + ld(b + list(c)) + neg(ld(a + b + list(c))) + neg(ld(list(c)))

    def gaussian() -> sp.Expr:
        if query.kind == "I":
            parts = mi_parts(query.groups[0], query.groups[1], list(query.given))
        elif query.kind == "TC":
            parts = [t for g in query.groups for t in ld(g)] + neg(ld([n for g in query.groups for n in g]))
        else:
            a, b, c = query.groups
            parts = mi_parts(a, b, []) + neg(mi_parts(a, b, list(c)))
        return _combine(parts)
    # Student-t groups and uniform protos (mi/symbolic_laws.py): the Gaussian formula plus their term
    expr = gaussian() if m.gaussian else LawFormulas(m, d, _unsupported, to_sympy).formula(query, block, gaussian)
    if (unit or query.unit) == "bits":
        expr = expr / sp.log(2)
    used = {sym.name for sym in expr.free_symbols}
    return Formula(query, expr, {k: v for k, v in d.ip_latex.items() if k.name in used},
                   {k: v for k, v in d.ip_templates.items() if k in used})


def _limit_formula(query: ir.Query, d: "Deriver") -> Formula:
    """``MMSE = Var(θ | S) = |Σ_{θS}| / |Σ_S|`` (= Var(θ) e^{−2 I(θ; S)}), ``RMSE`` its root; ``ACC`` has none."""
    if query.kind == "ACC":
        raise _unsupported(query, "the Bayes accuracy of a label is a one-dimensional Gaussian integral with no "
                           "closed form in elementary functions in general (at threshold 0 it is "
                           "1/2 + asin(rho)/pi, rho^2 = 1 - exp(-2 I(score; given)))")
    flows = d.model.flows
    target = query.groups[0][0]
    given = list(dict.fromkeys(flows[n].latent if n in flows else n for n in query.given))
    if target in given:
        expr: sp.Expr = sp.Integer(0)
    else:  # _combine halves its coefficients (it builds ½ log-ratios): exp(2·_) is the variance ratio
        log_ratio = d.logdet_terms([target] + given) + [(-c, a) for c, a in d.logdet_terms(given)]
        expr = sp.exp(2 * _combine(log_ratio))
    if query.kind == "RMSE":
        expr = sp.sqrt(expr)
    used = {sym.name for sym in expr.free_symbols}
    return Formula(query, expr, {k: v for k, v in d.ip_latex.items() if k.name in used},
                   {k: v for k, v in d.ip_templates.items() if k in used})


@dataclass(frozen=True)
class Derivation:
    """One query's outcome in :func:`derive_each`: its formula, or why there is none.

    Exactly one of ``formula``, ``error`` (outside the engine's structure, E0211) and
    ``gave_up_s`` (the time budget of that many seconds ran out before this query) is set.
    """

    query: ir.Query
    formula: Formula | None = None
    error: SpecError | None = None
    gave_up_s: float | None = None

    @property
    def reason(self) -> str:
        """Why there is no formula, without the ``no closed form for QUERY: `` prefix ("" if there is one)."""
        if self.error is not None:
            message = self.error.diagnostics[0].message
            prefix = f"no closed form for {self.query.text}: "
            return message[len(prefix):] if message.startswith(prefix) else message
        if self.gave_up_s is not None:
            return f"the {self.gave_up_s:g} s budget for formulas ran out"
        return ""


def derive_each(model: ir.Model, queries, numeric: set[str] | frozenset[str] = frozenset(),
                budget_s: float | None = None, stop_at_error: bool = False) -> list[Derivation]:
    """Closed forms of ``queries`` as data: one :class:`Derivation` per query, in order.

    Queries outside the engine's structure get their error (a sympy recursion too:
    E0211); once ``budget_s`` seconds have passed (:func:`time_budget`), every query
    left gets ``gave_up_s``. With ``stop_at_error`` the list ends at the first query
    without a formula.
    """
    queries = list(queries)
    out: list[Derivation] = []
    try:
        with time_budget(budget_s):
            deriver = Deriver(model, set(numeric))
            for q in queries:
                try:
                    out.append(Derivation(q, formula=derive(model, q, numeric, deriver=deriver)))
                except SpecError as err:
                    out.append(Derivation(q, error=err))
                except RecursionError:
                    out.append(Derivation(q, error=SpecError([Diagnostic(
                        "E0211", f"no closed form for {q.text}: its expressions are nested too deeply for sympy",
                        q.span, "", "mmmic mi computes its exact value numerically")])))
                if stop_at_error and out[-1].formula is None:
                    return out
    except GaveUp as stop:
        out += [Derivation(q, gave_up_s=stop.seconds) for q in queries[len(out):]]
    return out


def evaluate_formula(f: Formula, model: ir.Model) -> float:
    """The formula's value at the model's parameter and dim values (template symbols too)."""
    env = {sp.Symbol(k, real=True): v for k, v in model.env().items()}
    env.update({sp.Symbol(k, positive=True, integer=True): v for k, v in model.env().items()})
    free = f.expr.free_symbols
    subs = {s: env[s] for s in free if s in env}
    missing = [s for s in free if s not in subs]
    if missing:  # template inner products: fill from the data
        from mmmi_dsl.builtins.realize import template_vector
        cache: dict = {}
        for s in missing:
            a, b = f.templates[s.name]
            subs[s] = float(template_vector(model.templates[a], model, cache)
                            @ template_vector(model.templates[b], model, cache))
    value = f.expr.evalf(30, subs=subs)
    return float(value) if value.is_finite else math.inf
