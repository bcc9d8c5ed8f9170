"""The Python API: a loaded spec with methods, for notebooks and scripts.

:func:`mmmi_dsl.load` returns a :class:`Spec`: the frozen IR (:class:`mmmi_dsl.ir.Model`,
every field and its JSON unchanged) plus methods that are thin calls of the domain
functions the CLI uses, taking plain strings and numbers::

    spec = mm.load("specs/two_views.mmi", d=64)
    spec.mi("I(theta; x1)")                       # exact MI in nats (math.inf when infinite)
    spec.formula("I(theta; x1)")                  # its closed form, a sympy expression
    spec.limit("MMSE(theta | x1)")                # the least squared error of any predictor of theta
    spec.solve("rho_t1", "I(theta; x1) = 1")      # the parameter value that gives 1 nat
    spec.generate("out/tv", n=1000)               # a dataset on disk

Queries and targets are text, as in a spec; a bad one raises :class:`SpecError`
whose spans point into that text (file ``<query>`` / ``<target>``). Nothing here
imports torch until a method samples (``generate``, ``sampler``, ``stream``).
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Iterable

from mmmi_dsl import ir
from mmmi_dsl.errors import SpecError, UsageError, did_you_mean

QUERY_FILE = "<query>"
TARGET_FILE = "<target>"
UNITS = ("nats", "bits")


def override_strings(overrides: dict | None, keywords: dict) -> dict[str, str]:
    """``overrides`` and keyword overrides as the strings ``--set NAME=VALUE`` passes (``d=64`` -> ``"64"``)."""
    twice = sorted(set(overrides or {}) & set(keywords))
    if twice:
        raise UsageError(f"`{twice[0]}` is given twice: in the overrides dict and as a keyword")
    out = {}
    for name, value in {**(overrides or {}), **keywords}.items():
        if isinstance(value, str):
            out[name] = value
        elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
            out[name] = str(int(value))
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            out[name] = repr(float(value))
        else:
            raise UsageError(f"override {name}={value!r}: give a number or a string such as \"3x32x32\"")
    return out


def _unit(unit: str | None, query: ir.Query) -> str:
    unit = unit or query.unit
    if unit not in UNITS:
        raise UsageError(f"unit {unit!r}: choose nats or bits")
    return unit


def _number(result, unit: str) -> float:
    """An MI result in ``unit``, or a limit's value (MMSE, RMSE, ACC have no unit)."""
    from mmmi_dsl.mi.limits import is_limit

    return result.value if is_limit(result) else result.value(unit)


def _with_source(err: SpecError, file: str, text: str) -> SpecError:
    """``err`` with the source of a query given as text, so its caret renders."""
    if any(d.span is not None and d.span.file == file for d in err.diagnostics):
        err.sources.setdefault(file, text.strip())
    return err


class Spec(ir.Model):
    """A checked spec: the IR (:class:`mmmi_dsl.ir.Model`) with methods. No fields of its own.

    Equal to a :class:`~mmmi_dsl.ir.Model` with the same fields; ``model_copy`` and
    ``with_params`` keep the class.
    """

    def __eq__(self, other: object) -> bool:  # a Spec and the Model it wraps are the same IR
        if isinstance(other, ir.Model):
            return self.__dict__ == other.__dict__
        return NotImplemented

    __hash__ = ir.Model.__hash__

    @classmethod
    def of(cls, model: ir.Model) -> "Spec":
        """The checked ``model`` as a Spec (no copy of its fields, no revalidation)."""
        return model if isinstance(model, cls) else cls.model_construct(**dict(model))

    # ----------------------------------------------------------- queries

    def query(self, text: str) -> ir.Query:
        """``text`` (``I(a; b | c)``, ``TC(...)``, ``II(...)``, optionally ending in ``bits``) resolved."""
        from mmmi_dsl.lang.lower import resolve_query

        if not isinstance(text, str):
            raise UsageError(f"a query is text such as \"I(x1; x2)\", got {text!r}")
        return resolve_query(self, text, QUERY_FILE)

    def _queries(self, texts: Iterable[str]) -> list[ir.Query]:
        from mmmi_dsl.mi.analysis import default_queries

        return [self.query(t) for t in texts] or default_queries(self)

    def results(self, *queries: str) -> list:
        """The exact MI of each query (default: the spec's reports, else the default set) as
        :class:`mmmi_dsl.analysis.Result` (``.nats``, ``.bits``, ``.reason`` when infinite)."""
        return self._evaluate(self._queries(queries), queries)

    def _evaluate(self, qs: list[ir.Query], texts) -> list:
        from mmmi_dsl.mi.analysis import Analysis

        engine = Analysis(self)
        engine.prepare(qs)
        out = []
        for i, q in enumerate(qs):
            try:
                out.append(engine.evaluate(q))
            except SpecError as err:
                raise _with_source(err, QUERY_FILE, texts[i] if texts else q.text) from None
        return out

    def mi(self, query: str, unit: str | None = None) -> float:
        """The exact MI of one query: a float in ``unit`` (default: the query's, else nats);
        ``math.inf`` if infinite."""
        q = self.query(query)
        if q.kind in ir.LIMIT_KINDS:
            raise UsageError(f"{q.text} is not an information quantity: spec.limit({query.strip()!r}) gives it")
        (result,) = self._evaluate([q], [query])
        return result.value(_unit(unit, q))

    def limit(self, query: str) -> float:
        """An exact limit of prediction: ``"MMSE(theta | x1)"`` (the least mean squared error of any
        predictor of a scalar from the given variables), ``"RMSE(...)"`` (its root) or ``"ACC(y | x1)"``
        (the Bayes accuracy of a label); see :mod:`mmmi_dsl.mi.limits`."""
        q = self.query(query)
        if q.kind not in ir.LIMIT_KINDS:
            raise UsageError(f"{q.text} is an information quantity: spec.mi({query.strip()!r}) gives it")
        (result,) = self._evaluate([q], [query])
        return result.value

    def mis(self, *queries: str, unit: str = "nats") -> dict[str, float]:
        """``{query text: exact MI}`` for several queries (default: the spec's reports, else the default set);
        an ``MMSE``, ``RMSE`` or ``ACC`` query maps to its value (no unit)."""
        if unit not in UNITS:
            raise UsageError(f"unit {unit!r}: choose nats or bits")
        return {r.query: _number(r, unit) for r in self.results(*queries)}

    def table(self, *queries: str) -> str:
        """The table ``mmmic mi`` prints (nats and bits)."""
        from mmmi_dsl.report import mi_table

        qs = self._queries(queries)
        return mi_table(self, qs, self._evaluate(qs, queries))

    # ----------------------------------------------------------- closed forms

    def formulas(self, *queries: str, numeric: Iterable[str] = (), timeout: float | None = None) -> list:
        """One :class:`mmmi_dsl.mi.symbolic.Derivation` per query (default: the spec's reports):
        ``.formula`` (``.expr``, ``.latex()``) or ``.reason`` why there is none.

        ``numeric``: names of params, dims or templates to replace by their values
        (``"templates"``: every template inner product, ``"all"``); ``timeout``: seconds for
        all of them (None: no limit).
        """
        from mmmi_dsl.mi.symbolic import derive_each

        names = {numeric} if isinstance(numeric, str) else set(numeric)
        return derive_each(self, self._queries(queries), names, timeout)

    def _formula(self, query: str, numeric, timeout):
        from mmmi_dsl.errors import Diagnostic

        (d,) = self.formulas(query, numeric=numeric, timeout=timeout)
        if d.error is not None:
            raise _with_source(d.error, QUERY_FILE, query)
        if d.formula is None:
            q = d.query
            raise SpecError([Diagnostic("E0215", f"the symbolic engine gave up on {q.text} after {d.gave_up_s:g} s",
                                        q.span, "", "raise timeout (None for no limit), replace symbols by "
                                        "numbers (numeric=[...], \"templates\", \"all\"), or get the value "
                                        "with .mi()")],
                            {QUERY_FILE: query.strip()})
        return d.formula

    def formula(self, query: str, numeric: Iterable[str] = (), timeout: float | None = None):
        """The closed form of ``query`` as a sympy expression (nats, or bits for a query ending in ``bits``).

        Symbols are the spec's params and dims (and ``ip_a_b``/``nsq_a`` for template inner
        products); ``numeric`` and ``timeout`` as for :meth:`formulas`.

        Raises:
            SpecError: no closed form (E0211, e.g. labels or matrices: :meth:`mi` still has the
                value), or the timeout passed (E0215).
        """
        return self._formula(query, numeric, timeout).expr

    def latex(self, query: str, numeric: Iterable[str] = (), timeout: float | None = None) -> str:
        """The closed form of ``query`` in LaTeX, ``I(\\theta; x_{1}) = ...``, as ``mmmic formula`` prints it."""
        return self._formula(query, numeric, timeout).latex()

    # ----------------------------------------------------------- parameters

    def at(self, **values: float) -> "Spec":
        """A copy with free parameters set (``spec.at(rho_t1=0.2)``); derived ones follow.

        Raises:
            UsageError: an unknown or derived parameter, or a value outside its bounds.
        """
        for name, value in values.items():
            p = self.params.get(name)
            if p is None:
                raise UsageError(f"`{name}` is not a parameter of model `{self.name}`; "
                                 + did_you_mean(name, self.params))
            if p.derived is not None:
                raise UsageError(f"`{name}` is derived ({name} := {ir.to_text(p.derived)}); set the parameters it uses")
            if not isinstance(value, numbers.Real) or not math.isfinite(value) or \
                    (p.bounds is not None and not p.bounds.contains(float(value))):
                where = f" in {p.bounds.text()}" if p.bounds is not None else ""
                raise UsageError(f"{name} = {value!r}: expected a finite number{where}")
        try:
            return self.with_params({k: float(v) for k, v in values.items()})
        except ValueError as err:
            raise UsageError(str(err)) from None

    def solve(self, param: str, target: str, bracket: tuple[float, float] | None = None) -> float:
        """The value of free parameter ``param`` at which ``target`` holds exactly.

        Args:
            target: ``"I(a; b) = VALUE"``, optionally ``bits`` after the value.
            bracket: ``(lo, hi)`` to search in (default: the parameter's bounds).

        Raises:
            SpecError: a bad target (caret into it), the MI not monotone on the bracket, the
                target out of reach (the message gives the reachable range).
            UsageError: an unknown or derived parameter, a bad bracket.
        """
        return self.solution(param, target, bracket).value

    def solution(self, param: str, target: str, bracket: tuple[float, float] | None = None):
        """Like :meth:`solve`, the whole :class:`mmmi_dsl.mi.solve.SolveResult` (value, achieved MI, evaluations)."""
        from mmmi_dsl.mi.solve import solve
        from mmmi_dsl.mi.targets import parse_target

        if not isinstance(target, str):
            raise UsageError(f"a target is text such as \"I(x1; x2) = 0.5\", got {target!r}")
        if bracket is not None:
            try:
                lo, hi = (float(x) for x in bracket)
            except (TypeError, ValueError):
                raise UsageError(f"bracket {bracket!r}: expected (lo, hi), two numbers") from None
            bracket = (lo, hi)
        query, value, unit, span = parse_target(self, target, TARGET_FILE)
        return solve(self, param, query, value, unit, bracket, span=span, sources={TARGET_FILE: target.strip()})

    def sweep(self, param: str, values, *queries: str, unit: str = "nats") -> list[dict[str, float]]:
        """The exact MI of ``queries`` at each value of ``param``: one dict per value,
        ``{param: value, query text: MI, ...}``. ``values``: numbers, or text as ``mmmic sweep
        --values`` takes (``"linspace(0.01, 1, 5)"``, ``"0.1,0.2"``)."""
        from mmmi_dsl.mi.sweep import sweep
        from mmmi_dsl.mi.targets import parse_values

        if unit not in UNITS:
            raise UsageError(f"unit {unit!r}: choose nats or bits")
        xs = parse_values(values, "values") if isinstance(values, str) else [float(v) for v in values]
        rows = sweep(self, param, xs, self._queries(queries))
        return [{param: row.value, **{r.query: _number(r, unit) for r in row.results}} for row in rows]

    # ----------------------------------------------------------- data

    def generate(self, out: str | Path, n: int, seed: int = 0, device: str = "cpu", **options) -> dict:
        """Write ``n`` tuples into the dataset directory ``out`` (resumes a matching run); returns the manifest.

        ``options`` are those of :func:`mmmi_dsl.dataset.generate.generate_dataset`: ``dtype``
        (``"float32"``/``"float64"``), ``standardize``, ``save_latents``, ``pmi`` (pairs
        ``("a", "b")`` or ``"a;b"``), ``chunk_size``, ``uint8_range`` (lo, hi), ``shard_size``,
        ``batch_size``, ``job`` (i, k), ``overwrite``, ``progress`` (default False here).
        """
        from mmmi_dsl.dataset.generate import generate_dataset

        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise UsageError(f"n = {n!r}: the number of tuples must be an integer of at least 1")
        options.setdefault("progress", False)
        if "pmi" in options:  # pairs of names, or "a;b" as --pmi takes
            options["pmi"] = tuple(tuple(x.strip() for x in (p.split(";") if isinstance(p, str) else p))
                                   for p in options["pmi"])
        return generate_dataset(self, Path(out), int(n), seed=seed, device=device, **options)

    def sampler(self, device: str = "cpu", seed: int = 0, dtype: str = "float32", standardize: str = "auto",
                **options):
        """A :class:`mmmi_dsl.backend.Sampler` (torch) drawing the tuples ``generate`` writes
        (``standardize="auto"`` as there); ``options``: ``save_latents``, ``pmi``, ``chunk_size``, ``uint8_range``."""
        import torch

        from mmmi_dsl.backend import Sampler

        if dtype not in ("float32", "float64"):
            raise UsageError(f"dtype {dtype!r}: choose float32 or float64")
        return Sampler(self, device=device, dtype=getattr(torch, dtype), standardize=standardize, seed=seed,
                       **options)

    def stream(self, n: int | None = None, seed: int = 0, **sampler_options):
        """A :class:`mmmi_dsl.backend.TupleStream` (a torch ``IterableDataset`` of dicts of tensors);
        ``n=None`` streams forever. ``sampler_options`` as for :meth:`sampler`."""
        from mmmi_dsl.backend import TupleStream

        return TupleStream(self.sampler(seed=seed, **sampler_options), n)


def spec_from_text(text: str, overrides: dict[str, str] | None = None, file: str = "<string>",
                   base_dir: Path | None = None, allow_paths: bool = False) -> Spec:
    """Parse, lower and check spec ``text`` (overrides as ``--set`` strings) into a :class:`Spec`."""
    from mmmi_dsl.lang.check import check
    from mmmi_dsl.lang.lower import lower
    from mmmi_dsl.lang.parse import parse_text

    program = parse_text(text, file)
    return Spec.of(check(lower(program, overrides, Path(base_dir) if base_dir else None, allow_paths=allow_paths),
                         {file: text}))
