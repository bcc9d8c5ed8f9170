"""Statements: the order of lowering, dims and parameters (with ``--set``), labels and queries."""

from __future__ import annotations

import math
from pathlib import Path

from mmmi_dsl import ir
from mmmi_dsl.errors import OverrideError, did_you_mean
from mmmi_dsl.lang.check import gib, physical_memory, postorder
from mmmi_dsl.lang.laws import check_laws
from mmmi_dsl.lang.literals import literal_value
from mmmi_dsl.lang.lower import limits
from mmmi_dsl.lang.lower.covariance import Covariances
from mmmi_dsl.lang.lower.laws import LawLowering
from mmmi_dsl.lang.lower.scope import Declared, Skip
from mmmi_dsl.lang.syntax import BinaryOp, Binder, Call, Kwarg, ListLit, Name, Negate, Shape, Statement


def names_in(node) -> set[str]:
    """Plain names used by a syntax subtree (for dependency ordering)."""
    out: set[str] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Name):
            out.add(n.name)
            if n.index is not None:
                stack.append(n.index)
        elif isinstance(n, BinaryOp):
            stack += [n.left, n.right]
        elif isinstance(n, Negate):
            stack.append(n.operand)
        elif isinstance(n, Call):
            stack += [a.value if isinstance(a, Kwarg) else a for a in n.args if not isinstance(a, Binder)]
        elif isinstance(n, ListLit):
            stack += list(n.items)
    return out


def parse_shape(text: str) -> tuple[int, ...] | None:
    parts = text.strip().split("x")
    if not all(p.isdigit() for p in parts):
        return None
    shape = tuple(int(p) for p in parts)
    return shape if all(s > 0 for s in shape) else None


class Lowerer(Covariances, LawLowering):
    """One lowering run over a parsed program: :meth:`run` returns the IR."""

    def run(self) -> ir.Model:
        stmts = self.program.statements
        model_name = Path(self.file).stem if self.file != "<string>" else "model"
        model_stmts = [s for s in stmts if s.kind == "model"]
        for s in model_stmts[1:]:
            self.errors.error("E0102", "the model is named twice", s.name_span,
                              "second `model` statement", "keep one `model` line")
        if model_stmts:
            model_name = model_stmts[0].name
        self._check_placement(stmts)
        self._lower_dims([s for s in stmts if s.kind == "dim"])
        self._lower_params([s for s in stmts if s.kind in ("param", "derived")])
        self._check_overrides_used()
        instances = list(self._expand(stmts, {}))
        self._declare(instances)
        for s, env in instances:
            if s.kind == "proto":
                self.attempt(self._lower_proto, s, env)
        for s, env in instances:
            if s.kind == "template":
                self.attempt(self._lower_named_template, s, env)
            elif s.kind == "matrix":
                self.attempt(self._lower_matrix, s, env)
        for s, env in instances:
            if s.kind == "gaussian":
                self.attempt(self._lower_gaussian, s, env)
        eqs: dict[str, tuple[Statement, dict, list[ir.Term]]] = {}
        for s, env in instances:
            if s.kind in ("latent", "target"):
                name = self.attempt(self._decl_name, s.decl, env)
                terms = self.attempt(self._lower_equation, s.value, env) if name is not None else None
                if terms is not None:
                    eqs[name] = (s, env, terms)
        eqs.update(self.hidden_equations())
        variables = {**self._lower_variables(eqs), **self.block_variables}
        flows: dict[str, ir.Flow] = {}
        labels: dict[str, ir.Label] = {}
        reports: list[ir.Query] = []
        solves: list[ir.Solve] = []
        sweeps: list[ir.Sweep] = []
        students: list[ir.StudentGroup] = []
        for s, env in instances:
            if s.kind == "flow":
                f = self.attempt(self._lower_flow, s, env, variables)
                if f is not None:
                    flows[f.name] = f
            elif s.kind == "label":
                lab = self.attempt(self._lower_label, s, env)
                if lab is not None:
                    labels[lab.name] = lab
            elif s.kind == "report":
                q = self.attempt(self.lower_query, s.query, s.unit, env)
                if q is not None:
                    reports.append(q)
            elif s.kind == "solve":
                sv = self.attempt(self._lower_solve, s, env)
                if sv is not None:
                    solves.append(sv)
            elif s.kind == "sweep":
                sw = self.attempt(self._lower_sweep, s, env)
                if sw is not None:
                    sweeps.append(sw)
            elif s.kind == "student":
                g = self.attempt(self.lower_student, s, env)
                if g is not None:
                    students.append(g)
        self.errors.raise_if_any({self.file: self.program.text})
        model = ir.Model(
            name=model_name, source_file=self.file, params=self.params, dims=self.dims,
            protos=self.protos, templates=self.templates, matrices=self.matrices,
            variables=variables, flows=flows, labels=labels, reports=tuple(reports),
            solves=tuple(solves), sweeps=tuple(sweeps),
            families={k: tuple(v) for k, v in self.families.items()}, uniform=self.uniform,
            students=tuple(students), files=dict(sorted(self.files.items())))
        check_laws(model, self.errors)  # lang/laws.py: what no closed form covers
        self.errors.raise_if_any({self.file: self.program.text})
        return model

    def _lower_dims(self, stmts: list[Statement]) -> None:
        by_name: dict[str, Statement] = {}
        for s in stmts:
            if s.name in by_name:
                self.errors.error("E0102", f"dim `{s.name}` is defined twice", s.name_span,
                                  "", f"first defined on line {by_name[s.name].span.line}")
                continue
            by_name[s.name] = s
            self.names[s.name] = Declared("dim", s.name_span, s)
        self._in_dependency_order(by_name, "dims", self._lower_dim)

    def _in_dependency_order(self, by_name: dict[str, Statement], what: str, lower_one) -> None:
        """Lower each statement after the ones its right-hand side names; a cycle is E0205.

        A statement that fails (its diagnostic recorded) counts as done, so the ones
        that depend on it are still tried and no false cycle is reported.
        """
        failed: set[str] = set()

        def deps(name: str) -> list[str]:
            return sorted(d for d in names_in(by_name[name].value) if d in by_name and d != name)

        def cycle(path: list[str], dep: str) -> None:  # the statement that closes it fails, and its chain
            if dep in failed:
                return
            cyc = " -> ".join(path[path.index(dep):] + [dep])
            self.attempt(self.fail, "E0205", f"{what} depend on each other in a cycle: {cyc}",
                      by_name[dep].name_span, "", "give one of them a value that does not use the others")
            failed.update(path)

        for name in postorder(by_name, deps, on_cycle=cycle):
            if name not in failed:
                self.attempt(lower_one, by_name[name])

    def _lower_dim(self, s: Statement) -> None:
        over = self.overrides.pop(s.name, None)
        if over is not None:
            shape = parse_shape(over)
            if shape is None:
                raise OverrideError(f"{s.name}={over}", "a dim takes a positive integer or a shape like 3x32x32")
            value = math.prod(shape)
            if value > limits.MAX_VECTOR_SIZE:
                raise OverrideError(f"{s.name}={over}", f"{value:,} values, more than the limit of "
                                    f"{limits.MAX_VECTOR_SIZE:,}; "
                                 f"one vector of this size needs {gib(value * 8)} as float64 (this machine has "
                                 f"{gib(physical_memory())})")
            self.dims[s.name] = ir.Dim(name=s.name, value=value, shape=shape if len(shape) > 1 else None,
                                       span=s.name_span)
            return
        if isinstance(s.value, Shape):
            shape = s.value.dims
            if any(d <= 0 for d in shape):
                self.fail("E0206", "shape sizes must be positive", s.value.span)
            self.check_vector_size(math.prod(shape), s.value.span)
            self.dims[s.name] = ir.Dim(name=s.name, value=math.prod(shape), shape=shape, span=s.name_span)
            return
        if isinstance(s.value, Name) and s.value.name in self.dims and self.dims[s.value.name].shape:
            src = self.dims[s.value.name]
            self.dims[s.name] = ir.Dim(name=s.name, value=src.value, shape=src.shape, span=s.name_span)
            return
        v = self.int_value(s.value, {}, "size")
        if v <= 0:
            self.fail("E0206", f"dim `{s.name}` must be positive, got {v}", s.value.span)
        if v > limits.MAX_VECTOR_SIZE:
            self.fail("E0215", f"dim `{s.name}` = {v:,} is larger than {limits.MAX_VECTOR_SIZE:,}: "
                      "one vector of this size "
                      f"needs {gib(v * 8)} as float64", s.value.span, "",
                      f"the exact-MI engine keeps several vectors of each size; this machine has "
                      f"{gib(physical_memory())}")
        self.dims[s.name] = ir.Dim(name=s.name, value=v, span=s.name_span)

    def _lower_params(self, stmts: list[Statement]) -> None:
        plain = [s for s in stmts if s.kind == "param"]
        derived = [s for s in stmts if s.kind == "derived"]
        for s in stmts:
            if s.name in self.names:
                prev = self.names[s.name]
                self.errors.error("E0102", f"`{s.name}` is defined twice", s.name_span, "",
                                  f"first defined as a {prev.kind} on line {prev.span.line}")
                continue
            self.names[s.name] = Declared("param", s.name_span, s)
        for s in plain:
            if self.names[s.name].stmt is not s:
                continue
            try:
                self._lower_param(s)
            except Skip:
                pass
        by_name = {s.name: s for s in derived if self.names[s.name].stmt is s}
        self._in_dependency_order(by_name, "derived parameters", self._lower_derived)

    def _lower_derived(self, s: Statement) -> None:
        if s.name in self.overrides:
            raise OverrideError(s.name, f"`{s.name}` is derived (`{s.name} := ...`); set the parameters it uses")
        expr = self.constant_expr(s.value, {})
        try:
            value = ir.evaluate(expr, {**self.values, **{d.name: float(d.value) for d in self.dims.values()}})
        except (ValueError, ZeroDivisionError, OverflowError):
            value = math.nan
        if isinstance(value, complex) or not math.isfinite(value):  # complex: a negative base to a fractional power
            self.fail("E0212", f"`{s.name}` is not a finite real number at the parameters' values", s.value.span)
        self.values[s.name] = value
        self.params[s.name] = ir.Param(name=s.name, value=value, derived=expr, span=s.name_span)

    def _lower_param(self, s: Statement) -> None:
        bounds = None
        if s.interval is not None:
            lo = self.value(s.interval.lo, {}, allow_params=False)
            hi = self.value(s.interval.hi, {}, allow_params=False)
            if hi <= lo:
                self.fail("E0206", f"empty interval: {lo:g} is not below {hi:g}", s.interval.span)
            bounds = ir.Interval(lower=lo, upper=hi, lower_open=s.interval.lo_open, upper_open=s.interval.hi_open)
        over = self.overrides.pop(s.name, None)
        if over is not None:
            value, problem = literal_value(over)  # the language's own number syntax: no `1_0`, no `inf`
            if problem:
                raise OverrideError(f"{s.name}={over}", problem)
            if bounds is not None and not bounds.contains(value):
                raise OverrideError(f"{s.name}={over}", f"outside the bounds {bounds.text()} of `{s.name}`")
        else:
            value = self.value(s.value, {}, allow_params=False)
            if bounds is not None and not bounds.contains(value):
                self.fail("E0207", f"the default {value:g} of `{s.name}` is outside its bounds {bounds.text()}",
                          s.value.span, "", "change the default or widen the bounds")
        self.values[s.name] = value
        self.params[s.name] = ir.Param(name=s.name, value=value, bounds=bounds, span=s.name_span)

    def _check_overrides_used(self) -> None:
        if self.overrides:
            known = sorted(set(self.dims) | {p for p, v in self.params.items() if v.derived is None})
            bad = ", ".join(sorted(self.overrides))
            raise OverrideError(None, f"unknown name {bad}; known parameters and dims: {', '.join(known) or '(none)'}")

    def _lower_label(self, s: Statement, env) -> ir.Label:
        name = self._decl_name(s.decl, env)
        lin = self.linear(s.value, env)
        if not lin.terms:
            self.fail("E0213", "a label thresholds a linear function of variables", s.value.span, "",
                      "label y = dot(w, z) > 0  or  label y = theta > 0")
        threshold = self.constant_expr(s.rhs, env)
        return ir.Label(name=name, terms=tuple(t.to_ir() for t in lin.terms), comparison=s.compare, threshold=threshold,
                        span=s.decl.span)

    def resolve_var(self, v, env) -> str:
        if v.index is None and v.name in self.families:
            self.fail("E0211", f"`{v.name}` is a family; name its members", v.span, "",
                      f"e.g. {v.name}[1], or a list {v.name}[1], {v.name}[2]")
        node = Name(v.name, v.index, v.span)
        kind, ref = self._kind(node, env)
        if kind not in ("proto", "latent", "target", "flow", "label"):
            self.fail("E0211", f"`{ref}` is a {kind}; queries name variables", v.span, "",
                      "modalities, latents, targets, proto-latents or labels")
        return ref

    def lower_query(self, q, unit: str, env, text: str | None = None) -> ir.Query:
        groups = tuple(tuple(self.resolve_var(v, env) for v in g) for g in q.groups)
        given = tuple(self.resolve_var(v, env) for v in q.given)
        if q.op == "I" and len(groups) != 2:
            self.fail("E0211", f"I(...) takes two groups separated by `;`, got {len(groups)}", q.span, "",
                      "use TC(a; b; c) for total correlation or II(a; b; c) for interaction information")
        if q.op == "II" and len(groups) != 3:
            self.fail("E0211", "II(...) takes three groups", q.span)
        if q.op in ("TC", "II") and given:
            self.fail("E0211", f"{q.op}(...) takes no `| given` part", q.span)
        if q.op in ir.LIMIT_KINDS and (len(groups) != 1 or len(groups[0]) != 1):
            what = "a label" if q.op == "ACC" else "a scalar variable"
            self.fail("E0211", f"{q.op}(...) takes one variable ({what}) and what is given, "
                      f"got {sum(len(g) for g in groups)} variables before `|`", q.span, "",
                      f"e.g. {q.op}({'y' if q.op == 'ACC' else 'theta'} | x1, x2); one query per target")
        if text is None:
            body = "; ".join(", ".join(g) for g in groups)
            if given:
                body += " | " + ", ".join(given)
            text = f"{q.op}({body})"
        return ir.Query(kind=q.op, groups=groups, given=given, unit=unit, text=text, span=q.span)

    def _lower_solve(self, s: Statement, env) -> ir.Solve:
        p = self.params.get(s.name)
        if p is None or p.derived is not None:
            self.fail("E0103" if p else "E0101", f"`{s.name}` is not a free parameter", s.name_span, "",
                      did_you_mean(s.name, [k for k, v in self.params.items() if v.derived is None]))
        lo = self.value(s.interval.lo, env, allow_params=False)
        hi = self.value(s.interval.hi, env, allow_params=False)
        if hi <= lo:
            self.fail("E0206", f"empty bracket: {lo:g} is not below {hi:g}", s.interval.span)
        bracket = ir.Interval(lower=lo, upper=hi, lower_open=s.interval.lo_open, upper_open=s.interval.hi_open)
        q = self.lower_query(s.query, s.unit, env)
        if q.kind in ir.LIMIT_KINDS:
            self.fail("E0211", f"solve takes an information quantity; {q.kind}(...) is a limit of prediction",
                      s.query.span, "", f"tabulate it instead: sweep {s.name} in linspace(a, b, n): report {q.text}")
        value = self.value(s.value, env, allow_params=False)
        if value < 0:
            self.fail("E0207", "mutual information is never negative", s.value.span)
        return ir.Solve(param=s.name, bracket=bracket, query=q, value=value, span=s.span)

    def _lower_sweep(self, s: Statement, env) -> ir.Sweep:
        p = self.params.get(s.name)
        if p is None or p.derived is not None:
            self.fail("E0103" if p else "E0101", f"`{s.name}` is not a free parameter", s.name_span, "",
                      did_you_mean(s.name, [k for k, v in self.params.items() if v.derived is None]))
        node = s.value
        if isinstance(node, ListLit):
            values = tuple(self.value(v, env, allow_params=False) for v in node.items)
        elif isinstance(node, Call) and node.func in ("linspace", "logspace"):
            if len(node.args) != 3:
                self.fail("E0209", f"{node.func}() takes (start, stop, count)", node.span)
            a = self.value(node.args[0], env, allow_params=False)
            b = self.value(node.args[1], env, allow_params=False)
            n = self.int_value(node.args[2], env, "count")
            if not 1 <= n <= limits.MAX_VARIABLES:
                self.fail("E0206", f"a sweep has 1 to {limits.MAX_VARIABLES:,} points, got {n}", node.args[2].span)
            if node.func == "linspace":
                values = tuple(a + (b - a) * i / (n - 1) if n > 1 else a for i in range(n))
            else:
                values = tuple(10 ** (a + (b - a) * i / (n - 1)) if n > 1 else 10 ** a for i in range(n))
        else:
            self.fail("E0209", "a sweep runs over linspace(a, b, n), logspace(a, b, n) or a list [v1, v2]",
                      node.span)
        if not values:
            self.fail("E0206", "a sweep needs at least one value", node.span)
        if p.bounds is not None:
            for v in values:
                if not p.bounds.contains(v):
                    self.fail("E0207", f"sweep value {v:g} is outside the bounds {p.bounds.text()} of `{s.name}`",
                              node.span)
        q = self.lower_query(s.report.query, s.report.unit, env)
        return ir.Sweep(param=s.name, values=values, query=q, span=s.span)

