"""Adapters for other packages' MI estimators, for ``mmmic suite run --estimator`` (docs/suite.md).

Each is optional: it imports (or runs) its package only when called, and says how to install it.

- :mod:`~mmmi_dsl.adapters.latentmi`: latent MI (LMI) approximation, ``pip install latentmi``.
- :mod:`~mmmi_dsl.adapters.benchmark_mi`: BMI's estimators (``benchmark-mi``, jax), run in the Python that has
  them through the standalone script :mod:`~mmmi_dsl.adapters.bmi_estimator`.
"""
