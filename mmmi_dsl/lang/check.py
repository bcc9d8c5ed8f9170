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

import os
from collections.abc import Callable, Iterable

from mmmi_dsl import ir
from mmmi_dsl.errors import Collector
from mmmi_dsl.lang.coef import unroll


def check(model: ir.Model, sources: dict[str, str] | None = None) -> ir.Model:
    """Run every check; return the model unchanged or raise SpecError."""
    errors = Collector()
    _check_memory(model, errors)
    _check_cycles(model, errors)
    memo: dict = {}
    for v in model.variables.values():
        _check_terms(model, v.name, v.size, v.terms, errors, memo)
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
    graph = {name: term_sources(v.terms, model.variables) for name, v in model.variables.items()}
    reported: set[frozenset] = set()

    def report(path: list[str], nxt: str) -> None:
        cycle = path[path.index(nxt):] + [nxt]
        key = frozenset(cycle)
        if key not in reported:
            reported.add(key)
            errors.error("E0205", "the causal graph has a cycle: " + " -> ".join(cycle),
                         model.variables[nxt].span, "this latent depends on itself",
                         "structural equations must form a DAG; remove one of the edges")

    postorder(graph, graph.__getitem__, on_cycle=report)


def term_sources(terms, known: dict) -> list[str]:
    """The sources of ``terms`` that are keys of ``known``, in order, repeats kept.

    A family term of N proto-latents (decay's ``sum(j in 1..N, ...)``) that names no key costs
    one set test in C instead of N in Python (N^2 tests per model at N latents).
    """
    keys = known.keys()
    return [s for t in terms if not keys.isdisjoint(t.sources) for s in t.sources if s in known]


def postorder(roots: Iterable[str], children: Callable[[str], Iterable[str]],
              on_cycle: Callable[[list[str], str], None] | None = None) -> list[str]:
    """Every node reachable from ``roots``, each after the nodes it points to.

    Depth-first with an explicit stack (no recursion limit on long chains). An edge
    back to a node on the current path closes a cycle: ``on_cycle(path, node)`` is
    called (``path`` from the root to here) and the edge is cut.
    """
    state: dict[str, int] = {}  # 1: on the path, 2: done
    out: list[str] = []
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        path, stack = [root], [iter(children(root))]
        while stack:
            for c in stack[-1]:
                if state.get(c) == 1:
                    if on_cycle is not None:
                        on_cycle(path, c)
                elif c not in state:
                    state[c] = 1
                    path.append(c)
                    stack.append(iter(children(c)))
                    break
            else:
                stack.pop()
                node = path.pop()
                state[node] = 2
                out.append(node)
    return out


def variable_order(model: ir.Model, roots: Iterable[str] | None = None) -> list[str]:
    """Variables (those reachable from ``roots``, default all), each after the variables it uses."""
    def sources(name: str) -> list[str]:
        v = model.variables.get(name)
        return term_sources(v.terms, model.variables) if v else []
    return [n for n in postorder(model.variables if roots is None else roots, sources) if n in model.variables]


def _size(model: ir.Model, name: str) -> int:
    try:
        return model.size_of(name)
    except KeyError:
        return 0


def _check_terms(model: ir.Model, lhs: str, size: int, terms, errors: Collector, memo: dict | None = None) -> None:
    if size == 0:
        return  # unknown because of a cycle, already reported
    for t in terms:
        if t.index is not None:  # a family term: checked as its members would be, at the cost of one
            sizes = memo.get(t.sources) if memo is not None else None
            if sizes is None:
                sizes = {_size(model, s) for s in t.sources}
                if memo is not None:
                    memo[t.sources] = sizes  # decay: N latents sum over the same N members
            if sizes - {0, size if t.op == "identity" else 1}:
                _check_terms(model, lhs, size, unroll(t), errors)  # some member is wrong: say which
            elif t.op == "template":
                _check_terms(model, lhs, size, unroll(t, limit=1), errors)  # the template's size, once
            continue
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
    """Rules on labels inside queries, then disjoint groups for TC and II (names were resolved by lowering).

    One problem per query: the disjointness rule is checked only when the label rules passed.
    """
    if q.kind in ir.LIMIT_KINDS:
        _check_limit(model, q, errors)
        return
    before = len(errors.diagnostics)
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
    if q.kind in ("TC", "II") and len(errors.diagnostics) == before:
        _check_disjoint(model, q, errors)


def limit_target_problem(model: ir.Model, kind: str, target: str) -> str | None:
    """What rules ``target`` out as the target of a ``kind`` limit (resolved names), else None.

    ``ACC`` is of a label (else ``"not a label"``); ``MMSE``/``RMSE`` are of a scalar Gaussian
    variable: not ``"a label"``, not ``"a modality"``, not ``"not scalar"``.

    Note:
        A modality is a nonlinear bijection of its latent: its MMSE is not Var e^{-2I}, so
        its latent is named instead.
    """
    if kind == "ACC":
        return None if target in model.labels else "not a label"
    if target in model.labels:
        return "a label"
    if target in model.flows:
        return "a modality"
    return None if model.size_of(target) == 1 else "not scalar"


def _check_limit(model: ir.Model, q: ir.Query, errors: Collector) -> None:
    """``MMSE``/``RMSE`` of one scalar Gaussian variable, ``ACC`` of one label (:func:`limit_target_problem`);
    no label is given (given a label the posterior is no longer Gaussian)."""
    (target,) = q.groups[0]
    problem = limit_target_problem(model, q.kind, target)
    if problem == "not a label":
        what = _what(model, target)
        errors.error("E0211", f"ACC(...) is the Bayes accuracy of a label; `{target}` is {what}", q.span, "",
                     f"declare one (`label y = {target} > 0`) and ask for ACC(y | ...), or MMSE({target} | ...)"
                     if target not in model.flows else "declare a label (`label y = theta > 0`)")
        return
    if problem == "a label":
        errors.error("E0211", f"{q.kind}(...) is of a scalar Gaussian variable; `{target}` is a label", q.span, "",
                     f"ACC({target} | ...) is the Bayes accuracy of a label")
        return
    if problem == "a modality":
        latent = model.flows[target].latent
        errors.error("E0211", f"{q.kind}(...) is of a Gaussian variable; `{target}` is a modality (a flow of "
                     f"`{latent}`)", q.span, "", f"ask for {q.kind}({latent} | ...): the flow's latent")
        return
    if problem == "not scalar":
        size = model.size_of(target)
        errors.error("E0211", f"{q.kind}(...) is of a scalar; `{target}` has size {size}", q.span, "",
                     f"one query per entry: `template e = onehot({size}, 1)`, `latent t = dot(e, {target})`, "
                     f"then {q.kind}(t | ...)")
        return
    labels = [n for n in q.given if n in model.labels]
    if labels:
        errors.error("E0211", f"{q.kind}(...) cannot be given a label (`{labels[0]}`)", q.span, "",
                     "give modalities, latents, targets or proto-latents")


def _what(model: ir.Model, name: str) -> str:
    if name in model.flows:
        return "a modality"
    if name in model.protos:
        return "a proto-latent"
    v = model.variables.get(name)
    return f"a {v.role}" if v is not None else "not a label"


def _check_disjoint(model: ir.Model, q: ir.Query, errors: Collector) -> None:
    """TC and II take disjoint groups; a modality and its latent count as one variable.

    Note:
        With a shared variable TC (a KL divergence from the product of the groups'
        marginals) is infinite, as I(x1; x1, x2) is; II = I(A; B) - I(A; B | C) stops being
        symmetric (II(x1; x2; x1) would read I(x1; x2), II(x1; x1; x2) inf - inf), so it has
        no value. Both are refused with the shared variable named.
    """
    def one(name: str) -> str:
        return model.flows[name].latent if name in model.flows else name

    seen: dict[str, tuple[int, str]] = {}
    for i, group in enumerate(q.groups):
        for name in group:
            first = seen.get(one(name))
            if first is not None and first[0] != i:
                j, other = first
                what = (f"`{name}` is in groups {j + 1} and {i + 1}" if other == name else
                        f"`{other}` (group {j + 1}) and `{name}` (group {i + 1}) are one variable: a modality and "
                        "its latent")
                hint = ("a variable shared by two groups makes the total correlation infinite, as I(x; x, y) is; "
                        "list each variable in one group" if q.kind == "TC" else
                        "with a shared variable, I(A; B) - I(A; B | C) depends on which group is C; ask for "
                        "I(A; B) and I(A; B | C) separately")
                errors.error("E0211", f"{q.kind}(...) needs disjoint groups: {what}", q.span, "", hint)
                return
            seen.setdefault(one(name), (i, name))


def physical_memory() -> int:
    """Bytes of memory this process may use: physical memory, or less under a ulimit -v (0: unknown)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 0
    try:
        import resource
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY and soft > 0:
            total = min(total, soft) if total else soft
    except (ImportError, ValueError, OSError):
        pass
    return int(total)


def gib(nbytes: float) -> str:
    """A size in bytes as text: 7.5 GiB, 381 MiB."""
    if nbytes >= 2**30:
        return f"{nbytes / 2**30:.1f} GiB"
    return f"{nbytes / 2**20:.0f} MiB"


def analysis_memory(model: ir.Model) -> tuple[int, str, ir.Span | None]:
    """Bytes the exact-MI engine (mmmi_dsl.analysis) allocates for ``model``, at least.

    Every proto, latent, target and label score is a block with a (size, K) array of
    loadings on the K scalar protos, about three times over (its linear form, the
    scaled block, temporaries; measured: 975 MB peak for an estimate of 940 MB);
    templates and matrices are realised once, and a matrix term keeps a dense map of
    the matrix's shape, twice. Returns (bytes, what needs them, where).
    """
    scalars = [p for p in model.protos.values() if p.kind == "scalar"]
    K = max(1, len(scalars))
    blocks = [(p.name, p.size, p.span) for p in model.protos.values()]
    blocks += [(v.name, v.size, v.span) for v in model.variables.values()]
    blocks += [(lab.name, 1, lab.span) for lab in model.labels.values()]
    values = sum(size for _, size, _ in blocks)
    total = 24 * values * K
    total += sum(8 * t.size for t in model.templates.values())
    total += sum(8 * m.rows * m.cols for m in model.matrices.values())
    for v in model.variables.values():
        for t in v.terms:
            if t.op == "matrix":
                m = model.matrices[t.matrix]
                total += 16 * m.rows * m.cols
            elif t.op == "dot":
                total += 16 * model.templates[t.template].size
    name, size, span = max(blocks, key=lambda b: b[1], default=("", 0, None))
    if K > 1 and 24 * size * K < total // 2:  # many scalar causes, not one big block: point at them
        span = scalars[-1].span
    what = (f"{len(blocks):,} variables with {values:,} values in all, each with {K:,} loadings (one per scalar "
            f"proto-latent), held about 3 times; the largest is `{name}` ({size:,} values)")
    return total, what, span


def _check_memory(model: ir.Model, errors: Collector) -> None:
    need, what, span = analysis_memory(model)
    have = physical_memory()
    if have and need > have:
        errors.error("E0215", f"the exact-MI engine needs at least {gib(need)} for this model; this machine has "
                     f"{gib(have)}", span, what,
                     "use smaller dims (--set d=...), fewer scalar proto-latents (one `vector[k]` proto "
                     "instead of k scalars) or smaller matrices")
