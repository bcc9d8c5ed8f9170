"""The flow interface: a per-sample bijection ``forward(z) -> x`` with its exact ``inverse``.

A flow maps a latent batch ``z`` of shape (n, d) to data ``x`` of shape (n, d), or (n, k d) for an
injective embedding such as ``swissroll`` (its definition's ``expands`` = k). Every flow is
one-to-one from R^d (or the part of it it is defined on) onto its image, acting on one sample at
a time, so the data keep the latents' mutual information; ``inverse`` maps the image back.
A built-in flow's arguments are declared once, in
:mod:`mmmi_dsl.builtins.flows`; :meth:`Flow.arguments` checks and completes them there.
"""

from __future__ import annotations

import torch

from mmmi_dsl.builtins import FLOWS


def ieee_float32() -> None:
    """CUDA convolutions and matrix products in IEEE float32, not TF32 (cuDNN's default for
    convolutions, whose 10-bit mantissa would swamp a learned flow's round trip of 1e-4). Process-wide:
    torch's legacy flags, which torch >= 2.9 still honours (mixing them with its ``fp32_precision``
    ones makes reading either raise)."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


class Flow(torch.nn.Module):
    """Base class: ``forward(z) -> x``, (n, size) -> (n, out_size), and ``inverse(x) -> z`` back.

    A built-in sets ``builtin`` to its name in :data:`mmmi_dsl.builtins.FLOWS`; a plugin leaves it
    empty and checks its own arguments. ``out_size`` is ``size`` times the definition's ``expands``.
    """

    builtin = ""
    #: at most this many latents in the round trip checked before sampling (None: as many as asked);
    #: a flow whose every call is an expensive ODE solve sets a small number
    roundtrip_rows: int | None = None
    #: what ``standardize="auto"`` applies before this flow, when not its definition's (None)
    standardize: str | None = None
    #: floats per sample that one call holds at once besides its input and output (a network's
    #: activations, a solver's stages); the sampler sizes its chunks by the widest flow's
    working_floats: int = 0

    def __init__(self, size: int, **kwargs):
        super().__init__()
        self.size = size
        self.out_size = size * (FLOWS[self.builtin].expands if self.builtin else 1)
        self.args = self.arguments(kwargs) if self.builtin else dict(kwargs)

    def arguments(self, given: dict) -> dict:
        """``given`` keyword arguments checked against the flow's definition and completed with its
        defaults; the latent's size checked too (ValueError naming the argument)."""
        definition = FLOWS[self.builtin]
        args = definition.complete(given)
        problem = definition.size_problem(self.size, args)
        if problem:
            raise ValueError(problem)
        return args

    def inverse(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class Chain(Flow):
    """A composition of flows, applied in order (the IR lists them innermost first)."""

    def __init__(self, steps: list[Flow]):
        super().__init__(steps[0].size if steps else 0)
        self.out_size = steps[-1].out_size if steps else 0
        self.steps = torch.nn.ModuleList(steps)
        limits = [f.roundtrip_rows for f in steps if f.roundtrip_rows is not None]
        self.roundtrip_rows = min(limits) if limits else None
        self.working_floats = max((int(getattr(f, "working_floats", 0) or 0) for f in steps), default=0)

    def forward(self, z):
        for f in self.steps:
            z = f(z)
        return z

    def inverse(self, x):
        for f in reversed(self.steps):
            x = f.inverse(x)
        return x
