"""Croissant metadata (JSON-LD, https://mlcommons.org/croissant/1.1): ``croissant.json``.

Written into every complete dataset directory by ``mmmic generate`` and ``mmmic merge``,
and into every export by ``mmmic export``. It holds:

- ``distribution``: one ``cr:FileObject`` per file (path, size, sha256; the shard files'
  from the manifest, ``manifest.json``'s hashed as it is now) and one ``cr:FileSet`` per
  variable (or per export format) grouping them;
- ``recordSet``: one record set ``samples`` with a ``cr:Field`` per variable: its data type,
  ``isArray`` and ``arrayShape`` (per sample), its role and dtype in the description;
- the exact MI values as ``variableMeasured`` (``sc:PropertyValue``: the query, nats, bits),
  the spec text, its sha256, the parameter values and the split rule as ``mmmi:`` properties.

The file depends only on the manifest (and the exported files): writing it twice gives the
same bytes. It is an addition: no other file of the dataset changes.
"""

from __future__ import annotations

import re
from pathlib import Path

from mmmi_dsl.dataset.format import MANIFEST, file_stems
from mmmi_dsl.dataset.reader import Column, roles, split_rule
from mmmi_dsl.dataset.safety import is_regular, refuse_link
from mmmi_dsl.files import dumps_json, sha256_file, write_atomic

CROISSANT = "croissant.json"
CONFORMS_TO = "http://mlcommons.org/croissant/1.1"
#: The namespace of the mmmic-specific dataset properties (a URN: no web page is claimed).
NAMESPACE = "urn:mmmic:"

# The standard Croissant 1.1 @context (as mlcroissant writes it), plus the mmmi prefix.
CONTEXT = {
    "@language": "en", "@vocab": "https://schema.org/", "arrayShape": "cr:arrayShape", "citeAs": "cr:citeAs",
    "column": "cr:column", "conformsTo": "dct:conformsTo", "containedIn": "cr:containedIn",
    "cr": "http://mlcommons.org/croissant/", "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"}, "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/", "description": {"@container": "@language"},
    "equivalentProperty": "cr:equivalentProperty", "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract", "field": "cr:field", "fileProperty": "cr:fileProperty", "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet", "format": "cr:format", "includes": "cr:includes", "isArray": "cr:isArray",
    "isLiveDataset": "cr:isLiveDataset", "jsonPath": "cr:jsonPath", "key": "cr:key", "md5": "cr:md5",
    "name": {"@container": "@language"}, "parentField": "cr:parentField", "path": "cr:path",
    "recordSet": "cr:recordSet", "references": "cr:references", "regex": "cr:regex", "repeated": "cr:repeated",
    "replace": "cr:replace", "samplingRate": "cr:samplingRate", "sc": "https://schema.org/",
    "separator": "cr:separator", "source": "cr:source", "subField": "cr:subField", "transform": "cr:transform",
    "mmmi": NAMESPACE,
}

NPY = "application/x-npy"


def data_type(dtype: str) -> str:
    """The schema.org data type of a numpy dtype name: ``sc:Float``, ``sc:Integer`` or ``sc:Boolean``."""
    if dtype.startswith("float"):
        return "sc:Float"
    return "sc:Boolean" if dtype == "bool" else "sc:Integer"


def file_object(rel: str, sha256: str, size: int, encoding: str) -> dict:
    """One ``cr:FileObject``: a file of the dataset by its path relative to the metadata."""
    return {"@type": "cr:FileObject", "@id": rel, "name": rel, "contentUrl": rel, "contentSize": f"{size} B",
            "encodingFormat": encoding, "sha256": sha256}


def field(record: str, column: Column, source: dict, shape: tuple[int, ...] | None = None,
          data_type_: str | None = None) -> dict:
    """The ``cr:Field`` of one variable: per-sample shape (``arrayShape``), type, role.

    Its ``@id`` is ``record/STEM`` with the variable's file stem (``pmi:a;b`` -> ``pmi_a_b``: a
    colon would read as an IRI prefix); its ``name`` is the variable's name.
    """
    shape = column.shape if shape is None else shape
    stem = file_stems([column.name])[column.name]
    out = {"@type": "cr:Field", "@id": f"{record}/{stem}", "name": column.name,
           "description": f"{column.role}, {column.dtype}, per-sample shape {list(column.shape)}",
           "dataType": data_type_ or data_type(column.dtype), "source": source}
    if shape:
        out |= {"isArray": True, "arrayShape": ",".join(map(str, shape))}
    return out


def document(manifest: dict, distribution: list[dict], record_sets: list[dict], description: str) -> dict:
    """The JSON-LD document: dataset-level properties (exact MI, the spec) around files and record sets."""
    name = str(manifest.get("model") or Path(str(manifest.get("spec_file") or "dataset")).stem)
    measured = [{"@type": "sc:PropertyValue", "name": e["query"], "value": e["nats"], "unitText": "nat",
                 "description": f"exact mutual information: {e['nats']} nats = {e.get('bits')} bits"
                 + (f" ({e['reason']})" if e.get("reason") else "")}
                for e in manifest.get("mi", [])]
    doc = {"@context": CONTEXT, "@type": "sc:Dataset", "conformsTo": CONFORMS_TO, "name": name,
           "description": description, "citeAs": f"mmmic dataset {name}, spec sha256 {manifest['spec_sha256']}",
           "variableMeasured": measured,
           "mmmi:format": manifest["format"], "mmmi:n": manifest["n"], "mmmi:seed": manifest["seed"],
           "mmmi:spec": manifest.get("spec", ""), "mmmi:specFile": manifest.get("spec_file", ""),
           "mmmi:specSha256": manifest["spec_sha256"], "mmmi:params": dumps_json(manifest.get("params", {})),
           "mmmi:dims": dumps_json(manifest.get("dims", {})), "mmmi:splits": dumps_json(split_rule(manifest)),
           "mmmi:miIsUpperBound": bool(manifest.get("mi_is_upper_bound")),
           "distribution": distribution,
           "recordSet": record_sets}
    return doc


def record_set(rid: str, name: str, description: str, fields: list[dict]) -> dict:
    """One ``cr:RecordSet``."""
    return {"@type": "cr:RecordSet", "@id": rid, "name": name, "description": description, "field": fields}


def _pattern(rel: str) -> str:
    """``../job1/shard-00001/y.npy`` -> ``../job1/shard-*/y.npy`` (the glob of a variable's files)."""
    return re.sub(r"shard-\d+(?=/[^/]+$)", "shard-*", rel)


def dataset_croissant(root: Path, manifest: dict) -> dict:
    """The Croissant document of a complete dataset directory (its shard files and manifest)."""
    shards = sorted(manifest["shards"], key=lambda s: s["index"])
    distribution = [file_object(MANIFEST, sha256_file(root / MANIFEST), (root / MANIFEST).stat().st_size,
                                "application/json")]
    role = roles(manifest)
    stems = file_stems(manifest["variables"])
    sets = []
    for var, spec in manifest["variables"].items():
        distribution += [file_object(s["files"][var], s["sha256"][var], s["bytes"][var], NPY) for s in shards]
        fileset = f"files/{stems[var]}"
        distribution.append({"@type": "cr:FileSet", "@id": fileset, "name": fileset, "encodingFormat": NPY,
                             "includes": sorted({_pattern(s["files"][var]) for s in shards})})
        column = Column(var, role[var], tuple(spec["shape"]), spec["dtype"])
        source = {"fileSet": {"@id": fileset}, "extract": {"fileProperty": "content"}}
        sets.append(record_set(stems[var], var, f"variable {var}: one record per sample, in the order of the "
                               "shards (by index) and of the rows in each file", [field(stems[var], column, source)]))
    text = (f"{manifest['n']} samples of the mmmic model {manifest.get('model', '')} in the mmmi-dataset/1 "
            "format: one .npy per variable per shard, first axis the sample (see manifest.json); one record "
            "set per variable, aligned by sample index. The exact mutual information of the generating "
            "model is in variableMeasured.")
    return document(manifest, distribution, sets, text)


def write_croissant(folder: Path, doc: dict) -> bool:
    """Write ``folder/croissant.json`` atomically unless it already holds these bytes; whether it wrote.

    The caller holds the folder's writer lock where there is one; a link in its place is refused.
    """
    path = Path(folder) / CROISSANT
    text = dumps_json(doc) + "\n"
    refuse_link(path)
    if is_regular(path) and path.read_bytes() == text.encode():
        return False
    write_atomic(path, text)
    return True
