"""Benchmarks: each module runs with one command, ``python -m benchmarks.<name>``."""
