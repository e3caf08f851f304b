"""Helpers shared by the imgpipe benchmarks (not part of the imgpipe package)."""
