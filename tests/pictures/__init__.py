"""Tests of pictures (mmmi_dsl/graph, mmmi_dsl/plot.py)."""
