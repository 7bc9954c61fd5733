"""Benchmarks of krita_alac (quality: bench.quality)."""
