"""The frozen estimator benchmark suite (``mmmic suite``; docs/suite.md).

- :mod:`~mmmi_dsl.suite.definition`: the suite file (``mmmic-suite-1.yaml``), tasks, selection and
  the frozen exact MI of each task, checked against its spec.
- :mod:`~mmmi_dsl.suite.plugins`: the estimator of a run (a built-in, ``module:function``, a command).
- :mod:`~mmmi_dsl.suite.run`: datasets in a cache (generated, resumed, verified) and the run itself.
- :mod:`~mmmi_dsl.suite.summary`: tables by family and dimension, CSV, the plot.
"""

from mmmi_dsl.suite.definition import (
    LATEST,
    SUITES,
    Suite,
    SuiteError,
    Task,
    available,
    load_suite,
    require_available,
    resolve,
    select,
    specs_dir,
)

__all__ = ["LATEST", "SUITES", "Suite", "SuiteError", "Task", "available", "load_suite", "require_available",
           "resolve", "select", "specs_dir"]
