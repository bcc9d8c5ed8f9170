"""Documented entry point kept (``python -m mmmi_dsl.train``): see :mod:`mmmi_dsl.flows.train`."""

from mmmi_dsl.flows.train import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
