"""Tests of the torch sampler (mmmi_dsl/backend.py)."""
