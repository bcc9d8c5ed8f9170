"""Results rendered for people and files: MI tables, JSON, formulas, compiled bundles.

``mmmic compile SPEC -o DIR`` writes ``DIR/ir.json`` (the resolved IR) and the MI results;
files are written atomically (:func:`mmmi_dsl.files.write_atomic`).
"""

from __future__ import annotations

import math
from pathlib import Path

from mmmi_dsl import ir
from mmmi_dsl.files import write_atomic, write_json


def ir_json(model: ir.Model) -> str:
    """The IR as indented JSON; ``Model.model_validate_json`` reads it back equal."""
    return model.model_dump_json(indent=2)


def mi_json(model: ir.Model, results) -> dict:
    """The JSON of ``mmmic mi --json`` and of ``mi.json`` in a bundle."""
    return {"model": model.name,
            "params": {k: p.value for k, p in model.params.items()},
            "dims": {k: d.value for k, d in model.dims.items()},
            "results": [r.to_json() for r in results]}


def mi_table(model: ir.Model, queries, results) -> str:
    """A plain-text table of exact MI values (nats and bits); the limits (MMSE, RMSE, ACC) follow in
    a table of their own (one ``value`` column)."""
    from mmmi_dsl.mi.limits import is_limit

    info = [r for r in results if not is_limit(r)]
    tables = [_limit_table(model, [r for r in results if is_limit(r)])] if len(info) < len(results) else []
    if info or not tables:
        tables.insert(0, _information_table(model, info))
    return "\n\n".join(tables)


def _information_table(model: ir.Model, results) -> str:
    rows = [(r.query, _fmt(r.nats), _fmt(r.bits), r.reason if r.reason and math.isinf(r.nats) else "")
            for r in results]
    w = max([len("query")] + [len(r[0]) for r in rows])
    lines = [f"# model {model.name}: exact mutual information",
             f"{'query':<{w}}  {'nats':>12}  {'bits':>12}", f"{'-' * w}  {'-' * 12}  {'-' * 12}"]
    for q, nats, bits, note in rows:
        lines.append(f"{q:<{w}}  {nats:>12}  {bits:>12}" + (f"  ({note})" if note else ""))
    return "\n".join(lines)


def _limit_table(model: ir.Model, results) -> str:
    """Exact limits of prediction: the value and what it is (why, where it is exact by structure)."""
    from mmmi_dsl.mi.limits import MEANING

    w = max([len("query")] + [len(r.query) for r in results])
    lines = [f"# model {model.name}: exact limits of prediction (any model, from the given variables)",
             f"{'query':<{w}}  {'value':>12}  what", f"{'-' * w}  {'-' * 12}  {'-' * 4}"]
    for r in results:
        note = MEANING[r.kind] + (f" ({r.reason})" if r.reason else "")
        lines.append(f"{r.query:<{w}}  {_fmt(r.value):>12}  {note}")
    return "\n".join(lines)


def _fmt(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.6f}" if x == 0 or abs(x) >= 1e-4 else f"{x:.6e}"


#: compile's formulas.tex: stop deriving after this many seconds, and skip models with
#: more equation terms than this (decay: 12 s at N = 10, 56 s at N = 20 for all queries).
BUNDLE_FORMULA_SECONDS = 15.0
BUNDLE_FORMULA_MAX_TERMS = 1000


def formula_text(model: ir.Model, queries, fmt: str = "latex", numeric: set[str] | None = None,
                 skip_unsupported: bool = False, budget_s: float | None = None) -> str:
    """Closed forms of ``queries``: a LaTeX document body, text lines or sympy expressions.

    ``budget_s`` bounds the whole derivation (:func:`mmmi_dsl.mi.symbolic.time_budget`).
    With ``skip_unsupported``, queries outside the symbolic engine's structure, and the
    ones the budget did not reach, become comments (LaTeX); without it they are errors
    (E0211, E0215).
    """
    from mmmi_dsl.mi.symbolic import derive_each

    derived = derive_each(model, queries, numeric or set(), budget_s, stop_at_error=not skip_unsupported)
    return "\n".join(formula_lines(derived, fmt, skip_unsupported))


def formula_lines(derived, fmt: str = "latex", skip_unsupported: bool = False) -> list[str]:
    """One entry per :class:`~mmmi_dsl.mi.symbolic.Derivation`: its formula rendered, or a comment.

    Without ``skip_unsupported`` the first one without a formula raises its error
    (E0211), or E0215 when the time budget ran out.
    """
    from mmmi_dsl.errors import Diagnostic, SpecError

    out: list[str] = []
    for i, r in enumerate(derived):
        f = r.formula
        if f is not None:
            out.append("\\begin{equation}\n  " + f.latex() + "\n\\end{equation}" if fmt == "latex"
                       else f.text() if fmt == "text" else f.sympy())
        elif r.error is not None:
            if not skip_unsupported:
                raise r.error
            out.append(f"% {r.query.text}: {r.error.diagnostics[0].message}")
        elif not skip_unsupported:
            q = r.query
            raise SpecError([Diagnostic(
                "E0215", f"the symbolic engine gave up on {q.text} after {r.gave_up_s:g} s", q.span,
                f"{i} of {len(derived)} queries were derived",
                "raise the budget (--timeout SECONDS, 0 for none), replace symbols by numbers (--numeric "
                "templates, --numeric all), or get the exact value numerically with `mmmic mi`")])
        else:
            out.append(f"% {r.query.text}: skipped, the {r.gave_up_s:g} s budget for formulas ran out; "
                       f"run `mmmic formula SPEC --query \"{r.query.text}\"`")
    return out


def formula_failures(derived) -> list:
    """Why each :class:`~mmmi_dsl.mi.symbolic.Derivation` without a formula has none, as errors.

    A query outside the symbolic engine's structure keeps its own error (E0211, with the
    query's text as the source of its caret); the queries the time budget did not reach
    share one E0215 naming them.
    """
    from mmmi_dsl.errors import Diagnostic, SpecError

    out: list = []
    for r in derived:
        if r.error is not None:
            q = r.query
            if q.span is not None and q.span.file == "--query":
                r.error.sources.setdefault(q.span.file, q.text)
            out.append(r.error)
    late = [r for r in derived if r.formula is None and r.error is None]
    if late:
        q = late[0].query
        rest = [r.query.text for r in late[1:]]
        more = (f"; not reached either: {', '.join(rest[:4])}" + (f" and {len(rest) - 4} more" if len(rest) > 4 else "")
                if rest else "")
        sources = {q.span.file: q.text} if q.span is not None and q.span.file == "--query" else {}
        out.append(SpecError([Diagnostic(
            "E0215", f"the symbolic engine gave up on {q.text} after {late[0].gave_up_s:g} s{more}", q.span,
            f"{len(derived) - len(late)} of {len(derived)} queries were derived",
            "raise the budget (--timeout SECONDS, 0 for none), replace symbols by numbers (--numeric "
            "templates, --numeric all), or get the exact value numerically with `mmmic mi`")], sources))
    return out


def write_bundle(model: ir.Model, out_dir: Path) -> list[Path]:
    """Write the compiled bundle (ir.json, mi.json, formulas.tex); returns the files written."""
    from mmmi_dsl.mi.analysis import Analysis, default_queries

    out_dir = Path(out_dir)
    target = out_dir / "ir.json"
    write_atomic(target, ir_json(model) + "\n")
    queries = default_queries(model)
    results = Analysis(model).evaluate_all(queries)
    mi_path = out_dir / "mi.json"
    write_json(mi_path, mi_json(model, results))
    tex_path = out_dir / "formulas.tex"
    header = f"% exact mutual information of model {model.name} (nats unless marked bits), by mmmic\n"
    n_terms = sum(t.count for v in model.variables.values() for t in v.terms)
    if n_terms > BUNDLE_FORMULA_MAX_TERMS:
        body = (f"% skipped: {n_terms} equation terms (more than {BUNDLE_FORMULA_MAX_TERMS}) would take long to "
                "derive symbolically; run `mmmic formula SPEC --query ...` for the ones you need")
    else:
        body = formula_text(model, queries, "latex", skip_unsupported=True, budget_s=BUNDLE_FORMULA_SECONDS)
    write_atomic(tex_path, header + body + "\n")
    return [target, mi_path, tex_path]


def summary(model: ir.Model) -> str:
    """One line describing a model, for ``mmmic check``."""
    parts = [f"{len(model.params)} params", f"{len(model.protos)} proto-latents",
             f"{len(model.variables)} latents/targets", f"{len(model.flows)} modalities"]
    if model.labels:
        parts.append(f"{len(model.labels)} labels")
    if model.reports:
        parts.append(f"{len(model.reports)} reports")
    return f"model {model.name}: " + ", ".join(parts)


def estimate_json(query: str, data, rows) -> dict:
    """The JSON of ``mmmic estimate --json``: the query, the exact MI, n and one entry per estimator.

    Args:
        query: the query as given (stripped).
        data: a :class:`mmmi_dsl.estimators.saved.SavedPair`.
        rows: its :class:`mmmi_dsl.estimators.saved.EstimatorRow` results.
    """
    out = {"query": query, "exact_nats": data.exact, "n": data.n, "estimates": [r.to_json() for r in rows]}
    if data.note:
        out["exact_note"] = data.note  # why no exact value is known
    return out


def estimate_table(query: str, directory: str, data, rows) -> str:
    """``mmmic estimate``'s table: estimate, standard error, error against the exact MI, seconds."""
    exact = data.exact
    known = isinstance(exact, (int, float))
    head = (f"exact {exact:.6f} nats" if known else "exact: infinite" if exact == "inf"
            else f"exact: none known ({data.note})" if data.note else "exact: none known in the manifest")
    lines = [f"# {query} on {directory} ({data.n:,} samples): {head}",
             f"{'estimator':<10}  {'nats':>10}  {'stderr':>9}  {'error':>10}  {'seconds':>8}",
             f"{'-' * 10}  {'-' * 10}  {'-' * 9}  {'-' * 10}  {'-' * 8}"]
    for r in rows:
        if r.nats is None:
            lines.append(f"{r.estimator:<10}  failed: {r.error}")
            continue
        se = f"{r.stderr:.4f}" if r.stderr is not None else "-"
        err = f"{r.nats - exact:+.4f}" if known else "-"
        lines.append(f"{r.estimator:<10}  {r.nats:>10.4f}  {se:>9}  {err:>10}  {r.seconds:>8.2f}")
    return "\n".join(lines)


def probe_markdown(report) -> str:
    """``mmmic bench-probe``'s table (markdown): each probe's test score and 95% interval beside its exact
    limit (:class:`mmmi_dsl.probe.ProbeReport`)."""
    lines = [f"Probes on `{report.directory}` (model {report.model}, features: {report.features}); "
             "accuracy: logistic probe, Wilson 95% interval; R²: ridge probe, bootstrap 95% interval.", "",
             "| probe | train / test | probe | 95% interval | exact limit | limit − probe |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in report.rows:
        query = r.query.replace("|", "\\|")  # a bare | would end the cell
        lines.append(f"| {query} | {r.n_train:,} / {r.n_test:,} | {r.score:.4f} | [{r.ci[0]:.4f}, {r.ci[1]:.4f}] "
                     f"| {r.exact:.4f} | {r.exact - r.score:+.4f} |")
    return "\n".join(lines)


def regression_markdown(results) -> str:
    """``results.md`` of ``mmmic bench-regression``: per dataset the exact I(θ; X), the test RMSE with
    its interval, the Bayes RMSE and their ratio (a :class:`mmmi_dsl.regression.RegressionResults`)."""
    key, points = results.key, results.points
    unit = "bits" if key["query"].rstrip(")").endswith("bits") else "nats"
    lines = [f"{key['regressor']} regression of {results.target} from {results.modality} on `{key['model']}`, "
             f"{key['param']} solved for {len(points)} targets of {key['query']}, {key['n']:,} tuples each "
             "(70 % train, 10 % validation, 20 % test)", "",
             f"| target ({unit}) | {key['param']} | I (nats) | RMSE | 95 % interval | Bayes RMSE | ratio | seconds |",
             "| ---: | ---: | ---: | ---: | :---: | ---: | ---: | ---: |"]
    for p in points:
        lines.append(f"| {p.target:g} | {p.param:.5g} | {p.target_nats:.4f} | {p.rmse:.4f} | "
                     f"[{p.rmse_ci[0]:.4f}, {p.rmse_ci[1]:.4f}] | {p.bayes_rmse:.4f} | {p.ratio:.3f} | "
                     f"{p.seconds:.1f} |")
    lines += ["", f"Bayes RMSE: sd({results.target}) e^(-I), the least RMSE of any predictor "
              f"(sd = {points[0].sd:.4g})." if points else "", "RMSE: on the test split, its interval a "
              "bootstrap (BCa) over the test tuples; ratio: RMSE / Bayes RMSE."]
    return "\n".join(lines) + "\n"
