"""Stage 5a, flows: per-modality bijections (torch), built from their definitions.

:mod:`.base` has the interface, :mod:`.analytic` the closed-form flows, :mod:`.cnf` the learned
ODE flows, :mod:`.train` their training, :mod:`.classifier` and :mod:`.quality` the measuring of
their samples. Which flows exist, with which arguments, is
declared once in :mod:`mmmi_dsl.builtins.flows`; installed packages add flows under the
``mmmic.flows`` entry-point group.
"""

from __future__ import annotations

import importlib

from mmmi_dsl.builtins import FLOW_ENTRY_POINT_GROUP, FLOWS, plugin_flows
from mmmi_dsl.errors import Diagnostic, SpecError
from mmmi_dsl.flows.base import Chain, Flow


def flow_class(name: str) -> type[Flow]:
    """The class of built-in flow ``name`` (imports :mod:`.cnf`, and torchdiffeq, only when needed)."""
    module, cls = FLOWS[name].implementation.split(":")
    return getattr(importlib.import_module(module), cls)


def _constructor(name: str):
    def make(size: int, **kwargs) -> Flow:
        return flow_class(name)(size, **kwargs)

    make.__name__ = make.__qualname__ = name
    return make


#: Built-in flow name -> constructor, e.g. ``REGISTRY["affine"](size, seed = 1)``; the class is
#: imported on first use.
REGISTRY = {name: _constructor(name) for name in FLOWS}


def _plugin(step) -> type[Flow]:
    """The flow class an installed package registered under ``mmmic.flows`` for ``step.name``."""
    ep = plugin_flows().get(step.name)
    if ep is None:
        raise SpecError([Diagnostic("E0210", f"flow `{step.name}` is not available", step.span, "",
                                    f"built in: {', '.join(FLOWS)}; plugins register under the "
                                    f"`{FLOW_ENTRY_POINT_GROUP}` entry-point group")])
    try:
        cls = ep.load()
    except Exception as err:  # noqa: BLE001 - a broken plugin is the user's environment, not a bug here
        raise SpecError([Diagnostic("E0210", f"flow plugin `{step.name}` ({ep.value}) cannot be loaded: {err}",
                                    step.span)]) from None
    if not (isinstance(cls, type) and issubclass(cls, Flow)):
        raise SpecError([Diagnostic("E0210", f"flow plugin `{step.name}` ({ep.value}) is not a "
                                    "mmmi_dsl.flows.Flow subclass", step.span)])
    return cls


def build_flow(flow, size: int) -> Chain:
    """Instantiate the IR flow ``flow`` (an :class:`mmmi_dsl.ir.Flow`) for latents of ``size``; each step
    reads what the one before it outputs (an injective step such as ``swissroll`` makes it larger)."""
    steps = []
    for step in flow.steps:
        cls = flow_class(step.name) if step.name in FLOWS else _plugin(step)
        try:
            steps.append(cls(steps[-1].out_size if steps else size, **step.args))
        except (ValueError, OSError, KeyError, TypeError) as err:
            raise SpecError([Diagnostic("E0210", f"flow `{step.name}` cannot be built: {err}", step.span, "",
                                        "check the flow's arguments and the latent's size")]) from None
    return Chain(steps)


__all__ = ["Chain", "Flow", "REGISTRY", "build_flow", "flow_class"]
