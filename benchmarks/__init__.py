"""Benchmarks of recjax kernels; see harness.py for the timing method."""
