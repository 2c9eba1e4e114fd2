"""Benchmarks: speed and memory goals live here, not in unit tests. Run all: ``python -m bench``."""
