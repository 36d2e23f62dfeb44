"""Benchmarks: `make bench` runs `python -m bench.run` and prints the tables the README shows."""
