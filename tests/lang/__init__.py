"""Tests of the language front end (mmmi_dsl/lang, mmmi_dsl/builtins): parse, lower, check, diagnostics."""
