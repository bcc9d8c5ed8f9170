"""Tests of the exact engine (mmmi_dsl/mi): structured Gaussian MI, closed forms, solve."""
