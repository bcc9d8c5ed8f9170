"""The spec a dataset was generated from, read back from its manifest (``mmmic mi DIR``).

``manifest.json`` records the spec's text (``spec``), the name of its file (``spec_file``),
the values of its parameters (``params``) and dims (``dims``). :func:`load_dataset_spec`
lowers that text again at those values, so any query about the dataset is answered
exactly, not only the ones reported at generation time.

Files the spec reads (``image("templates/a.png")``, ``.npy`` templates and matrices,
flow weights) resolve against the **dataset directory**: the manifest keeps the spec
file's name but not its folder, and a dataset answers the same wherever it is moved or
copied, whatever the working directory. A dataset whose spec reads files therefore
needs them beside ``manifest.json``: ``generate`` copies them there (dataset/spec_files.py); a
missing one is E0208 at its line of the recorded spec, outside the directory E0216
(``allow_paths`` admits it). The exact values recorded in the manifest (``mi``) are
recomputed: :attr:`DatasetSpec.drift` lists any that the re-lowered spec no longer
gives (a template or weights file that changed since generation, or a fix in mmmic).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

from mmmi_dsl import ir
from mmmi_dsl.errors import SpecError

#: Recorded and recomputed exact MI agree when within this relative (and absolute) tolerance.
DRIFT_TOLERANCE = 1e-9


def manifest_path(path: str | Path) -> Path | None:
    """The manifest that ``path`` names: ``DIR`` (holding ``manifest.json``) or a ``.json`` file; None for a spec."""
    from mmmi_dsl.dataset.format import MANIFEST

    p = Path(path)
    if p.is_dir():  # a folder without a manifest is neither: reading it as a spec says so
        return p / MANIFEST if (p / MANIFEST).is_file() else None
    if p.suffix.lower() == ".json":
        return p
    return None


@dataclass(frozen=True)
class Drift:
    """A manifest's recorded exact MI (nats, or ``"inf"``) that its re-lowered spec gives differently."""

    query: str
    recorded: float | str
    now: float


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset's spec, lowered and checked at its recorded values.

    ``model`` is a :class:`mmmi_dsl.spec.Spec`; ``upper_bound``: the files were exported
    as 8-bit (``--uint8``), so the MI of the files is at most the model's.
    """

    model: ir.Model
    manifest: dict
    path: Path
    upper_bound: bool
    drift: tuple[Drift, ...] = ()


def load_dataset_spec(path: str | Path, *, allow_paths: bool = False, check_drift: bool = True) -> DatasetSpec:
    """The spec recorded in the manifest at ``path`` (a dataset directory or its manifest file).

    Free parameters and dims take the manifest's values (``params``, ``dims``), passed as
    overrides where they differ from the spec's defaults; derived parameters follow.

    Raises:
        DatasetError: no readable manifest, no spec text in it, a spec text that does not
            match ``spec_sha256``, or recorded values the spec does not take.
        SpecError: the recorded spec does not lower here (a file it reads is missing: E0208).
    """
    from mmmi_dsl.dataset.format import MANIFEST, DatasetError, read_manifest, source_name

    if Path(path).is_dir() and manifest_path(path) is None:
        raise DatasetError(f"{path}: no dataset here (no {MANIFEST}); give a directory `mmmic generate` wrote")
    mpath = manifest_path(path) or Path(path)
    manifest = read_manifest(mpath)
    text = manifest.get("spec")
    if not isinstance(text, str) or not text.strip():
        raise DatasetError(f"{mpath} records no spec text (`spec`), so its queries cannot be answered; "
                           "generate it from a spec file with `mmmic generate SPEC`")
    if hashlib.sha256(text.encode()).hexdigest() != manifest.get("spec_sha256"):
        raise DatasetError(f"{mpath}: the recorded spec text does not match its `spec_sha256`; "
                           "the manifest was edited after generation")
    base = mpath.parent
    file = source_name(manifest, mpath)
    spec = str(manifest.get("spec_file") or "spec")
    model = _lower(text, file, spec, base, {}, allow_paths)
    overrides = _overrides(model, manifest, mpath)
    if overrides:
        model = _lower(text, file, spec, base, overrides, allow_paths)
    _check_values(model, manifest, mpath)
    name = manifest.get("model")
    model = model.model_copy(update={"name": name if isinstance(name, str) and name
                                     else Path(str(manifest.get("spec_file") or "model")).stem})
    drift = recompute(model, manifest) if check_drift else ()
    return DatasetSpec(model, manifest, mpath, bool(manifest.get("mi_is_upper_bound")), tuple(drift))


def _lower(text: str, file: str, spec: str, base: Path, overrides: dict[str, str], allow_paths: bool
           ) -> ir.Model:
    from mmmi_dsl.errors import OverrideError
    from mmmi_dsl.spec import spec_from_text

    try:
        return spec_from_text(text, overrides, file, base, allow_paths)
    except SpecError as err:
        raise _located(err, file, base, spec) from None
    except OverrideError as err:  # a recorded value the spec does not take (bounds changed? not ours)
        from mmmi_dsl.dataset.format import DatasetError
        raise DatasetError(f"{file}: the recorded value {err.item or ''} does not fit the spec: {err.problem}"
                           ) from None


def _located(err: SpecError, file: str, base: Path, spec: str) -> SpecError:
    """``err`` with hints that say where the recorded spec's files are looked for."""
    out = []
    for d in err.diagnostics:
        if d.code in ("E0208", "E0216") and d.span is not None and d.span.file == file:
            d = dataclasses.replace(d, hint=f"the recorded spec reads its files relative to the dataset directory "
                                            f"{base}: copy them there from beside the original {spec}"
                                    + (" (or pass --allow-paths)" if d.code == "E0216" else ""))
        out.append(d)
    return SpecError(out, err.sources)


def _overrides(model: ir.Model, manifest: dict, path: Path) -> dict[str, str]:
    """``--set``-style strings for the recorded free parameters and dims that differ from the defaults."""
    from mmmi_dsl.dataset.format import DatasetError

    out: dict[str, str] = {}
    for name, value in (manifest.get("params") or {}).items():
        p = model.params.get(name)
        if p is None:
            raise DatasetError(f"{path} records a parameter `{name}` that its spec does not define")
        if p.derived is None and value != p.value:
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise DatasetError(f"{path}: `params.{name}` is {value!r}, not a finite number")
            out[name] = repr(float(value))
    for name, value in (manifest.get("dims") or {}).items():
        d = model.dims.get(name)
        if d is None:
            raise DatasetError(f"{path} records a dim `{name}` that its spec does not define")
        if value != d.value:
            if not isinstance(value, int) or isinstance(value, bool):
                raise DatasetError(f"{path}: `dims.{name}` is {value!r}, not an integer")
            out[name] = str(value)
    return out


def _check_values(model: ir.Model, manifest: dict, path: Path) -> None:
    """Every recorded parameter (derived ones too) and dim has its recorded value in ``model``."""
    from mmmi_dsl.dataset.format import DatasetError

    for key, have in (("params", {k: p.value for k, p in model.params.items()}),
                      ("dims", {k: d.value for k, d in model.dims.items()})):
        for name, value in (manifest.get(key) or {}).items():
            if have.get(name) != value:
                raise DatasetError(f"{path}: `{key}.{name}` is {value!r} but the recorded spec gives "
                                   f"{have.get(name)!r} at the recorded values")


def recompute(model: ir.Model, manifest: dict) -> list[Drift]:
    """The manifest's ``mi`` entries that ``model`` now gives differently (beyond :data:`DRIFT_TOLERANCE`)."""
    from mmmi_dsl.lang.lower import resolve_query
    from mmmi_dsl.mi.analysis import Analysis

    resolved = []
    for entry in manifest.get("mi") or []:
        try:
            resolved.append((entry, resolve_query(model, entry["query"], "manifest")))
        except SpecError:
            continue  # a recorded query this version cannot answer: nothing to compare
    engine = Analysis(model)
    engine.prepare([q for _, q in resolved])
    out = []
    for entry, q in resolved:
        recorded = entry.get("nats")
        try:
            now = engine.evaluate(q).nats
        except SpecError:
            continue  # nor one it cannot answer now
        want = math.inf if recorded == "inf" else recorded
        if not isinstance(want, (int, float)):
            continue
        if not (want == now or abs(want - now) <= DRIFT_TOLERANCE * max(1.0, abs(want))):
            out.append(Drift(entry["query"], recorded, now))
    return out
