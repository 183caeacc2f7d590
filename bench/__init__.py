"""Benchmarks for Charter; run them with `make bench`."""
