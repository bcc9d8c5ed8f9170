"""The house rules of docs/architecture.md, checked on the source: sizes, imports, torch.

Every import of the package is read from the source with :mod:`ast` (functions' lazy imports
too), so a cycle through a lazy import counts as much as one at module level.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

from .conftest import ROOT

PACKAGE = ROOT / "mmmi_dsl"
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 400


def modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = modules()


def imports(name: str, path: Path) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) of every package import in a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == "mmmi_dsl"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            if base.split(".")[0] != "mmmi_dsl":
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append((sub, "", node.lineno) if sub in MODULES else (base, a.name, node.lineno))
    return out


def import_graph() -> nx.DiGraph:
    g = nx.DiGraph()
    for name, path in MODULES.items():
        g.add_node(name)
        for target, _, _ in imports(name, path):
            if target != name:
                g.add_edge(name, target)
    return g


def test_no_module_is_over_600_lines_and_no_class_over_400():
    too_long = []
    for name, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"module {name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                too_long.append(f"class {name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not too_long, too_long


def test_the_package_has_no_import_cycle():
    cycles = list(nx.simple_cycles(import_graph()))
    assert not cycles, f"import cycles: {sorted(cycles, key=len)[:5]}"


def test_the_import_walk_sees_the_real_imports():
    """The walk must find known edges, or the cycle test could not fail."""
    g = import_graph()
    assert g.has_edge("mmmi_dsl.lang.lower.constructors", "mmmi_dsl.builtins")
    assert g.has_edge("mmmi_dsl.flows.cnf", "mmmi_dsl.builtins.weights")
    assert g.has_edge("mmmi_dsl.cli.main", "mmmi_dsl.cli.spec")
    assert len(g.edges) > 100


def test_no_private_name_is_imported_across_modules():
    private = [f"{name}:{line} imports {target}.{what}" for name, path in MODULES.items()
               for target, what, line in imports(name, path) if what.startswith("_") and what != "__version__"]
    assert not private, private


def test_ir_and_errors_import_nothing_above_them():
    for name in ("mmmi_dsl.ir", "mmmi_dsl.errors"):
        targets = {t for t, _, _ in imports(name, MODULES[name])}
        assert targets <= {"mmmi_dsl.ir"}, (name, targets)


@pytest.mark.parametrize("code", [
    "import mmmi_dsl as mm; spec = mm.load('specs/digits_views.mmi'); spec.mi('I(x1; x2)')",
    "from mmmi_dsl.cli import main; main(['mi', 'specs/digits_views.mmi']); main(['check', 'specs/telescopes.mmi'])",
    "from mmmi_dsl.cli import main; main(['formula', 'specs/two_views.mmi'])",
])
def test_mi_check_and_load_never_import_torch(code):
    check = f"{code}; import sys; assert 'torch' not in sys.modules, 'torch was imported'"
    proc = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_mi_of_a_spec_imports_no_writer_machinery():
    """`mmmic mi SPEC` starts fast: only asking whether a path is a dataset must not import the
    progress bar or the hashing thread pool (about 15 ms of every start; issue 20)."""
    code = ("from mmmi_dsl.cli import main; main(['mi', 'specs/two_views.mmi']); import sys; "
            "bad = [m for m in ('tqdm', 'concurrent.futures') if m in sys.modules]; assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_torch_is_imported_only_by_modules_that_run_torch():
    """A module that imports torch at its top is a torch module; the front end and the engine are not."""
    torch_free = ("mmmi_dsl.lang", "mmmi_dsl.mi", "mmmi_dsl.builtins", "mmmi_dsl.ir", "mmmi_dsl.errors",
                  "mmmi_dsl.report", "mmmi_dsl.files", "mmmi_dsl.spec", "mmmi_dsl.cli", "mmmi_dsl.graph",
                  "mmmi_dsl.plot", "mmmi_dsl.highlight")
    offenders = []
    for name, path in MODULES.items():
        if name == "mmmi_dsl" or any(name == p or name.startswith(p + ".") for p in torch_free):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in tree.body:  # module level only: a lazy import inside a command is fine
                names = [a.name for a in node.names] if isinstance(node, (ast.Import, ast.ImportFrom)) else []
                mod = getattr(node, "module", None) or ""
                if mod.split(".")[0] == "torch" or any(n.split(".")[0] == "torch" for n in names
                                                       if isinstance(node, ast.Import)):
                    offenders.append(name)
    assert not offenders, offenders


def test_every_package_folder_is_a_regular_package():
    folders = {p.parent for p in PACKAGE.rglob("*.py")}
    missing = sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").is_file())
    assert not missing, f"namespace packages (no __init__.py): {missing}"
