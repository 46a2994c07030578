"""Benchmarks: what the service exists for, each figure beside its reference (``make bench``)."""
