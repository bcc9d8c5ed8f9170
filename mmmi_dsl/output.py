"""Stage 6, output: compiled bundles on disk.

``mmmic compile SPEC -o DIR`` writes ``DIR/ir.json`` (the resolved IR). Files are
written atomically (temp file, then rename) so a killed run never leaves half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from . import ir


def ir_json(model: ir.Model) -> str:
    """The IR as indented JSON; ``Model.model_validate_json`` reads it back equal."""
    return model.model_dump_json(indent=2)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a file so that readers see the old content or the new, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bundle(model: ir.Model, out_dir: Path) -> list[Path]:
    """Write the compiled bundle; returns the files written."""
    out_dir = Path(out_dir)
    target = out_dir / "ir.json"
    write_atomic(target, ir_json(model) + "\n")
    return [target]


def summary(model: ir.Model) -> str:
    """One line describing a model, for ``mmmic check``."""
    parts = [f"{len(model.params)} params", f"{len(model.protos)} proto-latents",
             f"{len(model.variables)} latents/targets", f"{len(model.flows)} modalities"]
    if model.labels:
        parts.append(f"{len(model.labels)} labels")
    if model.reports:
        parts.append(f"{len(model.reports)} reports")
    return f"model {model.name}: " + ", ".join(parts)


def dumps_json(obj) -> str:
    return json.dumps(obj, indent=2, allow_nan=False)
