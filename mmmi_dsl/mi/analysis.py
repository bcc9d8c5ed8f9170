"""Stage 4, analysis: exact information quantities of a checked IR.

Each latent, target and label score is reduced, by substituting latents into one
another along the DAG, to a linear form of the proto-latents

    v = sum_j a_j p_j  +  L u  +  sum_j D_j p_j

(identity-scaled vector protos p_j, loadings L (size, K) on the K scalar protos u,
dense maps D_j only where `M @ ...` or `dot(...)` mixes components). The forms are
handed to :class:`mmmi_dsl.mi.gaussian.GaussianSystem`, which computes log
pseudo-determinants with the Kronecker + low-rank structure (no d x d matrix for
identity-scaled blocks). Modalities have their latent's MI: flows are per-block
bijections.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import numpy as np

from mmmi_dsl import ir
from mmmi_dsl.builtins.realize import matrix_array, template_vector
from mmmi_dsl.errors import Diagnostic, SpecError
from mmmi_dsl.lang.check import variable_order
from mmmi_dsl.lang.coef import evaluate_over, unroll
from mmmi_dsl.lang.laws import GAUSSIAN
from mmmi_dsl.mi import limits
from mmmi_dsl.mi.blocks import checked_block
from mmmi_dsl.mi.gaussian import Block, GaussianSystem, MIValue, TooLargeError
from mmmi_dsl.mi.laws import LawEngine

LN2 = math.log(2.0)


@dataclass
class Form:
    """A linear form under construction (see the module docstring)."""

    size: int
    identity: dict[str, float] = field(default_factory=dict)
    loadings: np.ndarray | None = None  # (size, K)
    dense: dict[str, np.ndarray] = field(default_factory=dict)

    def add_dense(self, proto: str, mat: np.ndarray) -> None:
        self.dense[proto] = self.dense[proto] + mat if proto in self.dense else mat

    def magnitude(self) -> float:
        """The largest |coefficient| of the form (0 for an all-zero form)."""
        values = [max(map(abs, self.identity.values()), default=0.0), float(np.abs(self.loadings).max(initial=0.0))]
        values += [float(np.abs(d).max(initial=0.0)) for d in self.dense.values()]
        if not all(math.isfinite(v) for v in values):  # inf or NaN (inf - inf): max() would hide a NaN
            return math.inf
        return max(values, default=0.0)


@dataclass(frozen=True)
class Result:
    """One answered query; ``nats`` may be ``math.inf`` (``-math.inf`` for an ``II``)."""

    query: str
    nats: float
    reason: str | None = None

    @property
    def bits(self) -> float:
        return self.nats / LN2

    def value(self, unit: str) -> float:
        return self.bits if unit == "bits" else self.nats

    def to_json(self) -> dict:
        def num(x: float):
            return ("inf" if x > 0 else "-inf") if math.isinf(x) else x
        out = {"query": self.query, "nats": num(self.nats), "bits": num(self.bits)}
        if self.reason:
            out["reason"] = self.reason
        return out


class Analysis:
    """The exact-MI engine of one model (at its parameter values).

    Args:
        model: a checked IR.
        dense_limit: the largest total size the dense fallback may factor.
    """

    def __init__(self, model: ir.Model, dense_limit: int = 8192):
        self.model = model
        self.env = model.env()
        self._templates: dict[str, np.ndarray] = {}
        self._matrices: dict[str, np.ndarray] = {}
        self.scalar_protos = [p.name for p in model.protos.values() if p.kind == "scalar"]
        self._k_index = {name: i for i, name in enumerate(self.scalar_protos)}
        self.K = len(self.scalar_protos)
        self._forms: dict[str, Form] = {}
        self._magnitudes: dict[str, float] = {}
        self._coefs: dict[int, tuple] = {}  # id(expr) -> (expr, value): lowering shares equal coefficient nodes
        self._has_loadings: dict[str, bool] = {}
        self._zero_loadings: dict[int, np.ndarray] = {}
        self._vector_sources: dict[tuple[str, ...], bool] = {}
        self.block_scale: dict[str, float] = {}
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is refused by _check_magnitudes
            for name in variable_order(model):  # sources first: form() then never recurses deeply
                self.form(name)
            forms = {name: self.form(name) for name in list(model.protos) + list(model.variables)}
            scores = {lab.name: self._terms_form(lab.terms, 1) for lab in model.labels.values()}
            magnitudes = {name: self._magnitude(name) for name in forms}
            magnitudes.update({self.score_block(lab): f.magnitude() for lab, f in scores.items()})
        self._check_magnitudes(magnitudes)
        blocks = {name: self._block(name, f, magnitudes[name]) for name, f in forms.items()}
        for lab_name, f in scores.items():
            score = self.score_block(lab_name)
            blocks[score] = self._block(score, f, magnitudes[score])
        vector_protos = {p.name: p.size for p in model.protos.values() if p.kind == "vector"}
        self.system = GaussianSystem(self.scalar_protos, vector_protos, blocks, dense_limit=dense_limit)
        #: Student-t groups and uniform protos (mi/laws.py); None for a linear-Gaussian model
        self.laws = None if model.gaussian else LawEngine(self)

    # ----------------------------------------------------------- linear forms

    #: Largest |coefficient| of a linear form: covariances square it (float64 ends near 1.8e308).
    MAX_MAGNITUDE = 1e150

    def _check_magnitudes(self, magnitudes: dict[str, float]) -> None:
        """Refuse forms whose covariances would overflow float64 (a spec error, never NaN)."""
        labels = {self.score_block(lab): lab for lab in self.model.labels}
        for name, worst in magnitudes.items():
            if not np.isfinite(worst) or worst > self.MAX_MAGNITUDE:
                v = self.model.variables.get(name) or self.model.labels.get(labels.get(name, ""))
                raise SpecError([Diagnostic(
                    "E0212", (f"`{name}` has a coefficient of size {worst:.3g}: its covariance would overflow"
                              if math.isfinite(worst) else f"`{name}` has a coefficient that overflows float64"),
                    v.span if v else None, "", f"keep coefficients below {self.MAX_MAGNITUDE:.0e} (rescale the model; "
                    "MI is unchanged by rescaling a whole block)")])

    @staticmethod
    def score_block(label: str) -> str:
        return f"score of {label}"

    def block_of(self, name: str) -> str:
        """The block a query name denotes: modalities map to their latent."""
        m = self.model
        if name in m.flows:
            return m.flows[name].latent
        if name in m.labels:
            return self.score_block(name)
        return name

    def coef(self, expr: ir.Expr, span=None) -> float:
        """A coefficient's value at the model's parameters (E0212 where it is not a finite real number)."""
        return self._coef(expr, span)

    def _coef(self, expr: ir.Expr, span=None) -> float:
        """A coefficient's value; E0212 (never NaN, never a traceback) where it is not a real number.

        Memoised by node identity: lowering hash-conses coefficients, so decay's N^2 terms share
        about 2N nodes. The entry keeps its node, so a temporary node (a family term unrolled on
        the fallback path) can neither be freed nor have its id reused for another. Only good
        values are kept; a bad one is evaluated again, and raises, at each term that has it.
        """
        hit = self._coefs.get(id(expr))
        if hit is not None and hit[0] is expr:
            return hit[1]
        try:
            value = _checked_evaluate(expr, self.env)
        except _Underflow as err:
            raise _underflow_error(f"a coefficient underflows: {err} (below {sys.float_info.min:.3g}, "
                                   "the smallest normal double)", span) from None
        except (ZeroDivisionError, OverflowError, ValueError) as err:
            value, reason = math.nan, "division by zero" if isinstance(err, ZeroDivisionError) else str(err)
        else:
            reason = f"it is {value!r}"
        if isinstance(value, complex) or not math.isfinite(value):
            raise SpecError([Diagnostic("E0212", "a coefficient is not a finite real number at the current "
                                        f"parameter values: {reason}", span, "",
                                        "check the parameter values (--set) and the "
                                        "math functions' domains (sqrt, log of a negative number ...)")])
        value = float(value)
        self._coefs[id(expr)] = (expr, value)
        return value

    def form(self, name: str) -> Form:
        """The linear form of a proto-latent, latent or target (memoised)."""
        hit = self._forms.get(name)
        if hit is not None:
            return hit
        m = self.model
        if name in m.protos:
            p = m.protos[name]
            if p.kind == "scalar":
                f = Form(p.size, loadings=np.zeros((p.size, self.K)))
                f.loadings[0, self._k_index[name]] = 1.0
            else:  # only ever read: terms add multiples of it into forms of their own
                f = Form(p.size, identity={name: 1.0}, loadings=self._zeros(p.size))
        else:
            v = m.variables[name]
            f = self._terms_form(v.terms, v.size)
        self._forms[name] = f
        return f

    def _magnitude(self, name: str) -> float:
        """``form(name).magnitude()``, memoised (forms are complete once built)."""
        hit = self._magnitudes.get(name)
        if hit is None:
            hit = self._magnitudes[name] = self.form(name).magnitude()
        return hit

    def _zeros(self, size: int) -> np.ndarray:
        """A read-only (size, K) array of zeros, one per size: the loadings of every vector proto (decay:
        N of them of 3,072 rows) and of the blocks without any."""
        hit = self._zero_loadings.get(size)
        if hit is None:
            hit = self._zero_loadings[size] = np.zeros((size, self.K))
            hit.flags.writeable = False
        return hit

    def _loads(self, name: str) -> bool:
        """Whether ``form(name)`` has a nonzero (or non-finite) loading, memoised.

        Adding ``c * 0`` to the +0-initialised, never -0 sums of :meth:`_terms_form` changes no
        bit, so a source without loadings (every vector proto) skips that (size, K) update.
        """
        hit = self._has_loadings.get(name)
        if hit is None:
            hit = self._has_loadings[name] = bool((self.form(name).loadings != 0.0).any())
        return hit

    def _check_chain_underflow(self, c: float, largest: float, t) -> None:
        """E0212 where c times all of a source's coefficients underflows (z2 = 1e-200 * z1, z1 = 1e-200 * (u + n)).

        Without it the product 1e-400 became 0 and the latent lost its dependence silently. Entries
        far below the source's largest one may underflow: they are below every tolerance anyway.
        """
        tiny = sys.float_info.min
        # normal inputs only: a subnormal value given as such (solve probes one ulp above 0) passes
        if abs(c) >= tiny and tiny <= largest < math.inf and abs(c) * largest < tiny:
            raise _underflow_error(f"a coefficient underflows: {c:.3g} times the coefficients of "
                                   f"`{t.sources[0]}` (at most {largest:.3g}) is below {sys.float_info.min:.3g}, "
                                   "the smallest normal double", t.span)

    def _template(self, name: str) -> np.ndarray:
        return template_vector(self.model.templates[name], self.model, self._templates)

    def _terms_form(self, terms, size: int) -> Form:
        out = Form(size, loadings=np.zeros((size, self.K)))
        for t in terms:
            if t.index is not None:
                self._add_family(out, t)
                continue
            c = self._coef(t.coef, t.span)
            if c != 0.0:
                self._add_term(out, t, c)
        # a proto both identity-scaled and dense becomes dense only
        for p in [p for p in out.identity if p in out.dense] if out.dense else ():
            out.dense[p] = out.dense[p] + out.identity.pop(p) * np.eye(size)
        if not all(out.identity.values()):  # drop exact zeros (cancelled terms)
            out.identity = {p: a for p, a in out.identity.items() if a != 0.0}
        return out

    def _add_family(self, out: Form, t: ir.Term) -> None:
        """Add a family term's members in order, as :meth:`_add_term` adds them one by one.

        Its coefficient is evaluated at every member at once (numpy); where that meets a NaN, an
        infinity, a zero or an underflow anywhere, each member is evaluated alone instead, which
        skips exact zeros and reports the bad one with its span. Members that are vector protos
        (decay: every one) go straight into ``identity``: ``c * 1.0`` is ``c``, bit for bit.
        """
        cs = evaluate_over(t.coef, self.env, t.index, np.arange(t.first, t.first + len(t.sources), dtype=float),
                           checked=True)
        members = None
        if cs is None:
            members = unroll(t)
            cs = [self._coef(m.coef, t.span) for m in members]
        else:
            cs = np.broadcast_to(cs, (len(t.sources),)).tolist()
        if t.op == "identity" and self._all_vector_protos(t.sources):
            ident = out.identity
            if members is None and not ident and len(set(t.sources)) == len(t.sources):
                ident.update(zip(t.sources, cs))  # no zeros (checked), distinct sources: 0.0 + c is c
                return
            for s, c in zip(t.sources, cs):
                if c != 0.0:
                    ident[s] = ident.get(s, 0.0) + c
            return
        for m, c in zip(members or unroll(t), cs):
            if c != 0.0:
                self._add_term(out, m, c)

    def _all_vector_protos(self, sources: tuple[str, ...]) -> bool:
        """Whether every source is a vector proto (memoised: decay's N family terms share their members)."""
        hit = self._vector_sources.get(sources)
        if hit is None:
            protos = self.model.protos
            hit = self._vector_sources[sources] = all(s in protos and protos[s].kind == "vector" for s in sources)
        return hit

    def _add_term(self, out: Form, t: ir.Term, c: float) -> None:
        """Add ``c`` times an ordinary term's source form to ``out``."""
        if t.op == "identity":
            src = self.form(t.sources[0])
            self._check_chain_underflow(c, self._magnitude(t.sources[0]), t)
            for p, a in src.identity.items():
                out.identity[p] = out.identity.get(p, 0.0) + c * a
            if self._loads(t.sources[0]):
                out.loadings += c * src.loadings
            for p, d in src.dense.items():
                out.add_dense(p, c * d)
        elif t.op == "template":
            # a scalar source spread over the template: T (size,) times the source's row
            col = c * self._template(t.template)[:, None]
            src = self.form(t.sources[0])
            out.loadings += col * src.loadings  # (size, 1) * (1, K)
            for p, a in src.identity.items():  # a size-1 vector proto
                out.add_dense(p, col * a)
            for p, d in src.dense.items():
                out.add_dense(p, col @ d)
        elif t.op == "dot":
            row = c * self._template(t.template)[None, :]
            src = self.form(t.sources[0])
            out.loadings += row @ src.loadings
            for p, a in src.identity.items():
                out.add_dense(p, row * a)
            for p, d in src.dense.items():
                out.add_dense(p, row @ d)
        else:  # matrix @ concat(sources)
            mat = c * matrix_array(self.model.matrices[t.matrix], self._matrices)
            start = 0
            for s in t.sources:
                src = self.form(s)
                block = mat[:, start:start + src.size]
                start += src.size
                out.loadings += block @ src.loadings
                for p, a in src.identity.items():
                    out.add_dense(p, block * a)
                for p, d in src.dense.items():
                    out.add_dense(p, block @ d)

    def _block(self, name: str, f: Form, top: float) -> Block:
        """The form as a Gaussian-system block, scaled to unit magnitude.

        Note:
            MI, PMI and label MI are invariant under an invertible map of one block, so
            each block enters the system divided by its largest |coefficient|. Without
            this, a block on a small scale (theta = 1e-5 u) would fall under the rank
            threshold, which is relative to the largest variance of the query.
        """
        if 0 < top < sys.float_info.min:  # 1/top would overflow (a subnormal value, e.g. --set eta=1e-320)
            v = self.model.variables.get(name)
            raise _underflow_error(f"`{name}` has only subnormal coefficients (largest {top:.3g}, below "
                                   f"{sys.float_info.min:.3g})", v.span if v else None)
        c = 1.0 / top if top > 0 else 1.0
        self.block_scale[name] = c
        scaled = np.fromiter(f.identity.values(), float, len(f.identity)) * c  # a * c, as Python's, in one pass
        # the forms' coefficients are finite and below MAX_MAGNITUDE (_check_magnitudes): not checked again
        loadings = f.loadings * c if (f.loadings != 0.0).any() else self._zeros(f.size)  # 0 * c is 0: shared
        return checked_block(name, f.size, dict(zip(f.identity, scaled.tolist())), loadings,
                             {p: d * c for p, d in f.dense.items()})

    def covariance(self, names: list[str]) -> np.ndarray:
        """The dense covariance of blocks (original scale); for small sizes only."""
        blocks = [self.block_of(n) for n in names]
        cov = self.system.covariance(blocks)
        scale = np.concatenate([np.full(self.system.blocks[b].size, 1.0 / self.block_scale[b]) for b in blocks])
        return cov * scale[:, None] * scale[None, :]

    # ----------------------------------------------------------- queries

    def label_threshold(self, label: str) -> float:
        """The threshold t of ``label y = s > t`` at the model's parameter values (original scale)."""
        lab = self.model.labels[label]
        return self._coef(lab.threshold, lab.span)

    def evaluate(self, q: ir.Query) -> "Result | limits.LimitResult":
        """Answer one query exactly: a :class:`Result` (MI), or a :class:`~mmmi_dsl.mi.limits.LimitResult`
        for ``MMSE``, ``RMSE`` and ``ACC``."""
        try:
            if q.kind in limits.KINDS:
                if self.laws is not None and self.laws.involves_laws(q):
                    raise self.laws.refuse(q, "the limits are of jointly Gaussian variables, and this query "
                                              "involves a Student-t or uniform one",
                                           "ask for the information instead, e.g. I(theta; x1)")
                return limits.evaluate(self, q)
            value = self._evaluate(q)
        except TooLargeError as err:
            raise SpecError([Diagnostic("E0215", f"{q.text} needs the dense path, which is too large: {err}",
                                        q.span, "", "reduce the sizes of the variables mixed by matrices")]) from None
        except ValueError as err:  # e.g. II = inf - inf, which is undefined
            raise SpecError([Diagnostic("E0211", f"{q.text} is undefined: {err}", q.span, "",
                                        "ask for the two MI terms separately")]) from None
        except ArithmeticError as err:  # round-off beat the engine's rank threshold (coefficients ~1e9 apart)
            raise SpecError([Diagnostic("E0212", f"{q.text} cannot be computed in double precision: {err}", q.span,
                                        "", "the coefficients of these variables span more orders of magnitude "
                                        "than double precision resolves; rescale or drop the weakest terms")]
                            ) from None
        reason = value.reason
        if math.isinf(value.nats) and reason:
            reason += _noiseless_note(self, q)
        return Result(q.text, value.nats, reason)

    def pmi(self, a: list[str], b: list[str], samples: dict[str, np.ndarray]) -> np.ndarray:
        """Exact pointwise MI ``log p(a,b) - log p(a) - log p(b)`` per sample, (n,).

        Args:
            a, b: names of modalities, latents, targets or proto-latents.
            samples: latent samples by IR name (a modality's latent under its latent's
                name), each (n, size).
        """
        blocks = {n: self.block_of(n) for n in [*a, *b]}
        data = {blocks[n]: self.block_scale[blocks[n]]
                * np.asarray(samples[blocks[n]] if blocks[n] in samples else samples[n], dtype=np.float64)
                for n in blocks}
        try:
            if self.laws is not None and any(self.laws.law_of(blk) != GAUSSIAN for blk in blocks.values()):
                return self.laws.pmi([blocks[n] for n in a], [blocks[n] for n in b], data)
            return self.system.pmi([blocks[n] for n in a], [blocks[n] for n in b], data)
        except ValueError as err:  # the law engine: a PMI that is infinite (a deterministic relation)
            raise SpecError([Diagnostic("E0211", str(err), None, "", "ask for the MI instead (mmmic mi)")]) from None
        except ArithmeticError as err:
            raise SpecError([Diagnostic("E0212", f"the PMI of {', '.join(a)} and {', '.join(b)} cannot be computed "
                                        f"in double precision: {err}", None, "",
                                        "its causes are too many orders of magnitude apart (beyond about 1e5 in "
                                        "coefficient); the MI itself is still exact (mmmic mi)")]) from None

    def _evaluate(self, q: ir.Query) -> MIValue:
        m = self.model
        if self.laws is not None and self.laws.involves_laws(q):
            return self.laws.evaluate(q)
        groups = [[self.block_of(n) for n in g] for g in q.groups]
        given = [self.block_of(n) for n in q.given]
        if q.kind == "TC":
            return self.system.total_correlation([_unique(g) for g in groups])
        if q.kind == "II":
            return self.system.interaction_information(*[_unique(g) for g in groups])
        a_names, b_names = q.groups
        labels_a = [n for n in a_names if n in m.labels]
        labels_b = [n for n in b_names if n in m.labels]
        if labels_a or labels_b:
            label = (labels_a or labels_b)[0]
            others = groups[1] if labels_a else groups[0]
            lab = m.labels[label]
            t = self._coef(lab.threshold, lab.span)
            given_set = _unique(g for g in given if g not in others)
            score = self.score_block(label)
            return self.system.label_mi(score, t * self.block_scale[score], _unique(others), given_set)
        a, b, c = _mi_sides(groups, given)
        shared = sorted(set(a) & set(b))
        if shared:
            return MIValue(math.inf, f"`{shared[0]}` is on both sides (a modality and its latent are one "
                                     "variable up to a bijection)", "identical")
        if not a or not b:
            return MIValue(0.0, "a side is fully determined by the conditioning set", "independent")
        return self.system.mi(a, b, c)

    def prepare(self, queries) -> None:
        """Get ready to answer ``queries`` (any order, any kinds): the plain Gaussian MI queries among
        them share batched decompositions (:meth:`GaussianSystem.prefetch`). Changes no answer."""
        sides = []
        for q in queries:
            if q.kind != "I" or any(n in self.model.labels for g in q.groups for n in g):
                continue
            if self.laws is not None and self.laws.involves_laws(q):
                continue
            a, b, c = _mi_sides([[self.block_of(n) for n in g] for g in q.groups], [self.block_of(n) for n in q.given])
            if a and b and not set(a) & set(b):
                sides.append((a, b, c))
        try:
            self.system.prefetch(sides)
        except (ValueError, ArithmeticError):  # left to the query that meets it, which reports it
            pass

    def evaluate_all(self, queries) -> list[Result]:
        self.prepare(queries)
        return [self.evaluate(q) for q in queries]


def _noiseless_note(analysis: Analysis, q: ir.Query) -> str:
    """Name the equations that make a covariance singular: latents without noise."""
    notes = []
    for name in [n for g in (*q.groups, q.given) for n in g]:
        block = analysis.block_of(name)
        v = analysis.model.variables.get(block)
        f = analysis._forms.get(block)
        if v is None or f is None or f.identity or f.dense:
            continue
        if v.size > 1 or v.role == "latent":
            line = f" (line {v.span.line})" if v.span else ""
            notes.append(f"`{block}`{line} has no noise term: it is a deterministic function of "
                         f"{analysis.K} scalar cause{'s' * (analysis.K != 1)}")
    return ("; " + "; ".join(dict.fromkeys(notes))) if notes else ""


def _underflow_error(message: str, span) -> SpecError:
    """E0212 for a value that fell below the normal doubles, with the rescaling hint."""
    return SpecError([Diagnostic("E0212", message, span, "", "rescale the model: multiplying a whole latent "
                                 "by a constant leaves its MI unchanged")])


class _Underflow(ArithmeticError):
    """A product, quotient, power or exp of nonzero numbers fell below the normal doubles."""


def _checked_evaluate(expr: ir.Expr, env: dict[str, float]) -> float:
    """:func:`mmmi_dsl.ir.evaluate` that raises :class:`_Underflow` where a nonzero value is lost.

    ``1e-200 * 1e-200`` is 0.0 in floating point: the term would vanish silently and the
    MI drop to 0. Subnormal results (precision lost) count as underflow too.
    """
    if isinstance(expr, ir.BinOp):
        a, b = _checked_evaluate(expr.left, env), _checked_evaluate(expr.right, env)
        value = ir.apply_op(expr.op, a, b)
        tiny = sys.float_info.min  # normal inputs only: a subnormal value given as such (solve's probes) passes
        if expr.op in "*/^" and abs(a) >= tiny and (abs(b) >= tiny or expr.op == "^") \
                and not isinstance(value, complex) and math.isfinite(value) and abs(value) < tiny:
            raise _Underflow(f"{ir.to_text(expr)} = {a:.3g} {expr.op} {b:.3g} gives {value:.3g}")
        return value
    if isinstance(expr, ir.Neg):
        return -_checked_evaluate(expr.operand, env)
    if isinstance(expr, ir.Func):
        args = [_checked_evaluate(x, env) for x in expr.args]
        value = ir.apply_func(expr.name, args)
        if expr.name == "exp" and abs(value) < sys.float_info.min:
            raise _Underflow(f"{ir.to_text(expr)} = exp({args[0]:.3g}) gives {value:.3g}")
        return value
    return ir.evaluate(expr, env)


def _mi_sides(groups: list[list[str]], given: list[str]) -> tuple[list[str], list[str], list[str]]:
    """The blocks of ``I(A; B | C)``: each once, and A and B without the blocks C holds."""
    c = _unique(given)
    return [x for x in _unique(groups[0]) if x not in c], [x for x in _unique(groups[1]) if x not in c], c


def _unique(names) -> list[str]:
    out: list[str] = []
    for n in names:
        if n not in out:
            out.append(n)
    return out


#: Most default queries (no `report` statements): about 1 ms each; 1,000 modalities have 500,500 pairs.
MAX_DEFAULT_QUERIES = 10_000


def default_queries(model: ir.Model) -> list[ir.Query]:
    """The spec's reports, or I(target; each modality) and I(x_i; x_j) for all pairs.

    Raises:
        SpecError: E0215 when that is more than MAX_DEFAULT_QUERIES queries.
    """
    if model.reports:
        return list(model.reports)
    m = len(model.modalities)
    count = len(model.targets) * m + m * (m - 1) // 2
    if count > MAX_DEFAULT_QUERIES:
        first = model.flows[model.modalities[0]].span if model.modalities else None
        raise SpecError([Diagnostic(
            "E0215", f"without `report` statements the default queries are all {count:,} pairs of the {m:,} "
            f"modalities (and targets), more than {MAX_DEFAULT_QUERIES:,} (about 1 ms each)", first, "",
            "add `report` statements (e.g. `for j in 2..N: report I(x[1]; x[j])`) or give --query")])
    out = []
    for t in model.targets:
        for x in model.modalities:
            out.append(ir.Query(kind="I", groups=((t,), (x,)), text=f"I({t}; {x})"))
    mods = model.modalities
    for i, a in enumerate(mods):
        for b in mods[i + 1:]:
            out.append(ir.Query(kind="I", groups=((a,), (b,)), text=f"I({a}; {b})"))
    return out
