"""Benchmarks (`make bench`): measured against baselines taken in the same run."""
