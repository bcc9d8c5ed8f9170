"""Matrices given by their entries, and blocks of latents given by their covariance.

``matrix S = [[1, 0.5], [0.5, 1]]``, ``equicorrelation(k, rho)``, ``diagonal([...])`` and
``blockdiag(A, B, ...)`` are kept with their exact (rational) entries as well as their float64 ones.
``latent a, b : vector[2] ~ gaussian(cov = S)`` declares latents whose concatenation is N(0, S):
it lowers to matrix terms ``F_a @ ε`` over fresh vector proto-latents ε, one per connected
component of S, with F from :func:`mmmi_dsl.lang.lower.factor.factor` (rank decided exactly up to
``EXACT_LIMIT`` coordinates). Entries are numbers, dims and loop variables (not parameters: the
factor is computed once, here).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from mmmi_dsl import builtins, ir
from mmmi_dsl.builtins.matrices import VALUES_KIND
from mmmi_dsl.builtins.realize import matrix_array
from mmmi_dsl.ir import Span
from mmmi_dsl.lang.check import gib
from mmmi_dsl.lang.lower import limits
from mmmi_dsl.lang.lower.algebra import num_node
from mmmi_dsl.lang.lower.factor import NotPositiveSemidefinite, factor
from mmmi_dsl.lang.lower.linear import Linearizer
from mmmi_dsl.lang.syntax import BinaryOp, Call, ListLit, Name, Negate, Number, Statement

#: Matrix constructors lowered here (kept with exact entries).
EXACT_KINDS = ("equicorrelation", "diagonal", "blockdiag")

#: Entries S_ij and S_ji closer than this times max |S| are averaged (roundoff of A @ A.T); else E0207.
SYMMETRY_RTOL = 8 * float(np.finfo(np.float64).eps)

Exact = list[list[Fraction]]


#: the largest exact power kept as a fraction (bits of numerator or denominator); beyond it the
#: entry is evaluated in float64, where it overflows with E0212 instead of growing without bound
MAX_EXACT_BITS = 4096


class Covariances(Linearizer):
    """Matrices with exact entries and ``latent ... ~ gaussian(cov = S)`` blocks."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.exact_entries: dict[str, Exact] = {}
        self.block_variables: dict[str, ir.Variable] = {}
        self._lowering_matrices: set[str] = set()

    # ------------------------------------------------------------ exact numbers and matrices

    def exact_number(self, node, env) -> Fraction:
        """A constant as an exact rational: literals as written (0.1 is 1/10), + - * / and integer
        powers exactly; anything else (sqrt, exp, ...) as its float64 value."""
        self._tick(node)
        if isinstance(node, Number):
            return Fraction(repr(node.value))
        if isinstance(node, Name) and node.index is None:
            if node.name in env:
                return Fraction(env[node.name])
            if node.name in self.dims:
                return Fraction(self.dims[node.name].value)
            if node.name in self.values:
                self.fail("E0202", f"parameter `{node.name}` cannot be used in a matrix's entries", node.span, "",
                          "a covariance is factored once, when the spec is checked, so its entries are numbers; "
                          "for a correlation that a parameter varies write equations "
                          "(latent b = rho * n1 + sqrt(1 - rho^2) * n2)")
        if isinstance(node, Negate):
            return -self.exact_number(node.operand, env)
        if isinstance(node, BinaryOp) and node.op in "+-*/^":
            a = self.exact_number(node.left, env)
            b = self.exact_number(node.right, env)
            if node.op == "+":
                return a + b
            if node.op == "-":
                return a - b
            if node.op == "*":
                return a * b
            if node.op == "/":
                if b == 0:
                    self.fail("E0212", "division by zero", node.span)
                return a / b
            bits = max(a.numerator.bit_length(), a.denominator.bit_length()) * abs(b)
            if b.denominator == 1 and abs(b) <= 64 and (a != 0 or b >= 0) and bits <= MAX_EXACT_BITS:
                return a ** int(b)
        return Fraction(self.value(node, env, allow_params=False))

    def _rows(self, node: ListLit, env) -> Exact:
        rows = []
        for item in node.items:
            if not isinstance(item, ListLit):
                self.fail("E0209", "a matrix is written as a list of rows", item.span, "",
                          "[[1, 0.5], [0.5, 1]]")
            rows.append([self.exact_number(x, env) for x in item.items])
        if not rows or not rows[0]:
            self.fail("E0206", "a matrix needs at least one row and one column", node.span)
        for item, row in zip(node.items, rows):
            if len(row) != len(rows[0]):
                self.fail("E0203", f"this row has {len(row)} entr{'y' if len(row) == 1 else 'ies'} but the first "
                          f"has {len(rows[0])}", item.span)
        self.check_matrix_entries(len(rows), len(rows[0]), node.span)
        return rows

    def check_matrix_entries(self, rows: int, cols: int, span: Span | None) -> None:
        if rows * cols > limits.MAX_MATRIX_ENTRIES:
            self.fail("E0215", f"matrix {rows}x{cols} needs {gib(rows * cols * 8)} as float64", span, "",
                      f"at most {limits.MAX_MATRIX_ENTRIES:,} entries are allowed")

    def matrix_call(self, call, env, m: str, span: Span | None) -> ir.Matrix:
        """Rows and the exact constructors here; the others as :class:`Constructors` builds them."""
        if isinstance(call, ListLit):
            entries = self._rows(call, env)
        elif isinstance(call, Call) and call.func in EXACT_KINDS:
            entries = self._exact_call(call, env)
        else:
            return super().matrix_call(call, env, m, span)
        rows, cols = len(entries), len(entries[0])
        if isinstance(call, Call) and call.func == "equicorrelation":
            mat = ir.Matrix(name=m, kind="equicorrelation", rows=rows, cols=cols,
                            args={"rho": float(entries[0][1]) if rows > 1 else 0.0}, span=span)
        elif isinstance(call, Call) and call.func == "diagonal":
            mat = ir.Matrix(name=m, kind="diagonal", rows=rows, cols=cols,
                            args={"values": tuple(float(entries[i][i]) for i in range(rows))}, span=span)
        else:
            mat = ir.Matrix(name=m, kind=VALUES_KIND, rows=rows, cols=cols,
                            args={"values": tuple(tuple(float(x) for x in row) for row in entries)}, span=span)
        self.exact_entries[m] = entries
        return mat

    def _exact_call(self, call: Call, env) -> Exact:
        builtin = builtins.MATRICES[call.func]
        if call.func == "blockdiag":
            parts = [self.exact_matrix(a, env) for a in call.args]
            if len(parts) < 2:
                self.fail("E0209", "blockdiag() takes two or more matrices", call.span, "", "blockdiag(A, B)")
            rows, cols = sum(len(p) for p in parts), sum(len(p[0]) for p in parts)
            self.check_matrix_entries(rows, cols, call.span)
            out = [[Fraction(0)] * cols for _ in range(rows)]
            r = c = 0
            for p in parts:
                for i, row in enumerate(p):
                    out[r + i][c:c + len(row)] = row
                r, c = r + len(p), c + len(p[0])
            return out
        a = self.bind(call, builtin)
        if call.func == "diagonal":
            node = a["values"]
            if not isinstance(node, ListLit) or not node.items:
                self.fail("E0209", "diagonal() takes a list of its entries", node.span, "", "diagonal([1, 2, 0.5])")
            values = [self.exact_number(x, env) for x in node.items]
            self.check_matrix_entries(len(values), len(values), call.span)
            return [[values[i] if i == j else Fraction(0) for j in range(len(values))] for i in range(len(values))]
        size = self.int_value(a["size"], env, "size")
        if not 1 <= size:
            self.fail("E0206", f"equicorrelation() needs a positive size, got {size}", a["size"].span)
        self.check_matrix_entries(size, size, call.span)
        self.number_arg(builtin, "rho", a["rho"], env)  # bounds, with the argument's position
        rho = self.exact_number(a["rho"], env)
        return [[Fraction(1) if i == j else rho for j in range(size)] for i in range(size)]

    def exact_matrix(self, node, env) -> Exact:
        """The exact entries of a matrix expression: a declared matrix, a constructor call or rows.

        Matrices realised in float64 (random, .npy) are exact as the float64 values they are."""
        if isinstance(node, ListLit):
            return self._rows(node, env)
        if isinstance(node, Name):
            declared = self.names.get(node.name) if node.index is None else None
            if declared is not None and declared.kind == "matrix" and node.name not in self.matrices:
                self._lower_declared_matrix(node.name, node.span)  # declared further down
            kind, ref = self._kind(node, env)
            if kind != "matrix":
                self.fail("E0103", f"`{ref}` is a {kind}, not a matrix", node.span)
            if ref not in self.exact_entries:
                arr = matrix_array(self.matrices[ref])
                self.exact_entries[ref] = [[Fraction(float(x)) for x in row] for row in arr]
            return self.exact_entries[ref]
        if isinstance(node, Call) and node.func in builtins.MATRICES:
            if node.func in EXACT_KINDS:
                return self._exact_call(node, env)
            arr = matrix_array(super().matrix_call(node, env, node.func, node.span))
            return [[Fraction(float(x)) for x in row] for row in arr]
        self.fail("E0209", "expected a matrix: a name, a constructor or rows [[a, b], [c, d]]",
                  getattr(node, "span", None), "", ", ".join(f"{b.name}(...)" for b in builtins.MATRICES.values()))

    def _lower_declared_matrix(self, ref: str, span) -> None:
        """Lower a matrix declared further down, which this one is built from (declarations are order-free)."""
        decl = self.names[ref]
        if ref in self._lowering_matrices:
            self.fail("E0205", f"matrix `{ref}` is built from itself", span)
        self._lowering_matrices.add(ref)
        try:
            self._lower_matrix(decl.stmt, decl.env)
        finally:
            self._lowering_matrices.discard(ref)
        if ref not in self.matrices:
            self._failed_before(ref, span)

    # ------------------------------------------------------------ latent a, b ~ gaussian(cov = S)

    def _lower_gaussian(self, s: Statement, env) -> None:
        call = s.value
        if not isinstance(call, Call) or call.func not in builtins.DISTRIBUTIONS:
            what = f"`{call.func}(...)` is not a distribution" if isinstance(call, Call) else \
                "`~` is followed by a distribution"
            self.fail("E0209", what, call.span, "", f"distributions: {', '.join(builtins.DISTRIBUTIONS)}; "
                      "latent a, b ~ gaussian(cov = [[1, 0.5], [0.5, 1]])")
        bound = self.bind(call, builtins.DISTRIBUTIONS[call.func])
        if call.func != "gaussian":  # a distribution added to the table needs its own lowering, never this one
            self.fail("E0209", f"blocks of `{call.func}(...)` latents are not lowered here", call.span)
        cov = bound["cov"]
        members: list[tuple[str, int | None, Span]] = []
        size: int | None = None  # as in Go, `a, b : vector[2]` types both: a name takes the next type given
        for decl, type_ann in reversed(s.decls):
            if type_ann is not None:
                if type_ann.name == "image":
                    self.fail("E0209", "a latent's type is scalar or vector[d]", type_ann.span)
                size = self._type_size(type_ann, env)[1]
            members[:0] = [(name, size, decl.span) for name in self._members_of(decl, env)]
        entries = self.exact_matrix(cov, env)
        n = len(entries)
        if len(entries[0]) != n:
            self.fail("E0203", f"a covariance is square; this one is {n}x{len(entries[0])}", cov.span)
        if n > limits.MAX_COVARIANCE:
            self.fail("E0215", f"a covariance of {n:,} coordinates is more than {limits.MAX_COVARIANCE:,}",
                      cov.span, "its factor takes n^3 work", "split it into independent blocks")
        if len(members) == 1 and members[0][1] is None:
            members[0] = (members[0][0], n, members[0][2])
        sizes = [1 if size is None else size for _, size, _ in members]
        if sum(sizes) != n:
            listed = ", ".join(f"`{name}` ({k})" for (name, _, _), k in zip(members, sizes))
            self.fail("E0203", f"the covariance is {n}x{n} but the latents {listed} have {sum(sizes)} values",
                      cov.span, f"{n} coordinates", "give each latent its size: `a, b : vector[2]` types both, "
                      "names after the last type are scalars, and one untyped name takes the whole covariance")
        entries = self._symmetric(entries, cov.span)
        try:
            parts = factor(entries)
        except NotPositiveSemidefinite as err:
            self.fail("E0207", "the covariance is not positive semi-definite: its smallest eigenvalue is "
                      f"{err.smallest:.6g}", cov.span, "a covariance has no negative eigenvalue",
                      "check its entries: every correlation in [-1, 1] is not enough, the whole matrix must be "
                      "positive semi-definite (equicorrelation(k, rho) needs rho >= -1/(k - 1))")
        base = f"{call.func}({', '.join(name for name, _, _ in members)})"
        protos = []
        for k, part in enumerate(parts):
            pname = base if len(parts) == 1 else f"{base}[{k + 1}]"
            self.protos[pname] = ir.Proto(name=pname, kind="vector", size=part.rank, size_expr=num_node(part.rank),
                                          span=s.span)
            self.sizes[pname] = part.rank
            protos.append(pname)
        offset = 0
        for (name, _, span), size in zip(members, sizes):
            terms = []
            for pname, part in zip(protos, parts):
                rows = [(c - offset, i) for i, c in enumerate(part.coords) if offset <= c < offset + size]
                if not rows:
                    continue
                f = np.zeros((size, part.rank))
                for r, i in rows:
                    f[r] = part.factor[i]
                mname = f"{pname} -> {name}"
                self.matrices[mname] = ir.Matrix(name=mname, kind=VALUES_KIND, rows=size, cols=part.rank,
                                                 args={"values": tuple(tuple(row) for row in f.tolist())}, span=span)
                terms.append(ir.Term(coef=num_node(1), op="matrix", sources=(pname,), matrix=mname, span=span))
            self.block_variables[name] = ir.Variable(name=name, role="latent", size=size, terms=tuple(terms),
                                                     span=span)
            self.sizes[name] = size
            offset += size

    def _members_of(self, decl, env) -> list[str]:
        if decl.range is not None:
            lo, hi = self._int_range(decl.range, env, decl.span)
            return [f"{decl.name}[{k}]" for k in range(lo, hi + 1)]
        return [self._decl_name(decl, env)]

    def _symmetric(self, s: Exact, span) -> Exact:
        """S with S_ij and S_ji averaged where they differ by roundoff (SYMMETRY_RTOL); E0207 where more."""
        n = len(s)
        s = [list(row) for row in s]  # the declared matrix's own entries stay as written
        top = max((abs(x) for row in s for x in row), default=Fraction(0))
        for i in range(n):
            for j in range(i + 1, n):
                a, b = s[i][j], s[j][i]
                if a != b:
                    if abs(a - b) > SYMMETRY_RTOL * top:
                        self.fail("E0207", f"the covariance is not symmetric: entry ({i + 1}, {j + 1}) is "
                                  f"{float(a):.6g} but ({j + 1}, {i + 1}) is {float(b):.6g}", span, "",
                                  "a covariance equals its transpose")
                    s[i][j] = s[j][i] = (a + b) / 2
        return s
