"""Documented import path kept: the exact analysis lives in :mod:`mmmi_dsl.mi.analysis`."""

from mmmi_dsl.mi.analysis import LN2, Analysis, Result, default_queries

__all__ = ["LN2", "Analysis", "Result", "default_queries"]
