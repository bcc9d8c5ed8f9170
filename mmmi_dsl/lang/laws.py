"""Non-Gaussian laws: Student-t groups and uniform proto-latents, their rules and each variable's law.

Two constructions leave the linear-Gaussian model while keeping exact answers:

- ``student(nu): x, y``: the members are their structural equations' Gaussian values G
  divided by ``sqrt(W / nu)``, one ``W ~ chi2(nu)`` per sample shared by the group. A
  variable computed from members only carries the same scale (it is ``s * G`` too);
- ``proto n : uniform[lo, hi]``: a scalar proto-latent uniform on ``[lo, hi]``.

:func:`laws` gives every latent and target its *law*: ``GAUSSIAN``, the index of its Student
group, or ``UNIFORM`` when it uses a uniform proto-latent. :func:`check_laws` refuses (E0220)
what no closed form covers at all: a variable that mixes a Student group with anything else
(it is no longer ``s * G``), a member built from a Student or uniform variable, and labels of
non-Gaussian variables. Which *queries* have exact answers is decided in :mod:`mmmi_dsl.mi.laws`.
"""

from __future__ import annotations

from mmmi_dsl import ir
from mmmi_dsl.errors import Collector
from mmmi_dsl.lang.check import variable_order

GAUSSIAN = "gaussian"
UNIFORM = "uniform"

#: The code of every refusal for want of a closed form.
NO_CLOSED_FORM = "E0220"


def _law_name(model: ir.Model, law) -> str:
    if law == GAUSSIAN:
        return "Gaussian"
    if law == UNIFORM:
        return "built from uniform proto-latents"
    g = model.students[law]
    return f"Student-t (the `student` group on line {g.span.line})" if g.span else "Student-t"


def describe_law(model: ir.Model, law) -> str:
    """The law in words, for messages: ``Gaussian``, ``Student-t (the `student` group on line 7)``, ..."""
    return _law_name(model, law)


def laws(model: ir.Model, errors: Collector | None = None) -> dict[str, object]:
    """Law of every proto-latent, latent and target: ``GAUSSIAN``, ``UNIFORM`` or a Student group's index.

    With ``errors``, the problems :func:`check_laws` reports are collected there; without, a
    mixed variable simply gets the law of its first non-Gaussian source.
    """
    group_of: dict[str, int] = {}
    for i, g in enumerate(model.students):
        for m in g.members:
            group_of.setdefault(m, i)
    out: dict[str, object] = {p: (UNIFORM if p in model.uniform else GAUSSIAN) for p in model.protos}
    for name in variable_order(model):
        v = model.variables[name]
        found: dict[object, ir.Term] = {}
        for t in v.terms:
            for src in t.sources:
                found.setdefault(out.get(src, GAUSSIAN), t)
        if name in group_of:
            bad = next(((law, t) for law, t in found.items() if law != GAUSSIAN), None)
            if bad is not None and errors is not None:
                errors.error(NO_CLOSED_FORM, f"`{name}` is in a `student` group but is built from a variable that is "
                             f"{_law_name(model, bad[0])}", bad[1].span, "not a Gaussian source",
                             "a group member is its Gaussian structural equation divided by the shared scale: build "
                             "it from Gaussian variables, and list the variables computed from members nowhere")
            out[name] = group_of[name]
            continue
        non_gauss = [law for law in found if law != GAUSSIAN]
        if any(law != UNIFORM for law in non_gauss) and len(found) > 1 and errors is not None:
            first, second = list(found)[:2]
            errors.error(NO_CLOSED_FORM, f"`{name}` adds a {_law_name(model, first)} variable to a "
                         f"{_law_name(model, second)} one: no closed form for its mutual information",
                         found[second].span, "this term has another law",
                         "a variable computed from Student-t members may use members of the same group only")
        out[name] = non_gauss[0] if non_gauss else GAUSSIAN
    return out


def first_non_gaussian(model: ir.Model, names) -> str | None:
    """The first of ``names`` (modalities, latents, targets, protos) whose law is not Gaussian, else None."""
    if model.gaussian:
        return None
    law = laws(model)
    for n in names:
        block = model.flows[n].latent if n in model.flows else n
        if law.get(block, GAUSSIAN) != GAUSSIAN:
            return n
    return None


def check_laws(model: ir.Model, errors: Collector) -> None:
    """The rules of the module docstring: E0102 for a variable in two groups, E0220 for the rest."""
    if model.gaussian:
        return
    seen: dict[str, ir.StudentGroup] = {}
    for g in model.students:
        for m in g.members:
            if m in seen and seen[m] is not g:
                line = seen[m].span.line if seen[m].span else "?"
                errors.error("E0102", f"`{m}` is in two `student` groups", g.span, "",
                             f"first listed on line {line}; one variable has one scale")
            seen.setdefault(m, g)
    law = laws(model, errors)
    for lab in model.labels.values():
        for t in lab.terms:
            other = next((law[s] for s in t.sources if law.get(s, GAUSSIAN) != GAUSSIAN), None)
            if other is not None:
                errors.error(NO_CLOSED_FORM, f"label `{lab.name}` thresholds a variable that is "
                             f"{_law_name(model, other)}: no closed form for its information", t.span,
                             "not Gaussian", "labels threshold Gaussian variables only")
                break
