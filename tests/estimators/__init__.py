"""Tests of MI estimators and the estimator benchmark (mmmi_dsl/estimators, mmmi_dsl/benchmark.py)."""
