"""Stage 3, check: whole-model rules on a lowered IR.

- the latent graph is acyclic (the cycle is printed);
- every term's size agrees with its left-hand side (identity: same size;
  template: template size = latent size, source scalar; dot: template size =
  source size; matrix: rows = latent size, cols = total size of the sources);
- targets and label scores are scalar;
- labels appear in queries only as ``I(label; X | C)``, alone on their side.

All problems are collected into one :class:`~mmmi_dsl.errors.SpecError`.
"""

from __future__ import annotations

from . import ir
from .errors import Collector


def check(model: ir.Model, sources: dict[str, str] | None = None) -> ir.Model:
    """Run every check; return the model unchanged or raise SpecError."""
    errors = Collector()
    _check_cycles(model, errors)
    for v in model.variables.values():
        _check_terms(model, v.name, v.size, v.terms, errors)
        if v.role == "target" and v.size != 1:
            errors.error("E0204", f"target `{v.name}` is not scalar (size {v.size})", v.span, "",
                         "a target is a scalar: target theta = eta * u")
    for lab in model.labels.values():
        _check_terms(model, lab.name, 1, lab.terms, errors)
    for q in list(model.reports) + [s.query for s in model.solves] + [s.query for s in model.sweeps]:
        check_query(model, q, errors)
    errors.raise_if_any(sources)
    return model


def _check_cycles(model: ir.Model, errors: Collector) -> None:
    graph = {name: [s for t in v.terms for s in t.sources if s in model.variables]
             for name, v in model.variables.items()}
    state: dict[str, int] = {}
    reported: set[frozenset] = set()

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        path.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    errors.error("E0205", "the causal graph has a cycle: " + " -> ".join(cycle),
                                 model.variables[nxt].span, "this latent depends on itself",
                                 "structural equations must form a DAG; remove one of the edges")
            elif state.get(nxt) is None:
                visit(nxt, path)
        path.pop()
        state[node] = 2

    for name in graph:
        if state.get(name) is None:
            visit(name, [])


def _size(model: ir.Model, name: str) -> int:
    try:
        return model.size_of(name)
    except KeyError:
        return 0


def _check_terms(model: ir.Model, lhs: str, size: int, terms, errors: Collector) -> None:
    if size == 0:
        return  # unknown because of a cycle, already reported
    for t in terms:
        src_sizes = [_size(model, s) for s in t.sources]
        if 0 in src_sizes:
            continue
        if t.op == "identity" and src_sizes[0] != size:
            errors.error("E0203", f"`{t.sources[0]}` has size {src_sizes[0]} but `{lhs}` has size {size}", t.span,
                         f"size {src_sizes[0]}", "add a template to spread a scalar, or use a matching size")
        elif t.op == "template":
            tsize = model.templates[t.template].size
            if tsize != size:
                errors.error("E0203", f"template `{t.template}` has {tsize} entries but `{lhs}` has size {size}",
                             t.span, f"{tsize} entries", "the template's length must equal the latent's size")
        elif t.op == "dot":
            tsize = model.templates[t.template].size
            if tsize != src_sizes[0]:
                errors.error("E0203", f"dot(): template `{t.template}` has {tsize} entries but `{t.sources[0]}` "
                             f"has size {src_sizes[0]}", t.span)
            if size != 1:
                errors.error("E0203", f"dot() gives a scalar but `{lhs}` has size {size}", t.span)
        elif t.op == "matrix":
            m = model.matrices[t.matrix]
            total = sum(src_sizes)
            if m.cols != total or m.rows != size:
                errors.error("E0203", f"matrix `{m.name}` is {m.rows}x{m.cols} but maps size {total} to size {size}",
                             t.span, f"needs {size}x{total}", "the matrix shape is (latent size) x (input size)")


def check_query(model: ir.Model, q: ir.Query, errors: Collector) -> None:
    """Rules on labels inside queries (names were resolved by lowering)."""
    sides = list(q.groups) + ([q.given] if q.given else [])
    for i, side in enumerate(sides):
        labels = [n for n in side if n in model.labels]
        if not labels:
            continue
        if q.kind != "I" or i >= 2:
            errors.error("E0211", f"label `{labels[0]}` can only appear as I(label; X | C)", q.span, "",
                         "labels are binary; their MI is computed by quadrature against Gaussian sets")
        elif len(side) > 1:
            errors.error("E0211", f"label `{labels[0]}` must be alone on its side of I(...)", q.span)
    if q.kind == "I" and all(any(n in model.labels for n in g) for g in q.groups):
        errors.error("E0211", "I(label; label) between two labels is not supported", q.span, "",
                     "put Gaussian variables (modalities, latents, targets) on one side")
