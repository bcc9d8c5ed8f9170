"""Stage 7, the command line (``mmmic``): one module per command family, flags parsed in :mod:`.args`.

``main`` and ``build_parser`` live in :mod:`mmmi_dsl.cli.main`; this package keeps the
documented entry point ``mmmi_dsl.cli:main``.
"""

from mmmi_dsl.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
