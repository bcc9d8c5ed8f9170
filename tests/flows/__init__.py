"""Tests of flows (mmmi_dsl/flows): learned CNFs, the UNet, converting weights."""
