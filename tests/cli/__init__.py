"""Tests of the command line (mmmi_dsl/cli)."""
