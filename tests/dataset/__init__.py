"""Tests of datasets on disk (mmmi_dsl/dataset): writing, faults, safety, verify."""
