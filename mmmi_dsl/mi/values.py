"""The result of an information query (:class:`MIValue`); imports nothing from the package."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIValue"]


@dataclass(frozen=True)
class MIValue:
    """An information quantity in nats.

    Attributes:
        nats: Value; may be ``math.inf`` (``-math.inf`` for an interaction information);
            never NaN; exactly 0.0 for independent sets.
        reason: Why it is infinite or exactly zero, else None.
        method: "structured", "dense" or "independent".
    """

    nats: float
    reason: str | None
    method: str
