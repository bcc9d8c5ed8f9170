"""The ``mmmi-dataset/1`` format: constants, file names, the manifest's schema and reading.

A dataset is a directory: ``manifest.json`` plus one ``.npy`` per variable per shard
(``shard-00000/x.npy``, first axis = sample). ``docs/dataset-format.md`` is the reference.
The manifest's schema is the pydantic model :class:`Manifest`; :func:`read_manifest`
checks a file against it and returns the plain dict.
"""

from __future__ import annotations

import io
import json
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Iterable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from mmmi_dsl.errors import MmmicError, did_you_mean

if TYPE_CHECKING:
    from mmmi_dsl import ir

FORMAT = "mmmi-dataset/1"
MANIFEST = "manifest.json"
# The fields that decide whether an existing directory holds this run's dataset.
IDENTITY = ("format", "n", "seed", "chunk_size", "shard_size", "spec_sha256", "params", "variables",
            "fingerprint")
# Keys the writer sets; the caller's metadata may not use them.
RESERVED = frozenset({"format", "n", "seed", "chunk_size", "shard_size", "variables", "fingerprint",
                      "job", "parts", "complete", "shards"})
REQUIRED_METADATA = ("spec", "spec_sha256", "params", "mi")
SHARD_KEYS = ("index", "start", "n", "files", "sha256", "bytes")


class DatasetError(MmmicError):
    """A dataset directory that is missing, corrupt or from another run (exit code 1)."""

    exit_code = 1


# ----------------------------------------------------------------- naming


def manifest_name(job: tuple[int, int]) -> str:
    """``manifest.json`` for an unsplit run, ``manifest.part-I-of-K.json`` for job I of K."""
    i, k = job
    return MANIFEST if k == 1 else f"manifest.part-{i}-of-{k}.json"


def manifest_paths(out_dir: Path) -> list[Path]:
    """The manifests in a directory: ``manifest.json`` and the part manifests."""
    return sorted(p for p in [out_dir / MANIFEST, *out_dir.glob("manifest.part-*-of-*.json")] if p.is_file())


def file_stems(variables: Iterable[str]) -> dict[str, str]:
    """File stems of variable names: ``x[1]`` -> ``x_1_``, made unique ignoring case.

    Every character outside ``[A-Za-z0-9_-]`` becomes ``_``; a clash gets ``-2``, ``-3``,
    ... in sorted name order, so the mapping depends only on the set of names.
    """
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in sorted(variables):
        base = re.sub(r"[^A-Za-z0-9_-]", "_", name) or "_"
        stem, k = base, 1
        while stem.lower() in used:
            k += 1
            stem = f"{base}-{k}"
        used.add(stem.lower())
        out[name] = stem
    return out


def shard_count(n: int, shard_size: int) -> int:
    """The number of shards S of n samples."""
    return -(-n // shard_size)


def shard_rows(manifest: dict, index: int) -> tuple[int, int]:
    """The samples ``[start, stop)`` of shard ``index``."""
    size = manifest["shard_size"]
    return index * size, min(manifest["n"], (index + 1) * size)


def npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """The ``.npy`` (version 1.0) header of a C-order array of this shape and dtype."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(shape)})
    return buf.getvalue()


def file_bytes(manifest: dict, index: int, var: str) -> int:
    """The size of one shard file: header plus data."""
    start, stop = shard_rows(manifest, index)
    spec = manifest["variables"][var]
    shape = (stop - start, *spec["shape"])
    return len(npy_header(shape, np.dtype(spec["dtype"]))) + math.prod(shape) * np.dtype(spec["dtype"]).itemsize


# ----------------------------------------------------------------- the manifest's schema

# Strict: JSON types exactly (``"7"`` is no integer, ``true`` no number). Extra keys are allowed
# everywhere (the caller's metadata lives at the top level). ``expected`` in a schema node is
# what an error at that node says is expected (see :func:`_describe`). Validators are built on first
# use (defer_build): every command imports this module, `mmmic mi SPEC` reads no manifest (20 ms).
_STRICT = ConfigDict(strict=True, extra="allow", defer_build=True)
Count = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]


def _expect(text: str) -> dict:
    return {"json_schema_extra": {"expected": text}}


class VariableSpec(BaseModel):
    """One saved variable: per-sample shape and numpy dtype name."""

    model_config = ConfigDict(strict=True, extra="allow", defer_build=True,
                              json_schema_extra={"expected": '{"shape": [...], "dtype": "float32"}'})
    shape: list[Count]
    dtype: str

    @field_validator("dtype")
    @classmethod
    def _numpy_dtype(cls, value: str) -> str:
        try:
            has_object = np.dtype(value).hasobject
        except (TypeError, ValueError, SyntaxError):  # numpy reads "i4,f4"-style strings with ast
            raise PydanticCustomError("dtype", "is {dtype}, not a numpy dtype", {"dtype": repr(value)}) from None
        if has_object:
            raise PydanticCustomError("dtype", "is {dtype}: object arrays are not allowed", {"dtype": repr(value)})
        return value


class MIEntry(BaseModel):
    """One exact-MI result: ``{"query": "I(a; b)", "nats": ..., "bits": ...}``."""

    model_config = ConfigDict(strict=True, extra="allow", defer_build=True,
                              json_schema_extra={"expected": '{"query": "I(a; b)", "nats": ...}'})
    query: str


class ShardEntry(BaseModel):
    """One written shard: samples ``[start, start + n)``, and per variable its file, sha256 and size."""

    model_config = ConfigDict(strict=True, extra="allow", defer_build=True,
                              json_schema_extra={"expected": f"an object with {', '.join(SHARD_KEYS)}"})
    index: Count
    start: Count
    n: Count
    files: dict[str, str] = Field(**_expect("{variable: str}"))
    sha256: dict[str, str] = Field(**_expect("{variable: str}"))
    bytes: dict[str, int] = Field(**_expect("{variable: int}"))

    @field_validator("sha256", "bytes")
    @classmethod
    def _same_variables(cls, value: dict, info: ValidationInfo) -> dict:
        if "files" in info.data and set(value) != set(info.data["files"]):
            raise PydanticCustomError("variables", "names other variables than its shard's `files`")
        return value


class Manifest(BaseModel):
    """``manifest.json`` or a part manifest ``manifest.part-I-of-K.json``.

    A part manifest has ``job`` = [I, K]; a merged one has ``parts`` (their paths) instead.
    ``complete``: every shard of the run (of the job, for a part) is listed.
    """

    model_config = _STRICT
    format: str
    n: Positive
    seed: int
    chunk_size: Positive
    shard_size: Positive
    spec_sha256: str
    params: dict[str, Any]
    variables: dict[str, VariableSpec]
    fingerprint: dict[str, Any]
    shards: list[ShardEntry]
    complete: bool
    mi: list[MIEntry] = []
    gaussian_arrays: dict[str, str] = {}
    parts: list[str] = []
    job: list[Count] = Field(default=[0, 1], min_length=2, max_length=2, **_expect("[I, K]"))


@lru_cache(maxsize=1)
def _schema() -> dict:
    return Manifest.model_json_schema()


def _node(loc: tuple) -> dict:
    """The JSON-schema node of the manifest at ``loc`` (``("shards", 1, "index")``)."""
    schema = _schema()
    node = schema
    for key in loc:
        while "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
        if isinstance(key, int):
            node = node.get("items", {})
        else:
            node = node.get("properties", {}).get(key) or node.get("additionalProperties") or {}
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _describe(node: dict) -> str:
    """What a schema node expects, in words: ``an integer >= 1``."""
    if "expected" in node:
        return node["expected"]
    kind = node.get("type")
    words = {"integer": "an integer", "string": "a string", "object": "an object", "array": "a list",
             "boolean": "true or false"}.get(kind, "another value")
    return words + (f" >= {node['minimum']}" if "minimum" in node else "")


def _path(loc: tuple) -> str:
    """``("shards", 1, "index")`` -> ``shards[1].index``."""
    out = ""
    for key in loc:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def _value_at(data, loc: tuple):
    for key in loc:
        data = data[key]
    return data


def manifest_problem(data) -> str | None:
    """What makes ``data`` unusable as a manifest, or None.

    Missing top-level keys first (``missing n, seed``), else the first value of the wrong
    JSON type, named by its path: ``shards[1].index is "1", expected an integer >= 0``.
    """
    try:
        Manifest.model_validate(data)
    except ValidationError as err:
        errors = err.errors(include_url=False)
    else:
        return None
    missing = [e["loc"][0] for e in errors if e["type"] == "missing" and len(e["loc"]) == 1]
    if missing:
        return f"missing {', '.join(missing)}"
    e = errors[0]
    loc = tuple(e["loc"])
    if not loc:
        return "not a JSON object"
    if e["type"] == "missing":  # a nested object lacks a key: the object is what is wrong
        loc = loc[:-1]
    if e["type"] in ("dtype", "variables"):  # the validators' own errors
        return f"`{_path(loc)}` {e['msg']}"
    parent = _node(loc[:-1])
    if "properties" not in parent and isinstance(parent.get("additionalProperties"), dict) and "expected" in parent:
        loc = loc[:-1]  # a value of a {variable: ...} map: the map is reported
    return f"`{_path(loc)}` is {short(_value_at(data, loc))}, expected {_describe(_node(loc))}"


def read_manifest(path: Path) -> dict:
    """A manifest file as a dict, checked against :class:`Manifest`.

    Raises:
        DatasetError: unreadable, not JSON, or not a valid manifest (the key is named).
    """
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:
        raise DatasetError(f"cannot read {path}: {err}") from None
    problem = manifest_problem(manifest)
    if problem:
        raise DatasetError(f"{path} is not a valid {FORMAT} manifest: {problem}")
    return manifest


#: identity fields added after the format: a manifest without one cannot be resumed, and is told why
RECORDED_LATER = {
    "fingerprint.learned_flows": ("its learned flows' weights and solver",
                                  "whether its images came from the same flows as these"),
    "fingerprint.files": ("the SHA-256 of the files its spec reads",
                          "whether its tuples came from the same templates, matrices and weights as these")}


def identity_difference(old: dict, new: dict) -> str | None:
    """Where two manifests' identities first differ (``seed is 7 there, 8 here``), or None."""
    for key in IDENTITY:
        if old.get(key) != new.get(key):
            where, a, b = first_difference(old.get(key), new.get(key), key)
            if where in RECORDED_LATER and a is None:
                recorded, same = RECORDED_LATER[where]
                return f"it was written before mmmic recorded {recorded} ({where}), so a resume cannot tell {same}"
            return f"{where} is {short(a)} there, {short(b)} here"
    return None


#: the ``generate`` flags of the identity fields that only say how a run is cut (its tuples and bits
#: stay those of the spec, seed and n): the default shard size depends on the chunk size, so a resume
#: names both
RESUME_FLAGS = {"chunk_size": "--chunk-size", "shard_size": "--shard-size"}


def resume_flags(old: dict, new: dict) -> str | None:
    """The ``generate`` flags that make ``new`` continue ``old`` (``--chunk-size 1024 --shard-size 288``),
    or None where they differ in another field too (``-n``, ``--seed``, the spec, its parameters, the
    flows: another dataset, not a resume)."""
    differ = [key for key in IDENTITY if old.get(key) != new.get(key)]
    if not differ or any(key not in RESUME_FLAGS for key in differ):
        return None
    return " ".join(f"{flag} {old[key]}" for key, flag in RESUME_FLAGS.items())


def first_difference(a, b, path: str) -> tuple[str, object, object]:
    """Descend into dicts and equal-length lists to the first difference (``params.rho``,
    ``fingerprint.learned_flows.x1[0].weights_sha256``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return first_difference(a.get(k), b.get(k), f"{path}.{k}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return first_difference(x, y, f"{path}[{i}]")
    return path, a, b


def short(value) -> str:
    """A JSON value as text, cut at 80 characters."""
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ----------------------------------------------------------------- reading


def load_arrays(path: str | Path, name: str) -> np.ndarray:
    """Variable ``name`` of a complete dataset, (n, *shape); memory-mapped if one shard."""
    root = Path(path)
    manifest = read_manifest(root / MANIFEST)
    if name not in manifest["variables"]:
        raise DatasetError(f"{root} has no variable `{name}`; {did_you_mean(name, manifest['variables'])}")
    if not manifest["complete"]:
        raise DatasetError(f"{root} is incomplete: resume the run (or merge its parts) first")
    arrays = [np.load(root / s["files"][name], mmap_mode="r") for s in sorted(manifest["shards"],
                                                                            key=lambda s: s["index"])]
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


# ----------------------------------------------------------------- recorded specs


def source_name(manifest: dict, path: Path) -> str:
    """The file name spans of the recorded spec carry: ``two_views.mmi (in out/tv/manifest.json)``."""
    return f"{manifest.get('spec_file') or 'spec'} (in {path})"


def spec_source(model: ir.Model) -> tuple[str, str]:
    """The text and file name of ``model``'s spec: its file's; for a spec read back from a dataset
    (source ``NAME (in DIR/manifest.json)``, :func:`source_name`), the ones that manifest records;
    ``("", "<string>")`` for a spec given as a string."""
    source = Path(model.source_file)
    if model.source_file != "<string>" and source.is_file():
        return source.read_text(encoding="utf-8"), source.name
    name, sep, rest = model.source_file.rpartition(" (in ")
    if sep and rest.endswith(")"):
        try:
            manifest = read_manifest(Path(rest[:-1]))
        except DatasetError:
            manifest = {}
        if isinstance(manifest.get("spec"), str):
            return manifest["spec"], name
    return "", source.name
