"""The language's built-ins, each declared once: templates, matrices, flows, functions, types.

Lowering binds and checks calls against these definitions, :mod:`.realize` computes
template and matrix values from them, :mod:`mmmi_dsl.flows` builds flows from them, and the
lexer, the docs generator and error hints read their names and signatures. Nothing here
imports torch or runs user code.
"""

from __future__ import annotations

from mmmi_dsl.builtins.distributions import DISTRIBUTIONS
from mmmi_dsl.builtins.flows import FLOWS
from mmmi_dsl.builtins.matrices import MATRICES
from mmmi_dsl.builtins.signature import REQUIRED, Arg, Builtin
from mmmi_dsl.builtins.templates import TEMPLATES
from mmmi_dsl.ir import MATH_FUNCTIONS

# Installed packages add flow types under this entry-point group: ``name = "pkg.module:FlowClass"``
# (a subclass of mmmi_dsl.flows.Flow). A spec names the flow; it never names code by path.
FLOW_ENTRY_POINT_GROUP = "mmmic.flows"


def plugin_flows() -> dict[str, object]:
    """Entry points of installed flow plugins, by name (built-in names win)."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=FLOW_ENTRY_POINT_GROUP) if ep.name not in FLOWS}


# Functions usable inside structural equations besides the math functions.
EQUATION_FUNCTIONS = ("sum", "dot", "concat")
# Functions usable in constant expressions (dims, sweeps) besides the math functions.
CONSTANT_FUNCTIONS = ("size", "linspace", "logspace")

TYPES = ("scalar", "vector", "image", "matrix")


def all_function_names() -> list[str]:
    """Every function name the language knows, for did-you-mean hints."""
    names = set(MATH_FUNCTIONS) | set(TEMPLATES) | set(MATRICES) | set(FLOWS) | set(DISTRIBUTIONS)
    names |= set(EQUATION_FUNCTIONS) | set(CONSTANT_FUNCTIONS)
    return sorted(names)


__all__ = ["Arg", "Builtin", "REQUIRED", "TEMPLATES", "MATRICES", "FLOWS", "DISTRIBUTIONS", "FLOW_ENTRY_POINT_GROUP",
           "TYPES", "EQUATION_FUNCTIONS", "CONSTANT_FUNCTIONS", "plugin_flows", "all_function_names"]
