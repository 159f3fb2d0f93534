"""Benchmarks for codat-commerce-async: run ``python benchmarks/run.py`` (see README.md)."""
