"""Benchmarks at datacenter scale: `make bench` (see docs/benchmarks.md)."""
