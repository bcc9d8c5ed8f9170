"""mmmic: a declarative language and compiler for multimodal datasets with exact mutual information.

Pipeline (one package per stage, data flowing one way)::

    lang (parse -> lower -> check: text -> frozen IR) -> mi (exact MI, closed forms, solve)
    -> backend (torch sampler) -> dataset (shards on disk) -> cli

Python use (docs/python.md)::

    import mmmi_dsl as mm
    spec = mm.load("specs/two_views.mmi", d=64)   # a Spec: the IR with methods
    spec.mi("I(theta; x1)")                       # exact MI, nats
    spec.solve("rho_t1", "I(theta; x1) = 1")
    spec.generate("out/tv", n=1000)
    mm.verify("out/tv").ok

``verify``, ``merge``, ``load_arrays`` (:mod:`mmmi_dsl.dataset`) and ``estimate``
(:mod:`mmmi_dsl.estimators`) are imported on first use; nothing here imports torch.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from mmmi_dsl.errors import MmmicError, SpecError, UsageError
from mmmi_dsl.ir import Model
from mmmi_dsl.spec import Spec, override_strings, spec_from_text
from mmmi_dsl.version import __version__


def load(path: str | Path, overrides: dict | None = None, *, allow_paths: bool = False, **params) -> Spec:
    """Parse, lower and check a spec file; return it as a :class:`Spec` (its frozen IR, with methods).

    ``path`` may also be a dataset directory (or its ``manifest.json``): then the spec its manifest
    records, at the recorded parameters, as ``mmmic mi DIR`` answers it.

    Overrides of params and dims, as ``--set`` gives them: keywords (``d=64``,
    ``rho_t1=0.2``, ``d="3x32x32"``) or a dict (``{"d": "64"}``); numbers are passed as
    their text. Files the spec names resolve against its directory; ``allow_paths``
    admits files outside it (absolute paths, ``../``, links pointing out).

    Raises:
        SpecError: every problem found in the spec (with spans).
        UsageError: a bad override.
    """
    from mmmi_dsl.dataset.recorded import load_dataset_spec, manifest_path
    from mmmi_dsl.lang.check import check
    from mmmi_dsl.lang.lower import lower
    from mmmi_dsl.lang.parse import parse_file

    overrides = override_strings(overrides, params)
    if manifest_path(path) is not None:  # a dataset: the spec its manifest records, at its recorded values
        if overrides:
            raise UsageError(f"{path} is a dataset: its parameters are the ones it was generated with")
        return Spec.of(load_dataset_spec(path, allow_paths=allow_paths).model)
    program = parse_file(path)
    return Spec.of(check(lower(program, overrides, allow_paths=allow_paths), {program.file: program.text}))


def loads(text: str, overrides: dict | None = None, file: str = "<string>",
          base_dir: str | Path | None = None, *, allow_paths: bool = False, **params) -> Spec:
    """Like :func:`load` for spec text; file paths resolve against ``base_dir`` (default: the cwd)."""
    return spec_from_text(text, override_strings(overrides, params), file, Path(base_dir) if base_dir else None,
                          allow_paths)


#: Names imported on first use: module, attribute.
_LAZY = {"verify": ("mmmi_dsl.dataset", "verify"), "merge": ("mmmi_dsl.dataset", "merge"),
         "load_arrays": ("mmmi_dsl.dataset", "load_arrays"), "estimate": ("mmmi_dsl.estimators", "estimate"),
         "ESTIMATORS": ("mmmi_dsl.estimators", "ESTIMATORS"), "probe": ("mmmi_dsl.probe", "run_probes")}


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["load", "loads", "Spec", "Model", "MmmicError", "SpecError", "UsageError", "verify", "merge",
           "load_arrays", "estimate", "ESTIMATORS", "probe", "__version__"]
