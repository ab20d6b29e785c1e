"""Benchmarks against the real local services (``deploy/local/services up``); results in bench-results/."""
