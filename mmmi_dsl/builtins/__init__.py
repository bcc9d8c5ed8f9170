"""Tables of the language's built-ins: one place for names, arities and keywords.

Lowering, checks and the docs read these tables; nothing here runs user code.
"""

from __future__ import annotations

from mmmi_dsl.ir import MATH_FUNCTIONS

# Template constructors: name -> (positional parameter names, keyword defaults).
# Sizes, indices and seeds are integers; `shape` is a dim holding an image shape.
TEMPLATES: dict[str, tuple[tuple[str, ...], dict[str, object]]] = {
    "ones": (("size",), {}),
    "onehot": (("size", "index"), {}),
    "blob": (("shape", "row", "col", "sigma"), {}),
    "image": (("file",), {"mode": "RGB"}),
    "npy": (("file",), {}),
    "random": (("size", "seed"), {}),
    "normalize": (("template",), {}),
}

# Matrix constructors.
MATRICES: dict[str, tuple[tuple[str, ...], dict[str, object]]] = {
    "uniform": (("rows", "cols", "seed"), {"low": -1.0, "high": 1.0}),
    "normal": (("rows", "cols", "seed"), {"scale": 1.0}),
    "orthogonal": (("size", "seed"), {}),
    "identity": (("size",), {}),
    "npy": (("file",), {}),
}

# Flows: name -> keyword arguments with their defaults. The first positional
# argument of a flow is the latent (or the inner flow of a composition).
FLOWS: dict[str, dict[str, object]] = {
    "identity": {},
    "affine": {"seed": 0, "scale": 1.0},
    "asinh": {},
    "sinh": {},
    "half_cube": {},
    "normal_cdf": {},
    "spiral": {"speed": 1.0, "seed": 0},
    "coupling": {"layers": 4, "seed": 0, "hidden": 64},
    # `weights` is a file path, resolved relative to the spec like every path in a spec
    "cnf": {"weights": "", "class": 0, "guidance": 0.0, "method": "rk4", "steps": 32, "rtol": 1e-7, "atol": 1e-8},
    "digits": {"class": 0, "guidance": 0.0, "method": "rk4", "steps": 32, "rtol": 1e-7, "atol": 1e-8},
}

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
    names = set(MATH_FUNCTIONS) | set(TEMPLATES) | set(MATRICES) | set(FLOWS)
    names |= set(EQUATION_FUNCTIONS) | set(CONSTANT_FUNCTIONS)
    return sorted(names)
