"""Benchmarks: each script measures Phoney against a baseline in the same run (see README)."""
