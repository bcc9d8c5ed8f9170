"""mmmic: a declarative language and compiler for multimodal datasets with exact mutual information.

Pipeline (one module per stage, data flowing one way)::

    parse (text -> syntax tree) -> lower (-> frozen IR) -> check -> analysis (exact MI)
    -> backend (torch sampler) -> output (bundles, datasets) -> cli

Quick use::

    from mmmi_dsl import load
    model = load("specs/two_views.mmi", overrides={"d": "64"})
"""

from __future__ import annotations

from pathlib import Path

from mmmi_dsl.errors import MmmicError, SpecError, UsageError
from mmmi_dsl.ir import Model

__version__ = "0.1.0"


def load(path: str | Path, overrides: dict[str, str] | None = None, *, allow_paths: bool = False) -> Model:
    """Parse, lower and check a spec file; return its frozen IR.

    Files the spec names resolve against its directory; ``allow_paths`` admits files
    outside it (absolute paths, ``../``, links pointing out).

    Raises:
        SpecError: every problem found in the spec (with spans).
        UsageError: a bad override.
    """
    from mmmi_dsl.lang.check import check
    from mmmi_dsl.lang.lower import lower
    from mmmi_dsl.lang.parse import parse_file

    program = parse_file(path)
    return check(lower(program, overrides, allow_paths=allow_paths), {program.file: program.text})


def loads(text: str, overrides: dict[str, str] | None = None, file: str = "<string>",
          base_dir: str | Path | None = None, *, allow_paths: bool = False) -> Model:
    """Like :func:`load` for spec text; file paths resolve against ``base_dir`` (default: the cwd)."""
    from mmmi_dsl.lang.check import check
    from mmmi_dsl.lang.lower import lower
    from mmmi_dsl.lang.parse import parse_text

    program = parse_text(text, file)
    return check(lower(program, overrides, Path(base_dir) if base_dir else None, allow_paths=allow_paths),
                 {file: text})


__all__ = ["load", "loads", "Model", "MmmicError", "SpecError", "UsageError", "__version__"]
