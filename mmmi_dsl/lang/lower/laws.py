"""Lowering of the non-Gaussian laws: ``proto n : uniform[lo, hi]`` and ``student(nu): x, y``.

Both keep their numbers symbolic (:data:`mmmi_dsl.ir.Expr`), so ``solve`` and ``sweep`` can move
them; their values are checked here at the current parameters, and again by the MI engine at
every other value it is asked about. The whole-model rules are in :mod:`mmmi_dsl.lang.laws`.
"""

from __future__ import annotations

from mmmi_dsl import ir
from mmmi_dsl.lang.lower.linear import Linearizer
from mmmi_dsl.lang.syntax import Name, Statement


class LawLowering(Linearizer):
    """The two statements' lowering; :class:`~mmmi_dsl.lang.lower.statements.Lowerer` runs them."""

    def lower_uniform_proto(self, s: Statement, env) -> None:
        """``proto n : uniform[lo, hi]``: scalar protos uniform on [lo, hi] (lo < hi)."""
        t = s.type
        if len(t.args) != 2:
            self.fail("E0209", "`uniform` takes the two ends of its interval: uniform[lo, hi]", t.span, "",
                      "e.g. proto n : uniform[-0.1, 0.1]")
        low, high = (self.constant_expr(a, env) for a in t.args)
        lo, hi = (self.value(a, env) for a in t.args)
        if not lo < hi:
            self.fail("E0207", f"uniform[{lo:g}, {hi:g}] is empty: the lower end must be below the upper end",
                      t.span, "", "write uniform[lo, hi] with lo < hi")
        for m in self._members(s, env):
            self.protos[m] = ir.Proto(name=m, kind="scalar", size=1, span=s.decl.span)
            self.uniform[m] = ir.UniformLaw(low=low, high=high, span=t.span)
            self.sizes[m] = 1

    def lower_student(self, s: Statement, env) -> ir.StudentGroup:
        """``student(nu): x, y``: latents or targets, each once; nu > 0."""
        df = self.constant_expr(s.value, env)
        nu = self.value(s.value, env)
        if not nu > 0:
            self.fail("E0207", f"a Student-t needs positive degrees of freedom, got {nu:g}", s.value.span, "",
                      "student(nu) with nu > 0 (nu = 1 is the Cauchy distribution)")
        members: list[str] = []
        for ref in s.members:
            kind, name = self._kind(Name(ref.name, ref.index, ref.span), env)
            if kind == "flow":
                latent = self.names[name].stmt.value
                hint = "list the latent it maps" + (f": `{latent.args[0].name}`" if getattr(latent, "args", None)
                                                    and isinstance(latent.args[0], Name) else "")
                self.fail("E0103", f"`{name}` is a modality; a `student` group scales latents", ref.span, "",
                          hint + " (a flow then maps the Student-t latent)")
            if kind not in ("latent", "target"):
                self.fail("E0103", f"`{name}` is a {kind}; a `student` group lists latents or targets", ref.span,
                          "", "define latent z = ... and list z")
            if name in members:
                self.fail("E0102", f"`{name}` is listed twice in this group", ref.span)
            members.append(name)
        return ir.StudentGroup(df=df, members=tuple(members), span=s.span)
