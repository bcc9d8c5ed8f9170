"""Linearisation: an equation's right-hand side as a sum of linear terms, and latents' sizes."""

from __future__ import annotations

import numpy as np

from mmmi_dsl import builtins, ir
from mmmi_dsl.errors import did_you_mean
from mmmi_dsl.ir import Expr, Func, Num, Sym
from mmmi_dsl.lang.check import postorder, term_sources
from mmmi_dsl.lang.coef import evaluate_over
from mmmi_dsl.lang.lower import limits
from mmmi_dsl.lang.lower.algebra import (
    DraftTerm,
    LinearValue,
    binop,
    draft_term,
    mul,
    neg,
    num_node,
    scaled,
    sym_node,
)
from mmmi_dsl.lang.lower.constructors import Constructors
from mmmi_dsl.lang.lower.scope import VARIABLE_KINDS, Skip
from mmmi_dsl.lang.syntax import (
    BinaryOp,
    Binder,
    Call,
    Decl,
    Kwarg,
    ListLit,
    Name,
    Negate,
    Number,
    Shape,
    Statement,
    String,
)


def constant_tree(node, low: "Linearizer") -> bool:
    """Whether a syntax subtree is a coefficient: numbers, params, dims, loop variables
    (any plain name that is not declared as something else) and math functions."""
    if isinstance(node, Number):
        return True
    if isinstance(node, Name):
        return node.index is None and node.name not in low.names or node.name in low.values or \
            node.name in low.dims
    if isinstance(node, Negate):
        return constant_tree(node.operand, low)
    if isinstance(node, BinaryOp):
        return node.op != "@" and constant_tree(node.left, low) and constant_tree(node.right, low)
    if isinstance(node, Call):
        return node.func in ir.MATH_FUNCTIONS and all(
            not isinstance(a, (Kwarg, Binder)) and constant_tree(a, low) for a in node.args)
    return False


def members(terms: list[DraftTerm]) -> list[DraftTerm]:
    """Draft terms with family terms unrolled (templates, ``dot`` and ``@`` take one source a term)."""
    return [m for t in terms for m in t.members()]


def member_names(low: "Linearizer", ref: Name, index: Expr, var: str, lo: int, hi: int) -> tuple[str, ...] | None:
    """The members ``f[idx(k)]`` for k in lo..hi, or None unless each is an integer index of a
    defined variable of ``f`` (dims only: a parameter in an index is E0202 on the unrolled path)."""
    if not ir.symbols(index) <= {var, *low.dims}:
        return None
    key = (ref.name, index, var, lo, hi)  # decay: every z[i] sums over the same n[1..N]
    hit = low.member_cache.get(key)
    if hit is None:
        hit = low.member_cache[key] = _member_names(low, ref, index, var, lo, hi)
    return hit


def _member_names(low: "Linearizer", ref: Name, index: Expr, var: str, lo: int, hi: int) -> tuple[str, ...] | None:
    env = {name: float(d.value) for name, d in low.dims.items()}
    ks = evaluate_over(index, env, var, np.arange(lo, hi + 1, dtype=float))
    ks = np.broadcast_to(np.asarray(ks, dtype=float), (hi - lo + 1,))
    if not np.all(np.isfinite(ks)) or not np.all(ks == np.round(ks)):
        return None
    names = low.names
    out = tuple(f"{ref.name}[{k}]" for k in ks.astype(np.int64).tolist())
    made = {"proto": low.protos}
    for m in dict.fromkeys(out):
        d = names.get(m)
        if d is None or d.kind not in VARIABLE_KINDS or (d.kind in made and m not in made[d.kind]):
            return None
    return out


class Linearizer(Constructors):
    """Turn expressions into linear forms (:class:`LinearValue`) and equations into IR terms."""

    def linear(self, node, env) -> LinearValue:
        """Linearise an equation's right-hand side into terms, or a constant."""
        if self._is_constant(node):
            return LinearValue(const=self._const(node, env), span=node.span)
        return self._linear(node, env)

    def _is_constant(self, node) -> bool:
        """Whether a subtree uses only numbers, parameters, dims, loop variables and math functions."""
        hit = self._constant.get(id(node))
        if hit is None:
            hit = self._constant[id(node)] = constant_tree(node, self)
        return hit

    def _const(self, node, env) -> Expr:
        """Fast path of :meth:`linear` for constant subtrees (checked by ``_is_constant``)."""
        self._tick(node)
        if isinstance(node, BinaryOp):
            return binop(node.op, self._const(node.left, env), self._const(node.right, env))
        if isinstance(node, Name):
            if node.name in env:
                v = env[node.name]
                return v if isinstance(v, Sym) else num_node(v)  # Sym: a family sum's index (_family_sum)
            if node.name in self.values or node.name in self.dims:
                return sym_node(node.name)
            return self._linear(node, env).const  # an unknown name: reports E0101
        if isinstance(node, Number):
            return num_node(node.value)
        if isinstance(node, Negate):
            return neg(self._const(node.operand, env))
        if isinstance(node, Call) and len(node.args) == ir.MATH_FUNCTIONS[node.func][0]:
            args = tuple(self._const(a, env) for a in node.args)
            if node.func == "abs" and isinstance(args[0], Num):
                return num_node(abs(args[0].value))
            return Func(name=node.func, args=args)
        return self._linear(node, env).const  # reports the problem

    def _linear(self, node, env) -> LinearValue:
        self._tick(node)
        span = getattr(node, "span", None)
        if isinstance(node, Number):
            return LinearValue(const=num_node(node.value), span=span)
        if isinstance(node, Name):
            kind, ref = self._kind(node, env)
            if kind == "loop":
                return LinearValue(const=num_node(float(env[ref])), span=span)
            if kind in ("dim", "param"):
                return LinearValue(const=sym_node(ref), span=span)
            if kind in VARIABLE_KINDS:
                term = draft_term(coef=num_node(1), op="identity", sources=(ref,), span=span)
                return LinearValue(terms=[term], span=span)
            if kind == "template":
                return LinearValue(template=(num_node(1), ref), span=span)
            if kind == "matrix":
                return LinearValue(matrix=(num_node(1), ref), span=span)
            if kind == "flow":
                self.fail("E0103", f"`{ref}` is a modality (an output); equations use latents", span, "",
                          f"use the latent that flow `{ref}` reads")
            self.fail("E0103", f"`{ref}` is a {kind} and cannot appear in an equation", span)
        if isinstance(node, Negate):
            return scaled(self.linear(node.operand, env), num_node(-1))
        if isinstance(node, BinaryOp):
            return self._linear_binop(node, env)
        if isinstance(node, Call):
            return self._linear_call(node, env)
        if isinstance(node, (Shape, String, ListLit)):
            self.fail("E0209", "this value cannot appear in an equation", span)
        self.fail("E0209", "unexpected expression", span)

    def _linear_binop(self, node: BinaryOp, env) -> LinearValue:
        a, b = self.linear(node.left, env), self.linear(node.right, env)
        span = node.span
        if node.op in "+-":
            if b.terms == []:  # an empty sum
                return a
            if a.terms == []:
                return b if node.op == "+" else scaled(b, num_node(-1), span)
            if a.const is not None and b.const is not None:
                return LinearValue(const=binop(node.op, a.const, b.const), span=span)
            if a.terms is not None and b.terms is not None:
                rhs = b.terms if node.op == "+" else scaled(b, num_node(-1)).terms
                return LinearValue(terms=a.terms + rhs, span=span)
            if a.const is not None or b.const is not None:
                self.fail("E0201", "a constant added to a variable", span, "latents have mean zero",
                          "each term is coefficient * variable [* template]; drop the constant")
            self.fail("E0201", f"cannot add {a.describe()} and {b.describe()}", span, "",
                      "a template must multiply a scalar cause: rho * u * T")
        if node.op == "*":
            if a.const is not None:
                return scaled(b, a.const, span)
            if b.const is not None:
                return scaled(a, b.const, span)
            if a.template is not None and b.terms is not None:
                return self._spread(b, a.template, span)
            if b.template is not None and a.terms is not None:
                return self._spread(a, b.template, span)
            if a.matrix is not None or b.matrix is not None:
                self.fail("E0201", "a matrix is applied with `@`, not `*`", span, "", "M @ v")
            self.fail("E0201", "term is not linear in proto-latents", span,
                      f"multiplies {a.describe(self.names)} by {b.describe(self.names)}",
                      "each term is coefficient * variable [* template]")
        if node.op == "/":
            if b.const is None:
                self.fail("E0201", f"division by {b.describe()} is not linear", node.right.span, "",
                          "divide by constants only")
            return scaled(a, binop("/", num_node(1), b.const), span)
        if node.op == "^":
            if a.const is not None and b.const is not None:
                return LinearValue(const=binop("^", a.const, b.const), span=span)
            self.fail("E0201", "a power of a variable is not linear", span, "", "powers apply to constants")
        # matrix product
        if a.matrix is None:
            self.fail("E0201", f"`@` needs a matrix on its left, found {a.describe()}", node.left.span, "",
                      "declare one with `matrix M = uniform(rows, cols, seed)`")
        coef, mname = a.matrix
        if b.concat is not None:
            term = draft_term(coef=coef, op="matrix", sources=b.concat, matrix=mname, span=span)
            return LinearValue(terms=[term], span=span)
        if b.terms is not None and all(t.op == "identity" for t in b.terms):
            return LinearValue(terms=[draft_term(coef=mul(coef, t.coef), op="matrix", sources=t.sources, matrix=mname,
                                       span=span) for t in members(b.terms)], span=span)
        self.fail("E0201", f"`@` needs variables on its right, found {b.describe()}", node.right.span, "",
                  "M @ z or M @ concat(z1, z2)")

    def _spread(self, lin: LinearValue, template: tuple[Expr, str], span) -> LinearValue:
        coef, tname = template
        out = []
        for t in members(lin.terms):
            if t.op == "template":
                self.fail("E0201", "a term is multiplied by two templates", span, "",
                          "a template spreads one scalar cause: rho * u * T")
            if t.op != "identity":  # dot(U, z) * T, (M @ z) * T: rank one, through a scalar latent
                t = self._through_scalar(t, tname, span)
            src = t.sources[0]
            size = self._size(src)
            if size not in (1, None):
                self.fail("E0201", f"template `{tname}` multiplies vector `{src}` (size {size})", span,
                          "a template spreads a scalar cause", "use a scalar proto-latent or latent: rho * u * T")
            out.append(draft_term(coef=mul(coef, t.coef), op="template", sources=t.sources, template=tname, span=span))
        return LinearValue(terms=out, span=span)

    def _through_scalar(self, t, tname: str, span):
        """``c * dot(U, z)`` (or ``c * M @ z``, M one row) as ``c * s`` with s a hidden scalar latent.

        ``c * dot(U, z) * T`` is then ``c * s * T``, the rank-one map c T Uᵀ applied to z, exactly as if
        the spec declared ``latent s = dot(U, z)``. The latent's name (``dot(U, z)``) cannot be
        written in a spec; the same product used twice is one latent."""
        if t.op == "dot":
            name = f"dot({t.template}, {t.sources[0]})"
        else:
            m = self.matrices.get(t.matrix)
            if m is None:
                self._failed_before(t.matrix, span)
            if m.rows != 1:
                self.fail("E0201", f"template `{tname}` multiplies `{t.matrix} @ ...`, which has {m.rows} rows",
                          span, "a template spreads a scalar cause", "a matrix with one row gives a scalar")
            srcs = t.sources[0] if len(t.sources) == 1 else f"concat({', '.join(t.sources)})"
            name = f"{t.matrix} @ {srcs}"
        if name not in self.hidden:
            self.hidden[name] = (t._replace(coef=num_node(1)).to_ir(), span)
            self.sizes[name] = 1
        return draft_term(coef=t.coef, op="identity", sources=(name,), span=t.span)

    def hidden_equations(self) -> dict:
        """The hidden scalar latents of rank-one terms, as equations (statement, loop env, terms)."""
        return {name: (Statement(kind="latent", span=span, decl=Decl(name, None, None, span)), {}, [term])
                for name, (term, span) in self.hidden.items()}

    def _linear_call(self, node: Call, env) -> LinearValue:
        f = node.func
        if f == "sum":
            if len(node.args) != 2 or not isinstance(node.args[0], Binder):
                self.fail("E0209", "sum() takes a range and a body", node.span, "", "sum(j in 1..N, rho * n[j])")
            binder, body = node.args
            if binder.var in env or binder.var in self.values or binder.var in self.dims:
                self.fail("E0102", f"`{binder.var}` hides another name", binder.span)
            lo, hi = self._int_range((binder.lo, binder.hi), env, binder.span, allow_empty=True)
            if hi < lo:
                return LinearValue(terms=[], span=node.span)  # an empty sum adds nothing
            self.n_terms += hi - lo + 1
            if self.n_terms > limits.MAX_TERMS:
                self.fail("E0215", f"the equations expand to more than {limits.MAX_TERMS:,} terms", node.span,
                          f"this sum adds {hi - lo + 1:,} terms each time it is expanded",
                          "N latents that each sum over N sources have N^2 terms (a sum over a family costs "
                          "under 1 us a term, other terms about 30 us); use fewer of them or sparser sums")
            if hi - lo + 1 >= limits.FAMILY_TERMS:
                family = self._family_sum(binder.var, body, lo, hi, env)
                if family is not None:
                    return LinearValue(terms=[family], span=node.span)
            self.n_unrolled += hi - lo + 1
            if self.n_unrolled > limits.MAX_UNROLLED_TERMS:  # each an IR node of its own: ~30 us, ~1 kB
                self.fail("E0215", f"the equations expand to more than {limits.MAX_UNROLLED_TERMS:,} terms that "
                          "are not sums over a family", node.span,
                          f"this sum adds {hi - lo + 1:,} terms each time it is expanded",
                          "a long sum stays compact when its body is constants times one family member, "
                          "sum(j in 1..N, c * n[j]); otherwise use fewer or sparser sums")
            parts = [self.linear(body, {**env, binder.var: k}) for k in range(lo, hi + 1)]
            if all(p.const is not None for p in parts):
                acc = parts[0].const
                for p in parts[1:]:
                    acc = binop("+", acc, p.const)
                return LinearValue(const=acc, span=node.span)
            if all(p.terms is not None for p in parts):
                return LinearValue(terms=[t for p in parts for t in p.terms], span=node.span)
            self.fail("E0201", "sum() mixes constants and variables", node.span)
        if f == "dot":
            if len(node.args) != 2:
                self.fail("E0209", "dot() takes a template and a vector variable", node.span, "", "dot(T, z)")
            t = self.template_of(node.args[0], env)
            v = self.linear(node.args[1], env)
            if v.terms is not None:
                v.terms = members(v.terms)
            if v.terms is None or any(x.op != "identity" for x in v.terms):
                self.fail("E0201", "dot() needs a vector variable as its second argument", node.args[1].span)
            return LinearValue(terms=[x._replace(op="dot", template=t.name) for x in v.terms],
                        span=node.span)
        if f == "concat":
            names = []
            for a in node.args:
                if not isinstance(a, Name):
                    self.fail("E0209", "concat() takes variable names", a.span)
                kind, ref = self._kind(a, env)
                if kind not in VARIABLE_KINDS:
                    self.fail("E0103", f"`{ref}` is a {kind}, not a variable", a.span)
                names.append(ref)
            if not names:
                self.fail("E0209", "concat() needs at least one variable", node.span)
            return LinearValue(concat=tuple(names), span=node.span)
        if f in builtins.TEMPLATES:
            t = self.template_of(node, env)
            return LinearValue(template=(num_node(1), t.name), span=node.span)
        if f in ir.MATH_FUNCTIONS:
            arity = ir.MATH_FUNCTIONS[f][0]
            if len(node.args) != arity or any(isinstance(a, (Kwarg, Binder)) for a in node.args):
                self.fail("E0209", f"{f}() takes {arity} argument{'s' * (arity > 1)}", node.span)
            args = [self.linear(a, env) for a in node.args]
            for a, src in zip(args, node.args):
                if a.const is None:
                    self.fail("E0202", f"{f}() of {a.describe()} is not linear", src.span, "",
                              "functions apply to constants only")
            consts = [a.const for a in args]
            if f == "abs" and isinstance(consts[0], Num):
                return LinearValue(const=num_node(abs(consts[0].value)), span=node.span)
            return LinearValue(const=Func(name=f, args=tuple(consts)), span=node.span)
        if f == "size":
            return LinearValue(const=num_node(self.value(node, env)), span=node.span)
        if f in builtins.FLOWS:
            self.fail("E0103", f"`{f}` is a flow; flows belong in `flow` statements", node.span)
        if f in builtins.MATRICES:
            self.fail("E0209", f"`{f}(...)` builds a matrix, which is declared, not written inline", node.span, "",
                      f"matrix M = {builtins.MATRICES[f].signature()}, then M @ z")
        self.fail("E0209", f"unknown function `{f}`", node.func_span, "",
                  did_you_mean(f, builtins.all_function_names()))

    def _family_sum(self, var: str, body, lo: int, hi: int, env):
        """``sum(var in lo..hi, c(var) * f[idx(var)])`` as one family term (:class:`ir.Term` with ``index``).

        The body is linearised once with ``var`` symbolic: its coefficient becomes an expression in
        ``Sym(var)`` (built exactly as :meth:`_linear_binop` scales a term, so each member is the
        coefficient the unrolled sum has), and the index is evaluated at every member at once.
        None where the body is anything else, or anything is wrong (an unknown name, an index
        outside the family ...): the caller then unrolls the sum, which reports the problem at its
        member with its span.
        """
        mark, work = len(self.errors.diagnostics), self.work
        senv = {**env, var: sym_node(var)}
        try:
            found = self._scaled_member(body, senv)
            if found is None:
                return None
            coef, ref, span = found
            sources = member_names(self, ref, self._const(ref.index, senv), var, lo, hi)
        except (Skip, TypeError, KeyError, ValueError):
            sources = None
        if sources is None:
            del self.errors.diagnostics[mark:]
            self.work = work
            return None
        return draft_term(coef=coef, op="identity", sources=sources, span=span)._replace(index=var, first=lo)

    def _scaled_member(self, node, env):
        """(coefficient, the family member's Name, the term's span) of a product of constants and one
        member ``f[...]``, the coefficient combined as :func:`scaled` does; None for anything else."""
        if isinstance(node, Name):
            if node.index is None or node.name not in self.families:
                return None
            return num_node(1), node, node.span
        if self._is_constant(node):
            return None
        if isinstance(node, Negate):
            inner = self._scaled_member(node.operand, env)
            return inner and (mul(num_node(-1), inner[0]), inner[1], inner[2])  # scaled() keeps the span
        if not isinstance(node, BinaryOp) or node.op not in "*/":
            return None
        if node.op == "*" and self._is_constant(node.left):
            c, inner = self._const(node.left, env), self._scaled_member(node.right, env)
        elif self._is_constant(node.right):
            c, inner = self._const(node.right, env), self._scaled_member(node.left, env)
            if node.op == "/":
                c = binop("/", num_node(1), c)
        else:
            return None
        return inner and (mul(c, inner[0]), inner[1], node.span)

    def _size(self, name: str) -> int | None:
        return self.sizes.get(name)

    def constant_expr(self, node, env) -> Expr:
        """A symbolic coefficient: numbers, parameters, dims, loop variables, math functions."""
        lin = self.linear(node, env)
        if lin.const is None:
            self.fail("E0202", f"expected a constant here, found {lin.describe()}", node.span, "",
                      "coefficients may use numbers, parameters and dims only")
        return lin.const

    def _lower_equation(self, node, env) -> list[ir.Term]:
        lin = self.linear(node, env)
        if lin.terms is None:
            self.fail("E0201", f"an equation must be a sum of terms, found {lin.describe()}", node.span, "",
                      "e.g. latent z = rho * u * T + n")
        if not lin.terms:
            self.fail("E0201", "this equation has no terms: every sum in it is empty", node.span, "",
                      "a latent needs at least one term, e.g. latent z = n + sum(j in 3..2, n[j])")
        return [t.to_ir() for t in lin.terms]

    def _lower_variables(self, eqs) -> dict[str, ir.Variable]:
        """Infer each latent's size from its terms (latents may use latents, order-free)."""
        state: dict[str, str] = {}

        def size_of_source(src: str) -> int | None:
            if src in self.protos:
                return self.protos[src].size
            if src in eqs:
                return infer(src)
            return self.sizes.get(src)  # a latent of a covariance block

        def infer(name: str) -> int | None:
            if state.get(name) == "done":
                return self.sizes.get(name)
            if state.get(name) == "busy":
                return None  # a cycle; reported by check
            state[name] = "busy"
            s, env, terms = eqs[name]
            size = None
            for t in terms:
                if t.op == "identity":
                    size = size_of_source(t.sources[0])
                elif t.op == "template":
                    size = self.templates[t.template].size
                elif t.op == "dot":
                    size = 1
                elif t.op == "matrix":
                    size = self.matrices[t.matrix].rows
                if size is not None:
                    break
            if size is not None:
                self.sizes[name] = size
            state[name] = "done"
            return size

        def sources(name: str) -> list[str]:
            return term_sources(eqs[name][2], eqs) if name in eqs else []

        for name in postorder(eqs, sources):  # sources first: infer() then never recurses deeply
            infer(name)
        out = {}
        for name, (s, env, terms) in eqs.items():
            size = infer(name)
            if s.type is not None:
                try:
                    kind, declared, _ = self._type_size(s.type, env)
                except Skip:
                    continue
                if size is not None and size != declared:
                    self.errors.error("E0203", f"`{name}` is declared with size {declared} but its terms have "
                                      f"size {size}", s.type.span)
                size = declared
            # template/scalar checks that needed sizes
            for t in terms:
                if t.op == "template":
                    src_size = size_of_source(t.sources[0])
                    if src_size not in (None, 1):
                        self.errors.error("E0201", f"template `{t.template}` multiplies vector `{t.sources[0]}` "
                                          f"(size {src_size})", t.span, "a template spreads a scalar cause",
                                          "use a scalar proto-latent or latent: rho * u * T")
            out[name] = ir.Variable(name=name, role=s.kind, size=size or 0, terms=tuple(terms), span=s.decl.span)
        return out

